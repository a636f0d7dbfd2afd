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
4. **Keep the top k with uncertainty**: at rung ``r`` with ``n`` screened
   trials, the ``floor(n / eta)`` best by the *optimistic* end of the interval
   (``predicted_lo`` when minimising) are promoted; when some of the rung have
   no usable extrapolation, the whole rung ranks by its observed losses.
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

Duplicate promotions (two workers checking at once): among continuations of
one (parent, rung) the lowest trial number wins; a worker that claims a higher
one marks it FAIL (``lawsearch:duplicate_of``) without training it.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, Trial, TrialState

from lawsearch._errors import did_you_mean
from lawsearch._fit import MAX_TREND_RATIO
from lawsearch.laws import Law
from lawsearch.optuna import _attrs
from lawsearch.optuna import _compat as compat
from lawsearch.optuna import _records as records
from lawsearch.optuna._records import observed_value, write_cut
from lawsearch.search._decisions import (
    RANKS,
    cut_record,
    finite_or,
    is_predicted,
    kept_by_cut,
    pruned_per_rung,
    rung_scores,
    sync_keep,
)
from lawsearch.search._extrapolate import POOL_LR_RATIO, RungExtrapolator, optimistic
from lawsearch.search._faults import (
    StopWorker,
    claim_is_unique,
    fail_stale,
    fail_trial,
    is_candidate,
    is_surplus,
    needs_claim,
    retry_of,
    unless_finished_elsewhere,
)
from lawsearch.search._objective import Objective, trainer_objective
from lawsearch.search._propose import ScheduleProposer
from lawsearch.search._result import Node, Score, SearchResult
from lawsearch.search._retention import delete_unused_checkpoints
from lawsearch.train._protocol import Trainer

__all__ = ["RetrievalRerank", "sync_keep"]

_PROMOTIONS = ("async", "sync")

