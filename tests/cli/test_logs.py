"""What a search writes into a log: one line per event, no carriage returns, no Optuna noise.

The search runs in a subprocess whose stdout and stderr are pipes (as under
``nohup``, a scheduler or ``| tee``), with ``lawsearch run``'s code path and the
synthetic trainer of ``tests/cli/test_run.py``.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.cli.test_run import _write_study

SCRIPT = textwrap.dedent(
    """
    import sys
    from lawsearch.cli._run import execute
    from lawsearch.config import load_study
    from tests.cli.test_run import SyntheticTrainer

    cfg = load_study(sys.argv[1])
    sys.exit(execute(cfg, trainer=SyntheticTrainer(cfg.train.eval_every), progress=True))
    """
)


def _run_piped(study: Path) -> subprocess.CompletedProcess[str]:
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(study)],
        cwd=root,
        capture_output=True,
        timeout=600,
        check=False,
    )
    # bytes decoded by hand: text mode would turn each "\r" into a newline
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode()
    )


def _check_log(proc: subprocess.CompletedProcess[str]) -> list[str]:
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr and "\r" not in proc.stdout
    assert "Heartbeat of storage" not in proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("search: ")]
    # one line per event: each candidate and continuation starts once, and a last line
    # the pick reached the full budget: its loss is observed there, not predicted
    assert lines and lines[-1].startswith(
        ("search: done | best pred ", "search: done | best observed@")
    )
    assert len(lines) == len(set(lines)) and len(lines) < 40, proc.stderr
    assert any(", trial 0 |" in line for line in lines)
    return lines


@pytest.mark.slow
def test_a_piped_log_gets_one_line_per_event(tmp_path: Path) -> None:
    proc = _run_piped(_write_study(tmp_path))
    lines = _check_log(proc)
    assert any(line.startswith("search: screen 0->40, trial ") for line in lines)
    assert any(line.startswith("search: continue 40->200, trial ") for line in lines)


@pytest.mark.slow
@pytest.mark.postgres
def test_no_heartbeat_warning_on_postgres(tmp_path: Path, postgres_url: str) -> None:
    """PostgreSQL has heartbeats; lawsearch beats for the trials it asks for, so Optuna's
    "Heartbeat of storage is supposed to be used with Study.optimize" must not print."""
    import sqlalchemy

    name = "i_badinput_logs"
    admin = sqlalchemy.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS {name}"))
        conn.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    url = postgres_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        proc = _run_piped(_write_study(tmp_path, study=f'name = "tiny"\nstorage = "{url}"'))
        _check_log(proc)
    finally:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()
