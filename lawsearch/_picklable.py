"""``PicklableLock``: a base for objects that guard state with a lock yet must pickle.

Optuna copies samplers to worker processes and users pickle trainers; a
``threading.Lock`` cannot be pickled, and a copy needs its own lock anyway.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["PicklableLock"]


class PicklableLock:
    """Holds ``self._lock``; pickles without it and gets a fresh one on unpickling."""

    _lock: threading.Lock

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
