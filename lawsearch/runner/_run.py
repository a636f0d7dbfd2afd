"""``run_study``: run (or join) a configured study's search end to end from Python.

It creates (or resumes) the study in its storage, builds the trainer, runs the
retrieval → short training → extrapolation → rerank search with its progress on
stderr, writes the report folder and the dashboard figures, and returns a
``RunResult``. Calling it again resumes: finished trials are never retrained,
and trials left RUNNING by a dead process are failed and retried from their
checkpoint.

With ``worker=True`` it joins the same study from another process (or machine,
with PostgreSQL) and trains whatever the search hands it; no report folder is
written. Every process stays until each lineage is ranked, claiming
continuations, and fails and retries (from the last checkpoint) the trials of a
worker that died.

Errors: ``UserError`` for bad input found before anything was written (a data
source, the storage, a stored study that does not match), ``RunFailed`` for a
run that started and stopped on an error (the message says what was kept and
how to resume). ``lawsearch run`` and ``lawsearch worker`` exit 2 and 1 on them.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from lawsearch._errors import RunFailed, StorageUnavailable, bad_input
from lawsearch.runner._progress import Progress

if TYPE_CHECKING:
    from lawsearch.config import StudyConfig
    from lawsearch.report import StudyReport
    from lawsearch.search import SearchResult

__all__ = ["RunResult", "run_study"]


@dataclass(frozen=True)
class RunResult:
    """What a run of a study did and left, as read back from its storage afterwards.

    Attributes:
        study_name: the study's name in its storage.
        storage: the storage (journal path or database URL).
        worker: the run joined as an extra worker (no report folder written).
        report: the study report rebuilt from the storage after the search
            (``None`` on a follower rank under torchrun).
        search: what this process's search object returned (``None`` on a follower).
        pick: the candidate (lineage root) the report ranks first.
        search_pick: the candidate of the search's own pick; differs from ``pick``
            only when another worker finished a better lineage after this one decided.
        compute_fraction: compute the study spent / training every candidate fully.
        trials: the trials in the storage (every state: retries and continuations too).
        candidates: the lineages (candidate mixtures and schedules) in the report.
        run_dir: the run folder (``runs/<study>``).
        checkpoint_dir: where the checkpoints are.
        report_dir: the report folder written (``None`` for a worker or a follower).
        report_files: the files written there.
        artifacts: the dashboard's artifact folder.
        dashboard: the ``optuna-dashboard`` command that shows the study.
        problems: figures that could not be drawn, one line each.
        rank: this process's rank under torchrun (0 outside it).
        followed: trials a follower rank trained with rank 0 (0 on rank 0).
    """

    study_name: str
    storage: str
    worker: bool
    report: StudyReport | None
    search: SearchResult | None
    pick: int | None
    search_pick: int | None
    compute_fraction: float
    trials: int
    candidates: int
    run_dir: Path
    checkpoint_dir: Path
    report_dir: Path | None
    report_files: tuple[Path, ...]
    artifacts: Path
    dashboard: str
    problems: tuple[str, ...] = ()
    rank: int = 0
    followed: int = 0


def run_study(
    cfg: StudyConfig,
    *,
    worker: bool = False,
    trainer: Any = None,
    progress: bool = True,
    log: TextIO | None = None,
) -> RunResult:
    """Run (or join, with ``worker=True``) the search of a validated study.

    Args:
        cfg: the study (``lawsearch.load_study``).
        worker: join as an extra process: no report folder, no study figures.
        trainer: a ``Trainer`` to use instead of the study's ``TransformersTrainer``
            (tests, replays, benchmarks); the caller then owns its checks. Without
            one, ``plan_run``'s checks run first, so bad input is refused before
            anything is written.
        progress: show the progress bar (one line per event when ``log`` is not a
            terminal).
        log: where progress and events (a dead worker's trials retried) go
            (default: stderr).

    Returns:
        What the run did and left (``RunResult``).

    Raises:
        UserError: bad input, found before anything was written.
        RunFailed: the search stopped on an error; the finished trials are kept in
            the storage and calling again resumes from them.

    Under ``torchrun`` (``WORLD_SIZE > 1``) rank 0 runs the search and every
    trial trains data-parallel on all ranks; the other ranks only follow
    (``lawsearch.runner._distributed``) and return a ``RunResult`` with
    ``rank > 0`` and no report.
    """
    from lawsearch.runner import _distributed
    from lawsearch.runner._plan import plan_run, prepared_trainer

    log = log if log is not None else sys.stderr
    if _distributed.world_size() <= 1:
        if trainer is None:
            trainer, _ = plan_run(cfg)
        return _run(cfg, worker=worker, progress=progress, trainer=trainer, log=log)
    with bad_input():  # more processes than GPUs
        channel = _distributed.Channel(cfg.train.device)
    if trainer is None:
        trainer = _distributed.rank_0_first(
            channel, lambda: plan_run(cfg)[0], lambda: prepared_trainer(cfg)
        )
    if not channel.is_main:
        n = _distributed.follow(trainer, channel, log=log)
        return _follower(cfg, worker=worker, rank=channel.dist.rank, followed=n)
    leader = _distributed.LeaderTrainer(trainer, channel)
    result = _run(cfg, worker=worker, progress=progress, trainer=leader, log=log)
    leader.close()  # not on an exception: the followers are mid-collective; torchrun ends them
    return result


def _run(cfg: StudyConfig, *, worker: bool, progress: bool, trainer: Any, log: TextIO) -> RunResult:
    import optuna

    from lawsearch import report as reporting
    from lawsearch import study as wiring
    from lawsearch.storage import worker_lock

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no INFO line per trial in the log
    try:
        with bad_input():
            storage = wiring.open_study_storage(cfg, on_event=_say(log))
        with worker_lock(cfg.run_dir) as alone:
            with bad_input():
                study = optuna.create_study(
                    study_name=cfg.name,
                    storage=storage,
                    direction="minimize",
                    # concurrent processes must not share a sampler seed (same proposals);
                    # only a lone `run` keeps the study's seed (reproducible)
                    sampler=wiring.build_sampler(
                        cfg, worker=0 if alone and not worker else os.getpid()
                    ),
                    # a lone `run` decides deterministically; workers sharing a study sync less
                    pruner=wiring.build_pruner(cfg, shared=not alone or worker),
                    load_if_exists=True,
                )
            search = _search(cfg, study, trainer=trainer, progress=progress, log=log)
        rep = reporting.collect(study, cfg)
        artifacts = cfg.run_dir / "artifacts"
        problems: list[str] = []
        files: list[Path] = []
        if not worker:
            files = reporting.write_report(rep, cfg.report_dir)
            problems = _dashboard_figures(study, cfg)
    finally:
        optuna.logging.set_verbosity(verbosity)
    return RunResult(
        study_name=cfg.name,
        storage=cfg.study.storage,
        worker=worker,
        report=rep,
        search=search.result,
        pick=rep.pick.number if rep.pick is not None else None,
        search_pick=_pick_number(search.result),
        compute_fraction=rep.compute_fraction,
        trials=len(study.get_trials(deepcopy=False)),
        candidates=len(rep.lineages),
        run_dir=cfg.run_dir,
        checkpoint_dir=cfg.checkpoint_dir,
        report_dir=None if worker else Path(cfg.report_dir),
        report_files=tuple(files),
        artifacts=artifacts,
        dashboard=reporting.dashboard_command(cfg.study.storage, artifacts),
        problems=tuple(problems + search.problems),
    )


@dataclass(frozen=True)
class _Searched:
    result: SearchResult
    problems: list[str]


def _search(
    cfg: StudyConfig, study: Any, *, trainer: Any, progress: bool, log: TextIO
) -> _Searched:
    """The search itself, with progress and live figures; an error is a ``RunFailed``."""
    from lawsearch import report as reporting
    from lawsearch import study as wiring
    from lawsearch.storage import worker_name

    recover = _recovery(cfg, log)
    recover(study)
    done = reporting.collect(study, cfg).compute_tokens
    bar = Progress(
        total_tokens=_expected_tokens(cfg),
        full_tokens=cfg.full_budget_compute(),
        done_tokens=done,
        enabled=progress,
        study=study,
        file=log,
        target_step=int(cfg.full_steps),
    )
    live = _live_figures(study, cfg)  # the dashboard redraws a running trial's figure

    def on_report(trial: int, step: int, value: float, tokens: float) -> None:
        bar.on_report(trial, step, value, tokens)
        if live is not None:
            live(trial, step, value, tokens)

    try:
        search = wiring.build_search(
            cfg, trainer=trainer, on_start=bar.on_start, on_report=on_report
        )
        # every process stays until each lineage is ranked: it claims continuations,
        # and fails and retries the trials of workers that died
        result = search.run(study, recover=recover, owner=worker_name())
    except (KeyboardInterrupt, SystemExit, StorageUnavailable):
        raise  # the storage's own message says what is kept and the fix; it cannot be read now
    except Exception as exc:
        raise _failed(cfg, study, exc) from exc
    finally:
        bar.close()
    return _Searched(result, list(live.problems) if live is not None else [])


def _follower(cfg: StudyConfig, *, worker: bool, rank: int, followed: int) -> RunResult:
    """A follower rank's result: it trained with rank 0 and read nothing from the storage."""
    from lawsearch.report import dashboard_command

    artifacts = cfg.run_dir / "artifacts"
    return RunResult(
        study_name=cfg.name,
        storage=cfg.study.storage,
        worker=worker,
        report=None,
        search=None,
        pick=None,
        search_pick=None,
        compute_fraction=math.nan,
        trials=0,
        candidates=0,
        run_dir=cfg.run_dir,
        checkpoint_dir=cfg.checkpoint_dir,
        report_dir=None,
        report_files=(),
        artifacts=artifacts,
        dashboard=dashboard_command(cfg.study.storage, artifacts),
        rank=rank,
        followed=followed,
    )


def _failed(cfg: StudyConfig, study: Any, exc: Exception) -> RunFailed:
    """What the user needs after a run stopped on an error: the cause, what is kept, the fix."""
    from optuna.trial import TrialState

    from lawsearch._reconnect import redacted

    kept = sum(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False))
    where = cfg.study.storage if cfg.study.is_journal else redacted(cfg.study.storage)
    return RunFailed(
        f"{type(exc).__name__}: {exc}\n{kept} finished trial(s) of study {cfg.name!r} are kept "
        f"in {where} (checkpoints under {cfg.checkpoint_dir}); fix the cause and run "
        f"`lawsearch run {cfg.source or 'STUDY'}` again to resume from them."
    )


