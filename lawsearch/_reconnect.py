"""``ReconnectingRDBStorage``: Optuna's RDB storage that rides out a PostgreSQL restart.

A worker trains for hours; a database restart (an upgrade, a failover, an
operator's ``pg_ctl restart``) must neither end it nor lose or duplicate a trial.

* **Backoff.** A storage call that fails because the connection is gone (the
  server restarting, "terminating connection due to administrator command",
  connection refused) is tried again after 0.5, 1, 2, 4, 8, 8, ... s until
  ``reconnect_timeout`` seconds have passed since its first failure; then
  ``StorageUnavailable`` (a ``RunFailed``: exit 1) names the server (password
  hidden), how long it tried and the fix. One line per event (connection lost,
  connection back) goes to ``on_event``.
* **Nothing redone that committed.** Reads and upserts (attrs, reports, parameters)
  are idempotent and are simply tried again. Creating a trial and changing a
  trial's state are not: when the connection drops during the commit, the commit
  may or may not have happened. These two run ``txid_current()`` in their own
  transaction, and after reconnecting ask ``txid_status``: *committed* returns the
  answer computed before the commit without redoing it; *aborted* or unknown
  redoes it. (Optuna's own retry of ``create_new_trial`` makes a duplicate trial,
  and a lost WAITING→RUNNING commit would leave a claimed trial RUNNING with no
  worker and no heartbeat.)
* **Heartbeats never wait in a backoff.** A beat is tried once; one that cannot be
  written is skipped and the next, a heartbeat interval later, tries again, so
  beats resume within one interval of the server coming back.
* **No live trial failed for the outage.** No trial is stale until the server has
  been up, and this process connected again, for ``grace_period +
  heartbeat_interval + 8 s`` (the longest backoff sleep): the beats of live
  workers could not be written while the server was down.

It subclasses Optuna's ``RDBStorage`` and re-implements its trial creation and
state change with Optuna's private RDB models (``optuna.storages._rdb``): the
transaction id must be read inside the transaction that writes, which no public
method offers. Like ``lawsearch.optuna._compat``, this pins ``optuna>=5,<6``;
``tests/test_reconnect.py`` runs it on a real PostgreSQL.
"""

from __future__ import annotations

import copy
import functools
import logging
import math
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar, cast

import optuna
import sqlalchemy
import sqlalchemy.exc
from optuna.storages import RDBStorage
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import FrozenTrial, TrialState

from lawsearch._errors import StorageUnavailable

__all__ = [
    "BACKOFF",
    "CONNECT_TIMEOUT",
    "RECONNECT_TIMEOUT",
    "Outage",
    "ReconnectingRDBStorage",
    "StorageUnavailable",
    "is_connection_error",
    "redacted",
]

#: seconds slept after the 1st, 2nd, ... failed try of a call (then the last, repeated)
BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0)
#: seconds a new connection may take before the try counts as failed
CONNECT_TIMEOUT = 10
#: default of ``[study] reconnect_timeout``: seconds a call keeps trying to reconnect
RECONNECT_TIMEOUT = 120.0

_R = TypeVar("_R")
_F = TypeVar("_F", bound=Callable[..., Any])
_TXID = sqlalchemy.text("SELECT txid_current()")
_TXID_STATUS = sqlalchemy.text("SELECT txid_status(:txid)")
_UPTIME = sqlalchemy.text("SELECT EXTRACT(EPOCH FROM now() - pg_postmaster_start_time())")
_logger = logging.getLogger("lawsearch.storage")


class _Undecided(Exception):
    """A transaction cut off mid-commit is still in progress on the server: ask again."""


@dataclass(frozen=True)
class Outage:
    """One loss of the connection, as this process saw it.

    Attributes:
        seconds: from the first failed try to the first call that succeeded again.
        failed_tries: calls (of any thread) that failed in between.
    """

    seconds: float
    failed_tries: int


