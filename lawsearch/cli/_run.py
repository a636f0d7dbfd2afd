"""``lawsearch run`` and ``lawsearch worker``: run a study's search end to end.

``run`` creates (or resumes) the study in its storage, builds the corpus and the
trainer, runs the retrieval → short training → extrapolation → rerank search
with a progress bar on stderr, then prints the ranking table, writes the report
folder and prints the ``optuna-dashboard`` command. Re-running the same command
resumes: finished trials are never retrained, and trials left RUNNING by a dead
process are failed and retried from their checkpoint.

``worker`` joins the same study from another process (or machine, with
PostgreSQL) and trains whatever the search hands it; it prints a one-line
summary instead of the report. Every process stays until each lineage is
ranked, claiming continuations, and fails and retries (from the last
checkpoint) the trials of a worker that died.

Exit codes: 0 done, 1 the search failed, 2 bad study file (nothing written).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import threading
import time
from typing import Any

__all__ = ["Progress", "add_arguments", "execute", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lawsearch.cli import add_study_arguments

    add_study_arguments(parser)
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bar (the table is still printed)"
    )
    parser.add_argument(
        "--storage",
        default=None,
        help="the study's storage (a postgresql:// URL or journal path) instead of "
        "`study.storage`: join a study from a machine whose study file names another",
    )


def run(args: argparse.Namespace) -> int:
    from lawsearch.cli import bad_input
    from lawsearch.config import load_study

    with bad_input():
        cfg = load_study(args.study, run_root=args.root, storage=args.storage)
    # the checks of `lawsearch plan` (data, model, supply) before anything is written
    from lawsearch.cli._plan import preflight

    trainer, _ = preflight(cfg)
    return execute(
        cfg,
        worker=args.command == "worker",
        progress=not args.quiet,
        trainer=trainer,
        out=sys.stdout,
    )


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
    from lawsearch.study import build_trainer

    channel = _distributed.Channel(cfg.train.device)
    inner = trainer if trainer is not None else build_trainer(cfg)
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

    from lawsearch import report as reporting
    from lawsearch import study as wiring
    from lawsearch.cli import bad_input
    from lawsearch.storage import worker_lock, worker_name

    out = out or sys.stdout
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with bad_input():
        storage = wiring.open_study_storage(cfg)
    with worker_lock(cfg.run_dir) as alone:
        with bad_input():
            study = optuna.create_study(
                study_name=cfg.name,
                storage=storage,
                direction="minimize",
                # concurrent processes must not share a sampler seed (same proposals); only
                # a lone `run` keeps the study's seed (reproducible)
                sampler=wiring.build_sampler(
                    cfg, worker=0 if alone and not worker else os.getpid()
                ),
                # a lone `run` decides deterministically; workers sharing a study sync less
                pruner=wiring.build_pruner(cfg, shared=not alone or worker),
                load_if_exists=True,
            )
        recover = _recovery(cfg)
        recover(study)
        if trainer is None:
            trainer = wiring.build_trainer(cfg)
        done = reporting.collect(study, cfg).compute_tokens
        bar = Progress(
            total_tokens=_expected_tokens(cfg),
            full_tokens=cfg.full_budget_compute(),
            done_tokens=done,
            enabled=progress,
            study=study,
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
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            raise _failed(cfg, study, exc) from exc
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
    files = reporting.write_report(rep, cfg.report_dir)
    for problem in _dashboard_figures(study, cfg) + (live.problems if live is not None else []):
        print(f"lawsearch: {problem}", file=sys.stderr)
    print(reporting.format_table(rep), file=out)
    pick = _pick_number(result)
    if pick is not None and rep.pick is not None and pick != rep.pick.number:
        print(f"search pick: trial {pick}", file=out)
    print(f"\nreport: {cfg.report_dir} ({', '.join(p.name for p in files)})", file=out)
    artifacts = cfg.run_dir / "artifacts"
    print("dashboard: " + reporting.dashboard_command(cfg.study.storage, artifacts), file=out)
    return 0


def _failed(cfg: Any, study: Any, exc: Exception) -> Exception:
    """What the user needs after a run stopped on an error: the cause, what is kept, the fix."""
    from optuna.trial import TrialState

    from lawsearch.cli import RunFailed

    kept = sum(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False))
    where = cfg.study.storage
    return RunFailed(
        f"{type(exc).__name__}: {exc}\n{kept} finished trial(s) of study {cfg.name!r} are kept "
        f"in {where} (checkpoints under {cfg.checkpoint_dir}); fix the cause and run "
        f"`lawsearch run {cfg.source or 'STUDY'}` again to resume from them."
    )


def _recovery(cfg: Any) -> Any:
    """``recover(study)``: fail dead workers' trials and retry them from their last checkpoint.

    A journal file: the trials whose worker holds no lock in ``<run>/workers``; PostgreSQL:
    the trials whose heartbeat is older than ``study.grace_period``. Says what it did on stderr.
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
                file=sys.stderr,
            )

    return recover


def _artifact_store(cfg: Any) -> Any:
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


