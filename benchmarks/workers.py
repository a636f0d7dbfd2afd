"""Many workers on one study: throughput, storage round trips and decision latency.

Every number comes from the code path of ``lawsearch worker``: each worker is a
separate process running ``lawsearch.runner.run_study(cfg, worker=True)`` (the
storage opened by ``lawsearch.storage.open_storage`` with the CLI's heartbeat
settings, ``lawsearch.study``'s sampler, pruner with ``sync_interval=0`` and
search, the live dashboard figures, the report summary), only the trainer is a
replay: ``ReplayTrainer(step_seconds=...)`` plays the recorded grid (``data/grid``,
the demo model's 72 runs) and *sleeps* each step's wall time, so a process
spends its time as training would (waiting on an accelerator), and what differs
between 1 and 8 workers on a 2-core machine is the coordination. A proposal
trains as the grid run nearest to it (the mapping of ``benchmarks.search_e2e``).

The study is the demo's search space (five domains, cosine/WSD/linear, the
momentum law, screen 48 of 240 steps, evaluations every 3 steps) with the
pruner on, as the CLI defaults it; ``--candidates`` candidates, the best one
continued to the full budget (``promotion = "sync"``).

1. **Throughput**: trials per minute with 1, 2, 4 and 8 worker processes on
   PostgreSQL and on the journal file. *Screening* trials/min counts the
   candidates' short-budget trials finished between the first trial's start and
   the last one's end (the phase every worker shares); *whole study* divides all
   finished trials by the wall time from starting the processes to the last exit
   (process start-up and the one continuation, which only one worker can train,
   included).
2. **Round trips**: every SQL statement and transaction begin/commit/rollback on
   PostgreSQL (SQLAlchemy events), every ``read_logs``/``append_logs`` of the
   journal file, attributed to the call that made it (``study.ask``, the
   sampler's ``sample_relative``/``sample_independent``, ``trial.should_prune``
   and ``LawPruner.prune`` inside it, ``trial.report``, ``study.tell``, the
   heartbeat thread; the rest is the search loop's own bookkeeping).
3. **Decision latency** on PostgreSQL with 1,000 and 10,000 trials already in
   the study (cloned from the 1-worker study's trials with new parameters and
   jittered curves through ``RDBStorage.create_new_trial``): a fresh process
   opens the study as the CLI does and runs ``--probes`` new candidates, timing
   each ``LawPruner.prune`` (at every report) and each ``LawSampler``
   ``sample_relative``/``sample_independent`` call. The first call of each
   (reading the whole study once into Optuna's trial cache) is reported apart.

Targets (issue 14): 4 workers >= 3.5x the trials/min of 1, 8 workers >= 6x
(PostgreSQL); decision p99 <= 50 ms at 10,000 trials on PostgreSQL.

PostgreSQL: ``--postgres`` is a server URL (default the loopback one); the
benchmark creates its own database there and drops it at the end. Without a
reachable server the PostgreSQL parts are skipped (the JSON says why).

Run: ``python -m benchmarks.workers [--tiny] [--workers 1,2,4,8] [--candidates 16]
[--step-seconds 0.15] [--sizes 1000,10000]``.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from benchmarks._common import (
    benchmark_parser,
    environment,
    fmt,
    markdown_table,
    output_dir,
    save_figure,
    timer,
    write_json,
    write_text,
)

NAME = "workers"
POSTGRES = "postgresql://postgres@127.0.0.1:5432"
DATABASE = "lawsearch_bench_workers"
#: the calls round trips and latencies are attributed to (tag -> owner, method)
TAGS = (
    "ask",
    "sample_relative",
    "sample_independent",
    "should_prune",
    "prune",
    "report",
    "tell",
    "heartbeat",
    "figure",
)


# ---- the study and the trainer -----------------------------------------------------------------
def study_config(root: Path, *, name: str, storage: str, candidates: int) -> Any:
    """The demo search over the grid's space (search_e2e's study), stored in ``storage``:
    the best screened candidate trains straight to the full budget."""
    from benchmarks.search_e2e import study_config as grid_study

    return grid_study(root, seed=0, candidates=candidates, name=name, storage=storage, rungs=(1.0,))


class GridTrainer:
    """``ReplayTrainer`` over the grid: a config trains as its nearest grid run, sleeping.

    Args:
        step_seconds: wall seconds per optimizer step (``ReplayTrainer(step_seconds=)``).
        eval_every: the evaluation cadence replayed (the grid's is 3 steps).
    """

    def __init__(self, step_seconds: float, eval_every: int = 3) -> None:
        from benchmarks.search_e2e import GridReplay
        from lawsearch.recorded.grid import load_grid
        from lawsearch.train import ReplayTrainer
        from lawsearch.train._replay import ReplayCurve

        runs = [r for r in load_grid(None, models=("demo",)) if r.block != "seeds"]
        self.nearest = GridReplay(runs).nearest
        curves = {}
        for r in runs:
            keep = (r.steps > 0) & (r.steps % eval_every == 0)
            curves[r.run_id] = ReplayCurve.of(r.steps[keep], r.losses[keep])
        self.replay = ReplayTrainer(curves, config_key="run_id", step_seconds=step_seconds)
        self.compute_unit = self.replay.compute_unit

    def train(
        self,
        config: Mapping[str, Any],
        *,
        budget_steps: int,
        resume_from: str | None = None,
        report: Any,
    ) -> Any:
        key = self.nearest(config["mixture"], config["schedule"]).run_id
        return self.replay.train(
            {"run_id": key}, budget_steps=budget_steps, resume_from=resume_from, report=report
        )


# ---- instrumentation ----------------------------------------------------------------------------
class Probe:
    """Counts storage round trips and times calls, attributed to the calls on each thread's stack.

    A round trip counts for every wrapped call open on the thread that made it
    (inclusive: ``ask`` includes its ``sample_relative``); one made with none open
    counts as ``untagged``.
    """

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self.calls: dict[str, list[tuple[float, int]]] = defaultdict(list)
        self.untagged = 0
        self.total = 0
        self._restore: list[tuple[Any, str, Any]] = []

    def _stack(self) -> list[list[int]]:
        if not hasattr(self._local, "stack"):
            self._local.stack = []
        stack: list[list[int]] = self._local.stack
        return stack

    def count(self, *_: Any, **__: Any) -> None:
        stack = self._stack()
        with self._lock:
            self.total += 1
            if not stack:
                self.untagged += 1
        for frame in stack:
            frame[0] += 1

    def wrap(self, owner: Any, name: str, tag: str) -> None:
        original = getattr(owner, name)
        probe = self

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            frame = [0]
            stack = probe._stack()
            stack.append(frame)
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                seconds = time.perf_counter() - start
                stack.pop()
                with probe._lock:
                    probe.calls[tag].append((seconds, frame[0]))

        setattr(owner, name, wrapped)
        self._restore.append((owner, name, original))

    def install(self) -> Probe:
        """Wrap the calls of ``TAGS`` and count PostgreSQL and journal round trips."""
        import optuna
        import sqlalchemy
        from optuna.storages import RDBStorage
        from optuna.storages.journal import JournalFileBackend

        from lawsearch.optuna import LawPruner, LawSampler
        from lawsearch.optuna._dashboard import LiveFigures

        for owner, name, tag in (
            (optuna.Study, "ask", "ask"),
            (optuna.Study, "tell", "tell"),
            (LawSampler, "sample_relative", "sample_relative"),
            (LawSampler, "sample_independent", "sample_independent"),
            (optuna.trial.Trial, "should_prune", "should_prune"),
            (LawPruner, "prune", "prune"),
            (optuna.trial.Trial, "report", "report"),
            (RDBStorage, "record_heartbeat", "heartbeat"),
            (LiveFigures, "__call__", "figure"),
            (JournalFileBackend, "read_logs", "journal_read"),
            (JournalFileBackend, "append_logs", "journal_append"),
        ):
            self.wrap(owner, name, tag)
        # every statement, and each transaction's begin and end, is one round trip
        for event in ("before_cursor_execute", "begin", "commit", "rollback"):
            sqlalchemy.event.listen(sqlalchemy.engine.Engine, event, self.count)
        self._events = True
        return self

    def count_journal(self) -> None:
        """Count each journal read and append as one round trip (file lock + I/O)."""
        from optuna.storages.journal import JournalFileBackend

        for name in ("read_logs", "append_logs"):
            inner = getattr(JournalFileBackend, name)

            def counted(*args: Any, _inner: Any = inner, **kwargs: Any) -> Any:
                self.count()
                return _inner(*args, **kwargs)

            setattr(JournalFileBackend, name, counted)
            self._restore.append((JournalFileBackend, name, inner))

    def uninstall(self) -> None:
        import sqlalchemy

        for owner, name, original in reversed(self._restore):
            setattr(owner, name, original)
        self._restore.clear()
        if getattr(self, "_events", False):
            for event in ("before_cursor_execute", "begin", "commit", "rollback"):
                sqlalchemy.event.remove(sqlalchemy.engine.Engine, event, self.count)
            self._events = False

    def dump(self) -> dict[str, Any]:
        return {
            "calls": {k: [[s, n] for s, n in v] for k, v in self.calls.items()},
            "untagged": self.untagged,
            "total": self.total,
        }


# ---- 1 and 2: throughput and round trips ---------------------------------------------------------
def _worker(root: str, name: str, storage: str, candidates: int, step: float, out: str) -> None:
    """One ``lawsearch worker`` process (spawned): ``run_study(worker=True)`` on the replay."""
    import warnings

    warnings.simplefilter("ignore")  # the bench measures; the CLI's own warnings are not ours
    probe = Probe()
    if "://" not in storage:
        probe.count_journal()  # first, so that the tagged wrappers below see the count
    probe.install()
    cfg = study_config(Path(root), name=name, storage=storage, candidates=candidates)
    trainer = GridTrainer(step)
    from lawsearch.runner import run_study

    started = time.time()
    run_study(cfg, worker=True, progress=False, trainer=trainer)
    payload = {
        "started": started,
        "ended": time.time(),
        "steps": trainer.replay.compute_used,
        "cpu_seconds": time.process_time(),  # the whole process: imports, fits, figures, I/O
        "probe": probe.dump(),
    }
    Path(out).write_text(json.dumps(payload))


def run_workers(
    root: Path, kind: str, storage: str, n: int, candidates: int, step: float
) -> dict[str, Any]:
    """``n`` worker processes on a fresh study; its throughput and their probes."""
    import optuna
    from optuna.trial import TrialState

    from lawsearch.optuna import _attrs
    from lawsearch.storage import open_storage

    name = f"bench-{kind}-{n}"
    if "://" not in storage:
        storage = str(root / name / "journal.log")
    ctx = multiprocessing.get_context("spawn")
    outs = [root / f"{name}-{i}.json" for i in range(n)]
    spawned = time.time()
    procs = [
        ctx.Process(target=_worker, args=(str(root), name, storage, candidates, step, str(outs[i])))
        for i in range(n)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    wall = time.time() - spawned
    codes = [p.exitcode for p in procs]
    if any(codes):
        raise RuntimeError(f"{kind} x{n}: worker exit codes {codes}")
    workers = [json.loads(o.read_text()) for o in outs]
    store = open_storage(storage)
    study = optuna.load_study(study_name=name, storage=store)
    trials = study.get_trials(deepcopy=False)
    _close(store)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    screens = [t for t in finished if _attrs.PARENT not in t.user_attrs]
    first = min(t.datetime_start.timestamp() for t in finished if t.datetime_start)
    last_screen = max(t.datetime_complete.timestamp() for t in screens if t.datetime_complete)
    window = last_screen - first
    # a screen trains up to its last report (a pruned one stops there): the work it did,
    # which differs between runs whose samplers proposed (and pruner stopped) differently
    screen_steps = sum(max(t.intermediate_values, default=0) for t in screens)
    steps = sum(w["steps"] for w in workers)
    busy = steps * step
    return {
        "storage": kind,
        "workers": n,
        "candidates": candidates,
        "step_seconds": step,
        "trials": len(finished),
        "screened": len(screens),
        "failed": sum(t.state == TrialState.FAIL for t in trials),
        "screen_seconds": window,
        "screen_trials_per_min": 60.0 * len(screens) / window,
        "screen_steps": screen_steps,
        "screen_steps_per_min": 60.0 * screen_steps / window,
        "wall_seconds": wall,
        "trials_per_min": 60.0 * len(finished) / wall,
        "steps_trained": steps,
        # the share of the workers' wall time spent "training" (sleeping in the replay)
        "training_share": busy / (n * wall),
        "startup_seconds": first - spawned,
        "cpu_seconds_per_trial": sum(w["cpu_seconds"] for w in workers) / max(len(finished), 1),
        "probes": [w["probe"] for w in workers],
    }


def round_trip_table(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Round trips and ms per call of each tag, over every worker of each storage."""
    out = []
    for kind in dict.fromkeys(r["storage"] for r in rows):
        merged: dict[str, list[tuple[float, int]]] = defaultdict(list)
        total = untagged = trials = 0
        for r in rows:
            if r["storage"] != kind:
                continue
            trials += r["trials"]
            for p in r["probes"]:
                total += p["total"]
                untagged += p["untagged"]
                for tag, calls in p["calls"].items():
                    merged[tag] += [(float(s), int(c)) for s, c in calls]
        for tag in (*TAGS, "journal_read", "journal_append"):
            calls = merged.get(tag)
            if not calls:
                continue
            rts = np.array([c for _, c in calls], dtype=float)
            ms = 1000.0 * np.array([s for s, _ in calls])
            out.append(
                {
                    "storage": kind,
                    "call": tag,
                    "calls": len(calls),
                    "round_trips_mean": float(rts.mean()),
                    "round_trips_max": int(rts.max()),
                    "ms_p50": float(np.quantile(ms, 0.5)),
                    "ms_p99": float(np.quantile(ms, 0.99)),
                }
            )
        out.append(
            {
                "storage": kind,
                "call": "all, per finished trial",
                "calls": trials,
                "round_trips_mean": total / max(trials, 1),
                "round_trips_max": None,
                "untagged_per_trial": untagged / max(trials, 1),
                "ms_p50": None,
                "ms_p99": None,
            }
        )
    return out


# ---- 3: decision latency with a full study ----------------------------------------------------
def _jitter(dist: Any, rng: np.random.Generator) -> Any:
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    if isinstance(dist, CategoricalDistribution):
        return dist.choices[int(rng.integers(len(dist.choices)))]
    if isinstance(dist, FloatDistribution):
        if dist.log:
            return float(math.exp(rng.uniform(math.log(dist.low), math.log(dist.high))))
        return float(rng.uniform(dist.low, dist.high))
    return float(rng.uniform(dist.low, dist.high))


def fill(url: str, study_id: int, templates: Sequence[Any], n: int, seed: int) -> float:
    """Add ``n`` candidates cloned from ``templates`` (new params, jittered curve); seconds.

    One bulk insert per table into Optuna's own schema (``optuna.storages._rdb.models``,
    a private module: this is the benchmark's set-up, not lawsearch's code), because
    ``create_new_trial`` writes row by row (0.6 s a trial here) and 10,000 trials
    would take over an hour. Rows are what ``RDBStorage`` itself would write.
    """
    import datetime

    import sqlalchemy as sa
    from optuna.distributions import distribution_to_json
    from optuna.storages._rdb import models
    from optuna.trial import TrialState

    from lawsearch.optuna import _attrs

    rng = np.random.default_rng(seed)
    trials_t = models.TrialModel.__table__
    start = time.perf_counter()
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            base = conn.execute(
                sa.select(sa.func.count()).where(trials_t.c.study_id == study_id)
            ).scalar_one()
            now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
            rows, clones = [], []
            for i in range(n):
                t = templates[i % len(templates)]
                f = float(np.exp(rng.normal(0.0, 0.02)))
                attrs = dict(t.user_attrs)
                attrs[_attrs.ROOT] = base + i  # a lineage of its own
                for k in (_attrs.PREDICTED_FINAL, _attrs.PREDICTED_LO, _attrs.PREDICTED_HI):
                    if isinstance(attrs.get(k), int | float):
                        attrs[k] = float(attrs[k]) * f
                params = {k: _jitter(d, rng) for k, d in t.distributions.items()}
                value = float(t.value) * f if t.state == TrialState.COMPLETE else None
                ivs = {s: v * f for s, v in t.intermediate_values.items()}
                clones.append((t, params, attrs, value, ivs))
                rows.append(
                    {
                        "number": base + i,
                        "study_id": study_id,
                        "state": t.state,
                        "datetime_start": now,
                        "datetime_complete": now,
                    }
                )
            ids = (
                conn.execute(
                    sa.insert(trials_t).returning(
                        trials_t.c.trial_id, sort_by_parameter_order=True
                    ),
                    rows,
                )
                .scalars()
                .all()
            )
            params_rows, value_rows, iv_rows, attr_rows = [], [], [], []
            iv_repr = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr
            for tid, (t, params, attrs, value, ivs) in zip(ids, clones, strict=True):
                for k, v in params.items():
                    d = t.distributions[k]
                    params_rows.append(
                        {
                            "trial_id": tid,
                            "param_name": k,
                            "param_value": d.to_internal_repr(v),
                            "distribution_json": distribution_to_json(d),
                        }
                    )
                if value is not None:
                    stored, kind = models.TrialValueModel.value_to_stored_repr(value)
                    value_rows.append(
                        {"trial_id": tid, "objective": 0, "value": stored, "value_type": kind}
                    )
                for step, v in ivs.items():
                    iv_stored, iv_kind = iv_repr(v)
                    iv_rows.append(
                        {
                            "trial_id": tid,
                            "step": int(step),
                            "intermediate_value": iv_stored,
                            "intermediate_value_type": iv_kind,
                        }
                    )
                for k, v in attrs.items():
                    attr_rows.append({"trial_id": tid, "key": k, "value_json": json.dumps(v)})
            for model, table_rows in (
                (models.TrialParamModel, params_rows),
                (models.TrialValueModel, value_rows),
                (models.TrialIntermediateValueModel, iv_rows),
                (models.TrialUserAttributeModel, attr_rows),
            ):
                if table_rows:
                    conn.execute(sa.insert(model.__table__), table_rows)
    finally:
        engine.dispose()
    return time.perf_counter() - start


def _latency(root: str, name: str, storage: str, probes: int, out: str) -> None:
    """A fresh process (cold caches) that opens the study as the CLI does and times decisions."""
    import warnings

    import optuna
    from optuna.trial import TrialState

    from lawsearch.optuna import _attrs
    from lawsearch.optuna import _compat as compat
    from lawsearch.study import build_pruner, build_sampler, open_study_storage, suggest_config

    warnings.simplefilter("ignore")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = study_config(Path(root), name=name, storage=storage, candidates=10**6)
    trainer = GridTrainer(0.0)
    probe = Probe().install()
    study = optuna.create_study(
        study_name=cfg.name,
        storage=open_study_storage(cfg),
        direction="minimize",
        sampler=build_sampler(cfg, worker=os.getpid()),
        pruner=build_pruner(cfg),
        load_if_exists=True,
    )
    rung_calls: list[float] = []
    between_calls: list[float] = []  # reports inside a rung: no fit, a cached decision
    pruner = study.pruner
    for _ in range(probes):
        trial = compat.ask(study)
        config = suggest_config(cfg, trial)
        trial.set_user_attr(_attrs.TOKENS_PER_STEP, float(cfg.train.tokens_per_step))
        trial.set_user_attr(_attrs.LR, float(config["schedule"]["peak_lr"]))
        stopped = [False]
        reported: list[int] = []

        def report(
            step: int,
            value: float,
            extras: Any,
            trial: Any = trial,
            reported: Any = reported,
            stopped: Any = stopped,
        ) -> bool:
            trial.report(float(value), int(step))
            reported.append(int(step))
            before = len(probe.calls["prune"])
            stop = trial.should_prune()
            took = probe.calls["prune"][before][0]
            (rung_calls if _is_rung_step(pruner, reported) else between_calls).append(took)
            stopped[0] = stopped[0] or stop
            return bool(stop)

        with compat.heartbeat(study, trial):
            result = trainer.train(config, budget_steps=cfg.short_steps, report=report)
        if stopped[0]:
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, result.final_value)
    payload = {
        "probe": probe.dump(),
        "rung_seconds": rung_calls,
        "between_seconds": between_calls,
    }
    probe.uninstall()
    Path(out).write_text(json.dumps(payload))


