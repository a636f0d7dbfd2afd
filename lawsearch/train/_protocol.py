"""The trainer contract: ``Trainer.train(config, *, budget_steps, resume_from, report)``.

A trainer knows nothing of Optuna. It trains (or replays) one configuration up
to ``budget_steps`` optimizer steps, calls ``report(step, value, extras)`` after
each evaluation, and returns a :class:`TrainResult` whose ``checkpoint`` lets a
later call continue from where this one stopped.

The ``report`` callback is the only channel back to the search:

* it returns ``True`` to ask the trainer to stop now (e.g. the trial was
  pruned); the trainer then returns promptly with ``stopped=True``;
* it returns ``False``/``None`` to continue;
* it may raise (e.g. ``optuna.TrialPruned``); the trainer lets the exception
  propagate after leaving no half-written checkpoint behind.

A trainer that writes checkpoints while it trains (every ``checkpoint_every``
steps) takes an optional ``on_checkpoint(step, checkpoint)`` keyword and calls it
after each one is complete on disk (written to a temporary name, then renamed):
the search records it in the trial, so a retry after a crash resumes from the
last one instead of the trial's start. Trainers without it still work; their
retries restart from where the trial started.

A trainer that accumulates gradients over micro-batches takes ``config["micro_batch"]``
(sequences per forward/backward pass, dividing its batch size): the search
passes a smaller one to the retry of a trial that ran out of memory, so the
retry trains the same effective batch in less memory.

``step`` is the *optimizer step* (an int that fits in 32 bits), ``value`` the
evaluation loss (lower is better) and ``extras`` plain JSON-safe floats/strings
(per-domain losses, tokens seen, learning rate, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "CheckpointFn",
    "ReportFn",
    "TrainResult",
    "Trainer",
    "check_micro_batch",
    "never_stop",
    "smaller_micro_batch",
    "takes_on_checkpoint",
]


@runtime_checkable
class ReportFn(Protocol):
    """``report(step, value, extras) -> stop?`` called after each evaluation."""

    def __call__(self, step: int, value: float, extras: Mapping[str, Any]) -> bool | None: ...


@runtime_checkable
class CheckpointFn(Protocol):
    """``on_checkpoint(step, checkpoint)``: a resumable checkpoint of ``step`` now exists."""

    def __call__(self, step: int, checkpoint: str) -> None: ...


def never_stop(step: int, value: float, extras: Mapping[str, Any]) -> bool:
    """A ``report`` that records nothing and never stops the run."""
    return False


@dataclass(frozen=True)
class TrainResult:
    """What one ``Trainer.train`` call did.

    Attributes:
        final_step: the last optimizer step reached (the resume step of ``checkpoint``).
        final_value: the last reported value (``nan`` if nothing was reported).
        steps: every reported step of this call, in order.
        values: the value reported at each of ``steps``.
        checkpoint: an opaque token (a path for real trainers, a string for
            replay) to pass back as ``resume_from``; ``None`` if the trainer
            cannot resume.
        compute: compute consumed by *this call only* (never double counted
            on resume), in the trainer's ``compute_unit``.
        compute_unit: ``"steps"``, ``"epochs"``, ``"tokens"`` or ``"flops"``.
        stopped: ``True`` when ``report`` asked to stop before ``budget_steps``.
        exhausted: ``True`` when no more steps exist beyond ``final_step`` (the
            recorded curve or the configured run ended before the budget).
        extras: trainer-specific plain values (e.g. per-domain final losses).
    """

    final_step: int
    final_value: float
    steps: tuple[int, ...] = ()
    values: tuple[float, ...] = ()
    checkpoint: str | None = None
    compute: float = 0.0
    compute_unit: str = "steps"
    stopped: bool = False
    exhausted: bool = False
    extras: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Trainer(Protocol):
    """Anything that trains a configuration for a step budget and can resume.

    ``config`` is a plain mapping (Optuna ``trial.params`` plus fixed study
    settings, e.g. mixture weights or a recorded ``config_id``).
    ``budget_steps`` is the *absolute* optimizer step to stop at: resuming a
    checkpoint at step 500 with ``budget_steps=2000`` trains steps 501..2000
    and reports only those.
    """

    def train(
        self,
        config: Mapping[str, Any],
        *,
        budget_steps: int,
        resume_from: str | None = None,
        report: ReportFn,
    ) -> TrainResult: ...


def takes_on_checkpoint(trainer: Any) -> bool:
    """Whether ``trainer.train`` accepts the optional ``on_checkpoint`` keyword."""
    import inspect

    try:
        params = inspect.signature(trainer.train).parameters
    except (TypeError, ValueError):
        return False
    return "on_checkpoint" in params or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
    )


def check_micro_batch(micro_batch: Any, batch_size: int, name: str) -> None:
    """Raise a ``ValueError`` naming ``name`` and the fix unless ``micro_batch`` divides it."""
    if (
        isinstance(micro_batch, bool)
        or not isinstance(micro_batch, int)
        or micro_batch < 1
        or batch_size % micro_batch
    ):
        divisors = [d for d in range(1, batch_size + 1) if batch_size % d == 0]
        raise ValueError(
            f"`{name}` must be a positive integer dividing the batch size {batch_size} (each "
            f"step accumulates batch_size / micro_batch passes); got {micro_batch!r}. Use one "
            f"of {divisors}, or leave it out to use the whole batch at once."
        )


def smaller_micro_batch(micro_batch: int, batch_size: int) -> int | None:
    """The largest divisor of ``batch_size`` at most half ``micro_batch``; None at 1.

    The micro-batch a trial that ran out of memory is retried with (same effective batch).
    """
    if micro_batch <= 1:
        return None
    return max(d for d in range(1, micro_batch // 2 + 1) if batch_size % d == 0)