#: ``recover(study)``: fail the trials of dead workers and queue their retries
Recover = Callable[[optuna.Study], Any]


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
            ``fit_status`` saying so (real curves reach 1.7-2.1, a misidentified
            annealing term 4.8: ``lawsearch._fit.trend_ratio``). None: no check.
        window: fit each curve from ``lawsearch._fit.window_start`` on (past step 0,
            the warmup and the early transient of a curve logged from the start);
            False fits every reported point.
        pool_refs: the most whole curves of lineages that reached the full budget
            that join a rung's joint refit (transfer); 0: none.
        pool_lr_ratio: refit jointly only curves whose peak LRs lie within this
            factor (a lone curve joins the nearer group); None: one fit of all.
        promotion: ``"async"`` (ASHA: a rung promotes whenever ``floor(n / eta)``
            grows, no barrier; a promotion is never taken back, so with few
            candidates more than ``n / eta`` may continue) or ``"sync"``
            (successive halving: a rung promotes once all its trials have
            finished, exactly the best ``max(1, floor(n / eta))``; workers never wait,
            the last to finish a rung promotes).
        prune: with ``trainer``, ask the study's pruner after each report (e.g. a
            ``LawPruner`` stops clear losers inside a budget); off by default
            because Optuna's default study pruner is ``MedianPruner``. A pruned
            trial counts among the ``n`` trials of its rung (it was screened and
            lost), so the promotion keeps the same share of the rung.
        max_retries: how many times a failed trial (an exception, a dead worker) is
            retried, each time from its last recorded checkpoint
            (``lawsearch.search._faults``). A trial that raises never ends the search.
        oom_retry: retry a trial that ran out of memory at a smaller micro-batch (same
            effective batch; trainers with ``accumulation``), not counted in ``max_retries``.
        checkpoint_dir: where the trainer writes checkpoints (files outside it are
            never deleted).
        keep_checkpoints: ``"all"``, or ``"needed"``: after each trial delete the
            checkpoint files under ``checkpoint_dir`` that no continuation or retry can
            use, and, once every lineage is ranked, all but the pick's
            (``lawsearch.search._retention``).
        propose: once the screen has finished, add the law's own schedules as extra
            candidates (``lawsearch.search._propose.ScheduleProposer``); None: never.
        rank: what a cut ranks a rung by: ``"law"`` (default), the optimistic end of
            each trial's predicted final (the joint refit); ``"loss"``, the loss observed
            at the rung's budget, as successive halving does. Trials are extrapolated
            either way (the sampler learns from the predictions); only the cut differs.
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
        window: bool = True,
        pool_refs: int = 4,
        pool_lr_ratio: float | None = POOL_LR_RATIO,
        prune: bool = False,
        promotion: str = "async",
        max_retries: int = 2,
        oom_retry: bool = True,
        checkpoint_dir: str | None = None,
        keep_checkpoints: str = "all",
        propose: ScheduleProposer | None = None,
        rank: str = "law",
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
        self.budgets = tuple(b)
        self.n_candidates = int(n_candidates)
        self.eta = float(eta)
        self.extrapolator = RungExtrapolator(
            target=self.budgets[-1],
            law=law,
            shared=shared,
            pool_size=pool_size,
            pool_max=pool_max,
            quantile=quantile,
            max_interval_ratio=max_interval_ratio,
            max_trend_ratio=max_trend_ratio,
            window=window,
            pool_refs=pool_refs,
            pool_lr_ratio=pool_lr_ratio,
        )
        if promotion not in _PROMOTIONS:
            raise ValueError(
                f"`promotion` must be one of {_PROMOTIONS}; got {promotion!r}."
                + did_you_mean(str(promotion), _PROMOTIONS)
            )
        self.promotion = promotion
        if rank not in RANKS:
            raise ValueError(
                f"`rank` must be one of {RANKS}; got {rank!r}." + did_you_mean(str(rank), RANKS)
            )
        self.rank = rank
        if max_retries < 0:
            raise ValueError(f"`max_retries` must be >= 0; got {max_retries!r}.")
        self.max_retries = int(max_retries)
        self.oom_retry = bool(oom_retry)
        if keep_checkpoints not in ("all", "needed"):
            raise ValueError(
                f"`keep_checkpoints` must be 'all' or 'needed'; got {keep_checkpoints!r}."
            )
        if keep_checkpoints == "needed" and checkpoint_dir is None:
            raise ValueError("`keep_checkpoints='needed'` needs the `checkpoint_dir` it cleans.")
        self.checkpoint_dir = checkpoint_dir
        self.keep_checkpoints = keep_checkpoints
        self.proposer = propose
        self._objective = (
            objective if objective is not None else trainer_objective(trainer, config, prune)
        )

    @property
    def law(self) -> Law:
        """The law that extrapolates (``extrapolator.law``)."""
        return self.extrapolator.law

    @property
    def shared(self) -> tuple[str, ...]:
        return self.extrapolator.shared

    @property
    def quantile(self) -> float:
        return self.extrapolator.quantile

    # ------------------------------------------------------------------ run
    def run(
        self,
        study: optuna.Study,
        *,
        n_workers: int = 1,
        recover: Recover | None = None,
        owner: str | None = None,
        poll: float = 2.0,
    ) -> SearchResult:
        """Work on ``study`` until every lineage is ranked, then rerank.

        Call it from as many processes as you like on one shared storage (each
        with its own ``optuna.load_study``); ``n_workers > 1`` adds threads in
        this process. See ``work`` for ``recover``, ``owner`` and ``poll``.
        """
        if n_workers < 1:
            raise ValueError(f"`n_workers` must be >= 1; got {n_workers!r}.")
        kw: dict[str, Any] = {"stay": True, "recover": recover, "owner": owner, "poll": poll}
        if n_workers == 1:
            self.work(study, **kw)
        else:
            errors: list[BaseException] = []

            def target() -> None:
                try:
                    self.work(study, **kw)
                except BaseException as exc:  # re-raised below, in the caller's thread
                    errors.append(exc)

            threads = [threading.Thread(target=target) for _ in range(n_workers)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if errors:
                raise errors[0]
        result = self.result(study)
        self._retain(study, pick=result.best_trial, final=True)
        return result

    def work(
        self,
        study: optuna.Study,
        *,
        stay: bool = False,
        recover: Recover | None = None,
        owner: str | None = None,
        poll: float = 2.0,
    ) -> None:
        """One worker's loop: claim or create work, train it, promote what is ready.

        Args:
            study: the study (any storage).
            stay: keep working until every lineage is ranked: while peers train,
                wait (``poll`` seconds) for the continuations they promote and the
                retries of trials whose worker died, instead of leaving.
            recover: called before each claim and while waiting: fails the trials of
                dead workers and queues their retries (default: ``fail_stale``, the
                heartbeat check; a no-op on storages without heartbeats).
            owner: written to each claimed trial's ``lawsearch:worker`` (the CLI's lock
                name, so a journal's live workers know whose trials are orphans).
        """
        while True:
            if recover is not None:
                recover(study)
            else:
                fail_stale(study, max_retries=self.max_retries)
            trials = study.get_trials(deepcopy=False)
            waiting = any(t.state == TrialState.WAITING for t in trials)
            n_cand = sum(1 for t in trials if is_candidate(t))
            if not waiting and n_cand >= self.n_candidates:
                if self._promote(study):
                    continue
                if not stay or not any(t.state == TrialState.RUNNING for t in trials):
                    return  # every lineage ranked (or, not staying, nothing left for me)
                time.sleep(poll)  # a peer's trial may promote, fail or go stale
                continue
            trial = compat.ask(study)
            frozen = compat.trial_now(study, trial)
            if needs_claim(frozen):
                if not claim_is_unique(study, frozen):
                    continue
            elif is_surplus(study, frozen, self.n_candidates):
                continue
            unless_finished_elsewhere(study, trial, self._run_trial, frozen, owner)
            self._promote(study)
            self._retain(study)

    def _retain(self, study: optuna.Study, *, pick: int | None = None, final: bool = False) -> None:
        if self.keep_checkpoints == "needed" and self.checkpoint_dir is not None:
            trials = study.get_trials(deepcopy=False)
            delete_unused_checkpoints(trials, self.checkpoint_dir, pick=pick, final=final)

    def _run_trial(
        self, study: optuna.Study, trial: Trial, frozen: FrozenTrial, owner: str | None = None
    ) -> None:
        attrs = frozen.user_attrs
        rung = int(attrs.get(_attrs.RUNG, 0))
        resume = attrs.get(_attrs.CHECKPOINT)
        resume_step = int(attrs.get(_attrs.RESUME_STEP, 0)) if resume is not None else 0
        budget = self.budgets[rung]
        if owner is not None:
            trial.set_user_attr(_attrs.WORKER, owner)
        if _attrs.RUNG not in attrs:
            trial.set_user_attr(_attrs.RUNG, 0)
        if _attrs.ROOT not in attrs:
            trial.set_user_attr(_attrs.ROOT, trial.number)
        trial.set_user_attr(_attrs.BUDGET, budget)
        try:
            # beat while training (PostgreSQL): a dead worker's trial goes stale and is retried
            with compat.heartbeat(study, trial):
                checkpoint = self._objective(trial, budget, resume)
        except optuna.TrialPruned:
            study.tell(trial, state=TrialState.PRUNED)
            return
        except Exception as exc:  # one trial's error (OOM, divergence, ...) never ends the search
            cause = exc.cause if isinstance(exc, StopWorker) else exc
            retries, oom = self.max_retries, self.oom_retry
            fail_trial(study, trial, resume_step, cause, max_retries=retries, oom_retry=oom)
            if isinstance(exc, StopWorker):
                raise  # ... unless the trainer cannot go on (recorded and retried first)
            return
        trial.set_user_attr(_attrs.COMPUTE_STEPS, float(budget - resume_step))
        if checkpoint is not None:
            trial.set_user_attr(_attrs.CHECKPOINT_OUT, str(checkpoint))
        latest = compat.trial_now(study, trial)
        values = latest.intermediate_values
        if not values:
            study.tell(trial, state=TrialState.FAIL)
            return
        last = values[max(values)]
        if not math.isfinite(last):
            trial.set_user_attr(_attrs.DIVERGED, 1.0)
            trial.set_user_attr(_attrs.FIT_STATUS, "diverged")
            study.tell(trial, state=TrialState.FAIL)
            return
        # the objective value is the full-budget estimate (comparable across budgets); the
        # loss observed at this budget is the attr lawsearch:observed (its decision record)
        study.tell(trial, self.extrapolator.extrapolate(study, trial, latest, rung))

    # ---------------------------------------------------------------- promote
    def _nodes(
        self, study: optuna.Study, trials: Sequence[FrozenTrial] | None = None
    ) -> tuple[list[Node], set[tuple[int, int]]]:
        nodes, promoted = [], set()
        for t in study.get_trials(deepcopy=False) if trials is None else trials:
            a = t.user_attrs
            if _attrs.PARENT in a and _attrs.DUPLICATE_OF not in a:
                promoted.add((int(a[_attrs.PARENT]), int(a[_attrs.RUNG])))
            value = observed_value(t)  # ranks as the observed loss did before the records
            if t.state != TrialState.COMPLETE or _attrs.RUNG not in a or value is None:
                continue
            nodes.append(
                Node(
                    number=t.number,
                    rung=int(a[_attrs.RUNG]),
                    root=int(a.get(_attrs.ROOT, t.number)),
                    value=value,
                    mean=finite_or(a.get(_attrs.PREDICTED_FINAL), value),
                    lo=finite_or(a.get(_attrs.PREDICTED_LO), value),
                    hi=finite_or(a.get(_attrs.PREDICTED_HI), value),
                    budget=int(a.get(_attrs.BUDGET, self.budgets[int(a[_attrs.RUNG])])),
                    checkpoint=a.get(_attrs.CHECKPOINT_OUT),
                    predicted=is_predicted(a),
                )
            )
        return nodes, promoted

    def eligible(self, study: optuna.Study, cuts: list[dict[str, Any]] | None = None) -> list[Node]:
        """Finished trials that the rule promotes now and that have no continuation yet.

        ``cuts`` (a list) receives the decision record of each cut that promotes.
        """
        trials = study.get_trials(deepcopy=False)
        nodes, promoted = self._nodes(study, trials)
        sign = 1.0 if study.direction != StudyDirection.MAXIMIZE else -1.0
        lost = pruned_per_rung(trials)
        made = records.read_cuts(study) if self.promotion == "sync" else []
        out = []
        for rung in range(len(self.budgets) - 1):
            at = [n for n in nodes if n.rung == rung]
            # a trial the pruner stopped was screened at this rung and lost: it counts
            # among the rung's n, so the same share continues however many were pruned
            n = len(at) + lost.get(rung, 0)
            if self.promotion == "sync":
                if not self._rung_finished(trials, rung):
                    continue
                k = min(sync_keep(n, self.eta), len(at))
                kept = kept_by_cut(made, rung)  # a sync rung is cut once: refits change nothing
                if kept is not None:
                    cut = [x for x in at if x.number in kept]
                    out += [x for x in cut if (x.number, rung + 1) not in promoted]
                    continue
            else:
                k = math.floor(n / self.eta)
            if k < 1:
                continue
            scores, uniform = rung_scores(self, study, rung, at, trials)

            def rank(
                n: Node, sc: dict[int, Score] = scores, by: str = uniform
            ) -> tuple[float, int]:
                if by:
                    return sign * n.value, n.number
                lo, hi = sc[n.number][1:] if n.number in sc else (n.lo, n.hi)
                return optimistic(lo, hi, sign), n.number

            ranked = sorted(at, key=rank)
            new = [n for n in ranked[:k] if (n.number, rung + 1) not in promoted]
            out += new
            if new and cuts is not None:
                cuts.append(cut_record(self, study, rung, n, k, ranked, scores, trials, uniform))
        return out

    def _rung_finished(self, trials: Sequence[FrozenTrial], rung: int) -> bool:
        """Every trial that will ever run at ``rung`` has finished (``sync`` promotion)."""
        live = (TrialState.RUNNING, TrialState.WAITING)
        n = 0
        for t in trials:
            a = t.user_attrs
            if _attrs.SURPLUS in a or _attrs.DUPLICATE_OF in a:
                continue
            if rung == 0 and _attrs.PARENT not in a:
                n += retry_of(t) is None  # lineages: a retry is its failed original's
                if t.state in live:
                    return False
            elif rung > 0 and a.get(_attrs.RUNG) == rung and t.state in live:
                return False
        if rung == 0:
            return n >= self.n_candidates
        # the continuations into this rung were all added when the rung below finished
        return self._rung_finished(trials, rung - 1)

    def _promote(self, study: optuna.Study) -> bool:
        """Add a WAITING continuation for each eligible trial; True if any was added."""
        if self.proposer is not None and self.proposer.propose(self, study):
            return True  # the proposal screens before the cut (it holds the rung open)
        added = False
        cuts: list[dict[str, Any]] = []
        eligible = self.eligible(study, cuts)
        for cut in cuts:  # before the continuations: a rerun rewrites the same record
            write_cut(study, cut)
        for node in eligible:
            parent = compat.trial_by_number(study, node.number)
            distributions: dict[str, BaseDistribution] = dict(parent.distributions)
            user_attrs = {
                k: v
                for k, v in parent.user_attrs.items()
                if not k.startswith((_attrs.RUNG_PREFIX, _attrs.PARAM_PREFIX))
                and k
                not in (
                    _attrs.FIT_STATUS,
                    _attrs.CHECKPOINT_OUT,
                    _attrs.COMPUTE_STEPS,
                    _attrs.BUDGET,
                    # the parent's decision is the parent's: the continuation makes its own
                    _attrs.OBSERVED,
                    _attrs.RANKED_BY,
                    _attrs.FIGURE_ARTIFACT,
                    # how the parent's own try went (a retry, its checkpoints, its worker)
                    _attrs.RETRY_OF,
                    _attrs.RETRIES,
                    _attrs.LAST_CHECKPOINT,
                    _attrs.LAST_CHECKPOINT_STEP,
                    _attrs.WORKER,
                    _attrs.ERROR,
                )
            }
            user_attrs.update(
                {
                    _attrs.PARENT: node.number,
                    _attrs.RESUME_STEP: node.budget,
                    _attrs.CHECKPOINT: node.checkpoint,
                    _attrs.RUNG: node.rung + 1,
                    _attrs.ROOT: node.root,
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
        top: dict[int, Node] = {}
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
                "predicted_final": n.mean if n.predicted else None,
                "predicted_lo": n.lo if n.predicted else None,
                "predicted_hi": n.hi if n.predicted else None,
            }
            for i, n in enumerate(ranked)
        )
        best = ranked[0]
        compute = sum(
            float(t.user_attrs.get(_attrs.COMPUTE_STEPS, 0.0))
            for t in study.get_trials(deepcopy=False)
        )
        params = compat.trial_by_number(study, best.number).params
        return SearchResult(
            best_trial=best.number,
            best_params=dict(params),
            best_value=best.value,
            best_budget=best.budget,
            predicted_final=best.mean if best.predicted else None,
            table=table,
            compute_steps=compute,
            full_compute_steps=float(len(top) * self.budgets[-1]),
        )
