"""Decision records: what the search ranked each trial by, and every cut it made.

``RetrievalRerank`` writes one record per trial when the trial finishes a rung
and one per cut; every view of a study (the report's table, ``summary.json``,
its figures and HTML page, the optuna-dashboard notes and figures) reads them,
so no two views can disagree about what the search did.

**One interval level.** Every interval in a record is at the level the search
ranks with, ``1 - 2 * quantile`` (``quantile``: the optimistic quantile of
``RetrievalRerank`` and ``[pruner] quantile`` in a study file; 80% by default),
and every record carries its ``level``.

**Trial record** (trial system attr ``lawsearch:decision``, written just before
``study.tell``; the objective value told to Optuna is its ``value``):

* ``rung``, ``budget``: the rung and the step budget it trained to;
* ``observed``, ``observed_step``: its last reported value and step;
* ``target``: the full budget (step) the estimate is for;
* ``ranked_by``: ``"observed"`` (it reached the full budget), ``"law"`` (the
  law's fit to its curve, with the rung's best fits as a prior), or
  ``"last value"`` (no usable extrapolation: ``why`` says why);
* ``value``: the full-budget estimate (the observed value at the full budget,
  the law's prediction, or the last value); ``lo``, ``hi``: its interval
  (None when ranked by the last value); ``level``;
* ``law``, ``fit_status``; ``path``: the fit over the curve and its
  extrapolation to ``target`` (``steps``, ``mean``, ``lo``, ``hi``; None without a fit).

**Cut record** (study system attr ``lawsearch:cut:<rung>:<kept>``, written when a
rung's cut promotes):

* ``rung``, ``budget``, ``target``, ``level``, ``direction``;
* ``screened``: trials screened at the rung (finished and pruned); ``keep``:
  how many continue; ``pruned``: trials the pruner stopped inside the rung;
* ``candidates``, best first, each ``trial``, ``root``, ``ranked_by``
  (``"joint refit"`` of all the rung's curves, else the trial's own ``"law"``
  fit or ``"last value"``), ``why``, ``value``, ``lo``, ``hi``, ``score`` (the
  optimistic end of the interval the cut sorts by), ``kept``, ``path``;
* ``line``: the cut line, the score of the last candidate kept.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, Trial

from lawsearch.optuna import _attrs
from lawsearch.optuna import _compat as compat

__all__ = [
    "JOINT",
    "LAST_VALUE",
    "LAW",
    "OBSERVED",
    "cut_record",
    "decision",
    "fit_path",
    "interval_level",
    "observed_value",
    "path_at",
    "rank_key",
    "read_cuts",
    "read_trial_record",
    "trial_record",
    "write_cut",
    "write_trial_record",
]

#: what ranked a trial: its value at the full budget, the law, the joint refit, its last value
OBSERVED = "observed"
LAW = "law"
JOINT = "joint refit"
LAST_VALUE = "last value"
#: points of a record's path (log-spaced from the first report to the full budget)
PATH_POINTS = 24


def interval_level(quantile: float) -> float:
    """The interval level the search ranks with: ``1 - 2 * quantile``."""
    return round(1.0 - 2.0 * float(quantile), 6)


def _num(x: Any) -> float | None:
    try:
        return _attrs.plain(x)
    except (TypeError, ValueError):
        return None


def fit_path(
    fit: Any, first: float, target: float, level: float, extra: Iterable[float] = ()
) -> dict[str, list[float | None]] | None:
    """The fit's mean and interval from ``first`` to ``target``, where it predicts a loss.

    A law may leave the positive losses before ``target`` (``FitResult.predict``
    raises then): the path stops at the last usable step, so a figure drawing it
    shows where the extrapolation ends rather than nothing.
    """
    if fit is None or not getattr(fit, "ok", False) or not target > first > 0:
        return None
    grid = np.unique(
        np.concatenate([np.geomspace(first, target, PATH_POINTS), [target], list(extra)])
    )
    grid = grid[(grid >= first) & (grid <= target)]
    try:
        mean = fit.predict(grid)
        lo, hi = fit.interval(grid, level=level)
    except (ValueError, FloatingPointError, OverflowError):
        keep = []
        for g in grid:  # the leading usable part
            try:
                fit.predict([g])
                fit.interval([g], level=level)
            except (ValueError, FloatingPointError, OverflowError):
                break
            keep.append(g)
        if not keep:
            return None
        grid = np.asarray(keep)
        mean = fit.predict(grid)
        lo, hi = fit.interval(grid, level=level)
    return {
        "steps": [float(s) for s in grid],
        "mean": [_num(v) for v in mean],
        "lo": [_num(v) for v in lo],
        "hi": [_num(v) for v in hi],
    }


def path_at(path: Mapping[str, Any] | None, step: float) -> tuple[float, float, float] | None:
    """``(mean, lo, hi)`` of a record's path at ``step`` (log-step interpolation), or None."""
    if not path or not path.get("steps"):
        return None
    s = np.asarray(path["steps"], dtype=float)
    if not s[0] <= step <= s[-1]:
        return None
    out = []
    for key in ("mean", "lo", "hi"):
        v = np.asarray([math.nan if x is None else x for x in path[key]], dtype=float)
        out.append(float(np.interp(math.log(step), np.log(s), v)))
    return out[0], out[1], out[2]


