"""Where a study lives: open its Optuna storage, tell live workers apart, recover dead ones' trials.

The CLI and the Python API share these:

* ``open_storage(location)``: a journal file (the embedded default; several local
  processes may share it) or a PostgreSQL URL (heartbeats on, so a dead
  worker's trials go stale and are failed and retried; a server restart is
  ridden out: ``lawsearch._reconnect``).
* ``worker_lock(run_dir)``: a journal file has no heartbeat, so a process proves
  it is alive by holding ``<run_dir>/workers/<host>-<pid>.lock`` (an ``flock``
  the kernel drops when the process dies, however it dies).
* ``recover_orphans(study, alone=..., run_dir=...)``: the RUNNING trials no live
  process owns are failed and retried from their last checkpoint.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from lawsearch._errors import StorageUnavailable
from lawsearch.optuna import _attrs
from lawsearch.optuna import _compat as compat

__all__ = [
    "HEARTBEAT_GRACE",
    "HEARTBEAT_INTERVAL",
    "LOCKS",
    "StorageError",
    "StorageUnavailable",
    "is_journal",
    "live_workers",
    "open_storage",
    "recover_orphans",
    "worker_lock",
    "worker_name",
]

#: seconds between heartbeats of a running trial on PostgreSQL
HEARTBEAT_INTERVAL = 60
#: seconds without a heartbeat after which a RUNNING trial is stale
HEARTBEAT_GRACE = 180
#: the folder of a run directory holding one lock file per live local worker
LOCKS = "workers"


class StorageError(ValueError):
    """The storage cannot be opened (unreachable server, missing journal, bad URL)."""


def open_storage(
    location: str | os.PathLike[str],
    *,
    must_exist: bool = False,
    heartbeat_interval: int = HEARTBEAT_INTERVAL,
    grace_period: int = HEARTBEAT_GRACE,
    max_retry: int = 2,
    hint: str = "",
    reconnect_timeout: float = 120.0,
    on_event: Callable[[str], None] | None = None,
) -> BaseStorage:
    """An Optuna storage: a journal file path (created) or a ``postgresql://`` URL.

    Args:
        location: a journal file path, or a PostgreSQL URL.
        must_exist: refuse to create a journal file that is not there (to read a study).
        heartbeat_interval: PostgreSQL: seconds between a running trial's heartbeats.
        grace_period: PostgreSQL: seconds without one before the trial is stale.
        max_retry: PostgreSQL: how many times a stale trial is re-queued (from its
            last checkpoint: ``lawsearch.search._faults.RetryStale``).
        hint: appended to the error of a missing journal (e.g. the command that makes it).
        reconnect_timeout: PostgreSQL: seconds a call keeps reconnecting (with backoff)
            after the server went away, before ``StorageUnavailable``
            (``lawsearch._reconnect.ReconnectingRDBStorage``).
        on_event: PostgreSQL: receives one line per lost or restored connection.

    Raises:
        StorageError: naming ``study.storage``, the reason and the fix (also when the
            server does not answer now: a worker starts only against a live database).
    """
    text = str(location)
    if "://" not in text:
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(text)
        if must_exist and not path.is_file():
            raise StorageError(f"no study storage at {text!r}; {hint or 'check the path'}.")
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    import sqlalchemy.exc

    with warnings.catch_warnings():
        # heartbeats and their retry callback are marked experimental by Optuna;
        # we rely on them on purpose, so the notice is not the user's business
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        from lawsearch.search._faults import RetryStale

        # a stale trial resumes from its last checkpoint (Optuna's own callback restarts it)
        retry = RetryStale(max_retry)
        beats: dict[str, Any] = {
            "heartbeat_interval": heartbeat_interval,
            "grace_period": grace_period,
            "heartbeat_stale_trial_callback": retry,
        }
        try:
            if text.startswith("postgresql"):
                from lawsearch._reconnect import ReconnectingRDBStorage

                return ReconnectingRDBStorage(
                    text, reconnect_timeout=reconnect_timeout, on_event=on_event, **beats
                )
            return optuna.storages.RDBStorage(text, **beats)
        except (sqlalchemy.exc.SQLAlchemyError, ImportError) as exc:
            from lawsearch._reconnect import redacted

            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            text = redacted(text)  # a message may end up in a shared log: no password
            if "import DB access module" in reason:
                # Optuna wraps the driver's ImportError: name the package to install
                raise StorageError(
                    f"`study.storage`: cannot open {text!r}: its database driver is not "
                    "installed. Install it with `pip install 'lawsearch[postgres]'` (psycopg) "
                    "or name a driver you have in the URL (e.g. postgresql+psycopg2://...)."
                ) from None
            raise StorageError(
                f"`study.storage`: cannot open {text!r} ({reason}). {_storage_fix(reason)}"
            ) from None


def _storage_fix(reason: str) -> str:
    """The fix for a database that refused the connection, by the server's reason."""
    lowered = reason.lower()
    if "role" in lowered and "does not exist" in lowered:
        return (
            "The user in the URL is not a role of that server: fix the user name (and "
            "password) in `study.storage`, or create the role (CREATE ROLE ... LOGIN)."
        )
    if "password" in lowered or "authentication failed" in lowered:
        return (
            "The server refused the credentials: fix the user and password in "
            "`study.storage` (postgresql://USER:PASSWORD@HOST/DB)."
        )
    if "database" in lowered and "does not exist" in lowered:
        return (
            "The database in the URL does not exist on that server: fix its name in "
            "`study.storage`, or create it (createdb NAME)."
        )
    return (
        "Check that the database server runs and the URL is right, or remove "
        "`study.storage` to use the default journal file."
    )


