"""The search's failure policy: retries that resume from the last checkpoint, divergence.

* A trial that raises, or whose worker died (a stale heartbeat on PostgreSQL, a
  dead process's lock on a journal file), is FAIL; ``requeue`` adds a WAITING
  *retry* of it (``lawsearch:retry_of``) with the same parameters and lineage
  attrs (``root``, ``rung``, ``parent``), resuming from the failed trial's *last*
  checkpoint (``lawsearch:last_checkpoint``, recorded by ``record_checkpoint`` as
  each is written) with its reported curve up to that step carried over, so a
  crash repeats at most one checkpoint interval. A retry is the same lineage, never
  a new candidate. Each (lineage, rung) gets at most ``max_retries`` retries.
* A trial that runs out of memory (``is_out_of_memory``) and trains with a known
  micro-batch (``lawsearch:micro_batch``, written by ``with_micro_batch``) is retried
  the same way at the next smaller micro-batch (``smaller_micro_batch``: half, a
  divisor of the batch) with more gradient accumulation, so the effective batch and
  the curve stay the same; these retries do not count in ``max_retries`` and end at
  micro-batch 1, where the trial fails with a message saying what to change.
* A loss that is NaN/infinite or explodes above ``EXPLODE_RATIO`` times the
  curve's first reported loss ends the trial as *diverged* (FAIL with
  ``lawsearch:diverged``); it is not retried (the same parameters diverge again).
* A trainer that cannot go on after its error raises ``StopWorker`` from it (rank 0
  of a ``torchrun`` job: the other ranks are inside a collective of the failed
  step). The trial is failed and retried as its cause says, then the worker stops.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import optuna
from optuna.trial import FrozenTrial, Trial, TrialState

from lawsearch._errors import StorageUnavailable
from lawsearch.optuna import _attrs
from lawsearch.optuna import _compat as compat
from lawsearch.train._protocol import smaller_micro_batch

__all__ = [
    "EXPLODE_RATIO",
    "Diverged",
    "DivergenceCheck",
    "RetryStale",
    "StopWorker",
    "claim_is_unique",
    "error_text",
    "fail_and_retry",
    "fail_stale",
    "fail_trial",
    "finished_elsewhere",
    "is_candidate",
    "is_out_of_memory",
    "is_surplus",
    "needs_claim",
    "record_checkpoint",
    "requeue",
    "retry_of",
    "unless_finished_elsewhere",
    "with_micro_batch",
]

#: a minimised loss above this multiple of the curve's first reported loss has diverged
EXPLODE_RATIO = 1.5
#: the longest error message kept in ``lawsearch:error``
_MAX_ERROR = 500


class StopWorker(Exception):
    """A trial failed and this process cannot train another one.

    Raised ``from`` the trainer's error: the search records the trial's failure by
    its cause (an out-of-memory error is retried at a smaller micro-batch, any other
    error while ``max_retries`` last), then re-raises, so the run stops with
    everything it trained kept and the retry queued for the next start.
    """

    @property
    def cause(self) -> BaseException:
        return self.__cause__ if self.__cause__ is not None else self


#: attrs of a failed try that describe that try only (its retry writes its own)
_OWN = {
    _attrs.FIT_STATUS,
    _attrs.DIVERGED,
    _attrs.ERROR,
    _attrs.WORKER,
    _attrs.CHECKPOINT_OUT,
    _attrs.COMPUTE_STEPS,
    _attrs.COMPUTE_TOKENS,
    _attrs.BUDGET,
    _attrs.OBSERVED,
    _attrs.RANKED_BY,
    _attrs.VALUE_KIND,
    _attrs.INTERVAL_LEVEL,
    _attrs.FIGURE_ARTIFACT,
    _attrs.SURPLUS,
    _attrs.DUPLICATE_OF,
    _attrs.LAST_CHECKPOINT,
    _attrs.LAST_CHECKPOINT_STEP,
    _attrs.PREDICTED_FINAL,
    _attrs.PREDICTED_LO,
    _attrs.PREDICTED_HI,
    _attrs.PREDICTED_AT_STEP,
    _attrs.LAW,
}


class Diverged(Exception):
    """A trial's loss became NaN/infinite or exploded above its start."""


