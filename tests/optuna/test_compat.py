"""Every wrapper of Optuna's private API works on real storages (the supported range's canary)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from lawsearch.optuna import _compat as compat

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _exercise(study: optuna.Study) -> None:
    trial = compat.ask(study)
    # ids: the storage addresses the trial the study handed out
    assert compat.storage(study) is study._storage
    assert compat.study_id(study) == study._study_id
    tid = compat.trial_id(trial)
    compat.storage(study).set_trial_user_attr(tid, "k", 1.5)
    trial.report(2.0, 3)
    now = compat.trial_now(study, trial)
    assert now.user_attrs["k"] == 1.5 and now.intermediate_values == {3: 2.0}
    assert compat.trial_id(now) == tid
    assert compat.trial_by_number(study, trial.number).number == trial.number
    cached = compat.cached_trials(study, states=(TrialState.RUNNING,))
    assert [t.number for t in cached] == [trial.number]
    with compat.heartbeat(study, trial):
        pass
    study.tell(trial, 1.0)
    _note_of_a_finished_trial(study, compat.trial_by_number(study, trial.number))


def _note_of_a_finished_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    pytest.importorskip("optuna_dashboard")
    from optuna_dashboard._note import get_note_from_system_attrs

    def note() -> dict:
        attrs = study._storage.get_study_system_attrs(study._study_id)
        return get_note_from_system_attrs(attrs, trial._trial_id)

    assert compat.save_trial_note(study, trial, "**5.0** [4.9, 5.1]" * 200)  # split in chunks
    assert note() == {"version": 1, "body": "**5.0** [4.9, 5.1]" * 200}
    assert not compat.save_trial_note(study, trial, "**5.0** [4.9, 5.1]" * 200)  # unchanged
    assert compat.save_trial_note(study, trial, "shorter")
    assert note() == {"version": 2, "body": "shorter"}


def test_journal_file(tmp_path: Path) -> None:
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "journal.log")))
    study = optuna.create_study(storage=storage)
    assert not compat.heartbeat_enabled(storage)
    assert compat.stale_trial_ids(study) == []  # no heartbeats: nothing is ever stale
    _exercise(study)


def test_in_memory() -> None:
    _exercise(optuna.create_study())


@pytest.mark.postgres
def test_postgresql_heartbeat_beats(postgres_url: str) -> None:
    """On PostgreSQL the heartbeat context really records beats for an ask()ed trial."""
    name = f"lawsearch-test-compat-{uuid.uuid4().hex}"
    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        storage = RDBStorage(postgres_url, heartbeat_interval=1, grace_period=2)
    try:
        assert compat.heartbeat_enabled(storage)
        study = optuna.create_study(storage=storage, study_name=name)
        _exercise(study)
        trial = compat.ask(study)
        tid = compat.trial_id(trial)
        with compat.heartbeat(study, trial):
            time.sleep(2.5)
            assert storage._get_stale_trial_ids(compat.study_id(study)) == []
            assert compat.stale_trial_ids(study) == []
        time.sleep(2.5)  # no beats any more: the trial goes stale
        assert storage._get_stale_trial_ids(compat.study_id(study)) == [tid]
        assert compat.stale_trial_ids(study) == [tid]
    finally:
        optuna.delete_study(study_name=name, storage=storage)
        storage.remove_session()
        storage.engine.dispose()
