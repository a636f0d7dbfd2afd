"""Error helpers shared by every layer: did-you-mean suggestions and input checks."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["FitError", "did_you_mean"]


class FitError(ValueError):
    """Raised when a prediction is asked of a fit whose status is ``failed``."""


def did_you_mean(value: object, choices: Iterable[str]) -> str:
    """A sentence tail suggesting the closest of ``choices`` to ``value``."""
    close = difflib.get_close_matches(str(value), list(choices), n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else "."
