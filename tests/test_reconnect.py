"""PostgreSQL restarted mid-study: calls reconnect with backoff, or stop with a clear message.

On a server of the test's own (``tests._pg_server.PrivateServer``: restarting the
shared one would break whatever else uses it), each test in its own database:

* a restart mid-call: the call succeeds after reconnecting (seconds and tries
  printed), a trial created while the server is down is created once, and no
  live trial is taken for stale right after the server is back;
* a server that stays down: ``StorageUnavailable`` after ``reconnect_timeout``,
  the password hidden; ``lawsearch worker`` exits 1 with the message, no traceback;
* a commit whose answer is lost (``CommitDropper``): plain Optuna creates the
  trial twice, lawsearch once; a commit that never arrived is redone once;
* two workers and a 3 s restart mid-study: the study finishes, every lineage
  ranked once, no trial failed by the restart.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy
from optuna.study import StudyDirection
from optuna.trial import TrialState

from lawsearch._reconnect import ReconnectingRDBStorage, StorageUnavailable, redacted
from lawsearch.optuna import _attrs
from lawsearch.optuna import _compat as compat
from lawsearch.search import RetrievalRerank
from lawsearch.search._faults import fail_and_retry, is_candidate
from tests._pg_server import CommitDropper, PrivateServer, drop_database, server_binaries
from tests.conftest import _missing

optuna.logging.set_verbosity(optuna.logging.WARNING)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server() -> Iterator[PrivateServer]:
    """A PostgreSQL server of this module's own (skip locally, fail on CI, when absent)."""
    bindir = server_binaries()
    if bindir is None:
        _missing(
            "PostgreSQL's server programs (initdb, pg_ctl) are not installed; the restart "
            "tests start and restart a server of their own"
        )
    assert bindir is not None
    srv = PrivateServer(bindir)
    try:
        srv.start()
        yield srv
    finally:
        srv.close()


@contextlib.contextmanager
def _new_database(server: PrivateServer) -> Iterator[str]:
    """A new database on ``server``, dropped afterwards (the server is left running)."""
    name = f"lawsearch_i_reconnect_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(server.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    try:
        yield name
    finally:
        server.ensure_running()
        admin.dispose()  # its pooled connection may have died with a restart
        drop_database(admin, name)
        admin.dispose()


@pytest.fixture
def database(server: PrivateServer) -> Iterator[str]:
    with _new_database(server) as name:
        yield name


def _close(storage: optuna.storages.RDBStorage) -> None:
    storage.remove_session()
    storage.engine.dispose()


