"""The search's decision records, written at its two decision points.

* ``record_trial``: when a trial finishes a rung (``RungExtrapolator.extrapolate``),
  what ranks it (its value at the full budget, the law's fit, or its last value
  and why), its full-budget estimate with the interval and the fit's path;
* ``cut_record``: when a rung's cut promotes (``RetrievalRerank.eligible``),
  the rung's trials as the rule ranked them (the joint refit where it ranks,
  else each trial's own record), with the cut line and who was kept.

The schema is ``lawsearch.optuna._records``'s; every view of a study reads it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, Trial, TrialState

from lawsearch.optuna import _attrs, _kinds
from lawsearch.optuna import _records as records

__all__ = [
    "RANKS",
    "RANK_BY_LOSS",
    "cut_record",
    "finite_or",
    "is_predicted",
    "kept_by_cut",
    "mixed_reason",
    "pruned_per_rung",
    "record_trial",
    "rung_scores",
    "sync_keep",
    "without_extrapolation",
]

#: a trial's or the joint refit's ``(mean, lo, hi)`` at the full budget
Score = tuple[float, float, float]
#: what a cut ranks a rung by: the law's optimistic prediction, or the loss observed
RANKS = ("law", "loss")
#: the cut record's reason when ``rank="loss"``
RANK_BY_LOSS = "the search ranks each rung by the loss observed at its budget (rank = 'loss')"


def sync_keep(n: int, eta: float) -> int:
    """How many of a finished rung's ``n`` trials continue under ``sync`` promotion.

    ``floor(n / eta)``, but at least one of a non-empty rung.
    """
    return max(1, math.floor(n / eta)) if n else 0


def rung_scores(
    search: Any, study: optuna.Study, rung: int, at: Sequence[Any], trials: Sequence[FrozenTrial]
) -> tuple[dict[int, Score], str]:
    """What a cut of ``rung`` ranks ``at`` (its finished trials, ``Node``) by.

    Returns the joint refit's scores by trial number and, when the whole rung ranks by
    the loss observed at its budget instead, why (empty otherwise): ``search.rank`` is
    ``"loss"``, or some trials have no usable extrapolation (a full-budget prediction
    is not comparable with another trial's short-budget loss).
    """
    if search.rank == "loss":
        return {}, RANK_BY_LOSS
    scores = search.extrapolator.pooled_scores(study, rung, search.budgets[rung], at, trials)
    bare = without_extrapolation(at, scores, trials)
    if 0 < len(bare) < len(at):
        return {}, mixed_reason(len(bare), len(at))
    return scores, ""


def _path(ext: Any, fit: Any, first: float, budget: float) -> dict[str, Any] | None:
    level = records.interval_level(ext.quantile)
    return records.fit_path(fit, float(first), ext.target, level, extra=(budget,))


def record_trial(
    ext: Any,
    trial: Trial,
    frozen: FrozenTrial,
    rung: int,
    curve: tuple[np.ndarray, np.ndarray],
    score: Score,
    status: str,
    used: Any,
) -> float:
    """Store the decision record of a trial that finished ``rung``; return its estimate.

    Args:
        ext: the ``RungExtrapolator`` that ranked it.
        trial: the live trial (still RUNNING: its attrs can be written).
        frozen: the trial as stored (its budget).
        rung: the rung it finished.
        curve: its reported steps and values.
        score: ``(mean, lo, hi)`` it is ranked by.
        status: its ``fit_status`` (``observed``, a fit status, or why the last value ranks).
        used: the fit whose prediction ranks it (None: observed or last value).
    """
    steps, values = curve
    law = ext.law
    if status == "observed":
        ranked_by, why = records.OBSERVED, ""
    elif used is not None:
        ranked_by, why = records.LAW, ""
    elif status == "skipped":
        ranked_by = records.LAST_VALUE
        why = (
            f"{steps.size} reports; the {law.name} law needs {law.min_points()}"
            if steps.size < law.min_points()
            else "a reported loss is not positive"
        )
    else:
        ranked_by, why = records.LAST_VALUE, status
    budget = int(frozen.user_attrs.get(_attrs.BUDGET, steps[-1]))
    level = records.interval_level(ext.quantile)
    record = records.trial_record(
        rung=rung,
        budget=budget,
        steps=steps,
        values=values,
        target=ext.target,
        ranked_by=ranked_by,
        value=score[0],
        lo=score[1],
        hi=score[2],
        level=level,
        law=law.name,
        fit_status=status,
        why=why,
        path=None if used is None else _path(ext, used, steps[0], budget),
    )
    trial.set_user_attr(_attrs.OBSERVED, _attrs.plain(values[-1]))
    trial.set_user_attr(_attrs.RANKED_BY, ranked_by)
    tps = frozen.user_attrs.get(_attrs.TOKENS_PER_STEP)
    trial.set_user_attr(_attrs.VALUE_KIND, _kinds.value_kind(record, tps).label)
    trial.set_user_attr(_attrs.INTERVAL_LEVEL, level)
    records.write_trial_record(trial, record)
    return float(score[0])


def cut_record(
    search: Any,
    study: optuna.Study,
    rung: int,
    screened: int,
    keep: int,
    ranked: Sequence[Any],
    scores: Mapping[int, Score],
    trials: Sequence[FrozenTrial],
    uniform: str = "",
) -> dict[str, Any]:
    """The record of the cut that keeps the first ``keep`` of ``ranked`` at ``rung``.

    Args:
        search: the ``RetrievalRerank`` (its ``extrapolator`` and ``budgets``).
        study: the study.
        rung: the rung cut.
        screened: trials screened at the rung (finished and pruned).
        keep: how many continue.
        ranked: the rung's finished trials (``Node``), best first, as the rule sorted them.
        scores: the joint refit's ``(mean, lo, hi)`` by trial number.
        trials: the study's trials the rule read.
        uniform: why the whole rung ranked by its observed losses (empty: it did not).
    """
    ext = search.extrapolator
    budget = int(search.budgets[rung])
    maximize = study.direction == StudyDirection.MAXIMIZE
    # the joint refit is read only where it ranks (a rung ranked by its losses skips it)
    joint = None if uniform else ext.joint_refit(study, rung, budget, ranked, trials)
    joint_fits = {} if joint is None else joint.fits
    joint_why = {} if joint is None else joint.why
    by_number = {t.number: t for t in trials}
    candidates = []
    for node in ranked:
        own = records.read_trial_record(by_number[node.number]) or {}
        if uniform:
            mean, lo, hi = node.value, node.value, node.value
            ranked_by, reason, path = records.LAST_VALUE, uniform, None
        elif node.number in scores:
            mean, lo, hi = scores[node.number]
            fit = joint_fits.get(node.number)
            ranked_by, reason = records.JOINT, ""
            path = None
            if fit is not None and fit.curve is not None and fit.curve.steps.size:
                path = _path(ext, fit, fit.curve.steps[0], budget)
        else:
            mean, lo, hi = node.mean, node.lo, node.hi
            ranked_by = str(own.get("ranked_by", records.LAST_VALUE))
            reason = "; ".join(r for r in (joint_why.get(node.number, ""), own.get("why", "")) if r)
            path = own.get("path")
        score = hi if maximize else lo  # the optimistic end the rule sorted by (or the loss)
        if ranked_by == records.LAST_VALUE:
            lo = hi = float("nan")  # no interval, not a zero-width one
        candidates.append(
            {
                "trial": node.number,
                "root": node.root,
                "ranked_by": ranked_by,
                "why": reason,
                "value": mean,
                "lo": lo,
                "hi": hi,
                "score": score,
                "path": path,
            }
        )
    pruned = [
        t.number
        for t in trials
        if t.state == TrialState.PRUNED and t.user_attrs.get(_attrs.RUNG) == rung
    ]
    return records.cut_record(
        rung=rung,
        budget=budget,
        target=ext.target,
        level=records.interval_level(ext.quantile),
        maximize=maximize,
        screened=screened,
        keep=keep,
        pruned=pruned,
        candidates=candidates,
    )


def without_extrapolation(
    at: Sequence[Any], scores: Mapping[int, Score], trials: Sequence[FrozenTrial]
) -> list[int]:
    """The rung's trials with neither a joint score nor a usable extrapolation of their own."""
    by_number = {t.number: t for t in trials}
    out = []
    for n in at:
        if n.number in scores:
            continue
        lo = by_number[n.number].user_attrs.get(_attrs.PREDICTED_LO)
        if not (isinstance(lo, int | float) and math.isfinite(lo)):
            out.append(n.number)
    return out


def mixed_reason(bare: int, total: int) -> str:
    """Why a rung with ``bare`` of ``total`` trials unextrapolated ranks by observed losses."""
    return (
        f"{bare} of {total} trials of this rung had no usable extrapolation, so the whole "
        "rung ranks by the loss observed at its budget (a full-budget prediction is not "
        "comparable with a short-budget loss)"
    )


def pruned_per_rung(trials: Sequence[FrozenTrial]) -> dict[int, int]:
    """How many trials the pruner stopped at each rung (they count among its screened)."""
    out: dict[int, int] = {}
    for t in trials:
        if t.state == TrialState.PRUNED and _attrs.RUNG in t.user_attrs:
            rung = int(t.user_attrs[_attrs.RUNG])
            out[rung] = out.get(rung, 0) + 1
    return out


def kept_by_cut(cuts: Sequence[Mapping[str, Any]], rung: int) -> set[int] | None:
    """The trials the recorded cut of ``rung`` kept (None: the rung was not cut yet).

    Under ``sync`` promotion a finished rung is cut once. Its record is written
    before the continuations, so a search that resumes, or runs again after the
    continuations' longer curves joined the rung's pooled refit, promotes exactly
    the trials that cut kept, never a re-ranked set on top of them.
    """
    for cut in cuts:
        if int(cut["rung"]) == rung:
            return {int(c["trial"]) for c in cut["candidates"][: int(cut["keep"])]}
    return None


def is_predicted(user_attrs: Mapping[str, Any]) -> bool:
    """Whether a finished trial's value is a law's prediction (not a loss observed)."""
    if _attrs.RANKED_BY in user_attrs:
        return user_attrs[_attrs.RANKED_BY] in (records.LAW, records.JOINT)
    return math.isfinite(finite_or(user_attrs.get(_attrs.PREDICTED_FINAL), math.nan))


def finite_or(x: Any, default: float) -> float:
    """``x`` as a float when it is a finite number, else ``default``."""
    return float(x) if x is not None and math.isfinite(float(x)) else default
