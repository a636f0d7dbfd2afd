"""Error helpers shared by every layer: did-you-mean suggestions and input checks."""

from __future__ import annotations

import difflib
import functools
from collections.abc import Iterable
from typing import Any

__all__ = ["CurveError", "FitError", "did_you_mean"]


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


def did_you_mean(value: object, choices: Iterable[str]) -> str:
    """A sentence tail suggesting the closest of ``choices`` to ``value``."""
    close = difflib.get_close_matches(str(value), list(choices), n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else "."
