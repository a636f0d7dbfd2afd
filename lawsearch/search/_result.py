"""What a ``RetrievalRerank`` search found, and the finished trials its rules rank."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["Node", "Score", "SearchResult"]

#: a re-extrapolated trial's ``(mean, lo, hi)`` at the full budget
Score = tuple[float, float, float]


@dataclass(frozen=True)
class Node:
    """A finished trial as the promotion rule sees it."""

    number: int
    rung: int
    root: int
    value: float
    mean: float
    lo: float
    hi: float
    budget: int
    checkpoint: str | None
    #: whether ``mean``/``lo``/``hi`` are a law's prediction (else each is ``value``)
    predicted: bool = False


@dataclass(frozen=True)
class SearchResult:
    """What a :class:`RetrievalRerank` search found.

    Attributes:
        best_trial: the number of the picked trial (at the highest rung of its lineage).
        best_params: its parameters.
        best_value: its value at ``best_budget``.
        best_budget: the budget its value was measured at.
        predicted_final: the law's prediction of its value at the full budget, or
            None when nothing predicted it (a value observed at the full budget, or a
            fit that failed).
        table: one row per candidate lineage, best first: ``root``, ``trial``,
            ``rung``, ``budget``, ``value``, ``predicted_final``, ``predicted_lo``,
            ``predicted_hi`` (None where no law predicted the trial), ``rank``.
        compute_steps: steps trained by the whole search (continuations
            counted once, from their resume step).
        full_compute_steps: steps to train every candidate to the full budget.
    """

    best_trial: int
    best_params: dict[str, Any]
    best_value: float
    best_budget: int
    predicted_final: float | None
    table: tuple[dict[str, Any], ...]
    compute_steps: float
    full_compute_steps: float

    @property
    def compute_fraction(self) -> float:
        return self.compute_steps / self.full_compute_steps if self.full_compute_steps else math.nan

    def to_markdown(self, limit: int = 20) -> str:
        head = (
            "| rank | candidate | trial | rung | budget | observed value "
            "| predicted final (lo–hi) |"
        )
        lines = [head, "|---|---|---|---|---|---|---|"]
        for row in self.table[:limit]:
            pred = "–"  # not "the observed value again": nothing predicted this trial
            if row["predicted_final"] is not None:
                pred = (
                    f"{_f(row['predicted_final'])} "
                    f"({_f(row['predicted_lo'])}–{_f(row['predicted_hi'])})"
                )
            lines.append(
                f"| {row['rank']} | {row['root']} | {row['trial']} | {row['rung']} | "
                f"{row['budget']} | {_f(row['value'])} | {pred} |"
            )
        return "\n".join(lines)


def _f(x: Any) -> str:
    return "–" if x is None or not math.isfinite(float(x)) else f"{float(x):.4g}"
