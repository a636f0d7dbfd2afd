"""Calibrated predictive intervals for extrapolated losses.

In-sample residuals of a smooth loss curve are tiny (~1e-3 in log loss) while
the error of an extrapolation five times past the prefix is ~1e-2: parameter
standard errors alone cover far too little. The interval therefore adds three
terms, in log-loss space:

1. *Parameters*: draws from the Laplace (Gauss-Newton) posterior of the free
   parameters, pushed through the law.
2. *Noise*: the per-point noise of the observations (the true loss at the
   target is itself one noisy observation).
3. *Extrapolation*: a backtest within the prefix. The law is refitted on the
   first 50 % and 70 % of the observed points and predicts the rest; the error
   of those predictions per unit of log-horizon, ``rate = rms(err) /
   log(t / t_cut)``, scales the error at the asked step:
   ``sd_extrap(t) = rate * log((t + 1) / (t_last + 1))`` beyond the last
   observation (0 inside it). A backtest that cannot fit gives a conservative
   rate.

The backtest costs two extra fits; it runs on the first call of
``FitResult.interval`` and is cached on the result (deterministic: the fits are,
and every draw comes from ``numpy.random.default_rng(law.seed)``).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from lawsearch.laws._base import FitResult, LRTrack

__all__ = ["backtest_rate", "predictive_interval"]

FloatArray = NDArray[np.float64]
_N_DRAWS = 400
_CUTS = (0.5, 0.7)
#: log-loss error per unit of log horizon assumed when no backtest is possible
_FALLBACK_RATE = 0.05
#: ratio of the interval's extrapolation sd to the backtest rms (calibrated on
#: the lr_schedules curves, see tests/_fit and the report of issue 3)
_EXTRAP_INFLATE = 1.0
#: log-loss sd per unit of unseen LR drop (fraction of the peak LR): the annealing
#: a prefix has not seen is the largest extrapolation error on LLM curves
_LR_DROP_SD = 0.04


def backtest_rate(result: FitResult) -> float:
    """Log-loss extrapolation error per unit of log horizon, from fits on earlier cuts."""
    cached = result._cache.get("extrap_rate")
    if cached is not None:
        return float(cached)
    rate = _compute_rate(result)
    result._cache["extrap_rate"] = rate
    return rate


def _compute_rate(result: FitResult) -> float:
    curve = result.curve
    law = result.law
    if curve is None or curve.losses.ndim != 1:
        return _FALLBACK_RATE
    fixed = {n: v for n, v in result.params.items() if n not in result.free}
    prior = dict(result.prior)
    for name in result.shared:  # pooled: the other runs' information becomes a prior
        i = result.free.index(name)
        sd = float(np.sqrt(result.covariance[i, i]))
        if np.isfinite(sd) and sd > 0:
            prior[name] = (result.params[name], sd)
    n = curve.n_points
    need = law.min_points(len(fixed)) + 2
    t = curve.steps
    y = np.log(curve.losses)
    noise = result.calibration.get("noise", 0.0)
    sq = []
    for frac in _CUTS:
        n_c = round(frac * n)
        if n_c < need or n - n_c < 2:
            continue
        try:
            sub = law.fit(
                t[:n_c],
                curve.losses[:n_c],
                lrs=None if curve.track is None else curve.track.lr,
                weights=curve.weights[:n_c],
                fixed=fixed,
                prior=prior,
            )
        except ValueError:
            continue
        if sub.status == "failed":
            continue
        rest = np.arange(n_c, n)
        far = rest[rest.size // 2 :]  # the half of the held-out points furthest out
        pred = law.predict_from(sub.theta, t[far], curve.track)
        if not np.all(np.isfinite(pred) & (pred > 0)):
            continue
        err = np.log(pred) - y[far]
        h = np.log((t[far] + 1.0) / (t[n_c - 1] + 1.0))
        sq.append(max(float(np.mean(err**2)) - noise**2, 0.0) / float(np.mean(h**2)))
    if not sq:
        return _FALLBACK_RATE
    return math.sqrt(float(np.mean(sq)))


def predictive_interval(
    result: FitResult, steps: FloatArray, track: LRTrack | None, level: float
) -> tuple[FloatArray, FloatArray]:
    """Quantiles of the loss at ``steps``: parameters, noise and extrapolation error."""
    law = result.law
    theta = result.theta
    lo_b, hi_b = law.bounds
    names = law.param_names
    free_idx = np.array([names.index(n) for n in result.free], dtype=int)
    rng = np.random.default_rng(law.seed)
    feats = law.features(steps, track)
    center = np.log(np.asarray(law.evaluate(theta, feats), dtype=float))
    cov = result.covariance
    draws = np.broadcast_to(center, (_N_DRAWS, *center.shape)).copy()
    if free_idx.size and np.all(np.isfinite(cov)):
        z = rng.multivariate_normal(np.zeros(free_idx.size), cov, size=_N_DRAWS, method="eigh")
        for k, dz in enumerate(z):
            th = theta.copy()
            th[free_idx] = np.clip(theta[free_idx] + dz, lo_b[free_idx], hi_b[free_idx])
            pred = np.asarray(law.evaluate(th, feats), dtype=float)
            if np.all(np.isfinite(pred)) and np.all(pred > 0):
                draws[k] = np.log(pred)
    param_var = draws.var(axis=0)
    noise = float(result.calibration.get("noise", 0.0))
    draws += rng.normal(0.0, noise, size=draws.shape)
    horizon = _log_horizon(result, steps)
    if np.any(horizon > 0):
        rate = _EXTRAP_INFLATE * backtest_rate(result)
        shift = rng.standard_normal(_N_DRAWS)  # one extrapolation error per draw
        # the backtest error already contains the parameter error the Laplace
        # draws carry: add only what they leave unexplained
        bt_var = np.clip((rate * horizon) ** 2 - param_var, 0.0, None)
        drop = _LR_DROP_SD * unseen_lr_drop(result, steps, track)
        sd = np.sqrt(bt_var + drop**2)
        draws += shift.reshape(-1, *([1] * center.ndim)) * sd.reshape(
            sd.shape + (1,) * (center.ndim - 1)
        )
    a = (1.0 - level) / 2.0
    lo = np.exp(np.quantile(draws, a, axis=0))
    hi = np.exp(np.quantile(draws, 1.0 - a, axis=0))
    c = np.exp(center)
    return np.minimum(lo, c), np.maximum(hi, c)


def unseen_lr_drop(result: FitResult, steps: FloatArray, track: LRTrack | None) -> FloatArray:
    """How far the LR falls below anything the fit saw, as a fraction of the peak LR seen.

    ``(min(lr seen) - min(lr up to t)) / max(lr seen)``, clipped at 0: the part of
    the schedule's annealing that the observations carry no information about.
    """
    curve = result.curve
    if track is None or curve is None or curve.track is None:
        return np.zeros(steps.shape)
    first, last = int(curve.steps[0]), int(curve.steps[-1])
    seen = curve.track.lr[first : last + 1]
    if seen.size == 0 or not seen.max() > 0:
        return np.zeros(steps.shape)
    lr = track.lr
    run_min = np.minimum.accumulate(lr[first:]) if lr.size > first else np.array([seen.min()])
    idx = np.clip(steps.astype(int) - first, 0, run_min.size - 1)
    drop = (seen.min() - run_min[idx]) / seen.max()
    return np.where(steps > last, np.clip(drop, 0.0, None), 0.0)


def _log_horizon(result: FitResult, steps: FloatArray) -> FloatArray:
    """``log((t + 1) / (t_last + 1))`` beyond the last observation, 0 before it."""
    if result.curve is None:
        return np.zeros(steps.shape)
    last = float(result.curve.steps[-1])
    return np.log(np.maximum(steps + 1.0, last + 1.0) / (last + 1.0))
