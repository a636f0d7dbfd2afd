"""Pruner attrs are plain floats/str and survive every storage Optuna offers."""

from __future__ import annotations

import math
import subprocess
import sys
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from lawsearch.optuna import LawPruner, attrs
from tests.optuna._synthetic import TARGET, level_objective

optuna.logging.set_verbosity(optuna.logging.WARNING)

NUMERIC = (attrs.PREDICTED_FINAL, attrs.PREDICTED_LO, attrs.PREDICTED_HI, attrs.PREDICTED_AT_STEP)


def _run_and_check(storage: optuna.storages.BaseStorage | str, name: str) -> None:
    pruner = LawPruner(target_step=TARGET, warmup_steps=16, min_points=None, min_trials=2)
    study = optuna.create_study(storage=storage, study_name=name, pruner=pruner)
    for lv in (1.0, 1.05, 3.0):
        study.enqueue_trial({"level": lv})
    study.optimize(level_objective, n_trials=3)
    reloaded = optuna.load_study(study_name=name, storage=storage)
    trials = reloaded.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2 + [TrialState.PRUNED]
    for t in trials:
        ua = t.user_attrs
        for key in NUMERIC:
            assert type(ua[key]) is float and math.isfinite(ua[key]), (key, ua[key])
        assert ua[attrs.LAW] == "power"
        assert ua[attrs.FIT_STATUS] in ("ok", "degenerate")
        rungs = [k for k in ua if k.startswith(attrs.RUNG_PREFIX)]
        assert rungs and all(type(ua[k]) is float for k in rungs)


def test_in_memory() -> None:
    _run_and_check(optuna.storages.InMemoryStorage(), "mem")


@pytest.mark.slow  # one SQLite transaction per attr write
def test_sqlite(tmp_path: Path) -> None:
    _run_and_check(f"sqlite:///{tmp_path / 'study.db'}", "sqlite")


def test_journal_file(tmp_path: Path) -> None:
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "journal.log")))
    _run_and_check(storage, "journal")


@pytest.mark.postgres
def test_postgresql(postgres_url: str) -> None:
    name = f"lawsearch-test-attrs-{uuid.uuid4().hex}"
    storage = RDBStorage(postgres_url)
    try:
        _run_and_check(storage, name)
    finally:
        optuna.delete_study(study_name=name, storage=storage)
        storage.remove_session()
        storage.engine.dispose()


@pytest.mark.slow
def test_two_processes_share_predictions(tmp_path: Path) -> None:
    path = str(tmp_path / "journal.log")
    storage = JournalStorage(JournalFileBackend(path))
    study = optuna.create_study(storage=storage, study_name="multi")
    for lv in (1.0, 1.02, 1.04, 1.06, 4.0, 4.2, 4.4, 4.6):
        study.enqueue_trial({"level": lv})
    root = Path(__file__).resolve().parents[2]
    workers = [
        subprocess.Popen([sys.executable, "-m", "tests.optuna._worker", path, "4"], cwd=root)
        for _ in range(2)
    ]
    for w in workers:
        assert w.wait(timeout=300) == 0
    trials = optuna.load_study(study_name="multi", storage=storage).get_trials()
    assert len(trials) == 8
    assert TrialState.FAIL not in [t.state for t in trials]
    states = {t.params["level"]: t.state for t in trials}
    # Which of the near-best levels (1.02-1.06, within 2-6% of the best) survive depends on
    # which peers the other process had reported at each rung; the default keeps 30% at a
    # rung. The best always completes, and the far-worse ones, which start after the good
    # ones have reported in either process, are pruned from the shared predictions.
    assert states[1.0] == TrialState.COMPLETE
    assert sum(states[lv] == TrialState.PRUNED for lv in (4.2, 4.4, 4.6)) >= 2
    for t in trials:
        assert type(t.user_attrs[attrs.PREDICTED_FINAL]) is float
