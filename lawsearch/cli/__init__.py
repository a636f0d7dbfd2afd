"""The ``lawsearch`` command line: the only layer that parses argv and prints.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; this module only dispatches, so ``lawsearch --help`` stays
fast and a subcommand imports its heavy dependencies only when it runs. The
work itself is the library's (``lawsearch.runner``, ``lawsearch.fitting``,
``lawsearch.report``): a subcommand parses, calls, prints, and this module maps
the errors to exit codes.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from lawsearch._errors import RunFailed, UserError, bad_input

__all__ = ["RunFailed", "UserError", "add_study_arguments", "bad_input", "exit_code", "main"]

#: subcommand -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "fit": ("lawsearch.cli._fit", "fit a law to loss curves in a CSV and extrapolate them"),
    "plan": ("lawsearch.cli._plan", "check a study against its data and say what it will cost"),
    "run": ("lawsearch.cli._run", "run a study's search end to end (re-run to resume)"),
    "worker": ("lawsearch.cli._run", "add a worker process to a running study"),
    "report": ("lawsearch.cli._report", "rebuild a study's report folder from its storage"),
}


def add_study_arguments(parser: argparse.ArgumentParser) -> None:
    """The study file and ``--root``, as every study subcommand takes them."""
    parser.add_argument("study", help="the study file (TOML), e.g. studies/demo.toml")
    parser.add_argument(
        "--root",
        default=None,
        help="folder the default runs/<study>/ is made in, relative to the current directory "
        "(default: the study file's folder; paths written in the study file are always read "
        "from the study file's folder)",
    )


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
    """Entry point; returns the process exit code.

    0: done. 1: the command ran and failed (a fit that failed, a search that
    stopped on an error: the message says what was kept and how to resume).
    2: bad input, found before anything was written. 130: interrupted.
    Any other exception is a bug in lawsearch and keeps its traceback.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    module = importlib.import_module(args._module)
    return exit_code(args.command, lambda: module.run(args))


def exit_code(command: str, call: Callable[[], int]) -> int:
    """``call()``'s exit code; lawsearch's errors become theirs, with one line on stderr."""
    try:
        return int(call())
    except UserError as exc:
        print(f"lawsearch {command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except RunFailed as exc:
        print(f"lawsearch {command}: failed: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"lawsearch {command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
