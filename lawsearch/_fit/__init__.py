"""Robust nonlinear least squares for laws: single fits, pooled fits, transfer, intervals."""

from lawsearch._fit._intervals import (
    MAX_TREND_RATIO,
    calibrate_interval,
    half_and_last,
    interval_terms,
    predictive_interval,
    trend_ratio,
)
from lawsearch._fit._least_squares import fit_curve, noise_scale
from lawsearch._fit._pooled import fit_pooled
from lawsearch._fit._transfer import fit_transfer, transfer_prior

__all__ = [
    "MAX_TREND_RATIO",
    "calibrate_interval",
    "fit_curve",
    "fit_pooled",
    "fit_transfer",
    "half_and_last",
    "interval_terms",
    "noise_scale",
    "predictive_interval",
    "transfer_prior",
    "trend_ratio",
]
