"""Predictive intervals: Laplace (parameter covariance) sampling plus noise."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from lawsearch.laws._base import FitResult, LRTrack

__all__ = ["predictive_interval"]

FloatArray = NDArray[np.float64]
_N_DRAWS = 256


def predictive_interval(
    result: FitResult, steps: FloatArray, track: LRTrack | None, level: float
) -> tuple[FloatArray, FloatArray]:
    """Quantiles of the prediction under parameter uncertainty and point noise."""
    law = result.law
    theta = result.theta
    lo_b, hi_b = law.bounds
    names = law.param_names
    free_idx = np.array([names.index(n) for n in result.free], dtype=int)
    rng = np.random.default_rng(law.seed)
    feats = law.features(steps, track)
    center = np.log(law.evaluate(theta, feats))
    draws = [center]
    cov = result.covariance
    if free_idx.size and np.all(np.isfinite(cov)):
        z = rng.multivariate_normal(np.zeros(free_idx.size), cov, size=_N_DRAWS, method="eigh")
        for dz in z:
            t = theta.copy()
            t[free_idx] = np.clip(theta[free_idx] + dz, lo_b[free_idx], hi_b[free_idx])
            pred = law.evaluate(t, feats)
            if np.all(np.isfinite(pred)) and np.all(pred > 0):
                draws.append(np.log(pred))
    logs = np.asarray(draws)
    noise = result.calibration.get("noise", 0.0)
    logs = logs + rng.normal(0.0, noise, size=logs.shape)
    a = (1.0 - level) / 2.0
    lo = np.exp(np.quantile(logs, a, axis=0))
    hi = np.exp(np.quantile(logs, 1.0 - a, axis=0))
    return np.minimum(lo, np.exp(center)), np.maximum(hi, np.exp(center))
