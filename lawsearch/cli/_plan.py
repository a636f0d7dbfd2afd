"""``lawsearch plan``: check a study against its data, model and device, and print what it costs.

Loads the study file, calls ``lawsearch.runner.plan_run`` (every check ``run``
makes, plus a wall time from a few real steps timed on the configured device)
and prints ``format_plan``. Nothing is trained or written under ``runs/``. An
infeasible study exits 2 with the fix.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lawsearch.cli import add_study_arguments

    add_study_arguments(parser)
    parser.add_argument(
        "--no-timing", action="store_true", help="skip timing a few real training steps"
    )


def run(args: argparse.Namespace) -> int:
    from lawsearch.cli import bad_input
    from lawsearch.config import load_study
    from lawsearch.runner import format_plan, plan_run

    with bad_input():
        cfg = load_study(args.study, run_root=args.root)
    _, plan = plan_run(cfg, timing=not args.no_timing)
    print(format_plan(cfg, plan), file=sys.stdout)
    return 0
