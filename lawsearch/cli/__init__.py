"""The ``lawsearch`` command line: the only layer that parses argv and prints.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; this module only dispatches, so ``lawsearch --help`` stays
fast and a subcommand imports its heavy dependencies only when it runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["UserError", "main"]

#: subcommand -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "fit": ("lawsearch.cli._fit", "fit a law to loss curves in a CSV and extrapolate them"),
    "run": ("lawsearch.cli._run", "run a study's search end to end (re-run to resume)"),
    "worker": ("lawsearch.cli._run", "add a worker process to a running study"),
    "report": ("lawsearch.cli._report", "rebuild a study's report folder from its storage"),
}


class UserError(Exception):
    """A mistake in the user's input: printed without a traceback, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lawsearch",
        description="Hyperparameter search for LLM pre-training driven by scaling laws.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code (0 ok, 1 failure, 2 bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    module = importlib.import_module(args._module)
    try:
        return int(module.run(args))
    except (UserError, ValueError, FileNotFoundError) as exc:
        print(f"lawsearch {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lawsearch {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
