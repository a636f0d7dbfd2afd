"""``lawsearch run`` and ``lawsearch worker``: run a study's search end to end.

``run`` loads the study file and calls ``lawsearch.runner.run_study``: it checks
the study (what ``lawsearch plan`` checks), creates or resumes the study in its
storage and runs the search with a progress bar on stderr; this module then
prints the ranking table, where the report folder was written and the
``optuna-dashboard`` command. Re-running the same command resumes: finished
trials are never retrained, and trials left RUNNING by a dead process are failed
and retried from their checkpoint.

``worker`` joins the same study from another process (or machine, with
PostgreSQL) and trains whatever the search hands it; it prints a one-line
summary instead of the report.

Exit codes: 0 done, 1 the search failed, 2 bad study file (nothing written).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from lawsearch.config import StudyConfig
    from lawsearch.runner import RunResult

__all__ = ["add_arguments", "execute", "print_result", "run"]


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
    return execute(cfg, worker=args.command == "worker", progress=not args.quiet, out=sys.stdout)


def execute(
    cfg: StudyConfig,
    *,
    worker: bool = False,
    progress: bool = True,
    trainer: Any = None,
    out: TextIO | None = None,
) -> int:
    """``lawsearch run|worker`` on a loaded study: ``run_study``, then print what it left.

    Args:
        cfg: the study.
        worker: join as an extra process: a one-line summary instead of the table.
        progress: draw the progress bar on stderr.
        trainer: a ``Trainer`` instead of the study's (tests); see ``run_study``.
        out: where the table goes (default stdout).
    """
    from lawsearch.runner import run_study

    result = run_study(cfg, worker=worker, trainer=trainer, progress=progress)
    print_result(result, out=out or sys.stdout)
    return 0


def print_result(result: RunResult, *, out: TextIO) -> None:
    """The table, the report folder and the dashboard command (a worker: one line).

    A follower rank under torchrun prints nothing: rank 0 speaks for the job.
    """
    from lawsearch.report import format_table

    rep = result.report
    if rep is None:
        return
    if result.worker:
        print(
            f"worker done: study {result.study_name!r}, {result.candidates} candidates, compute "
            f"{100 * result.compute_fraction:.1f}% of training all fully",
            file=out,
        )
        return
    for problem in result.problems:
        print(f"lawsearch: {problem}", file=sys.stderr)
    print(format_table(rep), file=out)
    if result.search_pick is not None and result.pick not in (None, result.search_pick):
        print(f"search pick: trial {result.search_pick}", file=out)
    names = ", ".join(p.name for p in result.report_files)
    print(f"\nreport: {result.report_dir} ({names})", file=out)
    print(f"dashboard: {result.dashboard}", file=out)
