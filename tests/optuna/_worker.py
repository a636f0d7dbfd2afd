"""A worker process for the multi-process pruner test: ``python -m tests.optuna._worker PATH N``."""

from __future__ import annotations

import sys

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from lawsearch.optuna import LawPruner
from tests.optuna._synthetic import TARGET, level_objective


def main(path: str, n_trials: int) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(path))
    pruner = LawPruner(target_step=TARGET, warmup_steps=16, min_points=None, min_trials=2)
    study = optuna.load_study(study_name="multi", storage=storage, pruner=pruner)
    study.optimize(level_objective, n_trials=n_trials)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
