"""The error types of every layer, did-you-mean suggestions and the bad-input boundary.

Two families: ``FitError``/``CurveError`` (``ValueError``s of the numeric core and
``lawsearch.fitting``), and ``StudyError`` with its two kinds for whatever runs a
study or a command (``lawsearch.runner``, the CLI), each carrying the exit code the
command line ends with: ``UserError`` (bad input found before anything was
written: 2) and ``RunFailed`` (a run that started and stopped on an error: 1),
of which ``StorageUnavailable`` is a database lost for good mid-run.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

__all__ = [
    "CurveError",
    "FitError",
    "RunFailed",
    "StorageUnavailable",
    "StudyError",
    "UserError",
    "bad_input",
    "did_you_mean",
]


class FitError(ValueError):
    """Raised when a prediction is asked of a fit whose status is ``failed``."""


class CurveError(ValueError):
    """Bad loss curves or fitting options given to ``lawsearch.fitting``.

    The message names the field, the value and the fix. Arguments are written
    in backticks as Python names (`` `prefix` ``, `` `target_step` ``), the way
    the command line rewrites them into its flags.

    Attributes:
        field: the argument or column at fault (``"prefix"``, ``"loss"``, …).
    """

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        # the field is keyword-only, so the default (cls, args) reduction would drop it
        return functools.partial(type(self), field=self.field), (str(self),)


class StudyError(Exception):
    """A study or a command could not do what was asked; ``exit_code`` is the CLI's."""

    exit_code: ClassVar[int] = 1


class UserError(StudyError):
    """A mistake in the user's input, found before anything was written: exit code 2."""

    exit_code: ClassVar[int] = 2


class RunFailed(StudyError):
    """A run that started failed; the message says what was kept and how to resume: exit 1."""

    exit_code: ClassVar[int] = 1


class StorageUnavailable(RunFailed):
    """The study's database stayed unreachable past ``study.reconnect_timeout``: exit 1.

    The message names the server (password hidden), how long it tried and the fix.
    """


@contextlib.contextmanager
def bad_input() -> Iterator[None]:
    """Treat a ``ValueError``/``FileNotFoundError`` raised inside as the user's mistake.

    Wrap only the checks that run before anything is written (parsing, validation,
    opening the storage); an error after that is a failed run, not bad input.
    """
    try:
        yield
    except (ValueError, FileNotFoundError) as exc:
        raise UserError(str(exc)) from None


def did_you_mean(value: object, choices: Iterable[str]) -> str:
    """A sentence tail suggesting the closest of ``choices`` to ``value``."""
    close = difflib.get_close_matches(str(value), list(choices), n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else "."
