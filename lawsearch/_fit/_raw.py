"""Fitting curves as trainers log them: from step 0, through warmup and the early transient.

A curve a trainer logs starts at the initial loss (about ``log(vocab)``), falls
fast while the LR warms up, and on small models sits on a plateau before a
second descent. No law here describes that start, and fitted to it they
extrapolate badly (on lawsearch's recorded grid, a momentum law fitted to the
whole 20% prefix failed on 19 of 46 runs; see ``benchmarks/grid_extrapolation``).
Three rules make a raw curve fit:

1. *A fit window* (``window_start``): the law sees the points from
   ``min(WINDOW_FRACTION * horizon, last step / 2)`` on, and never the warmup
   (steps before the LR peaks) or step 0.
2. *A floor*: a prediction below the law's irreducible loss (``Law.floor_param``)
   is a misidentified term, not an answer.
3. *A less flexible law rather than a failure* (``fit_or_simpler``): when the
   law fails or goes below its floor, the next law of
   ``lawsearch.laws.fallbacks(law)`` is fitted to the same window.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from lawsearch._curve import FitResult, FloatArray, LawModel, Prior
from lawsearch._fit._intervals import MAX_TREND_RATIO, trend_ratio
from lawsearch._fit._pooled import fit_pooled

__all__ = [
    "WINDOW_FRACTION",
    "Judged",
    "fit_or_simpler",
    "judge",
    "pooled_or_simpler",
    "unusable",
    "window_start",
]

#: the window starts at this fraction of the horizon (or half the curve, if sooner)
WINDOW_FRACTION = 0.1
#: a usable extrapolation: ``(mean, lo, hi)`` at the target
Judged = tuple[float, float, float]


def window_start(
    steps: ArrayLike,
    *,
    horizon: float,
    lrs: ArrayLike | None = None,
    losses: ArrayLike | None = None,
    need: int = 1,
    fraction: float = WINDOW_FRACTION,
) -> int:
    """Index of the first point a law is fitted to.

    Never step 0, never before the LR's peak (the end of warmup, when ``lrs`` is
    the per-step schedule). The window starts at the first logged step at or
    after ``min(fraction * horizon, steps[-1] / 2)``; with ``losses`` it then
    reaches back over every earlier point that a power law fitted to the window
    (in intrinsic time when ``lrs`` is given) continues within its noise
    (``_reach_back``), so a curve that follows a law from its first point keeps
    them all and only a transient is left out. Never so late that fewer than
    ``need`` points remain.

    Args:
        steps: the logged steps (increasing).
        horizon: the step the fit will predict (the full budget).
        lrs: the per-step LR schedule (optional).
        losses: the loss at each step (optional; enables reaching back).
        need: the fewest points the fit needs.
        fraction: the share of the horizon the window skips at most.
    """
    s = np.asarray(steps, dtype=float)
    if s.size == 0:
        return 0
    base = int(np.searchsorted(s, 0.0, side="right"))  # never step 0
    if lrs is not None:
        lr = np.asarray(lrs, dtype=float)
        span = lr[: int(min(horizon, lr.size))]
        if span.size:
            base = max(base, int(np.searchsorted(s, float(np.argmax(span)), side="left")))
    start = min(fraction * float(horizon), float(s[-1]) / 2.0)
    first = max(base, int(np.searchsorted(s, start, side="left")))
    if losses is not None and first > base:
        time = s
        if lrs is not None:  # in intrinsic time, an LR schedule bends the curve less
            lr = np.asarray(lrs, dtype=float)
            area = np.concatenate([[0.0], np.cumsum(lr)])
            time = np.interp(s, np.arange(area.size, dtype=float), area)
        first = _reach_back(time, np.asarray(losses, dtype=float), first, base)
    return max(0, min(first, s.size - max(int(need), 1)))


def _reach_back(s: FloatArray, y: FloatArray, first: int, base: int) -> int:
    """Extend the window back over the points a power law fitted to it continues.

    ``E + A t^-alpha`` (``t``: ``s``, steps or intrinsic time) is fitted in log
    loss to the points from ``first`` on;
    going back from ``first - 1``, each point whose log-residual is within three
    times the fit's own (at least 0.5%) joins the window, until one does not.
    """
    from scipy.optimize import least_squares

    t, v = s[first:], y[first:]
    if t.size < 4 or np.any(v <= 0) or np.any(t <= 0):
        return first
    logv = np.log(v)

    def model(p: FloatArray, tt: FloatArray) -> FloatArray:
        e, log_a, alpha = p
        return np.asarray(np.log(e + np.exp(log_a) * tt**-alpha))

    floor = float(v.min())
    x0 = np.array(
        [0.5 * floor, math.log(max(float(v[0] - 0.5 * floor), 1e-9)) + 0.5 * math.log(t[0]), 0.5]
    )
    try:
        res = least_squares(
            lambda p: model(p, t) - logv,
            x0,
            bounds=([0.0, -50.0, 1e-3], [floor * (1 - 1e-9), 50.0, 4.0]),
        )
    except (ValueError, FloatingPointError):
        return first
    dof = max(t.size - 3, 1)
    tol = max(3.0 * math.sqrt(float(res.fun @ res.fun) / dof), 0.005)
    k = first
    for j in range(first - 1, base - 1, -1):
        if s[j] <= 0 or y[j] <= 0:
            break
        if abs(float(model(res.x, s[j : j + 1])[0]) - math.log(y[j])) > tol:
            break
        k = j
    return k


def unusable(fit: FitResult | None, target: float, lrs: ArrayLike | None = None) -> str:
    """Why ``fit`` cannot extrapolate to ``target`` ("" when it can)."""
    if fit is None:
        return "no fit"
    if not fit.ok:
        return fit.message or "the fit failed"
    try:
        pred = float(fit.predict([float(target)], lrs=None)[0])
    except (ValueError, FloatingPointError, OverflowError) as exc:
        return f"no prediction at step {target:g}: {exc}"
    if not math.isfinite(pred) or pred <= 0:
        return f"predicts {pred:.4g} at step {target:g}"
    name = getattr(fit.law, "floor_param", None)
    floor = fit.params.get(name) if name else None
    if floor is not None and pred < floor * (1.0 - 1e-9):
        return (
            f"predicts {pred:.4g} at step {target:g}, below its own irreducible loss "
            f"{name} = {floor:.4g}"
        )
    return ""


def _fit_once(
    law: LawModel,
    steps: FloatArray,
    losses: FloatArray,
    lrs: ArrayLike | None,
    fixed: Mapping[str, float],
    prior: Mapping[str, Prior],
) -> tuple[FitResult | None, str]:
    names = set(law.param_names)
    kwargs: dict[str, Any] = {
        "lrs": lrs if law.uses_lr else None,
        # priors and fixed values name one law's parameters; a fallback gets those it shares
        "fixed": {k: v for k, v in fixed.items() if k in names} or None,
        "prior": {k: v for k, v in prior.items() if k in names} or None,
    }
    try:
        return law.fit(steps, losses, **kwargs), ""
    except (ValueError, FloatingPointError, np.linalg.LinAlgError) as exc:
        return None, str(exc)


def fit_or_simpler(
    law: LawModel,
    steps: ArrayLike,
    losses: ArrayLike,
    *,
    target: float,
    lrs: ArrayLike | None = None,
    fallbacks: Sequence[LawModel] = (),
    window: bool = True,
    fixed: Mapping[str, float] | None = None,
    prior: Mapping[str, Prior] | None = None,
) -> FitResult | None:
    """Fit ``law`` to the window of a raw curve, else the first usable law of ``fallbacks``.

    Returns the first fit that predicts a finite value at or above its floor at
    ``target``: its ``message`` says which laws were tried before and why they
    were not used, and ``fit.curve.steps`` are the points it saw. Returns the
    last failed fit (or None) when no law can extrapolate the curve.

    Args:
        law: the law asked for.
        steps, losses: the curve as logged (step 0 and warmup included).
        target: the step to extrapolate to (the full budget).
        lrs: the per-step LR schedule, up to ``target`` (schedule-aware laws).
        fallbacks: less flexible laws (``lawsearch.laws.fallbacks(law)``).
        window: apply ``window_start`` (False: fit every point).
        fixed, prior: as in ``Law.fit`` (passed to each law for the names it has).
    """
    s = np.asarray(steps, dtype=float)
    y = np.asarray(losses, dtype=float)
    tried: list[str] = []
    last: FitResult | None = None
    for candidate in (law, *fallbacks):
        need = candidate.min_points(len([k for k in fixed or {} if k in candidate.param_names]))
        if s.size < need:
            tried.append(f"{candidate.name}: {s.size} points, needs {need}")
            continue
        k = window_start(s, horizon=target, lrs=lrs, losses=y, need=need) if window else 0
        fit, error = _fit_once(candidate, s[k:], y[k:], lrs, fixed or {}, prior or {})
        why = error or unusable(fit, target)
        if not why and fit is not None:
            if tried:
                note = "instead of " + "; ".join(tried)
                msg = f"{fit.message}; {note}" if fit.message else note
                fit = dataclasses.replace(fit, message=msg)
            return fit
        tried.append(f"{candidate.name}: {why}")
        last = fit if fit is not None else last
    if last is not None:
        return dataclasses.replace(last, status="failed", message="; ".join(tried))
    return None


def pooled_or_simpler(
    law: LawModel,
    curves: Sequence[Mapping[str, Any]],
    *,
    shared: Sequence[str],
    target: float,
    fallbacks: Sequence[LawModel] = (),
    window: bool = True,
) -> list[FitResult | None]:
    """A joint fit of raw curves (each windowed), with ``fit_or_simpler`` for a curve it fails.

    Args:
        law: the law.
        curves: mappings with ``steps``, ``losses`` and ``lrs`` (per-step, to its
            target), optionally ``target`` (this curve's own step to extrapolate to);
            ``"whole": True`` marks a finished run (a reference) fitted from its
            window to its end.
        shared: the parameters common to all curves.
        target: the step a curve without its own ``target`` is extrapolated to.
        fallbacks: less flexible laws for a curve the joint fit cannot extrapolate.
        window: apply ``window_start`` to every curve.

    Returns:
        One result per curve, in order (None where nothing could be fitted).
    """
    need = law.min_points(len(shared))
    specs = []
    for c in curves:
        s = np.asarray(c["steps"], dtype=float)
        y = np.asarray(c["losses"], dtype=float)
        horizon = float(s[-1]) if c.get("whole") else float(c.get("target", target))
        k = window_start(s, horizon=horizon, lrs=c.get("lrs"), losses=y, need=need) if window else 0
        specs.append({"steps": s[k:], "losses": y[k:], "lrs": c.get("lrs")})
    try:
        joint: list[FitResult | None] = list(fit_pooled(law, specs, shared=shared))
    except (ValueError, FloatingPointError, np.linalg.LinAlgError):
        joint = [None] * len(curves)
    out: list[FitResult | None] = []
    for c, fit in zip(curves, joint, strict=True):
        goal = float(c["steps"][-1]) if c.get("whole") else float(c.get("target", target))
        if fit is not None and not unusable(fit, goal):
            out.append(fit)
            continue
        why = unusable(fit, goal) if fit is not None else "the joint fit failed"
        single = fit_or_simpler(
            law,
            c["steps"],
            c["losses"],
            target=goal,
            lrs=c.get("lrs"),
            fallbacks=fallbacks,
            window=window,
        )
        if single is not None:
            note = f"joint fit unusable ({why}); fitted alone"
            single = dataclasses.replace(
                single, message=f"{note}; {single.message}" if single.message else note
            )
        out.append(single)
    return out


def judge(
    fit: FitResult | None,
    target: float,
    *,
    level: float,
    max_interval_ratio: float | None = None,
    max_trend_ratio: float | None = MAX_TREND_RATIO,
) -> Judged | str:
    """``(mean, lo, hi)`` at ``target`` if ``fit`` can rank its run, else why not.

    An extrapolation ranks only when it is finite and above the law's floor, its
    ``level`` interval is positive and no wider than ``max_interval_ratio``
    (hi / lo; a fit the curve does not identify), and it promises no more than
    ``max_trend_ratio`` times the curve's own recent trend continued in log time
    (``trend_ratio``). The search ranks a run that fails this by its last value.
    """
    why = unusable(fit, target)
    if why or fit is None:
        return why or "no fit"
    try:
        m = float(fit.predict([target])[0])
        lo_a, hi_a = fit.interval([target], level=level)
    except (ValueError, FloatingPointError, OverflowError) as exc:
        return f"no prediction ({exc})"
    lo, hi = float(lo_a[0]), float(hi_a[0])
    if not all(math.isfinite(x) for x in (m, lo, hi)) or lo <= 0:
        return "the prediction or its interval is not finite and positive"
    if max_interval_ratio is not None and math.log(hi) - math.log(lo) > math.log(
        max_interval_ratio
    ):
        return f"interval hi/lo {hi / lo:.3g} > max_interval_ratio {max_interval_ratio:g}"
    if max_trend_ratio is not None and fit.curve is not None:
        ratio = trend_ratio(fit.curve.steps, fit.curve.losses, target, m)
        if ratio is not None and abs(ratio) > max_trend_ratio:
            return (
                f"predicted {m:.4g} is {ratio:.3g}x the curve's recent trend "
                f"(max_trend_ratio {max_trend_ratio:g})"
            )
    return m, lo, hi
