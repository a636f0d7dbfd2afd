"""``lawsearch run`` and ``lawsearch worker``: run a study's search end to end.

``run`` creates (or resumes) the study in its storage, builds the corpus and the
trainer, runs the retrieval → short training → extrapolation → rerank search
with a progress bar on stderr, then prints the ranking table, writes the report
folder and prints the ``optuna-dashboard`` command. Re-running the same command
resumes: finished trials are never retrained, and trials left RUNNING by a dead
process are failed and retried from their checkpoint.

``worker`` joins the same study from another process (or machine, with
PostgreSQL) and trains whatever the search hands it; it prints a one-line
summary instead of the report.

Exit codes: 0 done, 1 the search failed, 2 bad study file (nothing written).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import math
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["Progress", "add_arguments", "execute", "recover_orphans", "run"]

LOCKS = "workers"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study", help="the study file (TOML), e.g. studies/demo.toml")
    parser.add_argument(
        "--root",
        default=None,
        help="folder that runs/<study>/ and a relative storage path live under "
        "(default: the current directory)",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bar (the table is still printed)"
    )


def run(args: argparse.Namespace) -> int:
    from lawsearch.config import load_study

    cfg = load_study(args.study, run_root=args.root)
    return execute(cfg, worker=args.command == "worker", progress=not args.quiet, out=sys.stdout)


def execute(
    cfg: Any,
    *,
    worker: bool = False,
    progress: bool = True,
    trainer: Any = None,
    out: Any = None,
) -> int:
    """Run (or join, with ``worker=True``) the search of a validated study.

    Args:
        cfg: a ``StudyConfig``.
        worker: join as an extra process: no report, a one-line summary.
        progress: draw the progress bar on stderr.
        trainer: a ``Trainer`` to use instead of the study's ``TransformersTrainer``
            (tests and replays).
        out: where the table goes (default stdout).

    Under ``torchrun`` (``WORLD_SIZE > 1``) rank 0 runs the search and every
    trial trains data-parallel on all ranks; the other ranks only follow
    (``lawsearch.cli._distributed``) and print nothing.
    """
    from lawsearch.cli import _distributed

    if _distributed.world_size() <= 1:
        return _execute(cfg, worker=worker, progress=progress, trainer=trainer, out=out)
    from lawsearch import config as wiring

    channel = _distributed.Channel(cfg.train.device)
    inner = trainer if trainer is not None else wiring.build_trainer(cfg)
    if not channel.is_main:
        _distributed.follow(inner, channel)
        return 0
    leader = _distributed.LeaderTrainer(inner, channel)
    code = _execute(cfg, worker=worker, progress=progress, trainer=leader, out=out)
    leader.close()  # not on an exception: the followers are mid-collective; torchrun ends them
    return code


def _execute(
    cfg: Any,
    *,
    worker: bool,
    progress: bool,
    trainer: Any,
    out: Any,
) -> int:
    import optuna

    from lawsearch import config as wiring
    from lawsearch import report as reporting

    out = out or sys.stdout
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = wiring.open_storage(cfg)
    with _worker_lock(cfg) as alone:
        study = optuna.create_study(
            study_name=cfg.name,
            storage=storage,
            direction="minimize",
            # concurrent processes must not share a sampler seed (same proposals); only
            # a lone `run` keeps the study's seed (reproducible)
            sampler=wiring.build_sampler(cfg, worker=0 if alone and not worker else os.getpid()),
            pruner=wiring.build_pruner(cfg),
            load_if_exists=True,
        )
        recovered = recover_orphans(study, alone=alone)
        if recovered:
            print(
                f"lawsearch: {len(recovered)} trial(s) left running by a stopped process "
                f"marked FAILED and queued again: {recovered}",
                file=sys.stderr,
            )
        if trainer is None:
            trainer = wiring.build_trainer(cfg)
        done = reporting.collect(study, cfg).compute_tokens
        bar = Progress(
            total_tokens=_expected_tokens(cfg),
            full_tokens=cfg.full_budget_compute(),
            done_tokens=done,
            enabled=progress,
            study=study,
        )
        try:
            search = wiring.build_search(
                cfg, trainer=trainer, on_start=bar.on_start, on_report=bar.on_report
            )
            result = search.run(study)
            if not worker:
                result = _finish(study, search, cfg, bar)
        finally:
            bar.close()
    rep = reporting.collect(study, cfg)
    if worker:
        print(
            f"worker done: study {cfg.name!r}, {len(rep.lineages)} candidates, compute "
            f"{100 * rep.compute_fraction:.1f}% of training all fully",
            file=out,
        )
        return 0
    files = reporting.write_report(rep, cfg.report_dir, law=cfg.law.build())
    _dashboard_figures(study, cfg, rep)
    print(reporting.format_table(rep), file=out)
    pick = _pick_number(result)
    if pick is not None and rep.pick is not None and pick != rep.pick.number:
        print(f"search pick: trial {pick}", file=out)
    print(f"\nreport: {cfg.report_dir} ({', '.join(p.name for p in files)})", file=out)
    artifacts = cfg.run_dir / "artifacts"
    print("dashboard: " + reporting.dashboard_command(cfg.study.storage, artifacts), file=out)
    return 0


def _finish(study: Any, search: Any, cfg: Any, bar: Progress, poll: float = 5.0) -> Any:
    """Wait for other workers' trials, taking any work they promote, then rerank.

    ``RetrievalRerank`` has no barrier: a worker leaves when nothing is left *for
    it*. ``run`` owes the user the final table, so it stays until no trial is
    RUNNING or WAITING, training whatever continuation appears, and recovers the
    trials of a worker that died meanwhile.
    """
    import optuna
    from optuna.trial import TrialState

    while True:
        states = {t.state for t in study.get_trials(deepcopy=False)}
        if TrialState.RUNNING not in states and TrialState.WAITING not in states:
            return search.result(study)
        if TrialState.WAITING not in states:
            bar.start(stage="waiting for other workers", trial="-")
            time.sleep(poll)
            if cfg.study.is_journal:
                recover_orphans(study, alone=_live_others(cfg) == 0)
            else:
                optuna.storages.fail_stale_trials(study)
        search.work(study)


def _dashboard_figures(study: Any, cfg: Any, rep: Any, top: int = 5) -> None:
    """Attach the study figure and the leaders' extrapolation plots for optuna-dashboard.

    Needs the ``[dashboard]`` extra (plotly, optuna-dashboard); skipped without it.
    """
    try:
        import optuna_dashboard  # noqa: F401
        import plotly  # noqa: F401
    except ImportError:
        return
    from optuna.artifacts import FileSystemArtifactStore

    from lawsearch.optuna._dashboard import save_study_figure, save_trial_figure

    multi = len(cfg.domains) >= 2
    save_study_figure(study, mixture="mixture" if multi else None)
    store_dir = cfg.run_dir / "artifacts"
    store_dir.mkdir(parents=True, exist_ok=True)
    store = FileSystemArtifactStore(str(store_dir))
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    key = "lawsearch:figured_trials"
    done = set(study._storage.get_study_system_attrs(study._study_id).get(key, []))
    for lin in rep.lineages[:top]:
        trial = by_number[lin.trials[-1]]
        if trial.number in done or trial.state.name == "RUNNING":
            continue
        done.add(trial.number)
        if len(trial.intermediate_values) >= cfg.law.build().min_points():
            try:
                save_trial_figure(
                    study,
                    trial,
                    artifact_store=store,
                    law=cfg.law.build(),
                    target_step=cfg.full_steps,
                )
            except (OSError, ValueError) as exc:  # a figure never fails the search
                print(
                    f"lawsearch: no dashboard figure for trial {trial.number}: {exc}",
                    file=sys.stderr,
                )
    study._storage.set_study_system_attr(study._study_id, key, sorted(done))


def _pick_number(result: Any) -> int | None:
    """The candidate (lineage root) of the search's pick."""
    for row in getattr(result, "table", ()):
        if row.get("trial") == result.best_trial:
            return int(row["root"])
    return None