def _plain(url: str, **kw: Any) -> optuna.storages.RDBStorage:
    """Optuna's own RDB storage, the baseline."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(url, **kw)


def _storage(url: str, events: list[str], **kw: Any) -> ReconnectingRDBStorage:
    kw.setdefault("heartbeat_interval", 1)
    kw.setdefault("grace_period", 3)
    return ReconnectingRDBStorage(url, on_event=events.append, **kw)


def _later(seconds: float, action: Any) -> threading.Thread:
    def run() -> None:
        time.sleep(seconds)
        action()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.postgres
def test_a_restart_mid_call_is_ridden_out(server: PrivateServer, database: str) -> None:
    events: list[str] = []
    storage = _storage(server.url(database), events, reconnect_timeout=60)
    try:
        study = optuna.create_study(study_name="restart", storage=storage)
        for x in range(3):
            study.add_trial(optuna.trial.create_trial(value=float(x)))
        running = compat.ask(study)
        storage.record_heartbeat(compat.trial_id(running))
        # the server goes down (ending the pooled connection: the ping before its reuse finds
        # it dead, and new connections are refused), stays down 2 s, and comes back
        server.stop()
        ready: list[float] = []
        back = _later(2.0, lambda: (server.start(), ready.append(time.monotonic())))
        start = time.monotonic()
        trials = study.get_trials(deepcopy=False)  # fails, waits, reconnects
        end = time.monotonic()
        seconds = end - start
        back.join()
        assert len(trials) == 4
        (outage,) = storage.outages
        assert outage.failed_tries >= 2
        assert 2.0 <= seconds < 2.0 + 8.0 + 5.0
        assert events[0].startswith(f"lost the connection to {server.url(database)} (")
        assert events[1].startswith(f"reconnected to {server.url(database)} after ")
        print("events:", *events, sep="\n  ")
        print(
            "restart mid-call:",
            json.dumps(
                {
                    "server_down_s": round(ready[0] - start, 2),
                    "call_s": round(seconds, 2),
                    "after_server_ready_s": round(end - ready[0], 2),
                    "outage_s": round(outage.seconds, 2),
                    "failed_tries": outage.failed_tries,
                }
            ),
        )
        # a trial created while the server is down is created once
        server.stop()
        back = _later(1.5, server.start)
        before = len(trials)
        new = compat.ask(study)
        back.join()
        numbers = sorted(t.number for t in study.get_trials(deepcopy=False))
        assert numbers == list(range(before + 1)) and new.number == before
        # the running trial's beats stopped while the server was down: right after the
        # restart it is not stale, for this process nor for one that never saw the outage
        time.sleep(3.5)  # past the grace period since its last beat
        peer = _storage(server.url(database), [])
        plain = _plain(server.url(database), heartbeat_interval=1, grace_period=3)
        try:
            assert storage._get_stale_trial_ids(compat.study_id(study)) == []
            assert peer._get_stale_trial_ids(compat.study_id(study)) == []
            # plain Optuna would fail it as stale now
            assert plain._get_stale_trial_ids(compat.study_id(study)) == [compat.trial_id(running)]
        finally:
            _close(peer)
            _close(plain)
    finally:
        _close(storage)


@pytest.mark.postgres
def test_a_server_that_stays_down_ends_the_call_with_a_clear_message(
    server: PrivateServer, database: str
) -> None:
    url = server.url(database, password="s3cret")
    storage = _storage(url, [], reconnect_timeout=3)
    try:
        study = optuna.create_study(study_name="down", storage=storage)
        server.stop()
        start = time.monotonic()
        with pytest.raises(StorageUnavailable) as caught:
            study.get_trials(deepcopy=False)
        seconds = time.monotonic() - start
    finally:
        server.ensure_running()
        _close(storage)
    text = str(caught.value)
    print(f"server stays down: StorageUnavailable after {seconds:.2f} s: {text}")
    assert 3.0 <= seconds < 3.0 + 2.0, seconds
    assert "s3cret" not in text and redacted(url) in text and ":***@" in text
    assert "could not reconnect for 3 s" in text
    assert "Start the database server" in text and "`study.reconnect_timeout` (now 3 s)" in text


def _study_file(tmp_path: Path, storage: str, **study: Any) -> Path:
    from tests.search.test_crash import _study_file as crash_study

    path = crash_study(tmp_path, storage)
    extra = "".join(f"{k} = {v!r}\n" for k, v in study.items())
    path.write_text(path.read_text().replace("[study]\n", "[study]\n" + extra, 1))
    return path


def _workers(
    tmp_path: Path, study_file: Path, n: int, step_seconds: float, *flags: str
) -> tuple[list[subprocess.Popen[bytes]], list[Path]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "tests.search._crash_worker"]
    args = [str(study_file), str(tmp_path), str(tmp_path / "steps.log"), str(step_seconds)]
    outs = [tmp_path / f"worker{i}.out" for i in range(n)]
    procs = []
    for out in outs:
        with open(out, "wb") as fh:
            procs.append(
                subprocess.Popen(
                    cmd + args + list(flags), cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT
                )
            )
    return procs, outs


def _wait_for(predicate: Any, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _open(study_file: Path, tmp_path: Path) -> tuple[Any, optuna.Study]:
    from lawsearch.config import load_study
    from lawsearch.study import open_study_storage

    cfg = load_study(study_file, run_root=tmp_path)
    storage = open_study_storage(cfg, on_event=lambda line: None)
    return cfg, optuna.create_study(study_name=cfg.name, storage=storage, load_if_exists=True)


@pytest.mark.postgres
def test_a_worker_exits_1_with_the_message_when_the_server_stays_down(
    server: PrivateServer, database: str, tmp_path: Path
) -> None:
    url = server.url(database, password="s3cret")
    study_file = _study_file(tmp_path, url, reconnect_timeout=3)
    _, study = _open(study_file, tmp_path)
    procs, outs = _workers(tmp_path, study_file, 1, 0.05, "--cli")
    try:
        _wait_for(lambda: any(t.state == TrialState.RUNNING for t in study.get_trials()), 60)
        _close(compat.storage(study)._backend)  # type: ignore[attr-defined]
        server.stop()
        code = procs[0].wait(timeout=60)
    finally:
        server.ensure_running()
        for p in procs:
            if p.poll() is None:
                p.kill()
    out = outs[0].read_text()
    assert code == 1, out
    assert "lawsearch worker: failed: `study.storage`: lost the connection" in out, out
    assert "s3cret" not in out and "Traceback" not in out, out
    assert "raise `study.reconnect_timeout` (now 3 s)" in out, out


@pytest.mark.postgres
def test_a_lost_commit_is_not_repeated(server: PrivateServer, database: str) -> None:
    proxy = CommitDropper(server.port)
    url = proxy.url(database)
    minimize = [StudyDirection.MINIMIZE]
    try:
        # plain Optuna retries the trial creation whose commit answer was lost: a duplicate
        plain = _plain(url)
        try:
            sid = plain.create_new_study(minimize, "plain")
            proxy.arm(after_server=True)
            plain.create_new_trial(sid)
            assert proxy.dropped == 1
            assert [t.number for t in plain.get_all_trials(sid)] == [0, 1]  # 1 call, 2 trials
        finally:
            _close(plain)

        events: list[str] = []
        storage = _storage(url, events)
        try:
            sid = storage.create_new_study(minimize, "mine")
            proxy.arm(after_server=True)  # committed, answer lost: not redone
            first = storage.create_new_trial(sid)
            assert proxy.dropped == 2
            assert [t._trial_id for t in storage.get_all_trials(sid)] == [first]
            proxy.arm(after_server=False)  # never reached the server: aborted, redone once
            second = storage.create_new_trial(sid)
            assert proxy.dropped == 3
            trials = storage.get_all_trials(sid)
            assert [(t._trial_id, t.number) for t in trials] == [(first, 0), (second, 1)]
            # a WAITING -> RUNNING claim whose answer was lost is still this worker's
            waiting = storage.create_new_trial(
                sid, template_trial=optuna.trial.create_trial(state=TrialState.WAITING)
            )
            proxy.arm(after_server=True)
            assert storage.set_trial_state_values(waiting, TrialState.RUNNING) is True
            assert storage.get_trial(waiting).state == TrialState.RUNNING
            # a finished trial's state change lost the same way is not refused as a re-finish
            proxy.arm(after_server=True)
            assert storage.set_trial_state_values(first, TrialState.COMPLETE, [1.0]) is True
            assert storage.get_trial(first).value == 1.0
            assert len(storage.outages) == 4
        finally:
            _close(storage)
    finally:
        proxy.close()


def test_a_worker_whose_trial_a_peer_failed_moves_on(tmp_path: Path) -> None:
    """Cut off longer than the grace period, a worker finds its trial FAIL (a peer's
    stale check) and its retry queued: it takes the next work item instead of stopping."""
    failed_by_peer: list[int] = []

    def objective(trial: optuna.Trial, budget: int, resume: str | None) -> str | None:
        start = 0 if resume is None else int(resume)
        for step in range(start + 5, budget + 1, 5):
            if trial.number == 1 and not failed_by_peer and step > 10:
                frozen = compat.trial_now(trial.study, trial)
                fail_and_retry(trial.study, frozen, max_retries=2)  # what a peer does
                failed_by_peer.append(trial.number)
            trial.report(2.0 + trial.params["x"] + 10.0 / step, step)
        return str(budget)

    search = RetrievalRerank(
        budgets=(20, 60), n_candidates=4, objective=_suggesting(objective), eta=2.0
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    result = search.run(study)
    trials = study.get_trials()
    assert failed_by_peer == [1]
    assert trials[1].state == TrialState.FAIL
    (retry,) = [t for t in trials if t.user_attrs.get(_attrs.RETRY_OF) == 1]
    assert retry.state == TrialState.COMPLETE
    roots = sorted(row["root"] for row in result.table)  # every lineage ranked once
    assert roots == sorted(t.number for t in trials if is_candidate(t)) and len(roots) == 4
    assert 1 in roots


def _suggesting(objective: Any) -> Any:
    def run(trial: optuna.Trial, budget: int, resume: str | None) -> str | None:
        if "x" not in trial.params:
            trial.suggest_float("x", 0.0, 1.0)
        return objective(trial, budget, resume)

    return run


def _two_workers(tmp_path: Path, url: str, server: PrivateServer | None) -> dict[str, Any]:
    study_file = _study_file(tmp_path, url)
    cfg, study = _open(study_file, tmp_path)
    start = time.monotonic()
    procs, outs = _workers(tmp_path, study_file, 2, 0.04)
    down = 0.0
    try:
        if server is not None:  # restart once the study is well under way
            _wait_for(lambda: sum(t.state.is_finished() for t in study.get_trials()) >= 3, 90)
            server.stop()
            stopped = time.monotonic()
            time.sleep(3.0)
            server.start()
            down = time.monotonic() - stopped
        codes = [p.wait(timeout=180) for p in procs]
    finally:
        if server is not None:
            server.ensure_running()
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
    wall = time.monotonic() - start
    outputs = [o.read_text() for o in outs]
    assert codes == [0, 0], outputs
    trials = study.get_trials()
    _close(compat.storage(study)._backend)  # type: ignore[attr-defined]
    assert not [t.number for t in trials if not t.state.is_finished()]
    lineages = [t.number for t in trials if is_candidate(t)]
    assert len(lineages) == cfg.search.candidates
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    nodes = collections.Counter(
        (t.user_attrs[_attrs.ROOT], t.user_attrs[_attrs.RUNG]) for t in done
    )
    assert {root for root, _ in nodes} == set(lineages) and max(nodes.values()) == 1, nodes
    # no trial failed by the restart: no retry, no FAIL but dropped duplicates/surplus
    assert not [t.number for t in trials if _attrs.RETRY_OF in t.user_attrs]
    failed = [
        t.number
        for t in trials
        if t.state == TrialState.FAIL
        and _attrs.DUPLICATE_OF not in t.user_attrs
        and _attrs.SURPLUS not in t.user_attrs
    ]
    assert failed == [], [trials[i].user_attrs for i in failed]
    if server is not None:
        assert all("lawsearch: reconnected to" in o for o in outputs), outputs
    return {"wall_s": round(wall, 1), "server_down_s": round(down, 1), "trials": len(trials)}


@pytest.mark.slow
@pytest.mark.postgres
def test_two_workers_finish_the_study_across_a_restart(
    server: PrivateServer, tmp_path: Path
) -> None:
    numbers = {}
    for restart in (False, True):
        folder = tmp_path / ("restart" if restart else "steady")
        folder.mkdir()
        with _new_database(server) as name:
            numbers["restart" if restart else "steady"] = _two_workers(
                folder, server.url(name), server if restart else None
            )
    print("two workers:", json.dumps(numbers))


def test_a_storage_that_cannot_be_opened_names_the_url_without_its_password() -> None:
    """Port 1 refuses at once: the message (exit 2 at the CLI) hides the password."""
    pytest.importorskip("psycopg")
    from lawsearch.storage import StorageError, open_storage

    with pytest.raises(StorageError) as err:
        open_storage("postgresql://postgres:s3cret@127.0.0.1:1/none")
    assert "s3cret" not in str(err.value)
    assert "postgresql://postgres:***@127.0.0.1:1/none" in str(err.value)
