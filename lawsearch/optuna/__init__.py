"""Optuna integration: ``LawPruner``, ``LawSampler``, ``suggest_mixture``, attrs and figures.

Layer 2: Optuna objects over the numpy/scipy core (laws, fitting, mixtures,
schedules). Nothing here imports torch or a trainer.
"""

from lawsearch.mixtures import MixtureBounds, validate_mixture_bounds
from lawsearch.optuna import _attrs as attrs
from lawsearch.optuna._dashboard import (
    fit_trial,
    save_study_figure,
    save_trial_figure,
    study_figure,
    trial_figure,
)
from lawsearch.optuna._mixture import (
    get_schedule,
    mixture_from_params,
    mixture_param_names,
    mixture_specs,
    set_schedule,
    suggest_mixture,
    suggest_schedule,
)
from lawsearch.optuna._pruner import FigureWarning, LawPruner, Prediction
from lawsearch.optuna._sampler import LawSampler, SimplexGP, Surrogate

__all__ = [
    "FigureWarning",
    "LawPruner",
    "LawSampler",
    "MixtureBounds",
    "Prediction",
    "SimplexGP",
    "Surrogate",
    "attrs",
    "fit_trial",
    "get_schedule",
    "mixture_from_params",
    "mixture_param_names",
    "mixture_specs",
    "save_study_figure",
    "save_trial_figure",
    "set_schedule",
    "study_figure",
    "suggest_mixture",
    "suggest_schedule",
    "trial_figure",
    "validate_mixture_bounds",
]