def _expected_tokens(cfg: Any) -> float:
    """Compute the search spends if nothing is pruned early: screen all, continue survivors."""
    return float(cfg.planned_steps * cfg.train.tokens_per_step)


# ---- recovering trials of a dead process (journal files) ---------------------------------


@contextlib.contextmanager
def _worker_lock(cfg: Any) -> Iterator[bool]:
    """Hold ``<run dir>/workers/<host>-<pid>.lock``; yield whether no other local worker lives.

    Journal storages have no heartbeat, so liveness is an ``flock`` held for the
    life of the process: the kernel drops it when the process dies, however it
    dies. (PostgreSQL storages use Optuna's heartbeat instead.)
    """
    folder = cfg.run_dir / LOCKS
    folder.mkdir(parents=True, exist_ok=True)
    mine = _lock_path(cfg)
    fh = open(mine, "w")  # held (locked) for the whole run
    try:
        _flock(fh, blocking=True)
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        yield _live_others(cfg) == 0
    finally:
        fh.close()
        with contextlib.suppress(OSError):
            mine.unlink()


def _lock_path(cfg: Any) -> Path:
    return cfg.run_dir / LOCKS / f"{socket.gethostname()}-{os.getpid()}.lock"


def _live_others(cfg: Any) -> int:
    """Other live workers of this run folder (stale lock files are removed)."""
    mine = _lock_path(cfg)
    others = 0
    for path in (cfg.run_dir / LOCKS).glob("*.lock"):
        if path == mine:
            continue
        if _is_held(path):
            others += 1
        else:
            with contextlib.suppress(OSError):
                path.unlink()
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


def _is_held(path: Path) -> bool:
    try:
        with open(path) as fh:
            return not _flock(fh, blocking=False)
    except FileNotFoundError:
        return False


