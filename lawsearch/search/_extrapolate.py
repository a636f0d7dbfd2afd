"""How the search ranks a finished trial: the law's extrapolation to the full budget.

``RungExtrapolator`` holds the rules ``RetrievalRerank`` ranks by. When a
trial finishes a rung, its curve is extrapolated to the full budget (its own
fit, with the rung's best fits as a prior on the shared parameters) and the
prediction is stored on the trial. A rung's cut re-extrapolates all its curves
jointly (``pooled_scores``). An extrapolation is only used when it can rank:
finite, an interval no wider than ``max_interval_ratio``, and no more
improvement than ``max_trend_ratio`` times the curve's own recent trend;
otherwise the trial ranks by its last value and ``fit_status`` says why.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, Trial, TrialState

from lawsearch._fit import MAX_TREND_RATIO, fit_or_simpler, judge, pooled_or_simpler
from lawsearch.laws import Law, fallbacks, get_law, shared_params
from lawsearch.optuna import _attrs
from lawsearch.optuna import _compat as compat
from lawsearch.optuna import _records as records
from lawsearch.optuna._mixture import get_schedule
from lawsearch.search._decisions import record_trial
from lawsearch.search._result import Node, Score
from lawsearch.search._temporal import fit_per_position

__all__ = ["POOL_LR_RATIO", "JointRefit", "RungExtrapolator", "curve_of", "optimistic"]

#: a joint refit fits together only curves whose peak LRs lie within this factor
#: (``RungExtrapolator.pool_lr_ratio``; measured in ``benchmarks/search_e2e.py``)
POOL_LR_RATIO = 1.5


def _to_fit(curves: Sequence[dict[str, Any]], group: Sequence[int]) -> int:
    """How many of ``curves[group]`` a joint refit fits (not the ``whole`` reference curves)."""
    return sum(not curves[i]["whole"] for i in group)


class RungExtrapolator:
    """Extrapolate finished trials to ``target`` (the full budget) and judge the result.

    Args: see ``RetrievalRerank`` (``law``, ``shared``, ``pool_size``, ``pool_max``,
    ``quantile``, ``max_interval_ratio``, ``max_trend_ratio``, ``window``,
    ``pool_refs``); ``target`` is the full budget in steps.
    """

    def __init__(
        self,
        *,
        target: int,
        law: Law | str = "power",
        shared: Sequence[str] | None = None,
        pool_size: int = 8,
        pool_max: int = 64,
        quantile: float = 0.1,
        max_interval_ratio: float = 2.0,
        max_trend_ratio: float | None = MAX_TREND_RATIO,
        window: bool = True,
        pool_refs: int = 4,
        pool_lr_ratio: float | None = POOL_LR_RATIO,
    ) -> None:
        if not 0 < quantile < 0.5:
            raise ValueError(f"`quantile` must be in (0, 0.5); got {quantile!r}.")
        self.target = float(target)
        self._law = get_law(law) if isinstance(law, str) else law
        names = self._law.param_names
        self.shared = tuple(shared) if shared is not None else shared_params(self._law)
        unknown = [n for n in self.shared if n not in names]
        if unknown:
            raise ValueError(f"`shared` names {unknown} are not parameters of {names}.")
        self.pool_size = int(pool_size)
        self.pool_max = int(pool_max)
        self.quantile = float(quantile)
        if not max_interval_ratio > 1:
            raise ValueError(f"`max_interval_ratio` must be > 1; got {max_interval_ratio!r}.")
        self.max_interval_ratio = float(max_interval_ratio)
        if max_trend_ratio is not None and not max_trend_ratio > 0:
            raise ValueError(f"`max_trend_ratio` must be > 0 (or None); got {max_trend_ratio!r}.")
        self.max_trend_ratio = None if max_trend_ratio is None else float(max_trend_ratio)
        self.window = bool(window)
        self.pool_refs = int(pool_refs)
        if pool_lr_ratio is not None and not pool_lr_ratio >= 1:
            raise ValueError(f"`pool_lr_ratio` must be >= 1 (or None); got {pool_lr_ratio!r}.")
        self.pool_lr_ratio = None if pool_lr_ratio is None else float(pool_lr_ratio)
        self._fallbacks = fallbacks(self._law)
        self._lock = threading.Lock()
        self._pooled_cache: dict[tuple[int, int, tuple[int, ...]], JointRefit] = {}

    @property
    def law(self) -> Law:
        return self._law

    def extrapolate(
        self, study: optuna.Study, trial: Trial, frozen: FrozenTrial, rung: int
    ) -> float:
        """Fit the law to a trial that finished ``rung`` and store its prediction in attrs.

        The law is fitted to the window of the trial's curve (``_fit.window_start``),
        with its LR schedule for a schedule-aware law and the rung's best finished
        fits as a prior on the shared parameters (``pool_prior``); a fit that fails
        or goes below its floor is replaced by a less flexible law
        (``_fit.fit_or_simpler``). Without a usable extrapolation the trial ranks by
        its last value, and ``fit_status`` says why.

        Returns:
            The full-budget estimate (the objective value to tell Optuna); the
            trial's decision record (``lawsearch.optuna._records``) says what it is.
        """
        steps, values = curve_of(frozen)
        target = self.target
        sign = 1.0 if study.direction != StudyDirection.MAXIMIZE else -1.0
        # without a usable extrapolation the trial ranks by its last value, with no
        # interval (an empty lo/hi, not a zero-width one that would look certain)
        mean, lo, hi, status = values[-1], math.nan, math.nan, "skipped"
        used = None  # the fit whose prediction ranks the trial
        law_name = self._law.name
        if steps[-1] >= target:
            lo, hi, status = values[-1], values[-1], "observed"
        elif steps.size >= self._law.min_points() and np.all(values > 0):
            prior = self.pool_prior(study, rung, frozen.number, sign)
            lrs, why = self.lrs(frozen, int(max(target, steps[-1])))
            fit: Any = None
            if self._law.name == "temporal":  # fits the per-position matrix instead
                try:
                    fit = fit_per_position(self._law, frozen.user_attrs, float(steps[-1]))
                except (ValueError, RuntimeError, FloatingPointError) as exc:
                    fit, why = None, str(exc)
            elif not why:
                fit = fit_or_simpler(
                    self._law,
                    steps,
                    values,
                    target=target,
                    lrs=lrs,
                    fallbacks=self._fallbacks,
                    window=self.window,
                    prior=prior or None,
                )
            judged = self.judge(fit, target) if fit is not None and fit.ok else ""
            if fit is None or not fit.ok:
                status = f"failed: {why or (fit.message if fit is not None else '')}".rstrip(": ")
            elif isinstance(judged, str):
                status = f"unreliable: ranked by the last observed value: {judged}"
            else:
                (mean, lo, hi), status, used = judged, fit.status, fit
                # the temporal fit predicts through its position mean: same law, same name
                own = fit.law == self._law or self._law.name == "temporal"
                law_name = self._law.name if own else fit.law.name
                if fit.law == self._law:  # a fallback's parameters would not pool
                    for name, val in fit.params.items():
                        trial.set_user_attr(_attrs.PARAM_PREFIX + name, _attrs.plain(val))
        for key, val in (
            (_attrs.PREDICTED_FINAL, mean),
            (_attrs.PREDICTED_LO, lo),
            (_attrs.PREDICTED_HI, hi),
        ):
            trial.set_user_attr(key, _attrs.plain(val))
        trial.set_user_attr(_attrs.LAW, law_name)
        trial.set_user_attr(_attrs.FIT_STATUS, status)
        return record_trial(
            self, trial, frozen, rung, (steps, values), (mean, lo, hi), status, used
        )

    def lrs(self, frozen: FrozenTrial, last_step: int) -> tuple[np.ndarray | None, str]:
        """The per-step LR from step 0 to ``last_step`` for a schedule-aware law.

        Returns ``(lrs, "")``, ``(None, "")`` for a law without a schedule, or
        ``(None, why)`` when the law needs a schedule the trial does not carry.
        """
        if not self._law.uses_lr:
            return None, ""
        try:
            schedule = get_schedule(frozen.user_attrs)
        except (ValueError, TypeError) as exc:
            return None, f"bad {_attrs.SCHEDULE}: {exc}"
        if schedule is None:
            return None, (
                f"law {self._law.name!r} needs the LR schedule; store it with "
                "lawsearch.optuna.set_schedule(trial, schedule) (suggest_schedule does)"
            )
        return schedule.lr(np.arange(last_step + 1)), ""

    def pool_prior(
        self, study: optuna.Study, rung: int, number: int, sign: float
    ) -> dict[str, tuple[float, float]]:
        """Pooling through an empirical prior: the shared parameters of the rung's best fits.

        Each finished trial stores its fitted parameters (``lawsearch:param:<name>``);
        the median and a robust spread of the ``pool_size`` best at this rung become a
        Gaussian prior on the shared parameters, so a short curve borrows the study's
        exponent at the cost of one small fit (no joint refit of every curve).
        """
        if not self.shared:
            return {}
        done = [
            t
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.user_attrs.get(_attrs.RUNG) == rung
            and t.number != number
            and records.observed_value(t) is not None
        ]
        # by the loss observed at the rung (the objective value is the full-budget estimate)
        done.sort(key=lambda t: sign * float(records.observed_value(t)))  # type: ignore[arg-type]
        prior = {}
        for name in self.shared:
            vals = [
                float(v)
                for t in done[: self.pool_size]
                if (v := t.user_attrs.get(_attrs.PARAM_PREFIX + name)) is not None
            ]
            if len(vals) >= 3:
                arr = np.asarray(vals)
                med = float(np.median(arr))
                spread = 1.4826 * float(np.median(np.abs(arr - med)))
                prior[name] = (med, max(spread, 0.05 * abs(med), 1e-3))
        return prior

    def pooled_scores(
        self,
        study: optuna.Study,
        rung: int,
        budget: int,
        nodes: Sequence[Node],
        trials: Sequence[FrozenTrial] | None = None,
    ) -> dict[int, Score]:
        """Re-extrapolate a rung's finished trials *jointly*: ``number -> (mean, lo, hi)``.

        When a trial finishes, its own prediction can borrow only from the trials
        that finished before it (the first few borrow nothing). The promotion rule
        instead ranks with one pooled fit of every curve at the rung (``shared``
        parameters common, offsets and amplitudes per trial), so early and late
        trials are judged alike. Once lineages have reached the full budget, up to
        ``pool_refs`` of their whole curves join the fit (transfer): they show the
        part of the curve no prefix has reached. Every curve is windowed and a curve
        the joint fit cannot extrapolate is fitted alone, or by a less flexible law
        (``_fit.pooled_or_simpler``). Trials whose pooled prediction is missing or
        not informative (see ``judge``) keep their own. Deterministic in the set of
        trials (every worker ranks alike); cached per set. At most ``pool_max``
        curves of the rung enter the fit: the best by their own optimistic prediction.
        """
        return self.joint_refit(study, rung, budget, nodes, trials).scores

    def joint_refit(
        self,
        study: optuna.Study,
        rung: int,
        budget: int,
        nodes: Sequence[Node],
        trials: Sequence[FrozenTrial] | None = None,
    ) -> JointRefit:
        """``pooled_scores`` with why a trial has no joint score and the fits (for the records)."""
        target = self.target
        if not self.shared or budget >= target or len(nodes) < 2:
            why = (
                "no joint refit: the law shares no parameter"
                if not self.shared
                else "no joint refit: the rung is the full budget"
                if budget >= target
                else "no joint refit: fewer than 2 finished trials"
            )
            return JointRefit({}, {n.number: why for n in nodes}, {})
        if self._law.name == "temporal":  # no pooled fit of per-position matrices: own fits rank
            why = "no joint refit: the temporal law ranks each trial by its own fit"
            return JointRefit({}, {n.number: why for n in nodes}, {})
        sign = 1.0 if study.direction != StudyDirection.MAXIMIZE else -1.0
        ranked = sorted(nodes, key=lambda n: (optimistic(n.lo, n.hi, sign), n.number))
        members = tuple(sorted(n.number for n in ranked[: self.pool_max]))
        all_trials = trials or study.get_trials(deepcopy=False)
        refs = self._finished(all_trials, members, sign)
        key = (compat.study_id(study), rung, members + tuple(-1 - r for r in refs))
        with self._lock:
            if key in self._pooled_cache:
                return self._pooled_cache[key]
        by_number = {t.number: t for t in all_trials}
        curves: list[dict[str, Any]] = []
        numbers: list[int] = []
        out = JointRefit(
            {}, {n.number: "outside the joint refit's best pool_max" for n in nodes}, {}
        )
        for number in (*members, *refs):
            frozen = by_number[number]
            steps, values = curve_of(frozen)
            lrs, why = self.lrs(frozen, int(max(target, steps[-1] if steps.size else 0)))
            if why or steps.size < self._law.min_points() or not np.all(values > 0):
                if number in members:
                    out.why[number] = f"not in the joint refit: {why or 'too few positive reports'}"
                continue
            curves.append({"steps": steps, "losses": values, "lrs": lrs, "whole": number in refs})
            numbers.append(number)
        for group in self._lr_groups(curves):
            got = [curves[i] for i in group]
            nums = [numbers[i] for i in group]
            if _to_fit(curves, group) < 2:  # only when the whole rung has < 2
                why = "no joint refit: fewer than 2 curves to fit"
                out.why.update({n: why for n in nums if n in members})
                continue
            fits = pooled_or_simpler(
                self._law,
                got,
                shared=self.shared,
                target=target,
                fallbacks=self._fallbacks,
                window=self.window,
            )
            for number, curve, fit in zip(nums, got, fits, strict=True):
                if curve["whole"]:
                    continue
                judged = self.judge(fit, target)
                if not isinstance(judged, str) and fit is not None:
                    out.scores[number] = judged
                    out.why.pop(number, None)
                    out.fits[number] = fit
                else:
                    out.why[number] = f"the joint refit cannot rank it: {judged or 'no fit'}"
        with self._lock:
            self._pooled_cache[key] = out
        return out

    def _lr_groups(self, curves: Sequence[dict[str, Any]]) -> list[list[int]]:
        """Indices of ``curves`` fitted together: all, or by peak LR (``pool_lr_ratio``).

        Curves sorted by peak LR are split where the next one's peak LR is more
        than ``pool_lr_ratio`` times the first of its group; a group with fewer
        than 2 curves to fit (not ``whole``) then joins the neighbour nearer in
        log peak LR, because a lone curve's own fit has an interval so wide that
        its optimistic end wins the cut. Without a schedule (``lrs`` None) every
        curve is in one group.
        """
        order = list(range(len(curves)))
        if self.pool_lr_ratio is None or any(c["lrs"] is None for c in curves):
            return [order] if order else []
        peaks = [float(np.max(c["lrs"])) for c in curves]
        order.sort(key=lambda i: peaks[i])
        groups: list[list[int]] = []
        for i in order:
            if groups and peaks[i] <= self.pool_lr_ratio * peaks[groups[-1][0]]:
                groups[-1].append(i)
            else:
                groups.append([i])
        while len(groups) > 1:  # a group with < 2 curves to fit joins its nearer neighbour
            short = [k for k, g in enumerate(groups) if _to_fit(curves, g) < 2]
            if not short:
                break
            j = short[0]
            gap = [
                math.log(peaks[groups[k][0]] / peaks[groups[k - 1][-1]])
                if 0 < k < len(groups)
                else math.inf
                for k in (j, j + 1)
            ]
            a = j - 1 if gap[0] <= gap[1] else j
            groups[a : a + 2] = [groups[a] + groups[a + 1]]
        return groups

    def _finished(
        self, trials: Sequence[FrozenTrial], members: Sequence[int], sign: float
    ) -> tuple[int, ...]:
        """Up to ``pool_refs`` trials that reached the full budget, best first."""
        done = [
            t
            for t in trials
            if t.state == TrialState.COMPLETE
            and t.number not in members
            and t.value is not None
            and t.intermediate_values
            and max(t.intermediate_values) >= self.target
        ]
        done.sort(key=lambda t: (sign * float(t.value or 0.0), t.number))
        return tuple(t.number for t in done[: self.pool_refs])

    def judge(self, fit: Any, target: float) -> Score | str:
        """``(mean, lo, hi)`` at ``target``, or why the fit cannot rank the trial."""
        return judge(
            fit,
            target,
            level=1.0 - 2.0 * self.quantile,
            max_interval_ratio=self.max_interval_ratio,
            max_trend_ratio=self.max_trend_ratio,
        )


class JointRefit:
    """A rung's joint refit: the scores, why a trial has none, and the fits that rank."""

    def __init__(self, scores: dict[int, Score], why: dict[int, str], fits: dict[int, Any]) -> None:
        self.scores, self.why, self.fits = scores, why, fits


def optimistic(lo: float, hi: float, sign: float) -> float:
    """The optimistic end of an interval as a score to sort ascending (sign -1: maximise)."""
    return sign * (lo if sign > 0 else hi)


def curve_of(t: FrozenTrial) -> tuple[np.ndarray, np.ndarray]:
    """A trial's reported curve: steps > 0 with a finite value, in step order."""
    items = sorted(t.intermediate_values.items())
    s = np.array([k for k, _ in items], dtype=float)
    v = np.array([x for _, x in items], dtype=float)
    ok = np.isfinite(v) & (s > 0)
    return s[ok], v[ok]
