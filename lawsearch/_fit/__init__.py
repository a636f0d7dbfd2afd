"""Least squares for laws: single, pooled and transfer fits, raw curves, intervals, fast fits."""

from lawsearch._fit._intervals import (
    MAX_TREND_RATIO,
    calibrate_interval,
    half_and_last,
    interval_terms,
    predictive_interval,
    trend_range,
    trend_ratio,
)
from lawsearch._fit._least_squares import fit_curve, noise_scale
from lawsearch._fit._pooled import fit_pooled
from lawsearch._fit._profile import (
    affine_design,
    delta_interval,
    fit_affine,
    fit_profiled,
    fit_with_pool,
    profile_axes,
    profile_shared,
)
from lawsearch._fit._raw import (
    WINDOW_FRACTION,
    Judged,
    fit_or_simpler,
    judge,
    pooled_or_simpler,
    unusable,
    window_start,
)
from lawsearch._fit._transfer import fit_transfer, transfer_prior

__all__ = [
    "MAX_TREND_RATIO",
    "WINDOW_FRACTION",
    "Judged",
    "affine_design",
    "calibrate_interval",
    "delta_interval",
    "fit_affine",
    "fit_curve",
    "fit_or_simpler",
    "fit_pooled",
    "fit_profiled",
    "fit_transfer",
    "fit_with_pool",
    "half_and_last",
    "interval_terms",
    "judge",
    "noise_scale",
    "pooled_or_simpler",
    "predictive_interval",
    "profile_axes",
    "profile_shared",
    "transfer_prior",
    "trend_range",
    "trend_ratio",
    "unusable",
    "window_start",
]