def redacted(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages and logs)."""
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return url.split("@")[-1]


def is_connection_error(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the database connection failed.

    SQLAlchemy's ``OperationalError``/``InterfaceError`` (server gone, shutting down,
    starting up, connection refused or reset, a deadlock or serialization failure
    that aborted the transaction) and any error that invalidated the connection.
    Optuna wraps them in ``StorageInternalError``; the cause is searched too.
    """
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, _Undecided):
            return True
        if isinstance(e, sqlalchemy.exc.DBAPIError) and e.connection_invalidated:
            return True
        if isinstance(e, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
            return True
        orig = getattr(e, "orig", None)
        todo += [e.__cause__, e.__context__, orig if isinstance(orig, BaseException) else None]
    return False


def _reason(exc: BaseException) -> str:
    """The first line of the driver's message (the server's words), for one log line."""
    while isinstance(exc.__cause__, BaseException) and not getattr(exc, "orig", None):
        exc = exc.__cause__
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return (text.splitlines() or [type(exc).__name__])[0]


def _retried(method: _F) -> _F:
    """``method`` of ``RDBStorage`` tried again through connection losses (idempotent calls)."""

    @functools.wraps(method)
    def call(self: ReconnectingRDBStorage, *args: Any, **kwargs: Any) -> Any:
        return self._call(lambda: method(self, *args, **kwargs))

    return cast(_F, call)


class ReconnectingRDBStorage(RDBStorage):
    """``RDBStorage`` on PostgreSQL that reconnects with backoff (see the module docstring).

    Args:
        url: a ``postgresql://`` URL.
        reconnect_timeout: seconds a call keeps trying after its first connection
            failure before raising ``StorageUnavailable``.
        on_event: receives one line per event (connection lost, connection back);
            default: the ``lawsearch.storage`` logger at WARNING.
        connect_timeout: seconds a new connection may take.
        **kwargs: ``RDBStorage``'s (``heartbeat_interval``, ``grace_period``, ...).

    Attributes:
        outages: every outage this process came back from (``Outage``), oldest first.
    """

    def __init__(
        self,
        url: str,
        *,
        reconnect_timeout: float = RECONNECT_TIMEOUT,
        on_event: Callable[[str], None] | None = None,
        connect_timeout: int = CONNECT_TIMEOUT,
        engine_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not reconnect_timeout > 0:
            raise ValueError(f"`reconnect_timeout` must be > 0 seconds; got {reconnect_timeout!r}.")
        self.reconnect_timeout = float(reconnect_timeout)
        self.on_event = on_event
        self.outages: list[Outage] = []
        self._lock = threading.Lock()
        self._down_since: float | None = None  # monotonic time of the current outage's start
        self._failed_tries = 0
        self._back_at = -math.inf  # monotonic time the last outage ended
        engine = {"pool_pre_ping": True, "connect_args": {"connect_timeout": connect_timeout}}
        engine.update(engine_kwargs or {})
        with warnings.catch_warnings():
            # heartbeats are marked experimental by Optuna; lawsearch relies on them on purpose
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            super().__init__(url, engine_kwargs=engine, **kwargs)

    def __getstate__(self) -> dict[Any, Any]:
        state = super().__getstate__()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__(state)
        self._lock = threading.Lock()

    @property
    def server(self) -> str:
        """The URL with its password hidden."""
        return redacted(self.url)

    @property
    def quiet_seconds(self) -> float:
        """How long after the server starts (or this process reconnects) nothing is stale."""
        interval = float(self.heartbeat_interval or 0)
        grace = float(self.grace_period if self.grace_period is not None else 2 * interval)
        return grace + interval + BACKOFF[-1]

    # ---- the retry loop -------------------------------------------------------------------------

    def _call(self, attempt: Callable[[], _R]) -> _R:
        """``attempt()``, tried again with backoff while the connection is lost."""
        first: float | None = None
        tries = 0
        while True:
            try:
                out = attempt()
            except Exception as exc:
                if not is_connection_error(exc):
                    raise
                now = time.monotonic()
                first = now if first is None else first
                tries += 1
                self._lost(exc, now)
                self.scoped_session.remove()  # this thread's session held the dead connection
                waited = now - first
                if waited >= self.reconnect_timeout:
                    raise StorageUnavailable(self._gave_up(waited, tries, exc)) from None
                pause = BACKOFF[min(tries, len(BACKOFF)) - 1]
                time.sleep(min(pause, self.reconnect_timeout - waited))
                continue
            if self._down_since is not None:
                self._back()
            return out

    def _lost(self, exc: BaseException, now: float) -> None:
        with self._lock:
            self._failed_tries += 1
            if self._down_since is not None:
                return
            self._down_since = now
        self._event(
            f"lost the connection to {self.server} ({_reason(exc)}); reconnecting with "
            f"backoff for up to {self.reconnect_timeout:g} s"
        )

    def _back(self) -> None:
        with self._lock:
            if self._down_since is None:
                return
            now = time.monotonic()
            outage = Outage(seconds=now - self._down_since, failed_tries=self._failed_tries)
            self._down_since, self._failed_tries, self._back_at = None, 0, now
            self.outages.append(outage)
        self._event(
            f"reconnected to {self.server} after {outage.seconds:.1f} s "
            f"({outage.failed_tries} failed tries); no trial is failed as stale for the "
            f"next {self.quiet_seconds:g} s while workers beat again"
        )

    def _event(self, line: str) -> None:
        if self.on_event is not None:
            self.on_event(line)
        else:
            _logger.warning(line)

    def _gave_up(self, waited: float, tries: int, exc: BaseException) -> str:
        return (
            f"`study.storage`: lost the connection to the database server {self.server} and "
            f"could not reconnect for {waited:.0f} s ({tries} tries; last error: {_reason(exc)}). "
            "The finished trials are kept in the database. Start the database server (or "
            "restore the network to it) and run the same command again to resume; to wait "
            "longer for a restart, raise `study.reconnect_timeout` "
            f"(now {self.reconnect_timeout:g} s)."
        )

    def _write_once(self, body: Callable[[Any], _R]) -> _R:
        """Run ``body(session)`` in one transaction that is never repeated once committed.

        The transaction's id is read before the commit; when the commit's answer is
        lost, ``txid_status`` on the next connection says whether it happened.
        """
        pending: list[tuple[int, _R]] = []  # (txid, answer) of a commit cut off

        def attempt() -> _R:
            if pending:
                txid, answer = pending[0]
                status = self._txid_status(txid)
                if status == "committed":
                    return answer
                if status == "in progress":
                    raise _Undecided(f"transaction {txid} is still in progress")
                pending.clear()  # aborted, or too old to know: do it again
            with _create_scoped_session(self.scoped_session) as session:
                answer = body(session)
                pending.append((int(session.execute(_TXID).scalar_one()), answer))
            pending.clear()
            return answer

        return self._call(attempt)

    def _txid_status(self, txid: int) -> str | None:
        with _create_scoped_session(self.scoped_session) as session:
            status = session.execute(_TXID_STATUS, {"txid": txid}).scalar()
        return None if status is None else str(status)

    # ---- writes that must not be repeated -------------------------------------------------------

    def _create_new_trial(
        self, study_id: int, template_trial: FrozenTrial | None = None
    ) -> FrozenTrial:
        def body(session: Any) -> FrozenTrial:
            # the study row's lock serialises trial numbers (as in Optuna)
            models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)
            trial = self._get_prepared_new_trial(study_id, template_trial, session)
            return _frozen(trial, template_trial)

        return self._write_once(body)

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        def body(session: Any) -> bool:
            trial = models.TrialModel.find_or_raise_by_id(trial_id, session, for_update=True)
            self.check_trial_is_updatable(trial_id, trial.state)
            for objective, v in enumerate(values or ()):
                self._set_trial_value_without_commit(session, trial, objective, v)
            if state == TrialState.RUNNING and trial.state != TrialState.WAITING:
                return False  # another worker claimed it first
            trial.state = state
            if state == TrialState.RUNNING:
                trial.datetime_start = datetime.now()
            if state.is_finished():
                trial.datetime_complete = datetime.now()
            return True

        try:
            return self._write_once(body)
        except sqlalchemy.exc.IntegrityError:
            return False

    # ---- heartbeats -----------------------------------------------------------------------------

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            super().record_heartbeat(trial_id)
        except Exception as exc:
            if not is_connection_error(exc):
                raise
            self._lost(exc, time.monotonic())
            self.scoped_session.remove()
            return  # skipped: the next beat, one interval later, tries again
        if self._down_since is not None:
            self._back()

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        quiet = self.quiet_seconds
        if self._down_since is not None or time.monotonic() - self._back_at < quiet:
            return []

        def attempt() -> list[int]:
            stale = list(RDBStorage._get_stale_trial_ids(self, study_id))
            if not stale:
                return stale  # the common case: no extra round trip
            with _create_scoped_session(self.scoped_session) as session:
                uptime = float(session.execute(_UPTIME).scalar_one())
            # the server just started: live workers may not have beaten yet
            return [] if uptime < quiet else stale

        return self._call(attempt)

    # ---- idempotent calls: tried again as they are ----------------------------------------------

    create_new_study = _retried(RDBStorage.create_new_study)
    delete_study = _retried(RDBStorage.delete_study)
    set_study_user_attr = _retried(RDBStorage.set_study_user_attr)
    set_study_system_attr = _retried(RDBStorage.set_study_system_attr)
    get_study_id_from_name = _retried(RDBStorage.get_study_id_from_name)
    get_study_name_from_id = _retried(RDBStorage.get_study_name_from_id)
    get_study_directions = _retried(RDBStorage.get_study_directions)
    get_study_user_attrs = _retried(RDBStorage.get_study_user_attrs)
    get_study_system_attrs = _retried(RDBStorage.get_study_system_attrs)
    get_trial_user_attrs = _retried(RDBStorage.get_trial_user_attrs)
    get_trial_system_attrs = _retried(RDBStorage.get_trial_system_attrs)
    get_all_studies = _retried(RDBStorage.get_all_studies)
    _set_trial_param = _retried(RDBStorage._set_trial_param)
    get_trial_param = _retried(RDBStorage.get_trial_param)
    set_trial_intermediate_value = _retried(RDBStorage.set_trial_intermediate_value)
    set_trial_user_attr = _retried(RDBStorage.set_trial_user_attr)
    set_trial_system_attr = _retried(RDBStorage.set_trial_system_attr)
    get_trial_id_from_study_id_trial_number = _retried(
        RDBStorage.get_trial_id_from_study_id_trial_number
    )
    get_trial = _retried(RDBStorage.get_trial)
    _get_trials = _retried(RDBStorage._get_trials)
    _get_best_trial_id = _retried(RDBStorage._get_best_trial_id)


def _frozen(trial: Any, template: FrozenTrial | None) -> FrozenTrial:
    """The ``FrozenTrial`` of a trial row just added (as Optuna's ``_create_new_trial``)."""
    if template is not None:
        frozen = copy.deepcopy(template)
        frozen.number = trial.number
        frozen.datetime_start = trial.datetime_start
        frozen._trial_id = trial.trial_id
        return frozen
    return FrozenTrial(
        number=trial.number,
        state=trial.state,
        value=None,
        values=None,
        datetime_start=trial.datetime_start,
        datetime_complete=None,
        params={},
        distributions={},
        user_attrs={},
        system_attrs={},
        intermediate_values={},
        trial_id=trial.trial_id,
    )
