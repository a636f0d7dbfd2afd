"""Trainers: the ``Trainer`` protocol, replay of recorded curves, and real training.

Trainers report through a callback and know nothing of Optuna.
``TransformersTrainer`` (heavy imports) is loaded lazily.
"""

from __future__ import annotations

import importlib
from typing import Any

from lawsearch.train._protocol import ReportFn, Trainer, TrainResult

__all__ = [
    "DataSpec",
    "ModelSpec",
    "ReplayTrainer",
    "ReportFn",
    "TrainResult",
    "TrainSpec",
    "Trainer",
    "TransformersTrainer",
]

_LAZY = {
    "ReplayTrainer": "lawsearch.train._replay",
    "TransformersTrainer": "lawsearch.train._transformers",
    "ModelSpec": "lawsearch.train._transformers",
    "DataSpec": "lawsearch.train._transformers",
    "TrainSpec": "lawsearch.train._transformers",
}


def __getattr__(name: str) -> Any:
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'lawsearch.train' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
