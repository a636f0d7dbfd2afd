"""Robust nonlinear least squares for laws: single fits, pooled fits, intervals."""

from lawsearch._fit._intervals import predictive_interval
from lawsearch._fit._least_squares import fit_curve, noise_scale

__all__ = ["fit_curve", "noise_scale", "predictive_interval"]
