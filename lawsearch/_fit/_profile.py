"""Fast fits for many short curves: shared parameters by a grid profile, the rest in closed form.

A pruner fits a curve at every rung of every trial, so the multi-start
nonlinear fit (~10 ms) is too slow there. When a law is affine in its
parameters once a few others are fixed (the power law ``E + A (t + t0)^-alpha``
is linear in ``E`` and ``A`` for fixed ``alpha`` and ``t0``), two cheap pieces
replace it:

* ``fit_affine``: the other parameters fixed, the affine ones by a bounded linear
  least squares (~0.3 ms);
* ``profile_shared``: the fixed ones themselves, over one or many curves, by a
  grid profile: at every grid point each curve's affine parameters are solved
  in closed form and the residuals summed;
* ``fit_with_pool``: a curve's fit given a pool's estimate of the shared
  parameters, falling back to ``Law.fit`` where the pieces above do not apply.

The first two work in relative residuals, a first-order equivalent of the
log-space objective of ``fit_curve``. Whether a law is affine is probed
numerically on every call (``affine_design``); for a law that is not they return
None, and the caller uses ``Law.fit`` / ``Law.fit_pooled``. ``delta_interval`` is
the matching cheap interval: the delta method only, without the backtest of
``predictive_interval`` (which would cost two more fits).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from lawsearch._curve import FitResult, LawModel, information_criteria

__all__ = [
    "affine_design",
    "delta_interval",
    "fit_affine",
    "fit_profiled",
    "fit_with_pool",
    "profile_axes",
    "profile_shared",
]

FloatArray = NDArray[np.float64]
#: relative RMS below which a fit pinned at a bound (a flat curve) is accepted
_FLAT_RMS = 0.005
_EXP_CAP = 700.0  # exp(700) ~ 1e304: "unbounded" but a finite float
#: the profile's grid: points per shared parameter, zooms, points per zoomed axis
_COARSE, _OFFSET_COARSE, _ZOOMS, _FINE = 16, 8, 2, 7


def _unit_columns(
    law: LawModel, theta: FloatArray, feats: Any, free: list[int]
) -> tuple[FloatArray, list[FloatArray]]:
    """The law at ``theta`` (free entries 0) and its change as each free entry goes to 1."""
    base = np.asarray(law.evaluate(theta, feats), dtype=float)
    cols = []
    for i in free:
        t = theta.copy()
        t[i] = 1.0
        cols.append(np.asarray(law.evaluate(t, feats), dtype=float) - base)
    return base, cols


def affine_design(
    law: LawModel, feats: Any, fixed: Mapping[str, float], free: Sequence[int]
) -> tuple[FloatArray, FloatArray] | None:
    """``(base, X)`` with ``law(theta) = base + X @ theta[free]`` given ``fixed``.

    Args:
        law: the law.
        feats: ``law.features`` at the observed steps.
        fixed: values of the parameters that are not free (missing ones are 0).
        free: positions (in ``law.param_names``) of the parameters solved for.

    Returns:
        The design, or None when the law is not affine in the free parameters
        (checked at one probe point), is not finite there, or rejects the unit
        vectors as parameters (e.g. an ensemble whose weights are all 0).
    """
    free = list(free)
    names = law.param_names
    theta = np.array([fixed.get(n, 0.0) for n in names], dtype=float)
    theta[free] = 0.0
    try:
        with np.errstate(all="ignore"):
            base, cols = _unit_columns(law, theta, feats, free)
            x = np.column_stack(cols)
            probe = theta.copy()
            probe[free] = np.linspace(0.5, 2.0, len(free))
            check = np.asarray(law.evaluate(probe, feats), dtype=float)
    except ValueError:
        return None
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(base))):
        return None
    if not np.allclose(check, base + x @ probe[free], rtol=1e-8, atol=1e-12):
        return None
    return base, x


def _grid_designs(
    law: LawModel, feats: Any, grid: list[dict[str, float]], free: list[int]
) -> tuple[FloatArray, FloatArray] | None:
    """``affine_design`` at every grid point at once: ``(G, n)`` and ``(G, n, k)``.

    Evaluates the law once per column with each parameter a ``(G, 1)`` column, which
    numpy broadcasts against the ``n`` observations; a law whose formula does not
    broadcast that way is evaluated point by point instead.
    """
    names = law.param_names
    g = len(grid)
    theta = np.zeros((len(names), g, 1))
    for i, n in enumerate(names):
        if i not in free:
            theta[i, :, 0] = [p.get(n, 0.0) for p in grid]
    try:
        with np.errstate(all="ignore"):
            base, cols = _unit_columns(law, theta, feats, free)
        if base.ndim != 2 or base.shape[0] != g:
            raise ValueError("no broadcasting")
        xg = np.stack(cols, axis=-1)
    except (ValueError, TypeError, IndexError):
        pairs = [affine_design(law, feats, p, free) for p in grid]
        if any(d is None for d in pairs):
            return None
        base = np.stack([d[0] for d in pairs if d is not None])
        xg = np.stack([d[1] for d in pairs if d is not None])
    if not (np.all(np.isfinite(base)) and np.all(np.isfinite(xg))):
        return None
    return base, xg


def profile_axes(law: LawModel, shared: Sequence[str], horizon: float) -> list[FloatArray]:
    """The coarse values of each shared parameter that ``profile_shared`` tries.

    16 log-spaced values within the parameter's bounds; a parameter whose lower
    bound is 0 or below (an offset such as ``t0``) gets 0 and 8 log-spaced values
    up to ``min(upper bound, horizon)``.
    """
    lo_b, hi_b = law.bounds
    axes = []
    for n in shared:
        i = law.param_names.index(n)
        lo, hi = float(lo_b[i]), min(float(hi_b[i]), float(horizon))
        if lo <= 0:  # an offset-like parameter: 0, then a log grid up to the budget
            ax = np.concatenate(
                [[0.0], np.geomspace(max(hi, 1.0) * 1e-3, max(hi, 1.0), _OFFSET_COARSE)]
            )
        else:
            ax = np.geomspace(max(lo, 0.02), hi, _COARSE)
        axes.append(ax)
    return axes


def profile_shared(
    law: LawModel,
    curves: Sequence[Mapping[str, Any]],
    shared: Sequence[str],
    *,
    horizon: float,
) -> dict[str, tuple[float, float]] | None:
    """One value of the ``shared`` parameters for all ``curves``, by a grid profile.

    A coarse grid over the shared parameters (``profile_axes``), then two zooms
    around its best cell; at each point the other (affine) parameters of every
    curve are solved in closed form, clipped to their bounds, and the relative
    RSS summed over the curves. The sd of each value is a quarter of the span
    of the grid points whose RSS is within ``1 + 4 / n`` of the best (``n``
    observations in all), and at least 5 % of the value.

    Args:
        law: the law fitted to every curve.
        curves: one mapping per run with ``steps``, ``losses`` and optional ``lrs``.
        shared: one or two parameter names common to all curves.
        horizon: the largest step the fit will predict (caps offset-like grids).

    Returns:
        ``name -> (value, sd)``, or None when the profile does not apply: no or
        more than two shared parameters, a curve with no more points than affine
        parameters, a law not affine in the other parameters, or no finite RSS.
    """
    shared = tuple(shared)
    if not shared or len(shared) > 2:
        return None
    free = [i for i, n in enumerate(law.param_names) if n not in shared]
    prepared = []
    for spec in curves:
        y = np.asarray(spec["losses"], dtype=float)
        if y.size <= len(free):
            return None
        curve = law.make_curve(spec["steps"], y, lrs=spec.get("lrs"), n_fixed=len(shared))
        prepared.append((law.features(curve.steps, curve.track), y))
    n_obs = sum(y.size for _, y in prepared)
    axes = profile_axes(law, shared, horizon)
    mid = {n: float(ax[len(ax) // 2]) for n, ax in zip(shared, axes, strict=True)}
    if any(affine_design(law, f, mid, free) is None for f, _ in prepared):
        return None
    total = np.zeros(0)
    grid: list[dict[str, float]] = []
    best = 0
    for _ in range(1 + _ZOOMS):
        flat = [m.ravel() for m in np.meshgrid(*axes, indexing="ij")]
        grid = [
            dict(zip(shared, (float(v) for v in point), strict=True))
            for point in zip(*flat, strict=True)
        ]
        got = _grid_rss(law, prepared, grid, free)
        if got is None or not np.any(np.isfinite(got)):
            return None
        total = got
        best = int(np.nanargmin(total))
        idx = [int(j) for j in np.unravel_index(best, tuple(ax.size for ax in axes))]
        axes = [
            np.linspace(ax[max(j - 1, 0)], ax[min(j + 1, ax.size - 1)], _FINE)
            for ax, j in zip(axes, idx, strict=True)
        ]
    near = np.flatnonzero(total <= total[best] * (1.0 + 4.0 / max(n_obs, 1)))
    out = {}
    for n in shared:
        vals = np.array([grid[j][n] for j in near])
        mu = grid[best][n]
        sd = max(float(vals.max() - vals.min()) / 4.0, 0.05 * abs(mu), 1e-6)
        out[n] = (mu, sd)
    return out


def _grid_rss(
    law: LawModel,
    prepared: list[tuple[Any, FloatArray]],
    grid: list[dict[str, float]],
    free: list[int],
) -> FloatArray | None:
    """Summed relative RSS over the curves at every grid point (affine part solved)."""
    lo_b, hi_b = law.bounds
    total = np.zeros(len(grid))
    for feats, y in prepared:
        designs = _grid_designs(law, feats, grid, free)
        if designs is None:
            return None
        base, xg = designs  # (G, n), (G, n, k)
        w = 1.0 / y
        xa, ba = xg * w[None, :, None], (y[None, :] - base) * w[None, :]
        gram = np.einsum("gnk,gnl->gkl", xa, xa) + 1e-12 * np.eye(len(free))
        rhs = np.einsum("gnk,gn->gk", xa, ba)
        with np.errstate(all="ignore"):
            coef = np.linalg.solve(gram, rhs[..., None])[..., 0]
        coef = np.clip(coef, lo_b[free], hi_b[free])  # a feasible point: rss is an upper bound
        resid = np.einsum("gnk,gk->gn", xa, coef) - ba
        total += np.einsum("gn,gn->g", resid, resid)
    return total


def fit_affine(
    law: LawModel,
    steps: ArrayLike,
    losses: ArrayLike,
    *,
    lrs: ArrayLike | None = None,
    fixed: Mapping[str, float],
    strict: bool = True,
) -> FitResult | None:
    """Closed-form fit when the law is affine in its free parameters given ``fixed``.

    With the exponents fixed (e.g. by a pool of other runs), a power law
    ``E + A (t + t0)^-alpha`` is linear in ``(E, A)``: a bounded linear least
    squares in relative (log-like) residuals replaces the multi-start nonlinear
    fit (~0.3 ms instead of ~10 ms). The covariance is that of the linear
    problem; the noise calibration is left empty.

    Args:
        law: the law.
        steps, losses, lrs: the curve, as in ``Law.fit``.
        fixed: values of the parameters held fixed; every other one is solved.
        strict: also give up when a bound binds on a curve that is not flat
            (relative RMS over 0.5 %): the constrained line is then no fit.

    Returns:
        The fit, or None when the law is not affine in the free parameters (or,
        with ``strict``, a bound binds): use ``Law.fit`` then.

    Raises:
        ValueError: on bad input, as ``Law.make_curve``.
    """
    from scipy.optimize import lsq_linear

    names = law.param_names
    free = [i for i, n in enumerate(names) if n not in fixed]
    curve = law.make_curve(steps, losses, lrs=lrs, n_fixed=len(fixed))
    feats = law.features(curve.steps, curve.track)
    lo_b, hi_b = law.bounds
    theta = np.array([fixed.get(n, 0.0) for n in names], dtype=float)
    design = affine_design(law, feats, fixed, free)
    if design is None:
        return None
    base, x = design
    y = curve.losses
    w = np.sqrt(curve.weights) / y  # relative residuals, as the log-space fit
    a, b = x * w[:, None], (y - base) * w
    got = lsq_linear(a, b, bounds=(lo_b[free], hi_b[free]), method="bvls")
    theta[free] = got.x
    resid = a @ got.x - b
    rss = float(resid @ resid)
    n, k = y.size, len(free)
    at_bound = np.any(got.active_mask != 0)
    if strict and at_bound and math.sqrt(rss / n) > _FLAT_RMS:
        # a bound binds and the curve is not flat (e.g. rising where the law must
        # fall): the constrained line is no fit; let the general fitter decide
        return None
    cov = np.full((k, k), np.inf)
    if n > k:
        gram = a.T @ a
        if np.linalg.cond(gram) < 1e12:
            cov = np.linalg.inv(gram) * max(rss / (n - k), 1e-12)
    se = np.sqrt(np.clip(np.diag(cov), 0, None))
    aic, bic = information_criteria(rss, n, k)
    return FitResult(
        law=law,
        params={nm: float(v) for nm, v in zip(names, theta, strict=True)},
        stderr={nm: float(se[free.index(i)]) if i in free else 0.0 for i, nm in enumerate(names)},
        covariance=cov,
        free=tuple(names[i] for i in free),
        objective=0.5 * rss,
        rss=rss,
        aic=aic,
        bic=bic,
        n_points=n,
        status="ok",
        curve=curve,
    )


def fit_profiled(
    law: LawModel,
    steps: ArrayLike,
    losses: ArrayLike,
    *,
    lrs: ArrayLike | None = None,
    shared: Sequence[str],
    horizon: float,
) -> tuple[FitResult, dict[str, tuple[float, float]]] | None:
    """Every parameter of one curve: ``shared`` by ``profile_shared``, the rest by ``fit_affine``.

    Returns:
        The fit and the profile's ``name -> (value, sd)`` of the shared
        parameters, or None where either piece does not apply (then ``Law.fit``).
    """
    curve = {"steps": steps, "losses": losses, "lrs": lrs}
    prof = profile_shared(law, [curve], shared, horizon=horizon)
    if prof is None:
        return None
    fit = fit_affine(law, steps, losses, lrs=lrs, fixed={n: mu for n, (mu, _) in prof.items()})
    return None if fit is None else (fit, prof)


def fit_with_pool(
    law: LawModel,
    steps: ArrayLike,
    losses: ArrayLike,
    *,
    lrs: ArrayLike | None = None,
    shared: Sequence[str],
    pool: Mapping[str, tuple[float, float]],
    use_pool: bool = True,
    horizon: float,
) -> tuple[FitResult, dict[str, tuple[float, float]], bool]:
    """A curve's fit given a pool's estimate of the ``shared`` parameters.

    With ``use_pool`` and a non-empty ``pool``, the shared parameters are fixed at
    the pool's values and the rest fitted (``fit_affine``, else ``Law.fit``).
    Without, or where that fit fails on a curve long enough to fit every
    parameter, every parameter is fitted: ``fit_profiled``, else ``Law.fit`` with
    the pool as a prior.

    Args:
        law, steps, losses, lrs: the law and the curve, as in ``Law.fit``.
        shared: the parameters shared across curves.
        pool: ``name -> (value, sd)`` of the shared parameters ({}: none yet).
        use_pool: fix the shared parameters at the pool's values (False: fit all).
        horizon: the largest step the fit will predict (see ``profile_shared``).

    Returns:
        ``(fit, held, pooled)``: the fit (possibly ``failed``), ``name -> (value,
        sd)`` of the parameters it held fixed (the pool's or the profile's; for
        ``delta_interval``), and whether the pool's values were used.

    Raises:
        ValueError: on bad input, or a curve too short for the fit asked for.
    """
    pooled = use_pool and bool(pool)
    fit = None
    if pooled:
        fixed = {n: mu for n, (mu, _) in pool.items()}
        fit = fit_affine(law, steps, losses, lrs=lrs, fixed=fixed)
        if fit is None:  # not affine in the free parameters: the general fitter
            fit = law.fit(steps, losses, lrs=lrs, fixed=fixed)
        if fit.ok or np.size(steps) < law.min_points():
            return fit, dict(pool), True
    # no pool, or it does not suit this curve: fit it all
    profiled = fit_profiled(law, steps, losses, lrs=lrs, shared=shared, horizon=horizon)
    if profiled is not None:
        return profiled[0], profiled[1], False
    return law.fit(steps, losses, lrs=lrs, prior=dict(pool) or None), {}, False


def delta_interval(
    fit: FitResult,
    step: float,
    *,
    quantile: float = 0.1,
    fixed_sd: Mapping[str, float] | None = None,
) -> tuple[float, float, float]:
    """``(mean, lo, hi)`` at ``step``: the delta method in log space, nothing else.

    ``var = g_f' C g_f + sum_s g_s^2 sd_s^2 + noise^2``, with ``g`` the gradient
    of the log prediction by a one-sided difference: the fit's covariance for the
    free parameters, ``fixed_sd`` for parameters held fixed (e.g. the spread of a
    pool's shared values), and the fit's calibrated noise, if any. Unlike
    ``FitResult.interval`` there is no backtest term, so it costs no refit.

    Args:
        fit: a fit that is not ``failed``.
        step: where to predict (the LR schedule is the one the fit saw).
        quantile: ``lo`` and ``hi`` are the ``quantile`` and ``1 - quantile``
            quantiles of the Gaussian in log loss.
        fixed_sd: sd of parameters the fit held fixed, by name.

    Returns:
        The prediction and its interval as finite floats; with no usable
        uncertainty (a non-finite covariance or gradient) the interval is
        ``(exp(-700), exp(700))``; NaN for all three when the law predicts no
        positive loss at ``step`` (the caller treats it as a failed fit).
    """
    law = fit.law
    names = law.param_names
    target = np.array([float(step)])
    track = fit.track_for(target, None)
    feats = law.features(target, track)
    theta = fit.theta
    at = float(law.evaluate(theta, feats)[0])
    if not (math.isfinite(at) and at > 0):  # no positive prediction: no answer (a failed fit)
        return math.nan, math.nan, math.nan
    base = math.log(at)
    hi_b = law.bounds[1]

    def grad(i: int) -> float:
        h = 1e-5 * max(abs(theta[i]), 1e-3)
        t = theta.copy()
        t[i] = min(theta[i] + h, hi_b[i]) if theta[i] + h <= hi_b[i] else theta[i] - h
        dt = t[i] - theta[i]
        v = float(law.evaluate(t, feats)[0])
        return (math.log(v) - base) / dt if v > 0 and dt != 0 else math.inf

    free_idx = [names.index(n) for n in fit.free]
    g = np.array([grad(i) for i in free_idx])
    var = 0.0
    if g.size:
        cov = np.asarray(fit.covariance, dtype=float)
        usable = np.all(np.isfinite(cov)) and np.all(np.isfinite(g))
        var = float(g @ cov @ g) if usable else math.inf
    for n, sd in (fixed_sd or {}).items():
        var += grad(names.index(n)) ** 2 * sd**2
    var += fit.calibration.get("noise", 0.0) ** 2
    sd_log = math.sqrt(var) if math.isfinite(var) and var >= 0 else math.inf
    z = statistics.NormalDist().inv_cdf(1.0 - quantile)
    mean = math.exp(min(base, _EXP_CAP))
    if not math.isfinite(sd_log):  # no usable uncertainty: an uninformative interval
        return mean, math.exp(-_EXP_CAP), math.exp(_EXP_CAP)
    # exponents clamped so an unbounded interval stays a finite, JSON-safe float
    return (
        mean,
        math.exp(max(base - z * sd_log, -_EXP_CAP)),
        math.exp(min(base + z * sd_log, _EXP_CAP)),
    )