#: the system attr Optuna's ``RetryFailedTrialCallback`` puts on its retries
_OPTUNA_RETRY = "failed_trial"


def retry_of(trial: FrozenTrial) -> int | None:
    """The failed trial ``trial`` retries: lawsearch's retries and Optuna's (its callback)."""
    if _attrs.RETRY_OF in trial.user_attrs:
        return int(trial.user_attrs[_attrs.RETRY_OF])
    failed = trial.system_attrs.get(_OPTUNA_RETRY)
    return int(failed) if isinstance(failed, int) else None


def is_candidate(trial: FrozenTrial) -> bool:
    """Whether ``trial`` is one of the sampler's candidates.

    Not a continuation, retry, surplus, or a law-proposed schedule (an extra
    lineage beyond ``n_candidates``, ``lawsearch.search._propose``).
    """
    a = trial.user_attrs
    return retry_of(trial) is None and not any(
        k in a for k in (_attrs.PARENT, _attrs.SURPLUS, _attrs.DUPLICATE_OF, _attrs.PROPOSED_FROM)
    )


def error_text(exc: BaseException) -> str:
    """``"<type>: <message>"``, bounded, for ``lawsearch:error``."""
    text = f"{type(exc).__name__}: {exc}".strip()
    return text if len(text) <= _MAX_ERROR else text[: _MAX_ERROR - 3] + "..."


def record_checkpoint(trial: Trial, step: int, checkpoint: str) -> None:
    """Record that ``checkpoint`` (complete on disk) holds ``trial`` at optimizer ``step``.

    Call it after the checkpoint's atomic rename, never before: a retry resumes
    from the last one recorded.
    """
    trial.set_user_attr(_attrs.LAST_CHECKPOINT, str(checkpoint))
    trial.set_user_attr(_attrs.LAST_CHECKPOINT_STEP, int(step))


def requeue(
    study: optuna.Study,
    failed: FrozenTrial,
    *,
    max_retries: int,
    set_attrs: Mapping[str, Any] | None = None,
) -> int | None:
    """Add a WAITING retry of the FAILED ``failed``; its number, or None when out of retries.

    The retry resumes from ``failed``'s last recorded checkpoint (else from where
    ``failed`` itself resumed, else from scratch) and inherits ``failed``'s reported
    values up to that step, so the curve of the lineage continues unbroken.
    ``set_attrs`` (an out-of-memory retry's smaller micro-batch) are set on the retry,
    which then does not count in ``max_retries``.
    """
    a = failed.user_attrs
    tries = int(a.get(_attrs.RETRIES, 0) or 0)
    if set_attrs is None and tries >= max_retries:
        return None
    keep: dict[str, Any] = {
        k: v
        for k, v in a.items()
        if k.startswith(_attrs.PREFIX)
        and k not in _OWN
        and not k.startswith((_attrs.RUNG_PREFIX, _attrs.PARAM_PREFIX))
    }
    keep[_attrs.RETRY_OF] = failed.number
    keep[_attrs.RETRIES] = tries + 1 if set_attrs is None else tries
    keep.update(set_attrs or {})
    keep.setdefault(_attrs.RUNG, 0)
    if _attrs.PARENT not in a:
        keep.setdefault(_attrs.ROOT, failed.number)
    resume = _resume_point(a)
    if resume is None:
        keep.pop(_attrs.CHECKPOINT, None)
        keep.pop(_attrs.RESUME_STEP, None)
        values: dict[int, float] = {}
    else:
        keep[_attrs.CHECKPOINT], keep[_attrs.RESUME_STEP] = resume
        values = {s: v for s, v in failed.intermediate_values.items() if s <= resume[1]}
    template = optuna.trial.create_trial(
        state=TrialState.WAITING,
        params=dict(failed.params),
        distributions=dict(failed.distributions),
        user_attrs=keep,
        intermediate_values=values,
    )
    store = compat.storage(study)
    tid = store.create_new_trial(compat.study_id(study), template_trial=template)
    return int(store.get_trial_number_from_id(tid))