def _is_rung_step(pruner: Any, steps: Sequence[int]) -> bool:
    """Whether ``LawPruner`` did real work at the last of ``steps`` (a new rung's first report)."""
    rung_of = getattr(pruner, "rung_of", None)
    if rung_of is None or len(steps) < getattr(pruner, "min_points", 1):
        return False
    return len(steps) == 1 or rung_of(steps[-2]) != rung_of(steps[-1])


def run_latency(
    root: Path, url: str, sizes: Sequence[int], probes: int, template_study: str
) -> list[dict[str, Any]]:
    """Fill a study to each size, then time decisions in a fresh process."""
    import optuna
    from optuna.trial import TrialState

    from lawsearch.optuna import _attrs
    from lawsearch.optuna import _compat as compat
    from lawsearch.storage import open_storage

    store = open_storage(url)  # the RDBStorage itself: no cache between the fills
    src = optuna.load_study(study_name=template_study, storage=store)
    templates = [
        t
        for t in src.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        if _attrs.PARENT not in t.user_attrs and t.intermediate_values
    ]
    name = "bench-latency"
    sid = store.create_new_study([optuna.study.StudyDirection.MINIMIZE], name)
    for k, v in store.get_study_system_attrs(compat.study_id(src)).items():
        if k.startswith((_attrs.MIXTURE_SPEC_PREFIX, _attrs.SCHEDULE_SPEC_PREFIX)):
            store.set_study_system_attr(sid, k, v)
    rows = []
    have = 0
    for size in sorted(sizes):
        seconds = fill(url, sid, templates, size - have, seed=size)
        print(f"filled {size} trials (+{size - have} in {seconds:.0f} s)", file=sys.stderr)
        have = size
        out = root / f"latency-{size}.json"
        ctx = multiprocessing.get_context("spawn")
        p = ctx.Process(target=_latency, args=(str(root), name, url, probes, str(out)))
        with timer() as took:
            p.start()
            p.join()
        if p.exitcode:
            raise RuntimeError(f"latency probe at {size} trials exited {p.exitcode}")
        got = json.loads(out.read_text())
        rows.append(
            {
                "trials": have,
                "fill_seconds": seconds,
                "probe_seconds": took[0],
                **_latency_row(got),
            }
        )
        have += probes  # the probes' own trials stay in the study
    _close(store)
    return rows


