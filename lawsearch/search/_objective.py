"""The objective a ``RetrievalRerank`` runs when it is given a ``Trainer`` (not a function).

Each report goes to ``trial.report`` (and the study's pruner when ``prune``), a
diverged loss stops the trainer and raises ``Diverged``, and each checkpoint the
trainer writes while training is recorded in the trial (``record_checkpoint``) so
that a retry resumes from it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import optuna
from optuna.trial import Trial

from lawsearch.optuna import _compat as compat
from lawsearch.search._faults import (
    Diverged,
    DivergenceCheck,
    record_checkpoint,
    with_micro_batch,
)
from lawsearch.search._propose import apply_proposal
from lawsearch.train._protocol import takes_on_checkpoint

__all__ = ["Objective", "trainer_objective", "training_config"]

#: ``objective(trial, budget_steps, resume_from) -> checkpoint`` (it calls ``trial.report``)
Objective = Callable[[Trial, int, "str | None"], "str | None"]


def training_config(trial: Trial, trainer: Any, suggested: Mapping[str, Any]) -> dict[str, Any]:
    """What ``trial`` trains: ``suggested`` with its law-proposed schedule and its micro-batch.

    A law-proposed schedule (``apply_proposal``) replaces the one the source's
    parameters suggest; a retry after an out-of-memory error trains at its smaller
    micro-batch (``with_micro_batch``). Both are recorded in the trial's attrs.
    """
    return dict(with_micro_batch(trial, trainer, apply_proposal(trial, suggested)))


def trainer_objective(trainer: Any, config: Any, prune: bool) -> Objective:
    """``objective(trial, budget, resume_from)`` training ``config(trial)`` with ``trainer``."""
    extra = takes_on_checkpoint(trainer)

    def objective(trial: Trial, budget_steps: int, resume_from: str | None) -> str | None:
        diverged = DivergenceCheck.of(trial.study, compat.trial_now(trial.study, trial))

        def report(step: int, value: float, extras: Mapping[str, Any]) -> bool:
            trial.report(float(value), int(step))
            return diverged(int(step), float(value)) or (prune and trial.should_prune())

        def on_checkpoint(step: int, checkpoint: str) -> None:
            record_checkpoint(trial, step, checkpoint)

        kw: dict[str, Any] = {"on_checkpoint": on_checkpoint} if extra else {}
        kw.update(budget_steps=budget_steps, resume_from=resume_from, report=report)
        res = trainer.train(training_config(trial, trainer, config(trial)), **kw)
        if diverged.why is not None:
            raise Diverged(diverged.why)
        if res.stopped:
            raise optuna.TrialPruned(f"pruned at step {res.final_step}")
        return res.checkpoint

    return objective