def _live_figures(study: Any, cfg: Any) -> Any:
    """The hook redrawing a running trial's dashboard figure (None without the extra)."""
    store = _artifact_store(cfg)
    if store is None:
        return None
    from lawsearch.optuna import LiveFigures

    return LiveFigures(study, artifact_store=store, **_figure_options(cfg))


def _figure_options(cfg: Any) -> dict[str, Any]:
    """The law, full budget and interval level every dashboard figure of the study uses."""
    from lawsearch.optuna._records import interval_level

    return {
        "law": cfg.law.build(),
        "target_step": cfg.full_steps,
        "level": interval_level(cfg.pruner.search_quantile),
    }


def _dashboard_figures(study: Any, cfg: Any) -> list[str]:
    """Each finished trial's figure and note, and the study figures, for optuna-dashboard.

    Needs the ``[dashboard]`` extra (plotly, optuna-dashboard); skipped without
    it. Returns what could not be drawn, one line each.
    """
    store = _artifact_store(cfg)
    if store is None:
        return []
    from lawsearch.optuna import publish

    mixture = "mixture" if len(cfg.domains) >= 2 else None
    return publish(study, artifact_store=store, mixture=mixture, **_figure_options(cfg))


def _pick_number(result: Any) -> int | None:
    """The candidate (lineage root) of the search's pick."""
    for row in getattr(result, "table", ()):
        if row.get("trial") == result.best_trial:
            return int(row["root"])
    return None


def _expected_tokens(cfg: Any) -> float:
    """Compute the search spends if nothing is pruned early: screen all, continue survivors."""
    from lawsearch.study import planned_steps

    return float(planned_steps(cfg) * cfg.train.tokens_per_step)


# ---- the progress bar ------------------------------------------------------------------


class Progress:
    """A tqdm bar on stderr (or silent counting) with the search's running numbers.

    Shows the stage, the trial, its step and loss, the best value in the study
    with its kind (``best pred``: a prediction at the full budget;
    ``best observed@<step>``: a loss observed at that step, when nothing was
    predicted or the candidate reached the full budget; see
    ``lawsearch.optuna._kinds.best_value``), and compute spent as a share of
    training every candidate fully.

    Args:
        total_tokens: the compute the search is expected to spend (the bar's length).
        full_tokens: the compute of training every candidate to the full budget.
        done_tokens: compute already spent in the study (when resuming).
        enabled: draw the bar.
        study: the study, polled every few seconds for the best value.
        target_step: the full budget in steps (what a prediction is for).
        lines: one line per event (a trial starts, the stage changes) instead of a bar
            redrawn with carriage returns; default: when stderr is not a terminal (a log).
    """

    def __init__(
        self,
        *,
        total_tokens: float,
        full_tokens: float,
        done_tokens: float = 0.0,
        enabled: bool = True,
        study: Any = None,
        lines: bool | None = None,
        target_step: int = 0,
    ) -> None:
        self.full_tokens = float(full_tokens)
        self.target_step = int(target_step)
        self.spent = float(done_tokens)
        self.stage = "screen"
        self.trial = "-"
        self.best = math.nan
        self.best_kind = "pred"  # `ValueKind.short` of ``best``
        self._study = study
        self._polled = -math.inf
        self._lock = threading.Lock()
        self._bar: Any = None
        isatty = getattr(sys.stderr, "isatty", None)
        self._lines = enabled and (not (isatty and isatty()) if lines is None else lines)
        self._last_line: tuple[str, str] | None = None
        if enabled and not self._lines:
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
            self._line()

    def _line(self, final: bool = False) -> None:
        """Line mode: one line per new (stage, trial), and one at the end."""
        if not self._lines or (not final and self._last_line == (self.stage, self.trial)):
            return
        self._last_line = (self.stage, self.trial)
        share = self.spent / self.full_tokens if self.full_tokens else 0.0
        what = "done" if final else f"{self.stage}, trial {self.trial}"
        print(
            f"search: {what} | {self._best_text()} | compute {100 * share:.1f}% of all-full",
            file=sys.stderr,
            flush=True,
        )

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
        from lawsearch.optuna import _kinds, _records

        got = _kinds.best_value(
            self._study.get_trials(deepcopy=False),
            _records.read_cuts(self._study),
            self.target_step,
        )
        self.best, self.best_kind = (math.nan, "pred") if got is None else (got[0], got[1].short)

    def _best_text(self) -> str:
        """``best pred 5.0398`` or ``best observed@48 5.3120``: a loss is never called a pred."""
        return f"best {self.best_kind} " + ("-" if math.isnan(self.best) else f"{self.best:.4f}")

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
                f"best {self.best_kind}": "-" if math.isnan(self.best) else f"{self.best:.4f}",
                "compute": f"{100 * share:.1f}% of all-full",
            },
            refresh=True,
        )

    def close(self) -> None:
        if self._lines and self._last_line is not None:
            self._poll(force=True)
            self._line(final=True)
            self._lines = False
        if self._bar is not None:
            self._bar.close()
            self._bar = None