def _close(storage: Any) -> None:
    """Close a PostgreSQL storage's pooled connections (a journal has none)."""
    engine = getattr(storage, "engine", None)
    if engine is not None:
        engine.dispose()


def _latency_row(got: Mapping[str, Any]) -> dict[str, Any]:
    calls = got["probe"]["calls"]
    row: dict[str, Any] = {}
    series = {
        "prune": [s for s, _ in calls.get("prune", [])],
        "prune_rung": list(got["rung_seconds"]),
        "prune_between": list(got.get("between_seconds", [])),
        "sample_relative": [s for s, _ in calls.get("sample_relative", [])],
        "sample_independent": [s for s, _ in calls.get("sample_independent", [])],
        "ask": [s for s, _ in calls.get("ask", [])],
    }
    for key, secs in series.items():
        ms = 1000.0 * np.asarray(secs, dtype=float)
        if key in ("prune_rung", "prune_between"):
            warm = ms  # the first prune call is reported in the "every report" row
        else:
            warm = ms[1:]
        row[f"{key}_calls"] = int(ms.size)
        row[f"{key}_first_ms"] = float(ms[0]) if ms.size else None
        row[f"{key}_p50_ms"] = float(np.quantile(warm, 0.5)) if warm.size else None
        row[f"{key}_p99_ms"] = float(np.quantile(warm, 0.99)) if warm.size else None
        row[f"{key}_max_ms"] = float(warm.max()) if warm.size else None
    for key in ("prune", "sample_relative", "sample_independent", "ask"):
        rts = [n for _, n in calls.get(key, [])]
        row[f"{key}_round_trips"] = float(np.mean(rts[1:])) if len(rts) > 1 else None
    return row


