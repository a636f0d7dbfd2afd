"""Shared fixtures: recorded data and PostgreSQL, skipping off-CI and failing on CI."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lawsearch.recorded import SharedDataMissing, shared_data_dir

ON_CI = os.environ.get("CI", "").lower() == "true"
POSTGRES_URL = os.environ.get(
    "LAWSEARCH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)


def _missing(reason: str) -> None:
    if ON_CI:
        pytest.fail(f"{reason} (CI=true, so this is a failure, not a skip)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The recorded-data folder; skip locally (fail on CI) when absent."""
    try:
        return shared_data_dir()
    except SharedDataMissing as exc:
        _missing(str(exc))
        raise


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A reachable PostgreSQL URL; skip locally (fail on CI) when unreachable."""
    try:
        import sqlalchemy

        engine = sqlalchemy.create_engine(POSTGRES_URL)
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:  # any driver/connection error means "not here"
        _missing(f"PostgreSQL not reachable at {POSTGRES_URL}: {exc}")
    return POSTGRES_URL


@pytest.fixture(scope="session")
def searched(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, object, str]:
    """A tiny study searched by ``lawsearch run``'s code path: (study, config, printed output).

    Shared by the report and dashboard tests (``tests/report/_study.py``).
    """
    from tests.report._study import run_tiny_study

    return run_tiny_study(tmp_path_factory.mktemp("searched"))