def fail_and_retry(
    study: optuna.Study,
    failed: FrozenTrial,
    *,
    max_retries: int,
    set_attrs: Mapping[str, Any] | None = None,
) -> bool:
    """Queue ``failed``'s retry, *then* set it FAIL; whether this call failed it.

    In this order the lineage always has a live trial, so no worker sees its rung
    finished (and cuts it) in between. When another worker failed it first, the
    second retry is a duplicate that ``claim_is_unique`` drops.
    """
    requeue(study, failed, max_retries=max_retries, set_attrs=set_attrs)
    try:
        return bool(
            compat.storage(study).set_trial_state_values(
                compat.trial_id(failed), state=TrialState.FAIL
            )
        )
    except optuna.exceptions.UpdateFinishedTrialError:
        return False


def is_out_of_memory(exc: BaseException) -> bool:
    """torch's ``OutOfMemoryError`` (CUDA and other devices) or a RuntimeError saying so."""
    if any(
        c.__name__ == "OutOfMemoryError" and c.__module__.startswith("torch")
        for c in type(exc).__mro__
    ):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def with_micro_batch(trial: Trial, trainer: Any, config: Mapping[str, Any]) -> Mapping[str, Any]:
    """``config`` with ``trial``'s micro-batch (a retry's smaller one), recorded in its attrs.

    For trainers that accumulate gradients (``trainer.accumulation(config) -> (batch,
    micro_batch)``); others get ``config`` back unchanged.
    """
    plan = getattr(trainer, "accumulation", None)
    if plan is None:
        return config
    out = dict(config)
    micro = trial.user_attrs.get(_attrs.MICRO_BATCH)
    if micro is not None:
        out["micro_batch"] = int(micro)
    batch, micro = plan(out)
    trial.set_user_attr(_attrs.MICRO_BATCH, int(micro))
    trial.set_user_attr(_attrs.GRAD_ACCUMULATION, int(batch) // int(micro))
    return out


def fail_trial(
    study: optuna.Study,
    trial: Trial,
    resume_step: int,
    error: BaseException,
    *,
    max_retries: int,
    oom_retry: bool = True,
) -> None:
    """FAIL ``trial`` for ``error`` (counting the steps it reported) and queue its retry.

    A divergence is not retried; an out-of-memory error (with ``oom_retry`` and a known
    micro-batch) is retried at the next smaller micro-batch, or not at all at 1; any
    other error is retried while ``max_retries`` last (see the module docstring).
    ``StorageUnavailable`` is raised again: without the storage nothing can be failed.
    """
    if isinstance(error, StorageUnavailable):
        raise error
    frozen = compat.trial_now(study, trial)
    values, a = frozen.intermediate_values, frozen.user_attrs
    trained = max(values) - resume_step if values else 0
    if trained > 0:
        trial.set_user_attr(_attrs.COMPUTE_STEPS, float(trained))
    text = error_text(error)
    if isinstance(error, Diverged):
        trial.set_user_attr(_attrs.DIVERGED, 1.0)
        trial.set_user_attr(_attrs.FIT_STATUS, "diverged")
        trial.set_user_attr(_attrs.ERROR, text)
        study.tell(trial, state=TrialState.FAIL)
        return
    smaller: dict[str, Any] | None = None
    if oom_retry and is_out_of_memory(error) and a.get(_attrs.MICRO_BATCH) is not None:
        micro = int(a[_attrs.MICRO_BATCH])
        batch = micro * int(a.get(_attrs.GRAD_ACCUMULATION, 1))
        less = smaller_micro_batch(micro, batch)
        if less is None:
            trial.set_user_attr(
                _attrs.ERROR,
                f"out of memory at micro_batch 1, the smallest (not retried): lower "
                f"`train.batch_size`, `train.seq_len` or the model size, or train on a device "
                f"with more memory. {text}"[:_MAX_ERROR],
            )
            study.tell(trial, state=TrialState.FAIL)
            return
        smaller = {
            _attrs.MICRO_BATCH: less,
            _attrs.GRAD_ACCUMULATION: batch // less,
            _attrs.OOM_RETRIES: int(a.get(_attrs.OOM_RETRIES, 0)) + 1,
        }
    trial.set_user_attr(_attrs.ERROR, text)
    frozen = compat.trial_now(study, trial)
    fail_and_retry(study, frozen, max_retries=max_retries, set_attrs=smaller)


def finished_elsewhere(study: optuna.Study, trial: Trial, error: BaseException) -> bool:
    """Whether ``error`` came from writing to ``trial`` after another worker finished it.

    A worker cut off from the storage longer than the grace period finds, once it
    is back, its trial FAIL (a peer took it for dead and queued its retry from the
    last checkpoint): Optuna refuses the write (``UpdateFinishedTrialError``, or
    ``ValueError`` from ``tell``). The lineage goes on in the retry; this worker
    moves on to its next work item instead of stopping.
    """
    if not isinstance(error, optuna.exceptions.UpdateFinishedTrialError | ValueError):
        return False
    return compat.trial_now(study, trial).state != TrialState.RUNNING


def unless_finished_elsewhere(
    study: optuna.Study, trial: Trial, run: Callable[..., Any], *args: Any
) -> None:
    """``run(study, trial, *args)`` (it trains ``trial``); done if a peer finished the trial.

    See ``finished_elsewhere``: the worker then moves on to its next work item.
    """
    try:
        run(study, trial, *args)
    except Exception as exc:
        if not finished_elsewhere(study, trial, exc):
            raise


def fail_stale(study: optuna.Study, *, max_retries: int) -> list[int]:
    """Fail and retry the RUNNING trials whose heartbeat is stale (storages with heartbeats).

    Every live worker calls it between trials and while it waits, so a worker
    killed mid-trial (``kill -9``, a lost machine) loses at most one checkpoint
    interval, and the study goes on without it. Returns the trials failed here.
    """
    store = compat.storage(study)
    if not compat.heartbeat_enabled(store):
        return []
    out = []
    for tid in compat.stale_trial_ids(study):
        t = store.get_trial(tid)
        if t.state == TrialState.RUNNING and fail_and_retry(study, t, max_retries=max_retries):
            out.append(t.number)
    return out


def _lineage_key(t: FrozenTrial) -> tuple[Any, ...] | None:
    a = t.user_attrs
    if _attrs.PARENT in a:
        return ("parent", a[_attrs.PARENT], a.get(_attrs.RUNG))
    failed = retry_of(t)
    if failed is not None:
        return ("retry", a.get(_attrs.ROOT, failed))
    if _attrs.PROPOSED_FROM in a:  # two workers that decided at once added it twice
        return ("proposal", a[_attrs.PROPOSED_FROM])
    return None


def needs_claim(trial: FrozenTrial) -> bool:
    """Whether a claimed trial may be a duplicate (``claim_is_unique`` decides), not a candidate.

    Continuations, retries and law-proposed schedules can be added twice by workers
    that decide at the same moment; a new candidate is checked by ``is_surplus``.
    """
    return _lineage_key(trial) is not None


def claim_is_unique(study: optuna.Study, trial: FrozenTrial) -> bool:
    """Whether the claimed continuation or retry ``trial`` should train; else FAIL it.

    Among the live trials of one (parent, rung), or one retried candidate, the
    lowest-numbered runs; a trial a retry replaced does not count (it is failing).
    A dropped claim is FAIL with ``lawsearch:duplicate_of``.
    """
    trials = study.get_trials(deepcopy=False)
    replaced = {retry_of(t) for t in trials} - {None}
    mine = _lineage_key(trial)
    first = min(
        t.number
        for t in trials
        if t.state != TrialState.FAIL
        and t.number not in replaced
        and _attrs.DUPLICATE_OF not in t.user_attrs
        and _lineage_key(t) == mine
    )
    if first == trial.number:
        return True
    compat.storage(study).set_trial_user_attr(
        compat.trial_id(trial), _attrs.DUPLICATE_OF, int(first)
    )
    study.tell(trial.number, state=TrialState.FAIL)
    return False


def is_surplus(study: optuna.Study, trial: FrozenTrial, n_candidates: int) -> bool:
    """Whether the new candidate ``trial`` comes after ``n_candidates`` lineages (then FAIL it).

    Lineages, not trials: a failed candidate and its retries are one lineage.
    """
    earlier = sum(
        1 for t in study.get_trials(deepcopy=False) if t.number < trial.number and is_candidate(t)
    )
    if earlier < n_candidates:
        return False
    compat.storage(study).set_trial_user_attr(compat.trial_id(trial), _attrs.SURPLUS, 1.0)
    study.tell(trial.number, state=TrialState.FAIL)
    return True


def _resume_point(a: Mapping[str, Any]) -> tuple[str, int] | None:
    if a.get(_attrs.LAST_CHECKPOINT) is not None:
        return str(a[_attrs.LAST_CHECKPOINT]), int(a.get(_attrs.LAST_CHECKPOINT_STEP, 0))
    if a.get(_attrs.CHECKPOINT) is not None:
        return str(a[_attrs.CHECKPOINT]), int(a.get(_attrs.RESUME_STEP, 0))
    return None


class RetryStale:
    """``RDBStorage(heartbeat_stale_trial_callback=...)``: retry a dead worker's trial.

    Optuna fails a RUNNING trial whose heartbeat is older than the grace period
    (``optuna.storages.fail_stale_trials``, which every live worker runs) and calls
    this once for it; the retry resumes from the trial's last checkpoint
    (``requeue``), unlike Optuna's ``RetryFailedTrialCallback``, which restarts it.
    """

    def __init__(self, max_retries: int) -> None:
        if max_retries < 0:
            raise ValueError(f"`max_retries` must be >= 0; got {max_retries!r}.")
        self.max_retries = int(max_retries)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        requeue(study, trial, max_retries=self.max_retries)


class DivergenceCheck:
    """Says when a reported loss has diverged: NaN/inf, or above ``ratio`` x the first loss.

    Args:
        first: the lineage's first reported loss (a continuation's inherited curve);
            None: the first value this check sees.
        minimize: the study minimises (only then does "above its start" mean worse).
        ratio: the explosion factor.
    """

    def __init__(
        self, first: float | None = None, *, minimize: bool = True, ratio: float = EXPLODE_RATIO
    ) -> None:
        self.first = first if first is not None and math.isfinite(first) else None
        self.minimize = minimize
        self.ratio = float(ratio)
        self.why: str | None = None

    def __call__(self, step: int, value: float) -> bool:
        if not math.isfinite(value):
            self.why = f"loss {value} at step {step}"
        elif self.first is None:
            self.first = float(value)
        elif self.minimize and self.first > 0 and value > self.ratio * self.first:
            self.why = (
                f"loss {value:.4g} at step {step} exploded above {self.ratio:g} x its first "
                f"reported loss {self.first:.4g}"
            )
        return self.why is not None

    @classmethod
    def of(cls, study: optuna.Study, frozen: FrozenTrial) -> DivergenceCheck:
        """A check for ``frozen`` starting from its inherited curve's first value."""
        values = frozen.intermediate_values
        first = values[min(values)] if values else None
        minimize = study.direction != optuna.study.StudyDirection.MAXIMIZE
        return cls(first, minimize=minimize)
