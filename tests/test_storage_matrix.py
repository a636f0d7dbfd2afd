"""The storage matrix: every ``lawsearch:`` attr a real search writes round-trips on every storage.

One small search (the study wiring of ``lawsearch run``: ``LawSampler``,
``LawPruner``, ``RetrievalRerank`` with the synthetic trainer of
``tests/cli/test_run.py``) runs on each storage: in-memory (the values exactly
as written: nothing is serialised), SQLite (one process), a journal file and
PostgreSQL. The study is read back through a fresh storage object, and every
trial's ``lawsearch:`` user and system attrs and every study system attr must
equal the in-memory run's and be strict JSON (no NaN, no infinity, no numpy
types), which is what the dashboard and every storage read back.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest

from lawsearch.config import load_study
from lawsearch.optuna import _attrs
from lawsearch.optuna import _compat as compat
from lawsearch.study import build_pruner, build_sampler, build_search
from tests.cli.test_run import SyntheticTrainer, _write_study

PREFIX = _attrs.PREFIX


def _search(cfg: Any, storage: Any) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=cfg.name,
        storage=storage,
        direction="minimize",
        sampler=build_sampler(cfg, worker=0),
        pruner=build_pruner(cfg),
    )
    build_search(cfg, trainer=SyntheticTrainer(cfg.train.eval_every)).run(study)


def _attrs_of(storage: Any, name: str) -> dict[str, Any]:
    """Every lawsearch attr of the study, as the storage reads it back."""
    study = optuna.load_study(study_name=name, storage=storage)
    out: dict[str, Any] = {
        "study system": {
            k: v
            for k, v in compat.storage(study).get_study_system_attrs(compat.study_id(study)).items()
            if k.startswith(PREFIX)
        },
        "study user": {k: v for k, v in study.user_attrs.items() if k.startswith(PREFIX)},
    }
    for t in study.get_trials(deepcopy=False):
        out[f"trial {t.number}"] = {
            "state": t.state.name,
            "user": {k: v for k, v in t.user_attrs.items() if k.startswith(PREFIX)},
            "system": {k: v for k, v in t.system_attrs.items() if k.startswith(PREFIX)},
        }
    return out


def _strict_json(value: Any, where: str) -> None:
    """Plain JSON types only, finite numbers (the dashboard's and every storage's format)."""
    if isinstance(value, dict):
        for k, v in value.items():
            assert isinstance(k, str), f"{where}: key {k!r} is not a string"
            _strict_json(v, f"{where}.{k}")
    elif isinstance(value, list | tuple):
        assert isinstance(value, list) or where.count(".") == 0, where
        for i, v in enumerate(value):
            _strict_json(v, f"{where}[{i}]")
    else:
        assert value is None or type(value) in (bool, int, float, str), (
            f"{where}: {type(value).__name__} {value!r} is not a plain JSON value"
        )
        if isinstance(value, float):
            assert math.isfinite(value), f"{where}: {value!r} is not valid JSON"


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, Any]]:
    """The search on an in-memory storage: the attrs exactly as the code wrote them."""
    cfg = load_study(_write_study(tmp_path_factory.mktemp("memory")))
    storage = optuna.storages.InMemoryStorage()
    _search(cfg, storage)
    return cfg, _attrs_of(storage, cfg.name)


def test_a_real_search_writes_every_kind_of_attr_as_strict_json(
    reference: tuple[Any, dict[str, Any]],
) -> None:
    _, written = reference
    json.dumps(written, allow_nan=False)  # raises on NaN or infinity
    for where, attrs in written.items():
        _strict_json(attrs, where)
    keys = {k for t in written.values() if "user" in t for k in t["user"]}
    # the search really wrote predictions, lineages, continuations and what trained
    for key in (
        _attrs.PREDICTED_FINAL,
        _attrs.FIT_STATUS,
        _attrs.ROOT,
        _attrs.PARENT,
        _attrs.RESUME_STEP,
        _attrs.CHECKPOINT,
        _attrs.SCHEDULE,
        _attrs.LR,
        _attrs.mixture_weight_key(_attrs.DEFAULT_MIXTURE, "a"),
    ):
        assert key in keys, key


def _close(storage: Any) -> None:
    """Close an RDB storage's connections (psycopg warns about connections left open)."""
    if isinstance(storage, optuna.storages.RDBStorage):
        storage.remove_session()
        storage.engine.dispose()


def _round_trip(
    kind: str,
    name: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    write: Callable[[Any, str], None],
) -> dict[str, Any]:
    """``write(storage, name)`` on a fresh ``kind`` storage; the attrs a new reader sees.

    On PostgreSQL (the shared test database) the study ``name`` is deleted before and
    after; SQLite and the journal file live in ``tmp_path``.
    """
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    def open_storage() -> Any:
        if kind == "journal":
            return JournalStorage(JournalFileBackend(str(tmp_path / "journal.log")))
        if kind == "postgresql":
            return optuna.storages.RDBStorage(request.getfixturevalue("postgres_url"))
        return optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'study.db'}")

    storage = open_storage()
    if name in optuna.study.get_all_study_names(storage):  # a run that died before its cleanup
        optuna.delete_study(study_name=name, storage=storage)
    reader = None
    try:
        write(storage, name)
        reader = open_storage()  # a fresh storage object: nothing from the writer's cache
        return _attrs_of(reader, name)
    finally:
        if kind == "postgresql":
            optuna.delete_study(study_name=name, storage=storage)
        _close(storage)
        _close(reader)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "journal", "postgresql"])
def test_attrs_round_trip_on_every_storage(
    kind: str,
    reference: tuple[Any, dict[str, Any]],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    import dataclasses

    cfg, written = reference
    name = "i_badinput_storage_matrix" if kind == "postgresql" else cfg.name

    def write(storage: Any, name: str) -> None:
        _search(dataclasses.replace(cfg, study=dataclasses.replace(cfg.study, name=name)), storage)

    assert _round_trip(kind, name, tmp_path, request, write) == written


def _proposing_search(storage: Any, name: str) -> None:
    """The search of ``tests/search/test_propose.py``: a law-proposed schedule is trained."""
    from lawsearch.search._propose import ScheduleProposer
    from tests.search.test_propose import _search as propose_search

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler(seed=1)
    )
    propose_search(ScheduleProposer(1, final_lr_ratio=0.1, min_gain=0.0)).run(study)


@pytest.fixture(scope="module")
def proposal_reference() -> dict[str, Any]:
    """The proposing search on an in-memory storage: its attrs exactly as written."""
    storage = optuna.storages.InMemoryStorage()
    _proposing_search(storage, "propose")
    return _attrs_of(storage, "propose")


def test_a_proposal_writes_its_attrs_as_strict_json(proposal_reference: dict[str, Any]) -> None:
    json.dumps(proposal_reference, allow_nan=False)
    for where, attrs in proposal_reference.items():
        _strict_json(attrs, where)
    keys = {k for t in proposal_reference.values() if "user" in t for k in t["user"]}
    for key in (_attrs.PROPOSED_SCHEDULE, _attrs.PROPOSED_FINAL, _attrs.PROPOSED_FROM):
        assert key in keys, key
    assert proposal_reference["study user"][_attrs.PROPOSAL]["proposed"] == 1


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "journal", "postgresql"])
def test_proposal_attrs_round_trip_on_every_storage(
    kind: str, proposal_reference: dict[str, Any], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    name = "i_sched_study_storage_matrix" if kind == "postgresql" else "propose"
    assert _round_trip(kind, name, tmp_path, request, _proposing_search) == proposal_reference
