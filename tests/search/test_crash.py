"""Crash tests with real processes: 4 workers, one killed with ``kill -9`` mid-trial.

The workers run ``lawsearch worker``'s code path with the fake trainer
(``tests.search._crash_worker``), on a journal file and on PostgreSQL (the test
creates and drops its own database). The study must finish with every planned
lineage ranked, none duplicated, no rung promoted twice, the killed trial retried
from its last checkpoint, and total compute at most one checkpoint interval above
the no-crash run. Also: a process killed while writing a checkpoint leaves the
previous one valid.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from lawsearch.config import load_study
from lawsearch.optuna import _attrs
from lawsearch.search._faults import is_candidate
from lawsearch.study import open_study_storage, planned_steps
from tests._pg_server import drop_database

ROOT = Path(__file__).resolve().parents[2]
N_WORKERS = 4
STEP_SECONDS = 0.04
CHECKPOINT_EVERY = 10
EVAL_EVERY = 5


def _study_file(tmp_path: Path, storage: str) -> Path:
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.txt").write_text(f"domain {name}\n")
    store = f'storage = "{storage}"\n' if storage else ""
    text = f"""
        [study]
        name = "crash"
        seed = 5
        {store}heartbeat_interval = 1
        grace_period = 3
        [domains.a]
        paths = ["a.txt"]
        [domains.b]
        paths = ["b.txt"]
        [domains.c]
        paths = ["c.txt"]
        [search_space]
        schedules = ["cosine"]
        peak_lr = [1e-3, 1e-2]
        [budgets]
        short_tokens = 2560
        full_tokens = 7680
        [law]
        name = "power"
        [pruner]
        enabled = false
        [search]
        candidates = 6
        survivors = 2
        max_retries = 2
        [train]
        batch_size = 4
        seq_len = 16
        eval_every = {EVAL_EVERY}
        checkpoint_every = {CHECKPOINT_EVERY}
        """
    path = tmp_path / "crash.toml"
    path.write_text(textwrap.dedent(text).replace("\n        ", "\n"))
    return path


def _trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False)


def _crash_run(tmp_path: Path, storage: str) -> None:
    study_file = _study_file(tmp_path, storage)
    cfg = load_study(study_file, run_root=tmp_path)
    # the study exists before the workers start (no race creating tables or the study)
    storage = open_study_storage(cfg)
    try:
        _crash_run_on(tmp_path, study_file, cfg, storage)
    finally:
        if isinstance(storage, optuna.storages.RDBStorage):
            storage.remove_session()
            storage.engine.dispose()  # no connection is left open for a later test


def _crash_run_on(tmp_path: Path, study_file: Path, cfg: Any, storage: Any) -> None:
    study = optuna.create_study(study_name=cfg.name, storage=storage)
    log = tmp_path / "steps.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "tests.search._crash_worker"]
    args = [str(study_file), str(tmp_path), str(log), str(STEP_SECONDS)]
    outs = [tmp_path / f"worker{i}.out" for i in range(N_WORKERS)]
    workers = []
    for out in outs:
        with open(out, "wb") as fh:
            workers.append(
                subprocess.Popen(cmd + args, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
            )
    victim_trial = None
    try:
        # kill -9 a worker mid-trial, once its trial has written a checkpoint
        deadline = time.monotonic() + 60
        while victim_trial is None and time.monotonic() < deadline:
            for t in _trials(study):
                step = t.user_attrs.get(_attrs.LAST_CHECKPOINT_STEP)
                owner = str(t.user_attrs.get(_attrs.WORKER, ""))
                if t.state == TrialState.RUNNING and step is not None:
                    pid = int(owner.rpartition("-")[2])
                    time.sleep(5 * STEP_SECONDS)  # mid-interval: about 5 steps past it
                    os.kill(pid, signal.SIGKILL)
                    victim_trial = t.number
                    break
            time.sleep(0.05)
        assert victim_trial is not None, "no trial reached a checkpoint within 60 s"
        codes = [w.wait(timeout=120) for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    outputs = [out.read_text() for out in outs]
    assert sorted(codes) == [-signal.SIGKILL] + [0] * (N_WORKERS - 1), outputs
    _check(cfg, study, victim_trial, log, outputs)


_SHOWN = ("root", "rung", "parent", "retry_of", "duplicate_of", "surplus", "resume_step", "error")


def _check(
    cfg: Any, study: optuna.Study, victim: int, log: Path, outputs: list[str]
) -> dict[str, Any]:
    trials = _trials(study)
    table = "\n".join(
        f"{t.number} {t.state.name} "
        + str({k[10:]: v for k, v in t.user_attrs.items() if k[10:] in _SHOWN})
        + f" steps={sorted(t.intermediate_values)[-1:]}"
        for t in trials
    )
    print(table)
    assert not [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    # every planned lineage ranked, none duplicated
    lineages = [t.number for t in trials if is_candidate(t)]
    assert len(lineages) == cfg.search.candidates
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    by_node = collections.Counter(
        (t.user_attrs[_attrs.ROOT], t.user_attrs[_attrs.RUNG]) for t in done
    )
    assert {root for root, _ in by_node} == set(lineages)
    assert max(by_node.values()) == 1, by_node  # no (lineage, rung) trained to the end twice
    # no rung promoted twice: one live continuation per (parent, rung), survivors of them
    continued = collections.Counter(
        (t.user_attrs[_attrs.PARENT], t.user_attrs[_attrs.RUNG])
        for t in done
        if _attrs.PARENT in t.user_attrs
    )
    assert len(continued) == cfg.search.survivors and set(continued.values()) == {1}
    assert any(max(t.intermediate_values) == cfg.full_steps for t in done)  # a pick
    # the killed trial was failed and retried from its last checkpoint
    killed = trials[victim]
    assert killed.state == TrialState.FAIL
    retries = [t for t in trials if t.user_attrs.get(_attrs.RETRY_OF) == victim]
    # two live workers may both fail the stale trial: the second retry is dropped unrun
    dropped = [t for t in retries if _attrs.DUPLICATE_OF in t.user_attrs]
    for t in dropped:  # failed unrun: only the inherited curve, up to the checkpoint
        assert t.state == TrialState.FAIL
        assert max(t.intermediate_values, default=0) <= t.user_attrs[_attrs.RESUME_STEP]
    (retry,) = [t for t in retries if t not in dropped]
    last = int(killed.user_attrs[_attrs.LAST_CHECKPOINT_STEP])
    assert retry.state == TrialState.COMPLETE
    assert retry.user_attrs[_attrs.RESUME_STEP] == last
    assert retry.user_attrs[_attrs.CHECKPOINT] == killed.user_attrs[_attrs.LAST_CHECKPOINT]
    inherited = {s: v for s, v in killed.intermediate_values.items() if s <= last}
    assert {s: retry.intermediate_values[s] for s in inherited} == inherited
    own = sorted(s for s in retry.intermediate_values if s > last)
    assert own[0] == last + EVAL_EVERY  # its first own report: the first eval after the checkpoint
    # compute: every step any process trained (the killed one's too) vs the no-crash run
    steps = log.read_text().split("\n")
    trained = sum(1 for line in steps if line.strip())
    planned = planned_steps(cfg)  # the no-crash run's compute (pruner off: exact)
    assert planned <= trained <= planned + CHECKPOINT_EVERY, (trained, planned)
    summary = {
        "victim": victim,
        "resumed_from": last,
        "trained_steps": trained,
        "no_crash_steps": planned,
        "repeated_steps": trained - planned,
    }
    print("crash test:", json.dumps(summary))
    return summary


@pytest.mark.slow
def test_a_worker_killed_mid_trial_on_a_journal_file(tmp_path: Path) -> None:
    _crash_run(tmp_path, "")


@pytest.mark.slow
@pytest.mark.postgres
def test_a_worker_killed_mid_trial_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    import sqlalchemy

    name = f"lawsearch_i_faults_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    url = postgres_url.rsplit("/", 1)[0] + "/" + name
    try:
        _crash_run(tmp_path, url)
    finally:
        drop_database(admin, name)
        admin.dispose()


_WRITER = """
import sys, time
from lawsearch.train._checkpoint import atomic_write
path = sys.argv[1]
atomic_write(path, lambda fh: fh.write(b"step 10 complete"))
print("first", flush=True)

def slow(fh):
    fh.write(b"step 20 half")
    fh.flush()
    print("writing", flush=True)
    time.sleep(60)

atomic_write(path, slow)
"""


def test_a_process_killed_while_writing_a_checkpoint_leaves_the_previous_one(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ckpt" / "step.bin"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-c", _WRITER, str(path)]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env) as proc:  # closes, reaps
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == b"first"
            assert proc.stdout.readline().strip() == b"writing"
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            proc.kill()  # on a failed assertion; a no-op once it has exited
    assert path.read_bytes() == b"step 10 complete"  # the previous checkpoint, whole
    leftovers = [p.name for p in path.parent.iterdir() if p != path]
    assert leftovers and all(n.startswith(".step.bin.") and n.endswith(".tmp") for n in leftovers)
