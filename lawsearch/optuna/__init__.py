"""Optuna integration: ``LawPruner``, ``LawSampler``, ``suggest_mixture``, attrs and figures.

Layer 2: Optuna objects over the numpy/scipy core (laws, fitting, mixtures,
schedules). Nothing here imports torch or a trainer.
"""

from lawsearch.mixtures import MixtureBounds, validate_mixture_bounds
from lawsearch.optuna import _attrs as attrs
from lawsearch.optuna._dashboard import (
    LiveFigures,
    fit_trial,
    publish,
    save_trial_figure,
    study_note,
    trial_figure,
    trial_note,
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
from lawsearch.optuna._sampler import LawSampler, Surrogate
from lawsearch.optuna._study_figure import importance_figure, save_study_figures, study_figure

__all__ = [
    "FigureWarning",
    "LawPruner",
    "LawSampler",
    "LiveFigures",
    "MixtureBounds",
    "Prediction",
    "Surrogate",
    "attrs",
    "fit_trial",
    "get_schedule",
    "importance_figure",
    "mixture_from_params",
    "mixture_param_names",
    "mixture_specs",
    "publish",
    "save_study_figures",
    "save_trial_figure",
    "set_schedule",
    "study_figure",
    "study_note",
    "suggest_mixture",
    "suggest_schedule",
    "trial_figure",
    "trial_note",
    "validate_mixture_bounds",
]
