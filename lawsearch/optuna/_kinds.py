"""What kind of number a ranked value is: a prediction at the full budget, or an observed loss.

The search ranks a trial at a rung by one number (its decision record's
``value``, ``lawsearch.optuna._records``), and that number is one of four kinds:

* ``law prediction``: the law's fit to the trial's own curve, at the full budget;
* ``joint prediction``: the rung's joint refit of all its curves, at the full budget;
* ``observed fallback``: the loss observed at the trial's own (short) budget,
  because no usable extrapolation existed (the fit failed, was refused, or
  the rung mixed extrapolated and unextrapolated trials);
* ``observed final``: the loss observed after training to the full budget.

Only the two predictions carry an interval. Every view (the report's table,
CSV, ``summary.json``, figures and HTML page; the dashboard's notes and
figures; the progress line of ``lawsearch run``) labels a value through
``value_kind`` so none calls an observed short-budget loss an estimate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from optuna.trial import FrozenTrial

from lawsearch.optuna import _attrs
from lawsearch.optuna import _records as records

__all__ = [
    "JOINT_PREDICTION",
    "KINDS",
    "LAW_PREDICTION",
    "OBSERVED_FALLBACK",
    "OBSERVED_FINAL",
    "ValueKind",
    "best_value",
    "human_tokens",
    "pruner_kind",
    "value_kind",
]

LAW_PREDICTION = "law prediction"
JOINT_PREDICTION = "joint prediction"
OBSERVED_FALLBACK = "observed fallback"
OBSERVED_FINAL = "observed final"
#: every kind, predictions first
KINDS = (LAW_PREDICTION, JOINT_PREDICTION, OBSERVED_FALLBACK, OBSERVED_FINAL)

#: what ranked a trial (``records``) -> the kind of its value
_BY_RANKED = {
    records.LAW: LAW_PREDICTION,
    records.JOINT: JOINT_PREDICTION,
    records.LAST_VALUE: OBSERVED_FALLBACK,
    records.OBSERVED: OBSERVED_FINAL,
}


def human_tokens(n: float) -> str:
    """``245760`` -> ``246k``."""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.0f}"


@dataclass(frozen=True)
class ValueKind:
    """What a ranked value is, and where (in steps and tokens) it holds.

    Attributes:
        kind: one of ``KINDS``.
        at_step: the step the value is a loss at (the full budget for a
            prediction; the step observed for an observed value).
        at_tokens: ``at_step`` in training tokens (None: tokens per step unknown).
        label: a short phrase for a person: ``predicted at 246k tokens``,
            ``joint refit, predicted at 246k tokens``, ``observed at step 48
            (12.3k tokens)``, ``observed final at step 240 (246k tokens)``.
    """

    kind: str
    at_step: int
    at_tokens: float | None
    label: str

    @property
    def predicted(self) -> bool:
        """A prediction (with an interval), not a loss someone observed."""
        return self.kind in (LAW_PREDICTION, JOINT_PREDICTION)

    @property
    def short(self) -> str:
        """``pred`` or ``observed@48``: the compact form of the progress line."""
        return "pred" if self.predicted else f"observed@{self.at_step}"

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe: ``value_kind``, ``value_at_step``, ``value_at_tokens``, ``value_label``."""
        return {
            "value_kind": self.kind,
            "value_at_step": self.at_step,
            "value_at_tokens": self.at_tokens,
            "value_label": self.label,
        }


def _make(kind: str, at_step: int, tokens_per_step: float | None) -> ValueKind:
    tokens = None if not tokens_per_step else float(at_step) * float(tokens_per_step)
    where = f"{human_tokens(tokens)} tokens" if tokens is not None else f"step {at_step}"
    if kind == LAW_PREDICTION:
        label = f"predicted at {where}"
    elif kind == JOINT_PREDICTION:
        label = f"joint refit, predicted at {where}"
    else:
        at = f"step {at_step}" + (f" ({where})" if tokens is not None else "")
        label = f"observed final at {at}" if kind == OBSERVED_FINAL else f"observed at {at}"
    return ValueKind(kind=kind, at_step=int(at_step), at_tokens=tokens, label=label)


def value_kind(record: Mapping[str, Any], tokens_per_step: float | None = None) -> ValueKind:
    """The kind of the value a decision record ranks by.

    Args:
        record: a trial's record (``records.read_trial_record``), its decision
            (``records.decision``: the cut's ranking where a cut ranked it), or
            a cut's candidate with the cut's ``target`` and ``budget`` added.
        tokens_per_step: to say where in tokens (None: steps only).

    Raises:
        ValueError: when ``ranked_by`` is not one the search writes.
    """
    by = record.get("ranked_by")
    if by not in _BY_RANKED:
        raise ValueError(
            f"`ranked_by` must be one of {sorted(_BY_RANKED)}; got {by!r} (a decision record "
            "written by lawsearch.search, or a cut's candidate)."
        )
    kind = _BY_RANKED[by]
    if kind in (LAW_PREDICTION, JOINT_PREDICTION):
        step = record.get("target")
    else:
        step = record.get("observed_step") or record.get("budget")
    if step is None:
        raise ValueError(
            f"the record ranked by {by!r} says neither `target` nor `observed_step` nor "
            "`budget`; for a cut's candidate add the cut's `target` and `budget`."
        )
    return _make(kind, int(step), tokens_per_step)


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and math.isfinite(float(v))


def pruner_kind(
    trial: FrozenTrial, target_step: int, tokens_per_step: float | None = None
) -> ValueKind | None:
    """The kind of a trial's ``lawsearch:predicted_final`` when it has no decision record.

    A trial that finished a rung is labelled by its record (``value_kind``);
    a running or pruned one carries the pruner's latest law prediction, unless
    its latest fit failed (then None: no current prediction).
    """
    a = trial.user_attrs
    if not _finite(a.get(_attrs.PREDICTED_FINAL)):
        return None
    status = str(a.get(_attrs.FIT_STATUS, ""))
    if status in ("observed", "skipped", "diverged") or status.startswith(("failed", "unreliable")):
        return None
    tps = tokens_per_step or a.get(_attrs.TOKENS_PER_STEP)
    return _make(LAW_PREDICTION, int(target_step), tps)


def best_value(
    trials: Sequence[FrozenTrial],
    cuts: Sequence[Mapping[str, Any]],
    target_step: int,
    *,
    maximize: bool = False,
) -> tuple[float, ValueKind] | None:
    """The best value the study holds now, with its kind (what ``lawsearch run`` shows).

    Values at the full budget (predictions and observed finals) are comparable
    and come first; only when there is none, the best observed fallback at the
    deepest step observed (a short-budget loss is never compared with a
    full-budget prediction). None: nothing ranked or predicted yet.
    """
    full: list[tuple[float, ValueKind]] = []
    early: list[tuple[float, ValueKind]] = []
    for t in trials:
        d = records.decision(t, cuts)
        tps = t.user_attrs.get(_attrs.TOKENS_PER_STEP)
        if d is not None and _finite(d.get("value")):
            kind, value = value_kind(d, tps), float(d["value"])
        elif d is None and (kind_ := pruner_kind(t, target_step)) is not None:
            kind, value = kind_, float(t.user_attrs[_attrs.PREDICTED_FINAL])
        else:
            continue
        (full if kind.kind != OBSERVED_FALLBACK else early).append((value, kind))
    sign = -1.0 if maximize else 1.0
    if full:
        return min(full, key=lambda p: sign * p[0])
    if early:
        deepest = max(k.at_step for _, k in early)
        return min((p for p in early if p[1].at_step == deepest), key=lambda p: sign * p[0])
    return None