def trial_record(
    *,
    rung: int,
    budget: int,
    steps: Sequence[float] | np.ndarray,
    values: Sequence[float] | np.ndarray,
    target: float,
    ranked_by: str,
    value: float,
    lo: float,
    hi: float,
    level: float,
    law: str,
    fit_status: str,
    why: str = "",
    path: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A trial's decision record (see the module docstring), JSON-safe."""
    return {
        "rung": int(rung),
        "budget": int(budget),
        "observed": _num(values[-1]) if len(values) else None,
        "observed_step": int(steps[-1]) if len(steps) else None,
        "target": int(target),
        "ranked_by": ranked_by,
        "why": why,
        "value": _num(value),
        "lo": _num(lo),
        "hi": _num(hi),
        "level": float(level),
        "law": law,
        "fit_status": fit_status,
        "path": path,
    }


def cut_record(
    *,
    rung: int,
    budget: int,
    target: float,
    level: float,
    maximize: bool,
    screened: int,
    keep: int,
    pruned: Sequence[int],
    candidates: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """A cut's record: ``candidates`` best first (each as described in the module docstring)."""
    ranked = [
        {
            "trial": int(c["trial"]),
            "root": int(c["root"]),
            "ranked_by": str(c["ranked_by"]),
            "why": str(c.get("why", "")),
            "value": _num(c["value"]),
            "lo": _num(c["lo"]),
            "hi": _num(c["hi"]),
            "score": _num(c["score"]),
            "kept": i < keep,
            "path": c.get("path"),
        }
        for i, c in enumerate(candidates)
    ]
    return {
        "rung": int(rung),
        "budget": int(budget),
        "target": int(target),
        "level": float(level),
        "direction": "maximize" if maximize else "minimize",
        "screened": int(screened),
        "keep": int(keep),
        "pruned": sorted(int(n) for n in pruned),
        "line": ranked[keep - 1]["score"] if 0 < keep <= len(ranked) else None,
        "candidates": ranked,
    }


def read_trial_record(trial: FrozenTrial) -> dict[str, Any] | None:
    """The trial's decision record, or None (not finished a rung, or not from the search)."""
    rec = trial.system_attrs.get(_attrs.DECISION)
    return rec if isinstance(rec, dict) else None


def read_cuts(study: optuna.Study) -> list[dict[str, Any]]:
    """The study's cut records, by rung, then by how many each kept."""
    attrs = compat.storage(study).get_study_system_attrs(compat.study_id(study))
    cuts = [v for k, v in attrs.items() if k.startswith(_attrs.CUT_PREFIX) and isinstance(v, dict)]
    return sorted(cuts, key=lambda c: (int(c["rung"]), int(c["keep"])))


def observed_value(trial: FrozenTrial) -> float | None:
    """The loss a finished trial observed at its own budget.

    ``lawsearch:observed``; a trial told before that attr existed carries it as
    its objective value.
    """
    v = trial.user_attrs.get(_attrs.OBSERVED)
    if v is None:
        v = trial.value
    return None if v is None or not math.isfinite(float(v)) else float(v)


def decision(trial: FrozenTrial, cuts: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """What ranked a finished trial at its rung: its record, overridden by its latest cut.

    The cut's entry (``ranked_by``, ``why``, ``value``, ``lo``, ``hi``, ``path``)
    replaces the trial's own, and ``position`` (1-based; 0: in no cut), ``of``,
    ``kept``, ``score``, ``line``, ``keep`` say the cut's verdict; ``own`` is the
    trial's record. Under async promotion a rung is cut several times; the latest
    cut that ranked the trial counts.
    """
    rec = read_trial_record(trial) if trial.state.name == "COMPLETE" else None
    if rec is None:
        return None
    out = {
        **rec,
        "own": rec,
        "position": 0,
        "of": 0,
        "kept": False,
        "score": None,
        "line": None,
        "keep": 0,
    }
    for cut in reversed([c for c in cuts if int(c["rung"]) == int(rec["rung"])]):
        for i, c in enumerate(cut["candidates"]):
            if int(c["trial"]) == trial.number:
                out.update({k: c.get(k) for k in ("ranked_by", "why", "value", "lo", "hi", "path")})
                out.update(
                    position=i + 1,
                    of=len(cut["candidates"]),
                    kept=bool(c["kept"]),
                    score=c.get("score"),
                    line=cut.get("line"),
                    keep=int(cut["keep"]),
                )
                return out
    return out


def rank_key(
    rung: int | None, position: int, value: float | None, number: int, *, maximize: bool
) -> tuple[float, float, float, int]:
    """How every view orders lineages: as the search decided.

    The deepest rung first; within a rung, the place in its cut; then the
    full-budget estimate (at the full budget: the observed value); a lineage
    that finished no rung (``rung`` None) comes last.
    """
    sign = -1.0 if maximize else 1.0
    v = sign * value if value is not None and math.isfinite(value) else math.inf
    if rung is None:
        return (1.0, math.inf, v, number)
    return (-float(rung), float(position or math.inf), v, number)


def write_trial_record(trial: Trial, record: Mapping[str, Any]) -> None:
    """Store a running trial's decision record (a trial system attr)."""
    compat.storage(trial.study).set_trial_system_attr(
        compat.trial_id(trial), _attrs.DECISION, dict(record)
    )


def write_cut(study: optuna.Study, cut: Mapping[str, Any]) -> None:
    """Store a cut's record (a study system attr; the same cut rewrites the same key)."""
    compat.storage(study).set_study_system_attr(
        compat.study_id(study), _attrs.cut_key(cut["rung"], cut["keep"]), dict(cut)
    )
