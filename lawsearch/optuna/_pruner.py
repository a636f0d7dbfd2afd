"""``LawPruner``: prune a trial when even an optimistic extrapolation of its curve loses.

One concept, the pruner's decide/sync/pool loop over a shared study, needs a little
over 600 lines here; its fitting, pooling, scores and caution already live in the
sibling modules ``_fit``, ``_pool``, ``_scores`` and ``_caution``.
"""

from __future__ import annotations

import functools
import math
import threading
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
from optuna.pruners import BasePruner
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from lawsearch._fit import MAX_TREND_RATIO, delta_interval, fit_with_pool
from lawsearch.laws import Law, get_law, shared_params
from lawsearch.optuna import _attrs
from lawsearch.optuna import _compat as compat
from lawsearch.optuna._caution import WRITTEN_QUANTILE, at_quantile, caution_settings
from lawsearch.optuna._mixture import get_schedule
from lawsearch.optuna._pool import PoolCurve, median_pool, pool_members, pooled_estimate
from lawsearch.optuna._scores import Prediction, bounded_score, loses

__all__ = ["FigureWarning", "LawPruner", "Prediction"]

_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
_PROCESS_STATE = (
    "_lock",
    "_decided",
    "_table",
    "_finals",
    "_full",
    "_pool",
    "_synced",
    "_done",
    "_curves",
    "_pool_key",
    "_since_pool",
)


class FigureWarning(UserWarning):
    """A trial figure could not be drawn or uploaded (the search goes on)."""


