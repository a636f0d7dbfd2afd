"""lawsearch: hyperparameter search for LLM pre-training driven by scaling-law prediction.

Public names are imported lazily so that ``import lawsearch`` stays fast and
never pulls in torch, transformers or plotting libraries.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "MixtureSurrogate": "lawsearch._surrogate",
    "ReplayTrainer": "lawsearch.train",
    "RetrievalRerank": "lawsearch.search",
    "SearchResult": "lawsearch.search",
    "Schedule": "lawsearch.schedules",
    "intrinsic_time": "lawsearch.schedules",
    "annealing_momentum": "lawsearch.schedules",
    "Law": "lawsearch.laws",
    "FitResult": "lawsearch.laws",
    "PowerLaw": "lawsearch.laws",
    "MultiPowerLaw": "lawsearch.laws",
    "MomentumLaw": "lawsearch.laws",
    "FunctionalLaw": "lawsearch.laws",
    "TwoPhaseLaw": "lawsearch.laws",
    "EnsembleLaw": "lawsearch.laws",
    "TemporalLaw": "lawsearch.laws",
    "levina_bickel": "lawsearch.intrinsic_dim",
    "exponent_prior": "lawsearch.intrinsic_dim",
    "get_law": "lawsearch.laws",
    "MixtureBounds": "lawsearch.mixtures",
    "validate_mixture_bounds": "lawsearch.mixtures",
    "LawPruner": "lawsearch.optuna",
    "LawSampler": "lawsearch.optuna",
    "suggest_mixture": "lawsearch.optuna",
    "suggest_schedule": "lawsearch.optuna",
    "set_schedule": "lawsearch.optuna",
    "StudyConfig": "lawsearch.config",
    "load_study": "lawsearch.config",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'lawsearch' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
