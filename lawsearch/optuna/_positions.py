"""Per-position held-out losses on a trial: a bounded matrix for the Temporal Scaling Law.

The trainer reports, at every evaluation, the loss at each token position of
the context (``seq_len`` numbers). The temporal law needs the matrix of those
rows over evaluations, but not every position nor every evaluation: this module
keeps at most ``MAX_POSITIONS`` log-spaced positions (the loss changes fastest
early in the context) and at most ``MAX_EVALS`` evaluations (when the record is
full, every second stored row is dropped, the latest kept, so the rows still
span the run), rounded to 5 significant digits, so the trial attr
``lawsearch:loss_per_position`` stays a few kilobytes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lawsearch.optuna import _attrs

__all__ = ["MAX_EVALS", "MAX_POSITIONS", "add_row", "position_columns", "read_positions"]

MAX_POSITIONS = 32
MAX_EVALS = 48


def position_columns(length: int, k: int = MAX_POSITIONS) -> list[int]:
    """Indices into a ``length``-long per-position row: up to ``k``, log-spaced, first and last."""
    if length <= k:
        return list(range(length))
    picks = np.unique(np.round(np.geomspace(1, length, k)).astype(int)) - 1
    return [int(i) for i in picks]


def _sig(x: float, digits: int = 5) -> float:
    return float(f"{float(x):.{digits}g}")


def add_row(
    record: Mapping[str, Any] | None, step: int, per_position: Sequence[float]
) -> dict[str, Any]:
    """``record`` with the evaluation at ``step`` added (a new dict; JSON-safe)."""
    if record is None or not record.get("positions"):
        cols = position_columns(len(per_position))
        out: dict[str, Any] = {"positions": [c + 1 for c in cols], "steps": [], "losses": []}
    else:
        out = {k: list(record[k]) for k in ("positions", "steps", "losses")}
        cols = [p - 1 for p in out["positions"]]
    if cols[-1] >= len(per_position):
        raise ValueError(
            f"`loss_per_position` has {len(per_position)} entries but the trial's record has "
            f"positions up to {cols[-1] + 1}; a trial keeps one sequence length."
        )
    row = [_sig(per_position[c]) for c in cols]
    if not all(math.isfinite(v) for v in row):
        return out  # a diverged evaluation: the scalar curve already says so
    if out["steps"] and step <= out["steps"][-1]:
        keep = [i for i, s in enumerate(out["steps"]) if s < step]
        out["steps"] = [out["steps"][i] for i in keep]
        out["losses"] = [out["losses"][i] for i in keep]
    out["steps"].append(int(step))
    out["losses"].append(row)
    if len(out["steps"]) > MAX_EVALS:
        keep = [*range(0, len(out["steps"]) - 1, 2), len(out["steps"]) - 1]
        out["steps"] = [out["steps"][i] for i in keep]
        out["losses"] = [out["losses"][i] for i in keep]
    return out


def read_positions(
    user_attrs: Mapping[str, Any],
) -> tuple[np.ndarray, tuple[float, ...], np.ndarray] | None:
    """``(steps, positions, losses matrix)`` stored on a trial, or None."""
    record = user_attrs.get(_attrs.LOSS_PER_POSITION)
    if not record:
        return None
    steps = np.asarray(record["steps"], dtype=float)
    losses = np.asarray(record["losses"], dtype=float)
    if losses.ndim != 2 or losses.shape[0] != steps.size:
        raise ValueError(
            f"`{_attrs.LOSS_PER_POSITION}` is malformed: {steps.size} steps but losses of "
            f"shape {losses.shape}."
        )
    return steps, tuple(float(p) for p in record["positions"]), losses