def _say(log: TextIO) -> Any:
    """``on_event(line)``: a storage event (connection lost or back) as one line on ``log``."""

    def say(line: str) -> None:
        print(f"lawsearch: {line}", file=log, flush=True)

    return say


def _recovery(cfg: StudyConfig, log: TextIO) -> Any:
    """``recover(study)``: fail dead workers' trials and retry them from their last checkpoint.

    A journal file: the trials whose worker holds no lock in ``<run>/workers``; PostgreSQL:
    the trials whose heartbeat is older than ``study.grace_period``. Says what it did on
    ``log``.
    """
    from lawsearch.search._faults import fail_stale
    from lawsearch.storage import live_workers, recover_orphans

    retries = cfg.search.max_retries

    def recover(study: Any) -> None:
        if cfg.study.is_journal:
            alone = live_workers(cfg.run_dir) == 0
            failed = recover_orphans(study, alone=alone, run_dir=cfg.run_dir, max_retries=retries)
        else:
            failed = fail_stale(study, max_retries=retries)
        if failed:
            print(
                f"lawsearch: trial(s) {failed} left running by a worker that stopped: marked "
                "FAILED and queued again from their last checkpoint",
                file=log,
            )

    return recover


def _artifact_store(cfg: StudyConfig) -> Any:
    """The study's artifact store (``runs/<study>/artifacts``), or None without the extra."""
    try:
        import optuna_dashboard  # noqa: F401
        import plotly  # noqa: F401
    except ImportError:
        return None
    from optuna.artifacts import FileSystemArtifactStore

    store_dir = cfg.run_dir / "artifacts"
    store_dir.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(store_dir))