class LawPruner(BasePruner):
    """Prune trials whose fitted law says they cannot reach the leaders.

    At each rung step the pruner fits ``law`` to the trial's reported curve,
    predicts the objective at ``target_step`` with an interval, and prunes when
    the optimistic end of the interval (its ``quantile`` for minimisation, the
    ``1 - quantile`` one for maximisation; the point at 0.5) is worse than the
    k-th best score at that rung, where the scores are the other trials'
    predictions made at the same rung and the final values of completed trials,
    and ``k = top_k or ceil(keep_fraction * n)``.

    Defaults: the settings that measured best on the TaskSet pruning replay
    (``benchmarks/search_replay.py``, chosen on those same tasks): decisions at
    steps 2, 4, 8, ... (the last value at step 2, the law later), keep 30%, the
    point score capped at the curve's own recent gain (``trend_cap=1``), near-ties
    within 0.1% kept while still improving. ``caution`` in [0, 1] is the one knob
    to trade compute for safety (``lawsearch.optuna._caution``): it raises
    ``keep_fraction`` (0.3 -> 0.6) and moves ``quantile`` from the point (0.5) to
    the 10% quantile; either can only keep a trial that a lower caution would
    prune. Raise it when an adaptive sampler (TPE, ``LawSampler``) fills the rungs
    with early learners. Setting ``keep_fraction`` or ``quantile`` overrides it.

    Pooling (shared parameters): a study's trials share the model, so the
    ``shared`` parameters (by default ``lawsearch.laws.shared_params(law)``, as
    the search and ``lawsearch fit`` use; for ``power``: ``alpha`` and ``t0``)
    are fitted jointly on a bounded pool of curves — the ``pool_size`` best
    trials plus ``pool_random`` random others — refitted only when the pool's
    members change, at most every ``pool_refit_every`` decisions. When there are
    one or two of them and the law is affine in the others (``power``: ``E`` and
    ``A``) the joint fit is a grid profile with the rest solved in closed form
    (``lawsearch._fit.profile_shared``); otherwise ``Law.fit_pooled``. Most
    decisions then fit only the per-trial parameters with the shared values fixed
    (closed form when affine), and carry the pool's uncertainty into the interval;
    every ``full_fit_every``-th decision (and every decision before the pool
    exists) fits all parameters (``lawsearch._fit.fit_with_pool``). Cost per
    decision is one small fit plus a look-up in the cached rung table, whatever
    the number of trials.

    The score of a trial at a rung is ``law_weight * law + (1 - law_weight) * last``:
    the law's extrapolation shrunk toward the last reported value, so a curve that
    sits on a plateau (e.g. chance level) is not credited with a drop the law merely
    extrapolates from its first points. A completed trial counts at a rung by its
    score there; by its final value only when it has none and that value is a loss
    at the full budget (an enqueued trial, one that reported up to ``target_step``),
    never a value a trial stopped short of the full budget returned.

    A failed fit never prunes. A NaN or infinite report marks the trial
    ``lawsearch:diverged`` and prunes it. Predictions are written as trial user
    attrs (``lawsearch:predicted_final``, ``predicted_lo``, ``predicted_hi``,
    ``law``, ``fit_status``, ``rung:<r>``, ``param:<name>``) as plain floats and
    strings, so other processes and optuna-dashboard read them instead of refitting.

    Args:
        target_step: the step whose value is predicted (the full budget).
        law: a ``lawsearch.laws.Law`` or its short name.
        min_points: fewest reports before the first decision (None: the law's
            minimum with the shared parameters fixed, so once the pool exists a
            short prefix is enough; a full fit still needs the law's full minimum).
            Below the law's minimum (or before the pool exists, when a trial is too
            short to fit alone) a decision scores the last reported value, as
            ASHA does; such a score is written as the rung attr only, not as a
            ``predicted_*`` attr.
        warmup_steps: no decision before this step.
        caution: in [0, 1]; 0 prunes the most (the measured best), 1 the least.
        quantile: the optimistic quantile compared, in (0, 0.5]; 0.5 compares the
            point score. None: set by ``caution``. The attrs always hold the
            80% interval (``[0.1, 0.9]``), whatever is compared.
        law_weight: weight in [0, 1] of the law's extrapolation in the score (the
            rest is the last reported value; 1: the law alone).
        trend_cap: when set, the score may credit at most ``trend_cap`` times the
            improvement seen over the second half of the curve (from step
            ``ceil(step / 2)`` to ``step``): an extrapolation from a few points
            (or from a poorly pooled exponent) cannot promise more than the
            curve's own recent trend supports; nor is the score worse than the
            last value. None: no cap.
        max_trend_ratio: the score, and its interval, stay within this many times
            the curve's recent trend (the change over its second half) continued
            linearly in log time to ``target_step``, on either side of the last
            value (``lawsearch._fit.trend_ratio``; real LLM curves reach 1.7-2.1).
            Unlike ``trend_cap`` it scales with the horizon. A flat curve keeps
            its last value. None: no clip.
        rung_factor: decide only when the step crosses a rung ``warmup * factor**r``
            (geometric rungs, as ASHA); None decides at every report (each step is
            then its own rung, with its own ``lawsearch:rung:<step>`` attr: use it
            for short curves only).
        keep_fraction: the fraction of trials kept at each rung (None: set by
            ``caution``). The rung's competitors are whatever the sampler proposed:
            an adaptive sampler (TPE, Optuna's default) fills rungs with early
            learners, so keep more (raise ``caution``).
        top_k: keep exactly the k best instead of a fraction.
        min_trials: fewest other scored trials at a rung before pruning.
        min_improvement: the relative margin by which the optimistic end must be
            able to beat the k-th best to survive (0: any chance to beat it; 0.002
            prunes trials that at best tie a plateau).
            Negative values are a tolerance: a trial within ``-min_improvement``
            (relative) of the k-th best survives if its curve still improved by more
            than that margin over its second half (a near-tie that is still
            falling); a flat curve gets no tolerance, so plateau ties cannot pile
            up in the upper rungs.
        shared: law parameters shared across trials (None:
            ``lawsearch.laws.shared_params(law)``; ``()`` fits every trial on its
            own): ``power`` shares ``alpha`` and ``t0``, ``two_phase`` also ``tc``,
            ``multipower`` and ``momentum`` all but the amplitude ``A``. With more
            than two shared, the pool is fitted by ``Law.fit_pooled``.
        pool_size: the best trials used to estimate shared parameters.
        pool_random: extra random trials in the pool (keeps it honest).
        min_pool: fewest full fits before pooled (fixed-exponent) fits start.
        full_fit_every: one decision in this many refits all parameters.
        pool_refit_every: decisions between joint refits of the pool (refit only
            when its members changed).
        sync_interval: seconds between refreshes of the rung table from storage.
            0 (default) reads the other trials at every decision, so one process
            decides the same whatever the timing; a positive interval saves storage
            reads when several processes share a study (``lawsearch worker``), whose
            decisions depend on timing anyway.
        artifact_store: an Optuna artifact store; when set, each pruned trial gets
            its extrapolation figure (``save_trial_figure``) before it stops.
        seed: seeds the pool's random members.
    """

    def __init__(
        self,
        *,
        target_step: int,
        law: Law | str = "power",
        caution: float = 0.0,
        min_points: int | None = 2,
        warmup_steps: int = 0,
        quantile: float | None = None,
        law_weight: float = 1.0,
        trend_cap: float | None = 1.0,
        max_trend_ratio: float | None = MAX_TREND_RATIO,
        rung_factor: float | None = 2.0,
        keep_fraction: float | None = None,
        top_k: int | None = None,
        min_trials: int = 4,
        min_improvement: float = -0.001,
        shared: Sequence[str] | None = None,
        pool_size: int = 6,
        pool_random: int = 2,
        min_pool: int = 3,
        full_fit_every: int = 8,
        pool_refit_every: int = 64,
        sync_interval: float = 0.0,
        artifact_store: Any = None,
        seed: int = 0,
    ) -> None:
        self._law = get_law(law) if isinstance(law, str) else law
        if not isinstance(self._law, Law):
            raise TypeError(f"`law` must be a lawsearch Law or a law name; got {law!r}.")
        if int(target_step) != target_step or target_step < 1:
            raise ValueError(f"`target_step` must be a positive integer; got {target_step!r}.")
        level = caution_settings(caution)
        quantile = level.quantile if quantile is None else quantile
        keep_fraction = level.keep_fraction if keep_fraction is None else keep_fraction
        if min_points is not None and min_points < 1:
            raise ValueError(f"`min_points` must be >= 1; got {min_points!r}.")
        if not 0 < quantile <= 0.5:
            raise ValueError(f"`quantile` must be in (0, 0.5] (0.5: the point); got {quantile!r}.")
        if rung_factor is not None and not rung_factor > 1:
            raise ValueError(f"`rung_factor` must be > 1 (or None); got {rung_factor!r}.")
        if not 0 < keep_fraction <= 1:
            raise ValueError(f"`keep_fraction` must be in (0, 1]; got {keep_fraction!r}.")
        if top_k is not None and top_k < 1:
            raise ValueError(f"`top_k` must be >= 1 (or None); got {top_k!r}.")
        if min_trials < 1:
            raise ValueError(f"`min_trials` must be >= 1; got {min_trials!r}.")
        if not -1 < min_improvement < 1:
            raise ValueError(f"`min_improvement` must be in (-1, 1); got {min_improvement!r}.")
        if trend_cap is not None and not trend_cap >= 0:
            raise ValueError(f"`trend_cap` must be >= 0 (or None); got {trend_cap!r}.")
        if max_trend_ratio is not None and not max_trend_ratio > 0:
            raise ValueError(f"`max_trend_ratio` must be > 0 (or None); got {max_trend_ratio!r}.")
        if not 0 <= law_weight <= 1:
            raise ValueError(f"`law_weight` must be in [0, 1]; got {law_weight!r}.")
        if full_fit_every < 1:
            raise ValueError(f"`full_fit_every` must be >= 1; got {full_fit_every!r}.")
        names = self._law.param_names
        if shared is None:
            shared = shared_params(self._law)
        unknown = [n for n in shared if n not in names]
        if unknown:
            raise ValueError(f"`shared` names {unknown} are not parameters of {names}.")
        self.target_step = int(target_step)
        self._fit_floor = self._law.min_points(len(shared))
        self.min_points = int(min_points or self._fit_floor)
        self.warmup_steps = int(warmup_steps)
        self.caution = float(caution)
        self.quantile = float(quantile)
        self.law_weight = float(law_weight)
        self.trend_cap = None if trend_cap is None else float(trend_cap)
        self.max_trend_ratio = None if max_trend_ratio is None else float(max_trend_ratio)
        self.rung_factor = rung_factor
        self.keep_fraction = float(keep_fraction)
        self.top_k = top_k
        self.min_trials = int(min_trials)
        self.min_improvement = float(min_improvement)
        self.shared = tuple(shared)
        self.pool_size = int(pool_size)
        self.pool_random = int(pool_random)
        self.min_pool = int(min_pool)
        self.full_fit_every = int(full_fit_every)
        self.pool_refit_every = int(pool_refit_every)
        self.sync_interval = float(sync_interval)
        self.artifact_store = artifact_store
        self.seed = int(seed)
        self._init_state()

    @property
    def law(self) -> Law:
        return self._law

    # ---- process-local state (not pickled) --------------------------------------------
    def _init_state(self) -> None:
        self._lock = threading.Lock()
        #: (study_id, trial number, step) -> (decision, prediction)
        self._decided: dict[tuple[int, int, int], tuple[bool, Prediction | None]] = {}
        #: study_id -> rung -> trial number -> score at that rung
        self._table: dict[int, dict[int, dict[int, float]]] = {}
        #: study_id -> trial number -> final value of a completed trial (counts at every rung)
        self._finals: dict[int, dict[int, float]] = {}
        #: study_id -> trial number -> (latest prediction, fitted params) of full fits
        self._full: dict[int, dict[int, tuple[float, dict[str, float]]]] = {}
        self._pool: dict[int, dict[str, tuple[float, float]]] = {}
        self._synced: dict[int, float] = {}
        #: study_id -> numbers of finished trials already read
        self._done: dict[int, set[int]] = {}
        #: study_id -> trial number -> the curve behind its latest prediction
        self._curves: dict[int, dict[int, PoolCurve]] = {}
        #: study_id -> members of the current pool, and decisions since it was fitted
        self._pool_key: dict[int, tuple[int, ...]] = {}
        self._since_pool: dict[int, int] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for key in _PROCESS_STATE:
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_state()

    # ---- rungs ----------------------------------------------------------------------
    def rung_of(self, step: int) -> int:
        """The rung a step belongs to (0 below the first rung boundary)."""
        if self.rung_factor is None:
            return int(step)
        base = max(self.warmup_steps, 1)
        if step < base:
            return 0
        return 1 + math.floor(math.log(step / base) / math.log(self.rung_factor) + 1e-12)

    # ---- the decision -----------------------------------------------------------------
    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None:
            return False
        key = (compat.study_id(study), trial.number, int(step))
        with self._lock:
            if key in self._decided:
                return self._decided[key][0]
        decision, prediction = self._decide(study, trial, int(step))
        if prediction is not None:  # steps between rungs are decided in O(1) again
            with self._lock:
                self._decided[key] = (decision, prediction)
        if decision and self.artifact_store is not None:
            self._save_figure(study, trial, prediction)
        return decision

    def _save_figure(
        self, study: optuna.Study, trial: FrozenTrial, prediction: Prediction | None
    ) -> None:
        from lawsearch.optuna._dashboard import save_trial_figure

        try:
            save_trial_figure(
                study,
                trial,
                artifact_store=self.artifact_store,
                law=self._law,
                target_step=self.target_step,
                level=1.0 - 2.0 * WRITTEN_QUANTILE,
                fit=None if prediction is None else prediction.fit,
            )
        except (OSError, ValueError) as exc:  # a figure must never stop the search
            warnings.warn(
                f"lawsearch: could not save the figure of trial {trial.number}: {exc}",
                FigureWarning,
                stacklevel=2,
            )

    def predict(self, study: optuna.Study, trial: FrozenTrial) -> Prediction | None:
        """The latest prediction this process made for ``trial`` (None if none yet)."""
        with self._lock:
            made = [
                (step, got[1])
                for (sid, number, step), got in self._decided.items()
                if sid == compat.study_id(study) and number == trial.number and got[1] is not None
            ]
        return max(made, key=lambda p: p[0])[1] if made else None

    def _decide(
        self, study: optuna.Study, trial: FrozenTrial, step: int
    ) -> tuple[bool, Prediction | None]:
        values = trial.intermediate_values
        if not all(math.isfinite(v) for v in values.values()):
            self._write(study, trial, {_attrs.DIVERGED: 1.0, _attrs.FIT_STATUS: "diverged"})
            return True, Prediction(step=step, rung=self.rung_of(step), status="diverged")
        if step < self.warmup_steps or len(values) < self.min_points:
            return False, None
        rung = self.rung_of(step)
        earlier = [s for s in values if s < step]
        if self.rung_factor is not None and earlier and self.rung_of(max(earlier)) == rung:
            return False, None
        self._maybe_sync(study)
        pred = self._fit_and_predict(study, trial, step, rung)
        if pred.status == "skipped":
            return False, None
        if pred.status == "failed":
            return False, pred
        scores = self._scores(study, trial.number, rung)
        with self._lock:
            self._table.setdefault(compat.study_id(study), {}).setdefault(rung, {})[
                trial.number
            ] = pred.mean
        if len(scores) < self.min_trials:
            return False, pred
        minimize = study.direction != StudyDirection.MAXIMIZE
        optimistic = pred.edge
        k = self.top_k or max(1, math.ceil(self.keep_fraction * (len(scores) + 1)))
        cut = loses(
            optimistic, scores, values, k=k, min_improvement=self.min_improvement, minimize=minimize
        )
        return cut, pred

    # ---- fitting ------------------------------------------------------------------------
    def _fit_and_predict(
        self, study: optuna.Study, trial: FrozenTrial, step: int, rung: int
    ) -> Prediction:
        items = sorted(trial.intermediate_values.items())
        steps = np.array([s for s, _ in items], dtype=float)
        losses = np.array([v for _, v in items], dtype=float)
        lrs = None
        if self._law.uses_lr:
            try:
                schedule = get_schedule(trial.user_attrs)
            except (ValueError, TypeError) as exc:
                return self._failed(study, trial, step, rung, f"bad lawsearch:schedule: {exc}")
            if schedule is None:
                return self._failed(
                    study,
                    trial,
                    step,
                    rung,
                    f"{self._law.name} needs the LR schedule; store it with "
                    f"lawsearch.optuna.set_schedule(trial, schedule)",
                )
            lrs = schedule.lr(np.arange(max(self.target_step, int(steps[-1])) + 1))
        with self._lock:
            pool = self._pool.get(compat.study_id(study), {})
            self._since_pool[compat.study_id(study)] = (
                self._since_pool.get(compat.study_id(study), 0) + 1
            )
        can_full = steps.size >= self._law.min_points()
        if steps.size < self._fit_floor or (not pool and not can_full):  # too short to fit
            if self.min_points < self._fit_floor:
                last = float(losses[-1])
                self._write(study, trial, {_attrs.rung_key(rung): last})
                return Prediction(step=step, rung=rung, status="last", mean=last, lo=last, hi=last)
            return Prediction(step=step, rung=rung, status="skipped")
        try:
            fit, held, pooled = fit_with_pool(
                self._law,
                steps,
                losses,
                lrs=lrs,
                shared=self.shared,
                pool=pool,
                use_pool=not can_full or (trial.number + rung) % self.full_fit_every != 0,
                horizon=self.target_step,
            )
            if not fit.ok:
                return self._failed(study, trial, step, rung, fit.message)
            mean, lo, hi = delta_interval(
                fit,
                self.target_step,
                quantile=WRITTEN_QUANTILE,
                fixed_sd={n: sd for n, (_, sd) in held.items()},
            )
        except ValueError as exc:  # bad input (e.g. non-positive loss): a failed fit
            return self._failed(study, trial, step, rung, str(exc))
        if not (math.isfinite(mean) and lo > 0):
            return self._failed(study, trial, step, rung, "prediction is not finite")
        maximize = study.direction == StudyDirection.MAXIMIZE
        bound = functools.partial(
            bounded_score,
            steps,
            losses,
            target=self.target_step,
            law_weight=self.law_weight,
            trend_cap=self.trend_cap,
            max_trend_ratio=self.max_trend_ratio,
            maximize=maximize,
        )
        # the decision's optimistic end, bounded like the written interval
        _, d_lo, d_hi = bound((mean, *at_quantile(mean, lo, hi, self.quantile)))
        mean, lo, hi = bound((mean, lo, hi))
        # never less optimistic than the point (a capped mean can pass a raw end)
        edge = mean if self.quantile >= 0.5 else max(mean, d_hi) if maximize else min(mean, d_lo)
        pred = Prediction(
            step=step,
            rung=rung,
            status=fit.status,
            mean=mean,
            lo=lo,
            hi=hi,
            pooled=pooled,
            fit=fit,
            edge=edge,
        )
        attrs: dict[str, Any] = {
            _attrs.PREDICTED_FINAL: mean,
            _attrs.PREDICTED_LO: lo,
            _attrs.PREDICTED_HI: hi,
            _attrs.INTERVAL_LEVEL: 1.0 - 2.0 * WRITTEN_QUANTILE,
            _attrs.PREDICTED_AT_STEP: float(step),
            _attrs.LAW: self._law.name,
            _attrs.FIT_STATUS: fit.status,
            _attrs.rung_key(rung): mean,
        }
        if not pooled:
            params = {n: float(fit.params[n]) for n in self.shared}
            attrs.update({_attrs.PARAM_PREFIX + n: v for n, v in params.items()})
            with self._lock:
                self._full.setdefault(compat.study_id(study), {})[trial.number] = (mean, params)
        self._write(study, trial, attrs)
        return pred

    def _failed(
        self, study: optuna.Study, trial: FrozenTrial, step: int, rung: int, message: str
    ) -> Prediction:
        self._write(study, trial, {_attrs.FIT_STATUS: "failed", _attrs.LAW: self._law.name})
        return Prediction(step=step, rung=rung, status="failed")

    # ---- the study view -------------------------------------------------------------------
    def _scores(self, study: optuna.Study, number: int, rung: int) -> list[float]:
        """Scores at ``rung``: the trials' scores there, finals for completed trials without one."""
        with self._lock:
            row = dict(self._finals.get(compat.study_id(study), {}))
            row.update(self._table.get(compat.study_id(study), {}).get(rung, {}))
            return [v for n, v in row.items() if n != number]

    def _maybe_sync(self, study: optuna.Study) -> None:
        """Refresh the rung table, the scored curves and the pool from storage."""
        sid = compat.study_id(study)
        now = time.monotonic()
        with self._lock:
            if now - self._synced.get(sid, -math.inf) < self.sync_interval:
                return
            self._synced[sid] = now
            done = self._done.setdefault(sid, set())
        trials = compat.storage(study).get_all_trials(sid, deepcopy=False, states=_STATES)
        table: dict[int, dict[int, float]] = {}
        full: dict[int, tuple[float, dict[str, float]]] = {}
        curves: dict[int, PoolCurve] = {}
        final_rungs: list[tuple[int, float]] = []
        newly_done = []
        for t in trials:
            if t.number in done:  # a finished trial's attrs never change: read it once
                continue
            if t.state != TrialState.RUNNING:
                newly_done.append(t.number)
            attrs = t.user_attrs
            if t.value is not None and self._is_final(t):
                final_rungs.append((t.number, float(t.value)))
            for k, v in attrs.items():
                if k.startswith(_attrs.RUNG_PREFIX):
                    table.setdefault(int(k[len(_attrs.RUNG_PREFIX) :]), {})[t.number] = float(v)
            pred = attrs.get(_attrs.PREDICTED_FINAL)
            if pred is None or attrs.get(_attrs.FIT_STATUS) in ("failed", "diverged"):
                continue
            if all(_attrs.PARAM_PREFIX + n in attrs for n in self.shared):
                params = {n: float(attrs[_attrs.PARAM_PREFIX + n]) for n in self.shared}
                full[t.number] = (float(pred), params)
            curve = PoolCurve.of(t, float(pred))
            if curve is not None and curve.steps.size >= self._law.min_points():
                curves[t.number] = curve
        with self._lock:
            done.update(newly_done)
            mine = self._table.setdefault(sid, {})
            for r, row in table.items():
                mine.setdefault(r, {}).update(row)
            # a completed trial's true final replaces its predictions at every rung
            self._finals.setdefault(sid, {}).update(final_rungs)
            self._full.setdefault(sid, {}).update(full)
            self._curves.setdefault(sid, {}).update(curves)
        self._refresh_pool(study)

    def _is_final(self, t: FrozenTrial) -> bool:
        """Whether ``t``'s value is a loss at the full budget, comparable with any prediction.

        A completed trial that reported up to ``target_step`` (or reported nothing: an
        enqueued or imported value) is; one that stopped short of it (``RetrievalRerank``
        screens candidates at a short budget, and their objective value is that
        budget's own estimate) is not, so it counts at a rung only by its score there.
        """
        if t.state != TrialState.COMPLETE or t.value is None or not math.isfinite(t.value):
            return False
        steps = t.intermediate_values
        return not steps or max(steps) >= self.target_step

    def _refresh_pool(self, study: optuna.Study) -> None:
        """Re-estimate the shared parameters when the pool's members changed (rarely)."""
        sid = compat.study_id(study)
        with self._lock:
            curves = dict(self._curves.get(sid, {}))
            full = dict(self._full.get(sid, {}))
            since = self._since_pool.get(sid, 0)
            old_key = self._pool_key.get(sid)
        if not self.shared or len(curves) < self.min_pool:
            return
        if old_key is not None and since < self.pool_refit_every:
            return
        members = pool_members(
            {n: c.pred for n, c in curves.items()},
            maximize=study.direction == StudyDirection.MAXIMIZE,
            size=self.pool_size,
            n_random=self.pool_random,
            seed=self.seed,
        )
        key = tuple(sorted(members))
        if key == old_key:
            return
        spread = median_pool(self._law, self.shared, full, self.min_pool)
        pool = (
            pooled_estimate(
                self._law,
                [curves[m] for m in members],
                self.shared,
                horizon=self.target_step,
                min_pool=self.min_pool,
                spread=spread,
            )
            or spread
        )
        with self._lock:
            self._pool_key[sid] = key
            self._since_pool[sid] = 0
            if pool:
                self._pool[sid] = pool

    def _write(self, study: optuna.Study, trial: FrozenTrial, attrs: dict[str, Any]) -> None:
        store, tid = compat.storage(study), compat.trial_id(trial)
        for key, value in attrs.items():
            if isinstance(value, str):
                store.set_trial_user_attr(tid, key, value)
            else:
                v = _attrs.plain(value)
                if v is not None:
                    store.set_trial_user_attr(tid, key, v)
