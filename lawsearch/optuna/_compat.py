"""The only place lawsearch touches Optuna's private API.

lawsearch supports ``optuna>=5.0,<6`` (``pyproject.toml``). The names below are
private in Optuna 5; each wrapper says which one it uses and why no public API
serves. If a future 5.x renames one, this module (and ``tests/optuna/test_compat.py``,
which exercises every wrapper on a real storage) is all that changes.

The storage *methods* called through ``storage(study)`` (``get_trial``,
``set_trial_user_attr``, ``set_trial_state_values``, ...) are public
``BaseStorage`` API; only reaching the storage object is private.
"""

from __future__ import annotations

import warnings
from collections.abc import Container
from typing import TYPE_CHECKING, Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, Trial, TrialState

if TYPE_CHECKING:
    from optuna.artifacts._protocol import ArtifactStore as ArtifactStore
else:
    ArtifactStore = Any

__all__ = [
    "ArtifactStore",
    "ask",
    "cached_trials",
    "heartbeat",
    "heartbeat_enabled",
    "save_trial_note",
    "stale_trial_ids",
    "storage",
    "study_id",
    "trial_by_number",
    "trial_id",
    "trial_now",
]


def storage(study: optuna.Study) -> BaseStorage:
    """The study's storage (``Study._storage``).

    Why private: ``Study`` has no public accessor, and lawsearch must write attrs
    of trials it holds only as ``FrozenTrial`` (the pruner and the search see
    those), read a trial's latest state, and add or claim trials by id.
    """
    return study._storage


def study_id(study: optuna.Study) -> int:
    """The storage id of the study (``Study._study_id``), which storage methods take."""
    return int(study._study_id)


def trial_id(trial: Trial | FrozenTrial) -> int:
    """The storage id of a trial (``Trial._trial_id`` / ``FrozenTrial._trial_id``).

    Why private: storage methods address trials by id, not by number, and neither
    trial class exposes it publicly.
    """
    return int(trial._trial_id)


def trial_now(study: optuna.Study, trial: Trial | FrozenTrial) -> FrozenTrial:
    """The trial as the storage holds it now (attrs and reports written since it was read)."""
    return storage(study).get_trial(trial_id(trial))


def trial_by_number(study: optuna.Study, number: int) -> FrozenTrial:
    """The trial of ``study`` with trial number ``number``, read from the storage."""
    st = storage(study)
    return st.get_trial(st.get_trial_id_from_study_id_trial_number(study_id(study), number))


def cached_trials(
    study: optuna.Study, *, states: Container[TrialState] | None = None
) -> list[FrozenTrial]:
    """The study's trials, read once per sampling call (``Study._get_trials(use_cache=True)``).

    Why private: inside ``BaseSampler`` methods Optuna's own samplers read trials
    through this per-thread cache so that one proposal does not re-read a
    remote storage several times; ``Study.get_trials`` has no cache flag.
    """
    return study._get_trials(deepcopy=False, states=states, use_cache=True)


def heartbeat_enabled(store: BaseStorage) -> bool:
    """Whether ``store`` records heartbeats (``optuna.storages._heartbeat``, private)."""
    from optuna.storages._heartbeat import is_heartbeat_enabled

    return bool(is_heartbeat_enabled(store))


def heartbeat(study: optuna.Study, trial: Trial | FrozenTrial) -> Any:
    """A context manager beating for ``trial`` while it trains (a no-op without heartbeats).

    Why private (``optuna.storages._heartbeat.get_heartbeat_thread``): Optuna
    beats only for trials run by ``Study.optimize``; trials driven through
    ``ask()``/``tell()``, as the search drives them, need the thread started by
    the caller.
    """
    from optuna.storages._heartbeat import get_heartbeat_thread

    return get_heartbeat_thread(trial_id(trial), storage(study))


def stale_trial_ids(study: optuna.Study) -> list[int]:
    """Ids of the study's RUNNING trials whose heartbeat is older than the grace period.

    Why private (``BaseHeartbeat._get_stale_trial_ids``): the public
    ``optuna.storages.fail_stale_trials`` fails them *before* its callback queues a
    retry, and in that moment a peer may see the rung finished and cut it without
    the lineage; lawsearch queues the retry first (``lawsearch.search._faults``).
    """
    from optuna.storages._heartbeat import BaseHeartbeat

    store = storage(study)
    if not isinstance(store, BaseHeartbeat) or not heartbeat_enabled(store):
        return []
    return [int(t) for t in store._get_stale_trial_ids(study_id(study))]


def ask(study: optuna.Study) -> Trial:
    """``study.ask()`` without Optuna's "Heartbeat ... supposed to be used with Study.optimize".

    On a storage with heartbeats Optuna warns at every ``ask()``, because only
    ``optimize`` beats for its trials. lawsearch beats for the trials it asks
    for itself (``heartbeat``), so the warning is silenced for this call only.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="Heartbeat of storage is supposed to be used", category=UserWarning
        )
        return study.ask()


def save_trial_note(study: optuna.Study, trial: Trial | FrozenTrial, body: str) -> bool:
    """Set the optuna-dashboard note (Markdown) of a trial in any state; False if unchanged.

    Why private (``optuna_dashboard._note``): the public ``optuna_dashboard.save_note``
    takes a live ``optuna.Trial`` (it reads ``trial.storage`` and ``trial._trial_id``),
    but a trial's note says how the search decided about it, which is known only
    after the trial finished and its rung was cut. The note lives in study system
    attrs (writable at any time), written by the same function ``save_note`` calls.
    """
    from optuna_dashboard._note import (
        get_note_from_system_attrs,
        note_ver_key,
        save_note_with_version,
    )

    st, sid, tid = storage(study), study_id(study), trial_id(trial)
    attrs = st.get_study_system_attrs(sid)
    if get_note_from_system_attrs(attrs, tid)["body"] == body:
        return False
    save_note_with_version(st, sid, tid, int(attrs.get(note_ver_key(tid), 0)) + 1, body)
    return True