def is_journal(storage: BaseStorage) -> bool:
    """Whether ``storage`` is a journal storage (possibly behind Optuna's cache wrapper)."""
    from optuna.storages import JournalStorage

    inner = getattr(storage, "_backend", storage)
    return isinstance(storage, JournalStorage) or isinstance(inner, JournalStorage)


# ---- live workers of a run directory (journal files) -------------------------------------------


@contextlib.contextmanager
def worker_lock(run_dir: str | os.PathLike[str]) -> Iterator[bool]:
    """Hold ``<run_dir>/workers/<host>-<pid>.lock``; yield whether no other local worker lives."""
    folder = Path(run_dir) / LOCKS
    folder.mkdir(parents=True, exist_ok=True)
    mine = _lock_path(run_dir)
    # The lock file appears under its name already locked: created and locked under a
    # name peers ignore, then renamed (the lock is the inode's). Created in place, it
    # was visible unlocked between open and flock, and a peer's `live_workers` in that
    # window removed it as stale: the worker then locked a file no one could see and
    # was taken for dead all run long, its trials failed and retried while it still
    # trained them (3 of 29 crash-test runs of 4 workers with 3 tests on 2 cores).
    tmp = folder / f".{mine.name}.{os.urandom(4).hex()}.tmp"
    fh = open(tmp, "w")  # held (locked) for the whole run
    try:
        _flock(fh, blocking=True)
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        os.replace(tmp, mine)
        yield live_workers(run_dir) == 0
    finally:
        for path in (tmp, mine):  # while still locked: never seen unlocked under its name
            with contextlib.suppress(OSError):
                path.unlink()
        fh.close()


def _lock_path(run_dir: str | os.PathLike[str]) -> Path:
    return Path(run_dir) / LOCKS / f"{worker_name()}.lock"


def live_workers(run_dir: str | os.PathLike[str]) -> int:
    """Other live workers of this run directory (stale lock files are removed)."""
    mine = _lock_path(run_dir)
    others = 0
    for path in (Path(run_dir) / LOCKS).glob("*.lock"):
        if path != mine and _is_held(path, remove_stale=True):
            others += 1
    return others


def _flock(fh: Any, *, blocking: bool) -> bool:
    import fcntl

    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return False
        raise
    return True


def _is_held(path: Path, *, remove_stale: bool = False) -> bool:
    """Whether a live process holds the lock file ``path``; ``remove_stale``: else remove it.

    A stale file is removed while this process holds its lock, and only if the name
    still names the file it locked (a new worker may have just renamed its own over it).
    """
    try:
        fh = open(path)
    except FileNotFoundError:
        return False
    with fh:
        if not _flock(fh, blocking=False):
            return True
        if remove_stale:
            with contextlib.suppress(OSError):
                if os.stat(path).st_ino == os.fstat(fh.fileno()).st_ino:
                    path.unlink()
        return False


# ---- recovering the trials of a dead process ---------------------------------------------------


def worker_name() -> str:
    """This process's name among a run directory's workers (``<host>-<pid>``, its lock's stem)."""
    return f"{socket.gethostname()}-{os.getpid()}"


def recover_orphans(
    study: optuna.Study,
    *,
    alone: bool,
    run_dir: str | os.PathLike[str] | None = None,
    max_retries: int = 2,
) -> list[int]:
    """Fail the RUNNING trials of a journal storage that no live process owns; retry each.

    A trial claimed by the search carries its worker's name (``lawsearch:worker``);
    it is an orphan when that worker holds no lock in ``<run_dir>/workers`` any more
    (the kernel dropped it when the process died, however it died). A trial without
    an owner is an orphan only when this is the only live worker (``alone``). Each
    orphan's retry resumes from its last checkpoint with its curve up to there
    (``lawsearch.search._faults.requeue``, ``lawsearch:retry_of``) and is the same
    lineage, not a new candidate. Storages with heartbeats are left to
    ``fail_stale``.

    Returns:
        The numbers of the trials that were failed.
    """
    from lawsearch.search._faults import fail_and_retry

    store = compat.storage(study)
    if not is_journal(store):
        return []
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.user_attrs.get(_attrs.WORKER)
        if owner is not None and run_dir is not None:
            dead = not _is_held(Path(run_dir) / LOCKS / f"{owner}.lock")
        else:
            dead = alone
        if dead and fail_and_retry(study, t, max_retries=max_retries):
            failed.append(t.number)
    return failed
