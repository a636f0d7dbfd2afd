"""Reconnect overhead: what ``ReconnectingRDBStorage`` costs per storage call when nothing fails.

Optuna's ``RDBStorage`` and lawsearch's ``ReconnectingRDBStorage`` (the storage
``lawsearch`` opens for a PostgreSQL URL: ``pool_pre_ping``, a retry wrapper on
every call, ``txid_current()`` in trial creation and state changes) run the same
calls on one PostgreSQL database, interleaved call by call so that both see the
same load on a shared machine. Timed per call (ms, p50/p99):

* ``get_trial``: a read of one trial with its attrs and reports;
* ``create_new_trial``: a new trial (the study row locked, one more statement);
* ``set_trial_state_values``: a RUNNING trial finished with a value.

A third column runs ``ReconnectingRDBStorage`` without ``pool_pre_ping`` (the
ping SQLAlchemy sends at each connection checkout, one round trip per call) to
show where the cost comes from.

The time to come back from a restart and a study's wall time across one are
measured by ``tests/test_reconnect.py`` (they restart a server of their own).
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from benchmarks._common import (
    benchmark_parser,
    environment,
    markdown_table,
    output_dir,
    write_json,
    write_text,
)
from benchmarks.workers import POSTGRES, _reachable, own_database

NAME = "reconnect"
DATABASE = "lawsearch_bench_reconnect"


def _storages(url: str) -> dict[str, Any]:
    import optuna

    from lawsearch._reconnect import ReconnectingRDBStorage

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        plain = optuna.storages.RDBStorage(url, heartbeat_interval=60, grace_period=180)
    beats: dict[str, Any] = {"heartbeat_interval": 60, "grace_period": 180}
    mine = ReconnectingRDBStorage(url, **beats)
    # where the cost comes from: the same storage without SQLAlchemy's ping at each checkout
    no_ping = ReconnectingRDBStorage(url, engine_kwargs={"pool_pre_ping": False}, **beats)
    return {
        "optuna RDBStorage": plain,
        "ReconnectingRDBStorage": mine,
        "ReconnectingRDBStorage, no pre-ping": no_ping,
    }


def _time(call: Callable[[], Any]) -> float:
    start = time.perf_counter()
    call()
    return 1000.0 * (time.perf_counter() - start)


def _one_round(storage: Any, study_id: int, probe: int) -> dict[str, float]:
    """ms of one call of each kind on ``storage``."""
    from optuna.trial import TrialState

    out = {"get_trial": _time(lambda: storage.get_trial(probe))}
    start = time.perf_counter()
    tid = storage.create_new_trial(study_id)
    out["create_new_trial"] = 1000.0 * (time.perf_counter() - start)
    finish = _time(lambda: storage.set_trial_state_values(tid, TrialState.COMPLETE, [1.0]))
    out["set_trial_state_values"] = finish
    return out


def measure(url: str, calls: int) -> list[dict[str, Any]]:
    """p50/p99 ms of each call on each storage, the storages interleaved call by call."""
    import optuna
    from optuna.study import StudyDirection

    stores = _storages(url)
    studies = {
        name: s.create_new_study([StudyDirection.MINIMIZE], f"bench-{i}")
        for i, (name, s) in enumerate(stores.items())
    }
    template = optuna.trial.create_trial(
        params={"x": 0.5},
        distributions={"x": optuna.distributions.FloatDistribution(0.0, 1.0)},
        user_attrs={f"lawsearch:a{i}": float(i) for i in range(10)},
        intermediate_values={s: 1.0 / s for s in range(1, 21)},
        value=1.0,
    )
    probe = {n: s.create_new_trial(studies[n], template_trial=template) for n, s in stores.items()}
    times: dict[tuple[str, str], list[float]] = {}
    for name, s in stores.items():  # warm each pool and the server's caches
        for _ in range(20):
            s.get_trial(probe[name])
    for _ in range(calls):
        for name, s in stores.items():
            for call, ms in _one_round(s, studies[name], probe[name]).items():
                times.setdefault((name, call), []).append(ms)
    for s in stores.values():
        s.remove_session()
        s.engine.dispose()
    rows: list[dict[str, Any]] = []
    for (storage, call), took in times.items():
        a = np.asarray(took)
        rows.append(
            {
                "call": call,
                "storage": storage,
                "calls": len(a),
                "p50_ms": float(np.percentile(a, 50)),
                "p99_ms": float(np.percentile(a, 99)),
                "mean_ms": float(a.mean()),
            }
        )
    order = list(stores)
    rows.sort(key=lambda r: (r["call"], order.index(r["storage"])))
    return rows


def report(rows: Sequence[dict[str, Any]]) -> str:
    table = markdown_table(
        ["call", "storage", "calls", "p50 ms", "p99 ms", "mean ms"],
        [
            [r["call"], r["storage"], r["calls"]]
            + [f"{r[k]:.2f}" for k in ("p50_ms", "p99_ms", "mean_ms")]
            for r in rows
        ],
    )
    return f"# Reconnect overhead (PostgreSQL, calls interleaved)\n\n{table}\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = benchmark_parser(NAME, __doc__)
    parser.add_argument("--calls", type=int, default=500, help="timed calls per kind and storage")
    parser.add_argument("--postgres", default=POSTGRES, help="PostgreSQL server URL")
    args = parser.parse_args(argv)
    calls = 20 if args.tiny else args.calls
    why_not = _reachable(args.postgres)
    if why_not is not None:
        print(f"PostgreSQL unreachable at {args.postgres}: {why_not}", file=sys.stderr)
        return 1
    with own_database(args.postgres, DATABASE) as url:
        rows = measure(url, calls)
    md = report(rows)
    print(md)
    out = output_dir(args.out, NAME)
    write_json(
        out / f"{NAME}.json",
        {"tiny": args.tiny, "rows": rows, "environment": environment()},
    )
    write_text(out / f"{NAME}.md", md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
