"""Optuna integration: ``LawPruner``, ``LawSampler``, ``suggest_mixture``, attrs and figures.

Layer 2: Optuna objects over the numpy/scipy core (laws, fitting, mixtures,
schedules). Nothing here imports torch or a trainer.
"""

from lawsearch.mixtures import MixtureBounds, validate_mixture_bounds
from lawsearch.optuna import _attrs as attrs
from lawsearch.optuna._mixture import (
    get_schedule,
    mixture_from_params,
    mixture_param_names,
    mixture_specs,
    set_schedule,
    suggest_mixture,
    suggest_schedule,
)
from lawsearch.optuna._pruner import LawPruner, Prediction

__all__ = [
    "LawPruner",
    "MixtureBounds",
    "Prediction",
    "attrs",
    "get_schedule",
    "mixture_from_params",
    "mixture_param_names",
    "mixture_specs",
    "set_schedule",
    "suggest_mixture",
    "suggest_schedule",
    "validate_mixture_bounds",
]
