"""``RetrievalRerank``: retrieve → short training → extrapolate → keep top k → continue → rerank.

The seeds' flow as one object, on any Optuna storage and any number of workers:

1. **Retrieve**: ``n_candidates`` new trials, their parameters proposed by the
   study's sampler (e.g. ``LawSampler``, which retrieves mixtures with a
   surrogate fitted to the predictions made so far).
2. **Short training**: each candidate trains for ``budgets[0]`` steps.
3. **Extrapolate**: the law is fitted to the trial's curve *pooled* with the
   best curves already at the same rung (shared exponents), and predicts the
   value at the full budget ``budgets[-1]`` with an interval (user attrs
   ``lawsearch:predicted_final`` / ``predicted_lo`` / ``predicted_hi``).
4. **Keep the top k with uncertainty**: at rung ``r`` with ``n`` finished
   trials, the ``floor(n / eta)`` best by the *optimistic* end of the interval
   (``predicted_lo`` when minimising) are promoted (ASHA-style, asynchronously:
   whoever finishes a trial promotes whatever has become eligible; no barrier).
5. **Continue**: a promotion is a new trial added with
   ``study.add_trial(create_trial(state=WAITING, ...))`` carrying the parent's
   parameters and curve and the user attrs ``lawsearch:parent``,
   ``lawsearch:resume_step``, ``lawsearch:checkpoint`` and ``lawsearch:rung``;
   any worker claims it through ``study.ask()`` (Optuna's WAITING→RUNNING
   transition succeeds for exactly one worker) and trains it from the
   checkpoint to ``budgets[r + 1]``.
6. **Rerank** the trials of the highest rung reached by their value at the
   longest budget (their prediction when ties in budget) and report the pick
   in a :class:`SearchResult`.

Duplicate promotions: a worker adds a continuation only if none exists for
(parent, rung) — but two workers may check at the same time. The storage
orders trials by number, so among continuations of one (parent, rung) the
lowest number wins deterministically; a worker that claims a higher-numbered
duplicate marks it FAIL (``lawsearch:duplicate_of``) without training it.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, Trial, TrialState

from lawsearch._errors import did_you_mean
from lawsearch._fit import MAX_TREND_RATIO, trend_ratio
from lawsearch.laws import Law, get_law, shared_params
from lawsearch.optuna import _attrs
from lawsearch.optuna._mixture import get_schedule
from lawsearch.train._protocol import Trainer

__all__ = ["CHECKPOINT_OUT", "RUNG", "RetrievalRerank", "SearchResult"]

#: the rung (index into ``budgets``) a trial trained to
RUNG = _attrs.PREFIX + "rung"
#: the budget (absolute step) a trial trained to
BUDGET = _attrs.PREFIX + "budget"
#: steps trained by this trial alone (budget − resume step)
COMPUTE = _attrs.PREFIX + "compute_steps"
#: the lineage root (the candidate trial number)
ROOT = _attrs.PREFIX + "root"
#: the checkpoint this trial wrote at its budget (``lawsearch:checkpoint`` is where it resumed)
CHECKPOINT_OUT = _attrs.PREFIX + "checkpoint_out"
DUPLICATE_OF = _attrs.PREFIX + "duplicate_of"
SURPLUS = _attrs.PREFIX + "surplus"
_PROMOTIONS = ("async", "sync")

#: ``objective(trial, budget_steps, resume_from) -> checkpoint`` (it calls ``trial.report``)
Objective = Callable[[Trial, int, "str | None"], "str | None"]


@dataclass(frozen=True)
class SearchResult:
    """What a :class:`RetrievalRerank` search found.

    Attributes:
        best_trial: the number of the picked trial (at the highest rung of its lineage).
        best_params: its parameters.
        best_value: its value at ``best_budget``.
        best_budget: the budget its value was measured at.
        predicted_final: the law's prediction of its value at the full budget.
        table: one row per candidate lineage, best first: ``root``, ``trial``,
            ``rung``, ``budget``, ``value``, ``predicted_final``, ``predicted_lo``,
            ``predicted_hi``, ``rank``.
        compute_steps: steps trained by the whole search (continuations
            counted once, from their resume step).
        full_compute_steps: steps to train every candidate to the full budget.
    """

    best_trial: int
    best_params: dict[str, Any]
    best_value: float
    best_budget: int
    predicted_final: float
    table: tuple[dict[str, Any], ...]
    compute_steps: float
    full_compute_steps: float

    @property
    def compute_fraction(self) -> float:
        return self.compute_steps / self.full_compute_steps if self.full_compute_steps else math.nan

    def to_markdown(self, limit: int = 20) -> str:
        head = "| rank | candidate | trial | rung | budget | value | predicted final (lo–hi) |"
        lines = [head, "|---|---|---|---|---|---|---|"]
        for row in self.table[:limit]:
            lines.append(
                f"| {row['rank']} | {row['root']} | {row['trial']} | {row['rung']} | "
                f"{row['budget']} | {_f(row['value'])} | {_f(row['predicted_final'])} "
                f"({_f(row['predicted_lo'])}–{_f(row['predicted_hi'])}) |"
            )
        return "\n".join(lines)


def _f(x: Any) -> str:
    return "–" if x is None or not math.isfinite(float(x)) else f"{float(x):.4g}"


#: a re-extrapolated trial's ``(mean, lo, hi)`` at the full budget
_Score = tuple[float, float, float]


@dataclass(frozen=True)
class _Node:
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


class RetrievalRerank:
    """Retrieval → short training → law extrapolation → ASHA-style continuation → rerank.

    Exactly one of ``objective`` or ``trainer`` is given:

    * ``objective(trial, budget_steps, resume_from) -> checkpoint``: the user's
      own training; it calls ``trial.report(value, step)`` for each evaluation
      with the optimizer step, and returns a checkpoint token (or None if it
      cannot resume: a continuation then retrains from scratch, and pays for it).
    * ``trainer`` (a :class:`lawsearch.train.Trainer`) with ``config(trial) ->
      mapping``, which suggests the trial's parameters and returns the trainer's
      config (``ReplayTrainer``, ``TransformersTrainer``, ...).

    Args:
        budgets: increasing absolute step budgets, ``budgets[0]`` the short
            budget and ``budgets[-1]`` the full one (the extrapolation target).
        n_candidates: candidates to retrieve (new trials made by the sampler).
        eta: promotion ratio: the top ``floor(n / eta)`` of a rung continue.
        law: a law (or its short name) for the extrapolation.
        shared: law parameters common to a study's trials (default
            ``lawsearch.laws.shared_params(law)``: exponents, time offsets and
            annealing parameters; offsets and amplitudes stay per trial). A trial's
            own fit takes them as a prior from the best finished trials; the
            promotion rule refits every curve of a rung jointly (``pooled_scores``).
        pool_size: the best finished curves of a rung whose parameters make the prior.
        pool_max: the most curves of a rung in the joint fit at promotion.
        quantile: the optimistic quantile in (0, 0.5) used to rank with uncertainty.
        max_interval_ratio: an extrapolation whose interval spans more than this
            factor (hi / lo) carries no ranking information (a fit the short
            curve does not identify); such a trial is ranked by its last observed
            value instead, and its ``fit_status`` says so.
        max_trend_ratio: an extrapolation that promises more than this many times
            the improvement the curve's own recent trend would give (the drop over
            the second half of the observed curve, continued linearly in log time
            to the target) is not trusted either: ranked by the last value, with
            ``fit_status`` saying so. Laws only flatten in log time, so the ratio
            of a real curve comes from annealing or a second descent: at most 1.7
            on the 18 shared LLM runs (10-60% prefixes) and 2.1 on the demo's
            candidates; a misidentified annealing term gave 4.8 (a curve
            at 4.76 after 96 of 480 steps predicted to end at 0.26). None: no check.
        promotion: ``"async"`` (ASHA: a rung promotes whenever ``floor(n / eta)``
            grows, no barrier; a promotion is never taken back, so with few
            candidates more than ``n / eta`` may continue) or ``"sync"``
            (successive halving: a rung promotes once all its trials have
            finished, exactly the best ``max(1, floor(n / eta))``; workers never wait,
            the last to finish a rung promotes).
        prune: with ``trainer``, ask the study's pruner after each report (e.g. a
            ``LawPruner`` stops clear losers inside a budget); off by default
            because Optuna's default study pruner is ``MedianPruner``.
    """

    def __init__(
        self,
        *,
        budgets: Sequence[int],
        n_candidates: int,
        objective: Objective | None = None,
        trainer: Trainer | None = None,
        config: Callable[[Trial], Mapping[str, Any]] | None = None,
        eta: float = 3.0,
        law: Law | str = "power",
        shared: Sequence[str] | None = None,
        pool_size: int = 8,
        pool_max: int = 64,
        quantile: float = 0.1,
        max_interval_ratio: float = 2.0,
        max_trend_ratio: float | None = MAX_TREND_RATIO,
        prune: bool = False,
        promotion: str = "async",
    ) -> None:
        b = [int(x) for x in budgets]
        if not b or any(x < 1 for x in b) or any(y <= x for x, y in itertools.pairwise(b)):
            raise ValueError(
                f"`budgets` must be positive and strictly increasing; got {budgets!r}."
            )
        if n_candidates < 1:
            raise ValueError(f"`n_candidates` must be >= 1; got {n_candidates!r}.")
        if (objective is None) == (trainer is None):
            raise ValueError("pass exactly one of `objective` or `trainer` (with `config`).")
        if trainer is not None and config is None:
            raise ValueError("`config` (trial -> trainer config) is required with `trainer`.")
        if not eta > 1:
            raise ValueError(f"`eta` must be > 1; got {eta!r}.")
        if not 0 < quantile < 0.5:
            raise ValueError(f"`quantile` must be in (0, 0.5); got {quantile!r}.")
        self.budgets = tuple(b)
        self.n_candidates = int(n_candidates)
        self.eta = float(eta)
        self._law = get_law(law) if isinstance(law, str) else law
        names = self._law.param_names
        self.shared = tuple(shared) if shared is not None else shared_params(self._law)
        unknown = [n for n in self.shared if n not in names]
        if unknown:
            raise ValueError(f"`shared` names {unknown} are not parameters of {names}.")
        self.pool_size = int(pool_size)
        self.pool_max = int(pool_max)
        self._lock = threading.Lock()
        self._pooled_cache: dict[tuple[int, int, tuple[int, ...]], dict[int, _Score]] = {}
        self.quantile = float(quantile)
        if not max_interval_ratio > 1:
            raise ValueError(f"`max_interval_ratio` must be > 1; got {max_interval_ratio!r}.")
        self.max_interval_ratio = float(max_interval_ratio)
        if max_trend_ratio is not None and not max_trend_ratio > 0:
            raise ValueError(f"`max_trend_ratio` must be > 0 (or None); got {max_trend_ratio!r}.")
        self.max_trend_ratio = None if max_trend_ratio is None else float(max_trend_ratio)
        if promotion not in _PROMOTIONS:
            raise ValueError(
                f"`promotion` must be one of {_PROMOTIONS}; got {promotion!r}."
                + did_you_mean(str(promotion), _PROMOTIONS)
            )
        self.promotion = promotion
        self._objective = (
            objective if objective is not None else self._trainer_objective(trainer, config, prune)
        )

    @staticmethod
    def _trainer_objective(trainer: Any, config: Any, prune: bool) -> Objective:
        def objective(trial: Trial, budget_steps: int, resume_from: str | None) -> str | None:
            def report(step: int, value: float, extras: Mapping[str, Any]) -> bool:
                trial.report(float(value), int(step))
                return prune and trial.should_prune()

            res = trainer.train(
                config(trial), budget_steps=budget_steps, resume_from=resume_from, report=report
            )
            if res.stopped:
                raise optuna.TrialPruned(f"pruned at step {res.final_step}")
            return res.checkpoint

        return objective

    # ------------------------------------------------------------------ run
    def run(self, study: optuna.Study, *, n_workers: int = 1) -> SearchResult:
        """Work on ``study`` until nothing is left, then rerank.

        Call it from as many processes as you like on one shared storage (each
        with its own ``optuna.load_study``); ``n_workers > 1`` adds threads in
        this process.
        """
        if n_workers < 1:
            raise ValueError(f"`n_workers` must be >= 1; got {n_workers!r}.")
        if n_workers == 1:
            self.work(study)
        else:
            errors: list[BaseException] = []

            def target() -> None:
                try:
                    self.work(study)
                except BaseException as exc:  # re-raised below, in the caller's thread
                    errors.append(exc)

            threads = [threading.Thread(target=target) for _ in range(n_workers)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if errors:
                raise errors[0]
        return self.result(study)

    def work(self, study: optuna.Study) -> None:
        """One worker's loop: claim or create work, train it, promote what is ready."""
        while True:
            trials = study.get_trials(deepcopy=False)
            waiting = any(t.state == TrialState.WAITING for t in trials)
            n_cand = sum(
                1
                for t in trials
                if _attrs.PARENT not in t.user_attrs and SURPLUS not in t.user_attrs
            )
            if not waiting and n_cand >= self.n_candidates:
                if self._promote(study):
                    continue
                # Nothing left for this worker. A peer still training will claim the
                # continuations it promotes itself, so no one waits on a barrier.
                return
            trial = study.ask()
            frozen = study._storage.get_trial(trial._trial_id)
            if _attrs.PARENT in frozen.user_attrs:
                if not self._claim_is_unique(study, frozen):
                    continue
                self._run_trial(study, trial, frozen)
            else:
                if self._is_surplus(study, frozen):
                    continue
                self._run_trial(study, trial, frozen)
            self._promote(study)

    def _claim_is_unique(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        key = (trial.user_attrs[_attrs.PARENT], trial.user_attrs[RUNG])
        first = min(
            t.number
            for t in study.get_trials(deepcopy=False)
            if _attrs.PARENT in t.user_attrs
            and t.state != TrialState.FAIL  # a crashed original's retry may run
            and (t.user_attrs[_attrs.PARENT], t.user_attrs.get(RUNG)) == key
        )
        if first == trial.number:
            return True
        study._storage.set_trial_user_attr(trial._trial_id, DUPLICATE_OF, int(first))
        study.tell(trial.number, state=TrialState.FAIL)
        return False

    def _is_surplus(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        earlier = sum(
            1
            for t in study.get_trials(deepcopy=False)
            if t.number < trial.number
            and _attrs.PARENT not in t.user_attrs
            and SURPLUS not in t.user_attrs
        )
        if earlier < self.n_candidates:
            return False
        study._storage.set_trial_user_attr(trial._trial_id, SURPLUS, 1.0)
        study.tell(trial.number, state=TrialState.FAIL)
        return True

    def _run_trial(self, study: optuna.Study, trial: Trial, frozen: FrozenTrial) -> None:
        attrs = frozen.user_attrs
        rung = int(attrs.get(RUNG, 0))
        resume = attrs.get(_attrs.CHECKPOINT)
        resume_step = int(attrs.get(_attrs.RESUME_STEP, 0)) if resume is not None else 0
        budget = self.budgets[rung]
        if RUNG not in attrs:
            trial.set_user_attr(RUNG, 0)
            trial.set_user_attr(ROOT, trial.number)
        trial.set_user_attr(BUDGET, budget)
        try:
            checkpoint = self._objective(trial, budget, resume)
        except optuna.TrialPruned:
            study.tell(trial, state=TrialState.PRUNED)
            return
        except Exception:
            study.tell(trial, state=TrialState.FAIL)
            raise
        trial.set_user_attr(COMPUTE, float(budget - resume_step))
        if checkpoint is not None:
            trial.set_user_attr(CHECKPOINT_OUT, str(checkpoint))
        latest = study._storage.get_trial(trial._trial_id)
        values = latest.intermediate_values
        if not values:
            study.tell(trial, state=TrialState.FAIL)
            return
        last = values[max(values)]
        if not math.isfinite(last):
            trial.set_user_attr(_attrs.DIVERGED, 1.0)
            study.tell(trial, state=TrialState.FAIL)
            return
        self._extrapolate(study, trial, latest, rung)
        study.tell(trial, last)

    # -------------------------------------------------------------- extrapolate
    def _extrapolate(
        self, study: optuna.Study, trial: Trial, frozen: FrozenTrial, rung: int
    ) -> None:
        steps, values = _curve(frozen)
        target = float(self.budgets[-1])
        sign = 1.0 if study.direction != StudyDirection.MAXIMIZE else -1.0
        # without a usable extrapolation the trial ranks by its last value, with no
        # interval (an empty lo/hi, not a zero-width one that would look certain)
        mean, lo, hi, status = values[-1], math.nan, math.nan, "skipped"
        if steps[-1] >= target:
            lo, hi, status = values[-1], values[-1], "observed"
        elif steps.size >= self._law.min_points() and np.all(values > 0):
            prior = self._pool_prior(study, rung, frozen.number, sign)
            lrs, why = self._lrs(frozen, int(max(target, steps[-1])))
            try:
                fit = None if why else self._law.fit(steps, values, lrs=lrs, prior=prior or None)
            except (ValueError, RuntimeError, FloatingPointError) as exc:
                fit, why = None, str(exc)
            if fit is not None and fit.ok:
                judged = self._judge(fit, target)
                if isinstance(judged, str):
                    status = f"unreliable: ranked by the last observed value: {judged}"
                else:
                    (mean, lo, hi), status = judged, fit.status
                    for name, val in fit.params.items():
                        trial.set_user_attr(_attrs.PARAM_PREFIX + name, _attrs.plain(val))
            else:
                status = f"failed: {why or (fit.message if fit is not None else '')}".rstrip(": ")
        for key, val in (
            (_attrs.PREDICTED_FINAL, mean),
            (_attrs.PREDICTED_LO, lo),
            (_attrs.PREDICTED_HI, hi),
        ):
            trial.set_user_attr(key, _attrs.plain(val))
        trial.set_user_attr(_attrs.LAW, self._law.name)
        trial.set_user_attr(_attrs.FIT_STATUS, status)

    def _lrs(self, frozen: FrozenTrial, last_step: int) -> tuple[np.ndarray | None, str]:
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

    def _pool_prior(
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
            if t.user_attrs.get(RUNG) == rung and t.number != number and t.value is not None
        ]
        done.sort(key=lambda t: sign * float(t.value))  # type: ignore[arg-type]
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

    # ---------------------------------------------------------------- promote
    def _nodes(
        self, study: optuna.Study, trials: Sequence[FrozenTrial] | None = None
    ) -> tuple[list[_Node], set[tuple[int, int]]]:
        nodes, promoted = [], set()
        for t in study.get_trials(deepcopy=False) if trials is None else trials:
            a = t.user_attrs
            if _attrs.PARENT in a and DUPLICATE_OF not in a:
                promoted.add((int(a[_attrs.PARENT]), int(a[RUNG])))
            if t.state != TrialState.COMPLETE or RUNG not in a or t.value is None:
                continue
            value = float(t.value)
            nodes.append(
                _Node(
                    number=t.number,
                    rung=int(a[RUNG]),
                    root=int(a.get(ROOT, t.number)),
                    value=value,
                    mean=_num(a.get(_attrs.PREDICTED_FINAL), value),
                    lo=_num(a.get(_attrs.PREDICTED_LO), value),
                    hi=_num(a.get(_attrs.PREDICTED_HI), value),
                    budget=int(a.get(BUDGET, self.budgets[int(a[RUNG])])),
                    checkpoint=a.get(CHECKPOINT_OUT),
                )
            )
        return nodes, promoted

    def eligible(self, study: optuna.Study) -> list[_Node]:
        """Finished trials that the rule promotes now and that have no continuation yet."""
        trials = study.get_trials(deepcopy=False)
        nodes, promoted = self._nodes(study, trials)
        sign = 1.0 if study.direction != StudyDirection.MAXIMIZE else -1.0
        out = []
        for rung in range(len(self.budgets) - 1):
            at = [n for n in nodes if n.rung == rung]
            if self.promotion == "sync":
                if not self._rung_finished(trials, rung):
                    continue
                k = sync_keep(len(at), self.eta)
            else:
                k = math.floor(len(at) / self.eta)
            if k < 1:
                continue
            scores = self.pooled_scores(study, rung, at, trials)

            def optimistic(n: _Node, scores: dict[int, _Score] = scores) -> tuple[float, int]:
                lo, hi = scores[n.number][1:] if n.number in scores else (n.lo, n.hi)
                return _optimistic(lo, hi, sign), n.number

            out += [
                n for n in sorted(at, key=optimistic)[:k] if (n.number, rung + 1) not in promoted
            ]
        return out

    def _rung_finished(self, trials: Sequence[FrozenTrial], rung: int) -> bool:
        """Every trial that will ever run at ``rung`` has finished (``sync`` promotion)."""
        live = (TrialState.RUNNING, TrialState.WAITING)
        n = 0
        for t in trials:
            a = t.user_attrs
            if SURPLUS in a or DUPLICATE_OF in a:
                continue
            if rung == 0 and _attrs.PARENT not in a:
                n += 1
                if t.state in live:
                    return False
            elif rung > 0 and a.get(RUNG) == rung and t.state in live:
                return False
        if rung == 0:
            return n >= self.n_candidates
        # the continuations into this rung were all added when the rung below finished
        return self._rung_finished(trials, rung - 1)

    def pooled_scores(
        self,
        study: optuna.Study,
        rung: int,
        nodes: Sequence[_Node],
        trials: Sequence[FrozenTrial] | None = None,
    ) -> dict[int, _Score]:
        """Re-extrapolate a rung's finished trials *jointly*: ``number -> (mean, lo, hi)``.

        When a trial finishes, its own prediction can borrow only from the trials
        that finished before it (the first few borrow nothing). The promotion rule
        instead ranks with one pooled fit of every curve at the rung (``shared``
        parameters common, offsets and amplitudes per trial), so early and late
        trials are judged alike. Trials whose pooled prediction is missing or not
        informative (see ``max_interval_ratio``) keep their own; if the pooled fit
        fails, every trial keeps its own. Deterministic in the set of trials (every
        worker ranks alike); cached per set. At most ``pool_max`` curves enter the
        fit: the best by their own optimistic prediction.
        """
        target = float(self.budgets[-1])
        if not self.shared or self.budgets[rung] >= target or len(nodes) < 2:
            return {}
        sign = 1.0 if study.direction != StudyDirection.MAXIMIZE else -1.0
        ranked = sorted(nodes, key=lambda n: (_optimistic(n.lo, n.hi, sign), n.number))
        members = tuple(sorted(n.number for n in ranked[: self.pool_max]))
        key = (study._study_id, rung, members)
        with self._lock:
            if key in self._pooled_cache:
                return self._pooled_cache[key]
        by_number = {t.number: t for t in (trials or study.get_trials(deepcopy=False))}
        curves, numbers = [], []
        for number in members:
            frozen = by_number[number]
            steps, values = _curve(frozen)
            lrs, why = self._lrs(frozen, int(max(target, steps[-1] if steps.size else 0)))
            if why or steps.size < self._law.min_points() or not np.all(values > 0):
                continue
            curves.append({"steps": steps, "losses": values, "lrs": lrs})
            numbers.append(number)
        scores: dict[int, _Score] = {}
        if len(curves) >= 2:
            try:
                fits = self._law.fit_pooled(curves, shared=self.shared)
            except (ValueError, RuntimeError, FloatingPointError):
                fits = []
            for number, fit in zip(numbers, fits, strict=False):
                judged = self._judge(fit, target)
                if not isinstance(judged, str):
                    scores[number] = judged
        with self._lock:
            self._pooled_cache[key] = scores
        return scores

    def _judge(self, fit: Any, target: float) -> _Score | str:
        """``(mean, lo, hi)`` at ``target``, or why the fit cannot rank the trial."""
        if fit is None or not fit.ok:
            return "the fit failed"
        try:
            m = float(fit.predict([target])[0])
            lo_a, hi_a = fit.interval([target], level=1.0 - 2.0 * self.quantile)
        except (ValueError, FloatingPointError, OverflowError) as exc:
            return f"no prediction ({exc})"
        lo, hi = float(lo_a[0]), float(hi_a[0])
        if not all(math.isfinite(x) for x in (m, lo, hi)) or lo <= 0:
            return "the prediction or its interval is not finite and positive"
        if math.log(hi) - math.log(lo) > math.log(self.max_interval_ratio):
            return f"interval hi/lo {hi / lo:.3g} > max_interval_ratio {self.max_interval_ratio:g}"
        if self.max_trend_ratio is not None and fit.curve is not None:
            ratio = trend_ratio(fit.curve.steps, fit.curve.losses, target, m)
            if ratio is not None and abs(ratio) > self.max_trend_ratio:
                return (
                    f"predicted {m:.4g} is {ratio:.3g}x the curve's recent trend "
                    f"(max_trend_ratio {self.max_trend_ratio:g})"
                )
        return m, lo, hi

    def _promote(self, study: optuna.Study) -> bool:
        """Add a WAITING continuation for each eligible trial; True if any was added."""
        added = False
        for node in self.eligible(study):
            parent = study._storage.get_trial(
                study._storage.get_trial_id_from_study_id_trial_number(study._study_id, node.number)
            )
            distributions: dict[str, BaseDistribution] = dict(parent.distributions)
            user_attrs = {
                k: v
                for k, v in parent.user_attrs.items()
                if not k.startswith((_attrs.RUNG_PREFIX, _attrs.PARAM_PREFIX))
                and k not in (_attrs.FIT_STATUS, CHECKPOINT_OUT, COMPUTE, BUDGET)
            }
            user_attrs.update(
                {
                    _attrs.PARENT: node.number,
                    _attrs.RESUME_STEP: node.budget,
                    _attrs.CHECKPOINT: node.checkpoint,
                    RUNG: node.rung + 1,
                    ROOT: node.root,
                }
            )
            if node.checkpoint is None:
                user_attrs[_attrs.RESUME_STEP] = 0
                del user_attrs[_attrs.CHECKPOINT]
            study.add_trial(
                optuna.trial.create_trial(
                    state=TrialState.WAITING,
                    params=dict(parent.params),
                    distributions=distributions,
                    user_attrs=user_attrs,
                    intermediate_values=(
                        dict(parent.intermediate_values) if node.checkpoint is not None else {}
                    ),
                )
            )
            added = True
        return added

    # ----------------------------------------------------------------- rerank
    def result(self, study: optuna.Study) -> SearchResult:
        """Rerank every lineage at its highest rung and report the pick."""
        nodes, _ = self._nodes(study)
        if not nodes:
            raise RuntimeError("no trial finished; nothing to rerank (did every trial fail?).")
        sign = 1.0 if study.direction != StudyDirection.MAXIMIZE else -1.0
        top: dict[int, _Node] = {}
        for n in nodes:
            if n.root not in top or (n.rung, -n.number) > (top[n.root].rung, -top[n.root].number):
                top[n.root] = n
        # the deepest budget first; within a budget, the observed (or predicted) value
        ranked = sorted(top.values(), key=lambda n: (-n.budget, sign * n.value, n.number))
        table = tuple(
            {
                "rank": i + 1,
                "root": n.root,
                "trial": n.number,
                "rung": n.rung,
                "budget": n.budget,
                "value": n.value,
                "predicted_final": n.mean,
                "predicted_lo": n.lo,
                "predicted_hi": n.hi,
            }
            for i, n in enumerate(ranked)
        )
        best = ranked[0]
        compute = sum(
            float(t.user_attrs.get(COMPUTE, 0.0)) for t in study.get_trials(deepcopy=False)
        )
        params = study._storage.get_trial(
            study._storage.get_trial_id_from_study_id_trial_number(study._study_id, best.number)
        ).params
        return SearchResult(
            best_trial=best.number,
            best_params=dict(params),
            best_value=best.value,
            best_budget=best.budget,
            predicted_final=best.mean,
            table=table,
            compute_steps=compute,
            full_compute_steps=float(len(top) * self.budgets[-1]),
        )


def sync_keep(n: int, eta: float) -> int:
    """How many of a finished rung's ``n`` trials continue under ``sync`` promotion.

    ``floor(n / eta)``, but at least one of a non-empty rung.
    """
    return max(1, math.floor(n / eta)) if n else 0


def _optimistic(lo: float, hi: float, sign: float) -> float:
    """The optimistic end of an interval as a score to sort ascending (sign -1: maximise)."""
    return sign * (lo if sign > 0 else hi)


def _num(x: Any, default: float) -> float:
    return float(x) if x is not None and math.isfinite(float(x)) else default


def _curve(t: FrozenTrial) -> tuple[np.ndarray, np.ndarray]:
    items = sorted(t.intermediate_values.items())
    s = np.array([k for k, _ in items], dtype=float)
    v = np.array([x for _, x in items], dtype=float)
    ok = np.isfinite(v) & (s > 0)
    return s[ok], v[ok]