def _live_figures(study: Any, cfg: StudyConfig) -> Any:
    """The hook redrawing a running trial's dashboard figure (None without the extra)."""
    store = _artifact_store(cfg)
    if store is None:
        return None
    from lawsearch.optuna import LiveFigures

    return LiveFigures(study, artifact_store=store, **_figure_options(cfg))


def _figure_options(cfg: StudyConfig) -> dict[str, Any]:
    """The law, full budget and interval level every dashboard figure of the study uses."""
    from lawsearch.optuna._records import interval_level

    return {
        "law": cfg.law.build(),
        "target_step": cfg.full_steps,
        "level": interval_level(cfg.pruner.search_quantile),
    }


def _dashboard_figures(study: Any, cfg: StudyConfig) -> list[str]:
    """Each finished trial's figure and note, and the study figures, for optuna-dashboard.

    Needs the ``[dashboard]`` extra (plotly, optuna-dashboard); skipped without
    it. Returns what could not be drawn, one line each.
    """
    store = _artifact_store(cfg)
    if store is None:
        return []
    from lawsearch.optuna import publish

    mixture = "mixture" if len(cfg.domains) >= 2 else None
    return list(publish(study, artifact_store=store, mixture=mixture, **_figure_options(cfg)))


def _pick_number(result: Any) -> int | None:
    """The candidate (lineage root) of the search's pick."""
    for row in getattr(result, "table", ()):
        if row.get("trial") == result.best_trial:
            return int(row["root"])
    return None


def _expected_tokens(cfg: StudyConfig) -> float:
    """Compute the search spends if nothing is pruned early: screen all, continue survivors."""
    from lawsearch.study import planned_steps

    return float(planned_steps(cfg) * cfg.train.tokens_per_step)
