"""lawsearch: hyperparameter search for LLM pre-training driven by scaling-law prediction.

The numeric core (laws, fitting, schedules, mixtures, the surrogate, study
files, the error types) is imported eagerly: numpy and scipy only. Names that
need Optuna or a trainer (``LawPruner``, ``RetrievalRerank``, ``run_study``,
``TransformersTrainer``, ...) load on first use, so ``import lawsearch`` never
pulls in torch, transformers or a plotting library; the ``TYPE_CHECKING``
imports below give type checkers their real types.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lawsearch._curve import Curve, FitResult, LRTrack, Prior
from lawsearch._errors import CurveError, FitError, RunFailed, StudyError, UserError
from lawsearch._fit import fit_pooled, fit_transfer
from lawsearch._surrogate import MixtureSurrogate
from lawsearch.config import StudyConfig, load_study
from lawsearch.fitting import Outcome, RunCurve, fit_curves, read_curves
from lawsearch.intrinsic_dim import exponent_prior, levina_bickel
from lawsearch.laws import (
    LAWS,
    EnsembleLaw,
    FunctionalLaw,
    Law,
    MomentumLaw,
    MultiPowerLaw,
    PowerLaw,
    TemporalLaw,
    TwoPhaseLaw,
    get_law,
    shared_params,
)
from lawsearch.mixtures import MixtureBounds, validate_mixture_bounds
from lawsearch.schedules import Schedule, annealing_momentum, intrinsic_time

if TYPE_CHECKING:
    from lawsearch.optuna import (
        LawPruner,
        LawSampler,
        set_schedule,
        suggest_mixture,
        suggest_schedule,
    )
    from lawsearch.runner import RunResult, format_plan, plan_run, run_study
    from lawsearch.search import RetrievalRerank, SearchResult
    from lawsearch.storage import open_storage
    from lawsearch.train import ReplayTrainer, Trainer, TrainResult, TransformersTrainer

__version__ = "0.1.0"

#: names loaded on first use -> the module that defines them
_LAZY: dict[str, str] = {
    "LawPruner": "lawsearch.optuna",
    "LawSampler": "lawsearch.optuna",
    "suggest_mixture": "lawsearch.optuna",
    "suggest_schedule": "lawsearch.optuna",
    "set_schedule": "lawsearch.optuna",
    "RunResult": "lawsearch.runner",
    "format_plan": "lawsearch.runner",
    "plan_run": "lawsearch.runner",
    "run_study": "lawsearch.runner",
    "RetrievalRerank": "lawsearch.search",
    "SearchResult": "lawsearch.search",
    "open_storage": "lawsearch.storage",
    "ReplayTrainer": "lawsearch.train",
    "Trainer": "lawsearch.train",
    "TrainResult": "lawsearch.train",
    "TransformersTrainer": "lawsearch.train",
}

__all__ = [
    "LAWS",
    "Curve",
    "CurveError",
    "EnsembleLaw",
    "FitError",
    "FitResult",
    "FunctionalLaw",
    "LRTrack",
    "Law",
    "LawPruner",
    "LawSampler",
    "MixtureBounds",
    "MixtureSurrogate",
    "MomentumLaw",
    "MultiPowerLaw",
    "Outcome",
    "PowerLaw",
    "Prior",
    "ReplayTrainer",
    "RetrievalRerank",
    "RunCurve",
    "RunFailed",
    "RunResult",
    "Schedule",
    "SearchResult",
    "StudyConfig",
    "StudyError",
    "TemporalLaw",
    "TrainResult",
    "Trainer",
    "TransformersTrainer",
    "TwoPhaseLaw",
    "UserError",
    "__version__",
    "annealing_momentum",
    "exponent_prior",
    "fit_curves",
    "fit_pooled",
    "fit_transfer",
    "format_plan",
    "get_law",
    "intrinsic_time",
    "levina_bickel",
    "load_study",
    "open_storage",
    "plan_run",
    "read_curves",
    "run_study",
    "set_schedule",
    "shared_params",
    "suggest_mixture",
    "suggest_schedule",
    "validate_mixture_bounds",
]


def __getattr__(name: str) -> Any:
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'lawsearch' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
