"""Multi-start, bounded, Huber-robust least squares in log-loss space."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import least_squares

from lawsearch.laws._base import Curve, FitResult, Law, Prior, information_criteria

__all__ = ["fit_curve", "noise_scale"]

FloatArray = NDArray[np.float64]
_BAD_LOG = 50.0  # residual used where a law returns a non-positive or non-finite loss


def noise_scale(log_losses: FloatArray) -> float:
    """A robust estimate of the per-point noise in log loss.

    Uses the MAD of second differences, which a smooth trend barely touches:
    for white noise of sd sigma, ``diff2`` has sd ``sigma * sqrt(6)``.
    """
    y = np.asarray(log_losses, dtype=float).reshape(log_losses.shape[0], -1).mean(axis=1)
    if y.size < 4:
        return 1e-3
    d2 = np.diff(y, 2)
    mad = float(np.median(np.abs(d2 - np.median(d2))))
    return max(1.4826 * mad / math.sqrt(6.0), 1e-5)


def log_residuals(pred: FloatArray, log_y: FloatArray) -> FloatArray:
    """``log(pred) - log_y``, with a large finite penalty where pred is unusable."""
    pred = np.asarray(pred, dtype=float)
    ok = np.isfinite(pred) & (pred > 0)
    safe = np.where(ok, pred, 1.0)
    return np.where(ok, np.log(safe) - log_y, _BAD_LOG)


def _starts(law: Law, curve: Curve, lo: FloatArray, hi: FloatArray) -> list[FloatArray]:
    span = hi - lo
    inner_lo = lo + 1e-9 * np.where(np.isfinite(span), span, 1.0) + 1e-12 * np.abs(lo)
    inner_hi = hi - 1e-9 * np.where(np.isfinite(span), span, 1.0) - 1e-12 * np.abs(hi)
    out = []
    for x0 in law.initial_guesses(curve)[: max(law.n_starts, 1)]:
        x = np.clip(np.asarray(x0, dtype=float), inner_lo, inner_hi)
        if np.all(np.isfinite(x)):
            out.append(x)
    return out


def _multistart(
    residuals: Any,
    starts: list[FloatArray],
    lo: FloatArray,
    hi: FloatArray,
    huber_delta: float,
    n_starts: int,
) -> Any:
    """Run the starts in order of their initial cost; stop when two agree.

    Two independent starts reaching the same optimum is the cheapest evidence
    that it is the global one; the rest of the starts would only cost time.
    """
    costs = []
    for x0 in starts:
        r = residuals(x0)
        costs.append(float(np.sum(r**2)) if np.all(np.isfinite(r)) else np.inf)
    order = np.argsort(costs, kind="stable")
    best, agreed, tried = None, 0, 0
    for i in order:
        if tried >= max(n_starts, 1) or agreed >= 1:
            break
        tried += 1
        try:
            res = least_squares(
                residuals,
                starts[i],
                bounds=(lo, hi),
                loss="huber",
                f_scale=huber_delta,
                x_scale="jac",
                method="trf",
                max_nfev=100 * (lo.size + 1),
            )
        except (ValueError, FloatingPointError, np.linalg.LinAlgError):
            continue
        if not np.isfinite(res.cost):
            continue
        if best is not None and abs(res.cost - best.cost) <= 1e-6 * max(best.cost, 1e-300) + 1e-14:
            agreed += 1
        if best is None or res.cost < best.cost:
            best = res
    return best


def fit_curve(
    law: Law,
    curve: Curve,
    *,
    fixed: Mapping[str, float],
    prior: Mapping[str, Prior],
    feats: Any = None,
) -> FitResult:
    """Fit ``law`` to a validated ``curve`` (see ``Law.fit`` for the arguments)."""
    names = law.param_names
    lo, hi = law.bounds
    free_idx = np.array([i for i, n in enumerate(names) if n not in fixed], dtype=int)
    free = tuple(names[i] for i in free_idx)
    fixed_vec = np.array([fixed.get(n, np.nan) for n in names], dtype=float)
    for n, v in fixed.items():
        i = names.index(n)
        if not lo[i] <= v <= hi[i]:
            raise ValueError(
                f"`fixed[{n!r}]` = {v!r} is outside the bounds [{lo[i]:g}, {hi[i]:g}] of "
                f"{type(law).__name__}."
            )
    if feats is None:
        feats = law.features(curve.steps, curve.track)
    log_y = np.log(curve.losses)
    sqrt_w = np.sqrt(curve.weights / curve.weights.mean())
    if log_y.ndim > 1:
        sqrt_w = sqrt_w.reshape(-1, *([1] * (log_y.ndim - 1)))
    sigma = noise_scale(log_y)
    prior_idx = np.array([names.index(n) for n in prior], dtype=int)
    prior_mu = np.array([prior[n][0] for n in prior], dtype=float)
    prior_sd = np.array([max(prior[n][1], 1e-12) for n in prior], dtype=float)

    def full(x: FloatArray) -> FloatArray:
        theta = fixed_vec.copy()
        theta[free_idx] = x
        return theta

    def residuals(x: FloatArray) -> FloatArray:
        theta = full(x)
        r = (sqrt_w * log_residuals(law.evaluate(theta, feats), log_y)).ravel()
        if prior_idx.size:
            r = np.concatenate([r, sigma * (theta[prior_idx] - prior_mu) / prior_sd])
        return r

    starts = _starts(law, curve, lo, hi)
    best = _multistart(
        residuals,
        [x0[free_idx] for x0 in starts],
        lo[free_idx],
        hi[free_idx],
        law.huber_delta,
        law.n_starts,
    )
    return _result(law, curve, best, full, free, free_idx, fixed, log_y, sqrt_w, sigma, starts)


def _result(
    law: Law,
    curve: Curve,
    best: Any,
    full: Any,
    free: tuple[str, ...],
    free_idx: NDArray[np.int_],
    fixed: Mapping[str, float],
    log_y: FloatArray,
    sqrt_w: FloatArray,
    sigma: float,
    starts: list[FloatArray],
) -> FitResult:
    names = law.param_names
    n = curve.n_points if log_y.ndim == 1 else int(log_y.size)
    k = free_idx.size
    if best is None:
        msg = "no starting point converged" if starts else "the law proposed no valid start"
        return _failed(law, curve, free, msg)
    theta = full(best.x)
    data_r = best.fun[: log_y.size]
    if np.any(np.abs(data_r) >= _BAD_LOG * 0.5 * sqrt_w.min()):
        return _failed(law, curve, free, "the best fit predicts a non-positive or non-finite loss")
    rss = float(np.sum(data_r**2))
    aic, bic = information_criteria(rss, n, k)
    jac = np.asarray(best.jac, dtype=float)
    jtj = jac.T @ jac
    s2 = max(rss / max(n - k, 1), sigma**2)
    col = np.sqrt(np.clip(np.diag(jtj), 1e-300, None))
    u, sv, _ = (
        np.linalg.svd(jtj / np.outer(col, col)) if k else (np.zeros((0, 0)), np.zeros(0), None)
    )
    tol = (sv.max() if sv.size else 0.0) * 1e-12
    rank = (
        int(np.sum(sv > tol))
        if np.all(np.diag(jtj) > 0)
        else min(int(np.sum(sv > tol)), int(np.sum(np.diag(jtj) > 0)))
    )
    cov = s2 * np.linalg.pinv(jtj, rcond=1e-10, hermitian=True) if k else np.zeros((0, 0))
    status, message = "ok", ""
    if rank < k:
        null = u[:, rank:]
        weak = [free[i] for i in np.argsort(-np.abs(null).sum(axis=1))[: k - rank]]
        status = "degenerate"
        message = f"parameters not identified by the data: {', '.join(weak)}"
    if not best.success and status == "ok":
        status, message = "degenerate", f"optimizer stopped early: {best.message}"
    se = np.sqrt(np.clip(np.diag(cov), 0.0, None)) if k else np.zeros(0)
    stderr = {n_: 0.0 for n_ in fixed}
    stderr.update({free[i]: float(se[i]) for i in range(k)})
    return FitResult(
        law=law,
        params={n_: float(theta[i]) for i, n_ in enumerate(names)},
        stderr={n_: stderr[n_] for n_ in names},
        covariance=cov,
        free=free,
        objective=float(best.cost),
        rss=rss,
        aic=aic,
        bic=bic,
        n_points=curve.n_points,
        status=status,
        message=message,
        curve=curve,
        calibration={"noise": float(math.sqrt(s2))},
    )


def _failed(law: Law, curve: Curve, free: tuple[str, ...], message: str) -> FitResult:
    nan = float("nan")
    return FitResult(
        law=law,
        params={n: nan for n in law.param_names},
        stderr={n: nan for n in law.param_names},
        covariance=np.full((len(free), len(free)), nan),
        free=free,
        objective=nan,
        rss=nan,
        aic=nan,
        bic=nan,
        n_points=curve.n_points,
        status="failed",
        message=message,
        curve=curve,
    )
