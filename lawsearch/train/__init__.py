"""Trainers: the ``Trainer`` protocol, replay of recorded curves, and real training.

Trainers report through a callback and know nothing of Optuna.
``TransformersTrainer`` (heavy imports) is loaded lazily; the ``TYPE_CHECKING``
imports give type checkers the real classes.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lawsearch.train._protocol import ReportFn, Trainer, TrainResult

if TYPE_CHECKING:
    from lawsearch.train._model import ModelSpec
    from lawsearch.train._replay import ReplayTrainer
    from lawsearch.train._specs import DataSpec, TrainSpec
    from lawsearch.train._transformers import TransformersTrainer

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
    "ModelSpec": "lawsearch.train._model",
    "DataSpec": "lawsearch.train._specs",
    "TrainSpec": "lawsearch.train._specs",
}


def __getattr__(name: str) -> Any:
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'lawsearch.train' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