def recover_orphans(study: Any, *, alone: bool) -> list[int]:
    """Fail the RUNNING trials no live process owns and queue each again.

    Only when this is the only live worker of a journal storage (``alone``): every
    RUNNING trial then belongs to a process that died. Each is set FAILED and a
    WAITING copy is enqueued with the same parameters and the ``lawsearch:`` attrs
    that say where to resume (``parent``, ``resume_step``, ``checkpoint``, ``rung``),
    plus ``lawsearch:retry_of``; the search trains it from that checkpoint (a
    screening candidate restarts from scratch and its failed original is marked
    ``lawsearch:surplus`` so the retry takes its place among the candidates).

    Returns:
        The numbers of the trials that were failed.
    """
    import optuna
    from optuna.trial import TrialState

    if not alone or not _is_journal(study):
        return []
    failed = []
    storage = study._storage
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if "lawsearch:parent" not in t.user_attrs:
            # the retry takes this candidate's place in the search's count
            storage.set_trial_user_attr(t._trial_id, "lawsearch:surplus", 1.0)
        if not storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
            continue
        failed.append(t.number)
        keep = {
            k: v
            for k, v in t.user_attrs.items()
            if k.startswith("lawsearch:") and not k.startswith("lawsearch:predicted")
        }
        keep["lawsearch:retry_of"] = t.number
        keep.pop("lawsearch:surplus", None)
        resume = int(t.user_attrs.get("lawsearch:resume_step", 0) or 0)
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.WAITING,
                params=t.params,
                distributions=t.distributions,
                user_attrs=keep,
                # a continuation keeps its parent's curve up to the checkpoint it resumes
                intermediate_values={s: v for s, v in t.intermediate_values.items() if s <= resume}
                if "lawsearch:checkpoint" in t.user_attrs
                else {},
            )
        )
    return failed


def _is_journal(study: Any) -> bool:
    from optuna.storages import JournalStorage

    storage = study._storage
    inner = getattr(storage, "_backend", storage)
    return isinstance(storage, JournalStorage) or isinstance(inner, JournalStorage)


# ---- the progress bar ------------------------------------------------------------------


class Progress:
    """A tqdm bar on stderr (or silent counting) with the search's running numbers.

    Shows the stage, the trial, its step and loss, the best predicted final loss
    in the study, and compute spent as a share of training every candidate fully.

    Args:
        total_tokens: the compute the search is expected to spend (the bar's length).
        full_tokens: the compute of training every candidate to the full budget.
        done_tokens: compute already spent in the study (when resuming).
        enabled: draw the bar.
        study: the study, polled every few seconds for the best prediction.
    """

    def __init__(
        self,
        *,
        total_tokens: float,
        full_tokens: float,
        done_tokens: float = 0.0,
        enabled: bool = True,
        study: Any = None,
    ) -> None:
        self.full_tokens = float(full_tokens)
        self.spent = float(done_tokens)
        self.stage = "screen"
        self.trial = "-"
        self.best = math.nan
        self._study = study
        self._polled = -math.inf
        self._lock = threading.Lock()
        self._bar: Any = None
        if enabled:
            from tqdm import tqdm

            total = max(int(total_tokens), int(done_tokens), 1)
            self._bar = tqdm(
                total=total,
                initial=int(done_tokens),
                unit="tok",
                unit_scale=True,
                file=sys.stderr,
                dynamic_ncols=True,
                smoothing=0.05,
                desc="search",
            )
            self._draw()

    def start(self, *, stage: str, trial: str) -> None:
        with self._lock:
            self.stage, self.trial = stage, trial
            self._poll(force=True)
            self._draw()

    def on_start(self, trial: int, budget_steps: int, resume_step: int) -> None:
        """``build_search`` hook: a trial starts training towards ``budget_steps``."""
        stage = "screen" if resume_step == 0 else "continue"
        self.start(stage=f"{stage} {resume_step}->{budget_steps}", trial=str(trial))

    def on_report(self, trial: int, step: int, value: float, tokens: float) -> None:
        """``build_search`` hook: an evaluation was reported."""
        self.advance(tokens, step=step, value=value)

    def advance(
        self, tokens: float, *, step: int | None = None, value: float | None = None
    ) -> None:
        with self._lock:
            self.spent += tokens
            if self._bar is not None and tokens:
                if self._bar.n + tokens > self._bar.total:
                    self._bar.total = int(self._bar.n + tokens)
                self._bar.update(int(tokens))
            self._poll()
            self._draw(step=step, value=value)

    def _poll(self, force: bool = False) -> None:
        now = time.monotonic()
        if self._study is None or (not force and now - self._polled < 2.0):
            return
        self._polled = now
        best = math.inf
        for t in self._study.get_trials(deepcopy=False):
            v = t.user_attrs.get("lawsearch:predicted_final")
            if isinstance(v, int | float) and math.isfinite(v):
                best = min(best, float(v))
        self.best = best if math.isfinite(best) else math.nan

    def _draw(self, *, step: int | None = None, value: float | None = None) -> None:
        if self._bar is None:
            return
        share = self.spent / self.full_tokens if self.full_tokens else 0.0
        self._bar.set_postfix(
            {
                "stage": self.stage,
                "trial": self.trial,
                "step": "-" if step is None else step,
                "loss": "-" if value is None else f"{value:.4f}",
                "best pred": "-" if math.isnan(self.best) else f"{self.best:.4f}",
                "compute": f"{100 * share:.1f}% of all-full",
            },
            refresh=True,
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
