"""Live workers of a run directory on a journal file: the lock files, with real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lawsearch import storage
from lawsearch.storage import LOCKS, live_workers, worker_lock

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

_HOLDER = """
import sys, time
from lawsearch.storage import worker_lock
with worker_lock(sys.argv[1]) as alone:
    print("alone" if alone else "not alone", flush=True)
    time.sleep(120)
"""


def _peer_count(run_dir: Path) -> int:
    """``live_workers(run_dir)`` as another process sees it."""
    code = "import sys; from lawsearch.storage import live_workers as n; print(n(sys.argv[1]))"
    out = subprocess.run(
        [sys.executable, "-c", code, str(run_dir)], env=ENV, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return int(out.stdout)


def test_a_worker_is_live_while_its_process_lives_and_its_lock_goes_with_it(
    tmp_path: Path,
) -> None:
    cmd = [sys.executable, "-c", _HOLDER, str(tmp_path)]
    with subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, text=True) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "alone"
            assert live_workers(tmp_path) == 1
            with worker_lock(tmp_path) as alone:
                assert not alone
            holder.send_signal(signal.SIGKILL)  # the kernel drops its lock, however it dies
            holder.wait(timeout=30)
            assert live_workers(tmp_path) == 0
            assert not list((tmp_path / LOCKS).iterdir())  # the stale file was removed
        finally:
            holder.kill()  # on a failed assertion; a no-op once it has exited


def test_a_peer_looking_while_a_worker_starts_never_takes_it_for_dead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A peer's ``live_workers`` runs between the worker's creating its lock file and
    locking it (the interleaving is forced here; 4 workers starting at once on 2 busy
    cores hit it): the worker's lock must still be visible and held afterwards, or
    every peer takes it for dead and fails the trials it trains."""
    flock = storage._flock
    peers: list[int] = []

    def flock_after_a_peer_looked(fh: object, *, blocking: bool) -> bool:
        if blocking:  # the worker taking its own lock
            peers.append(_peer_count(tmp_path))
        return flock(fh, blocking=blocking)

    monkeypatch.setattr(storage, "_flock", flock_after_a_peer_looked)
    with worker_lock(tmp_path) as alone:
        assert alone
        assert peers == [0]  # the peer looked, and saw no worker yet
        assert storage._lock_path(tmp_path).exists()
        monkeypatch.setattr(storage, "_flock", flock)
        assert _peer_count(tmp_path) == 1  # and now sees this one
    assert not list((tmp_path / LOCKS).iterdir())  # nothing left behind


def test_a_stale_lock_file_is_removed_and_a_held_one_kept(tmp_path: Path) -> None:
    folder = tmp_path / LOCKS
    folder.mkdir()
    (folder / "otherhost-1.lock").write_text("1\n")  # its process died long ago
    with open(folder / "otherhost-2.lock", "w") as held:
        assert storage._flock(held, blocking=False)  # a live process holds this one
        assert live_workers(tmp_path) == 1
        assert sorted(p.name for p in folder.iterdir()) == ["otherhost-2.lock"]