# ---- PostgreSQL: a database of our own ----------------------------------------------------------
@contextmanager
def own_database(server: str, name: str) -> Iterator[str]:
    """Create database ``name`` on ``server`` (dropped first if left over), drop it after."""
    import sqlalchemy

    admin = sqlalchemy.create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            c.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            c.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
        yield f"{server}/{name}"
    finally:
        with admin.connect() as c:
            c.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _reachable(server: str) -> str | None:
    """None if the server answers, else why not."""
    try:
        import sqlalchemy

        engine = sqlalchemy.create_engine(f"{server}/postgres")
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:  # any driver or connection error: the part is skipped
        return str(exc).strip().splitlines()[0]
    return None


# ---- main ---------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = benchmark_parser(NAME, __doc__)
    parser.add_argument("--workers", default="1,2,4,8", help="worker process counts")
    parser.add_argument("--candidates", type=int, default=16, help="candidates per study")
    parser.add_argument(
        "--step-seconds", type=float, default=0.15, help="wall seconds per replayed step"
    )
    parser.add_argument(
        "--sizes", default="1000,10000", help='trials in the latency study ("": none)'
    )
    parser.add_argument("--probes", type=int, default=10, help="new candidates timed per size")
    parser.add_argument("--postgres", default=POSTGRES, help="PostgreSQL server URL")
    parser.add_argument("--storages", default="postgresql,journal", help="storages to run")
    args = parser.parse_args(argv)
    counts = [int(x) for x in args.workers.split(",")]
    sizes = [int(x) for x in args.sizes.split(",") if x]  # "": no latency study
    candidates, step, probes = args.candidates, args.step_seconds, args.probes
    if args.tiny:
        counts, sizes, candidates, step, probes = [1, 2], [40], 4, 0.01, 1
    kinds = [k for k in args.storages.split(",") if k]
    why_not = _reachable(args.postgres) if "postgresql" in kinds else None
    if why_not is not None:
        print(f"PostgreSQL skipped: {why_not}", file=sys.stderr)
        kinds.remove("postgresql")
    database = f"{DATABASE}_{os.getpid()}"
    rows: list[dict[str, Any]] = []
    latency: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="lawsearch-workers-") as tmp,
        timer() as clock,
        _maybe_database("postgresql" in kinds, args.postgres, database) as url,
    ):
        root = Path(tmp)
        for kind in kinds:
            for n in counts:
                r = run_workers(
                    root, kind, url if kind == "postgresql" else "", n, candidates, step
                )
                rows.append(r)
                print(
                    f"{kind:10s} x{n}: {r['screen_trials_per_min']:.1f} screening trials/min, "
                    f"{r['trials_per_min']:.1f} trials/min over {r['wall_seconds']:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
        if "postgresql" in kinds and sizes:
            latency = run_latency(root, url, sizes, probes, f"bench-postgresql-{counts[0]}")
    md = report(rows, round_trip_table(rows), latency, step=step, why_not=why_not)
    print(md)
    out = output_dir(args.out, NAME)
    write_json(
        out / f"{NAME}.json",
        {
            "tiny": args.tiny,
            "step_seconds": step,
            "candidates": candidates,
            "postgres_skipped": why_not,
            "throughput": [{k: v for k, v in r.items() if k != "probes"} for r in rows],
            "round_trips": round_trip_table(rows),
            "latency": latency,
            "seconds": clock[0],
            "environment": environment(),
        },
    )
    write_text(out / f"{NAME}.md", md)
    _plot(rows, out / f"{NAME}.png")
    return 0


@contextmanager
def _maybe_database(wanted: bool, server: str, name: str) -> Iterator[str]:
    if not wanted:
        yield ""
        return
    with own_database(server, name) as url:
        yield url


def _speedups(rows: Sequence[dict[str, Any]], key: str) -> dict[tuple[str, int], float]:
    base = {r["storage"]: r[key] for r in rows if r["workers"] == 1}
    return {
        (r["storage"], r["workers"]): r[key] / base[r["storage"]]
        for r in rows
        if r["storage"] in base
    }


def report(
    rows: Sequence[dict[str, Any]],
    trips: Sequence[dict[str, Any]],
    latency: Sequence[dict[str, Any]],
    *,
    step: float,
    why_not: str | None,
) -> str:
    """The Markdown report: three tables and the targets."""
    screen = _speedups(rows, "screen_trials_per_min")
    work = _speedups(rows, "screen_steps_per_min")
    whole = _speedups(rows, "trials_per_min")
    t1 = markdown_table(
        [
            "storage",
            "workers",
            "screening trials/min",
            "speed-up",
            "screening steps/min",
            "speed-up",
            "whole study trials/min",
            "speed-up",
            "wall s",
            "training share",
            "CPU s / trial",
        ],
        [
            [
                r["storage"],
                r["workers"],
                fmt(r["screen_trials_per_min"], ".1f"),
                fmt(screen.get((r["storage"], r["workers"])), ".2f") + "x",
                fmt(r.get("screen_steps_per_min"), ".0f"),
                fmt(work.get((r["storage"], r["workers"])), ".2f") + "x",
                fmt(r["trials_per_min"], ".1f"),
                fmt(whole.get((r["storage"], r["workers"])), ".2f") + "x",
                fmt(r["wall_seconds"], ".0f"),
                fmt(100 * r["training_share"], ".0f") + "%",
                fmt(r["cpu_seconds_per_trial"], ".1f"),
            ]
            for r in rows
        ],
    )
    t2 = markdown_table(
        ["storage", "call", "calls", "round trips / call", "max", "ms p50", "ms p99"],
        [
            [
                r["storage"],
                r["call"],
                r["calls"],
                fmt(r["round_trips_mean"], ".1f"),
                str(r["round_trips_max"]) if r["round_trips_max"] is not None else "–",
                fmt(r["ms_p50"], ".1f"),
                fmt(r["ms_p99"], ".1f"),
            ]
            for r in trips
        ],
    )
    lat_rows = []
    for r in latency:
        for key, label in (
            ("prune", "LawPruner.prune (every report)"),
            ("prune_between", "LawPruner.prune (reports between rungs: no fit)"),
            ("prune_rung", "LawPruner.prune (rung decisions: a fit)"),
            ("sample_relative", "LawSampler.sample_relative"),
            ("sample_independent", "LawSampler.sample_independent"),
            ("ask", "study.ask (whole proposal)"),
        ):
            lat_rows.append(
                [
                    r["trials"],
                    label,
                    r[f"{key}_calls"],
                    fmt(r[f"{key}_p50_ms"], ".1f"),
                    fmt(r[f"{key}_p99_ms"], ".1f"),
                    fmt(r[f"{key}_first_ms"], ".0f"),
                    fmt(r.get(f"{key}_round_trips"), ".1f"),
                ]
            )
    t3 = markdown_table(
        [
            "trials in study",
            "decision",
            "calls",
            "ms p50",
            "ms p99",
            "first call ms",
            "round trips",
        ],
        lat_rows,
    )
    lines = []
    for k, goal in ((4, 3.5), (8, 6.0)):
        got = screen.get(("postgresql", k))
        if got is not None:
            lines.append(
                f"- PostgreSQL, {k} workers: x{got:.2f} the screening trials/min of 1 "
                f"(target >= {goal}) — {'met' if got >= goal else 'NOT met'}"
                f"; screening steps/min x{work[('postgresql', k)]:.2f} (the same work rate: "
                "trials/min also counts how soon the pruner stopped them)"
                f"; whole study x{whole[('postgresql', k)]:.2f}"
            )
    big = [r for r in latency if r["trials"] >= 10_000]
    if big:
        r = big[-1]
        worst = max(
            v
            for v in (
                r["prune_p99_ms"],
                r["sample_relative_p99_ms"],
                r["sample_independent_p99_ms"],
            )
            if v is not None
        )
        lines.append(
            f"- decision p99 at {r['trials']:,} trials: {worst:.1f} ms (target <= 50) — "
            f"{'met' if worst <= 50 else 'NOT met'}"
        )
    if why_not:
        lines.append(f"- PostgreSQL skipped: {why_not}")
    return (
        f"# Workers\n\nReplay step time {step:g} s; trials/min by storage and worker processes.\n\n"
        f"{t1}\n\n## Storage round trips per call\n\n{t2}\n\n"
        f"## Decision latency on PostgreSQL (fresh process, warm calls)\n\n{t3}\n\n"
        "## Targets\n\n" + ("\n".join(lines) or "- (tiny run)") + "\n"
    )


def _plot(rows: Sequence[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    screen = _speedups(rows, "screen_trials_per_min")
    for kind in dict.fromkeys(r["storage"] for r in rows):
        ns = [r["workers"] for r in rows if r["storage"] == kind]
        ax.plot(ns, [screen[(kind, n)] for n in ns], marker="o", label=kind)
    if rows:
        top = max(r["workers"] for r in rows)
        ax.plot([1, top], [1, top], color="grey", ls="--", lw=0.6, label="linear")
    ax.set_xlabel("worker processes")
    ax.set_ylabel("screening trials/min (x of 1 worker)")
    ax.legend()
    save_figure(fig, path)


if __name__ == "__main__":
    raise SystemExit(main())
