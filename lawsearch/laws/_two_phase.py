"""Two-phase law: exponential decay early, power law later (learning-dynamics view)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from lawsearch.laws._base import Curve, FitResult, FloatArray, Law, LRTrack, Param, Prior

__all__ = ["TwoPhaseLaw"]

_TIMES = ("steps", "intrinsic")
#: candidate transitions, as fractions of the observations (profile of starts)
_TC_QUANTILES = (0.04, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8)


@dataclass(frozen=True)
class TwoPhaseLaw(Law):
    """Exponential decay of the excess loss up to a transition, a power law after it.

    The learning-dynamics analysis of Chiwun Yang (2025) finds that the excess
    risk first falls exponentially in compute, then as a power law. With time t
    (steps, or intrinsic time ``S1(t) = sum_{s<t} lr_s`` when
    ``time="intrinsic"``) and transition ``tc``::

        L(t) = E + A * (t + t0) ** (-alpha)                       for t >= tc
        L(t) = E + R_c * exp(-alpha * (t - tc) / (tc + t0))        for t <  tc
        R_c  = A * (tc + t0) ** (-alpha)

    The exponential rate is the power law's log-slope at ``tc``, so the curve
    and its slope are continuous at the transition, and the loss is
    continuously differentiable in every parameter, ``tc`` included: the
    transition is fitted like any other parameter by the shared robust
    least squares, started from a profile over candidate transitions (the
    observed points 4 %, 10 %, 20 %, …, 80 % into the observations; for each,
    the best exponent and offset on a grid with E and A solved linearly), best
    candidates first.
    The power law never sees the points before ``tc``.

    The data may show no exponential phase (it can end before the first
    logged point); then ``tc`` is not identified and a transition inside the
    data would only fit noise while taking points away from the power law.
    ``fit`` therefore also fits the nested pure power law (``tc = 0``) and keeps
    the transition only if it lowers the BIC; otherwise it returns the power
    law and says so in ``FitResult.message``.

    Args:
        time: ``"steps"`` or ``"intrinsic"``.
    """

    time: str = "steps"
    n_starts: int = 6
    name = "two_phase"
    floor_param = "E"

    def __post_init__(self) -> None:
        if self.time not in _TIMES:
            raise ValueError(f"`time` must be one of {_TIMES}; got {self.time!r}.")

    @property
    def uses_lr(self) -> bool:
        return self.time == "intrinsic"

    def params(self) -> tuple[Param, ...]:
        return (
            Param("E", 0.0, 1e4, "irreducible loss (the asymptote)"),
            Param("A", 1e-10, 1e10, "amplitude of the power-law phase"),
            Param("alpha", 1e-3, 4.0, "power-law exponent of the late phase"),
            Param("t0", 0.0, 1e9, "time offset of the power-law phase"),
            Param("tc", 0.0, 1e9, "transition time from exponential to power-law decay"),
        )

    def features(self, steps: FloatArray, track: LRTrack | None) -> Any:
        if self.time == "intrinsic":
            assert track is not None
            return track.intrinsic_time(steps)
        return steps

    def evaluate(self, theta: FloatArray, feats: Any) -> FloatArray:
        e, a, alpha, t0, tc = theta
        t = np.asarray(feats, dtype=float)
        late = t >= tc
        base = np.where(late, t + t0, 1.0)
        power = a * np.power(np.where(base > 0, base, np.nan), -alpha)
        v = tc + t0
        if v > 0:
            early = a * v**-alpha * np.exp(-alpha / v * np.where(late, 0.0, t - tc))
        else:  # tc = t0 = 0: every t >= 0 is in the power-law phase
            early = np.full_like(t, np.nan)
        return np.asarray(e + np.where(late, power, early), dtype=float)

    def linear_params(self) -> tuple[str, ...] | None:
        return ("E", "A")

    def jacobian(self, theta: FloatArray, feats: Any) -> FloatArray | None:
        _, a, alpha, t0, tc = theta
        t = np.asarray(feats, dtype=float)
        v = tc + t0
        if not v > 0:
            return None
        late = t >= tc
        u = np.where(late, t + t0, v)
        dt = np.where(late, 0.0, t - tc)
        with np.errstate(divide="ignore", invalid="ignore"):
            excess = a * np.power(u, -alpha) * np.exp(-alpha * dt / v)
            d_alpha = np.where(late, -np.log(u), -np.log(v) - dt / v) * excess
            d_t0 = np.where(late, -alpha / u, -alpha / v + alpha * dt / v**2) * excess
        d_tc = np.where(late, 0.0, alpha * dt / v**2) * excess
        return np.stack([np.ones_like(t), excess / a, d_alpha, d_t0, d_tc], axis=-1)

    def initial_guesses(self, curve: Curve) -> list[FloatArray]:
        t = np.asarray(self.features(curve.steps, curve.track), dtype=float)
        y = curve.losses
        span = max(float(t[-1] - t[0]), 1e-12)
        # A start at or before the first point could never move tc (no data
        # there), so every candidate transition lies inside the observations.
        idx = np.unique(np.minimum((np.array(_TC_QUANTILES) * t.size).astype(int), t.size - 2))
        t0s = np.concatenate([[0.0], span * np.geomspace(1e-3, 1.0, 5)])
        scored = []
        for tc in t[idx]:
            best = None
            for alpha in np.geomspace(0.1, 2.5, 9):
                for t0 in t0s:
                    if tc + t0 <= 0:
                        continue
                    shape = self.evaluate(np.array([0.0, 1.0, alpha, t0, tc]), t)
                    e, a, cost = _affine_log_fit(shape, y)
                    if best is None or cost < best[0]:
                        best = (cost, np.array([e, a, alpha, t0, tc]))
            if best is not None:
                scored.append(best)
        scored.sort(key=lambda c: c[0])
        return [theta for _, theta in scored]

    def fit(
        self,
        steps: ArrayLike,
        losses: ArrayLike,
        *,
        lrs: ArrayLike | None = None,
        weights: ArrayLike | None = None,
        fixed: Mapping[str, float] | None = None,
        prior: Mapping[str, Prior] | None = None,
    ) -> FitResult:
        """Fit as ``Law.fit``, and keep the exponential phase only if the data call for it.

        The fit with a free transition is compared with the nested pure power
        law (``tc`` fixed at 0) by BIC; the transition is kept only when it
        lowers the BIC, otherwise the pure power law is returned with a message.
        """
        result = super().fit(steps, losses, lrs=lrs, weights=weights, fixed=fixed, prior=prior)
        if "tc" in (fixed or {}):
            return result
        pure = super().fit(
            steps, losses, lrs=lrs, weights=weights, fixed={**(fixed or {}), "tc": 0.0}, prior=prior
        )
        if result.ok and (not pure.ok or result.bic < pure.bic):
            return result
        if not pure.ok:
            return result
        note = "no exponential phase detected (a transition does not lower the BIC); tc fixed at 0"
        return replace(pure, message=f"{note}; {pure.message}" if pure.message else note)

    def fit_pooled(
        self,
        curves: Sequence[Mapping[str, Any]],
        *,
        shared: Sequence[str],
        fixed: Mapping[str, float] | None = None,
        prior: Mapping[str, Prior] | None = None,
    ) -> list[FitResult]:
        """``Law.fit_pooled`` with the same BIC choice as ``fit`` (summed over runs)."""
        results = super().fit_pooled(curves, shared=shared, fixed=fixed, prior=prior)
        if "tc" in (fixed or {}) or isinstance(shared, str):
            return results
        pure = super().fit_pooled(
            curves,
            shared=tuple(n for n in shared if n != "tc"),
            fixed={**(fixed or {}), "tc": 0.0},
            prior={k: v for k, v in (prior or {}).items() if k != "tc"},
        )
        if _total_bic(results) < _total_bic(pure) or _total_bic(pure) == float("inf"):
            return results
        note = "no exponential phase detected (a transition does not lower the BIC); tc fixed at 0"
        return [replace(r, message=f"{note}; {r.message}" if r.message else note) for r in pure]


def _total_bic(results: Sequence[FitResult]) -> float:
    if not results or not all(r.ok for r in results):
        return float("inf")
    return float(sum(r.bic for r in results))


def _affine_log_fit(shape: FloatArray, y: FloatArray) -> tuple[float, float, float]:
    """``E, A`` of ``y ~ E + A * shape`` (least squares) and the log-space cost."""
    design = np.column_stack([np.ones_like(shape), shape])
    if not np.all(np.isfinite(design)):
        return 0.0, 1.0, np.inf
    (e, a), *_ = np.linalg.lstsq(design, y, rcond=None)
    e, a = max(float(e), 0.0), max(float(a), 1e-9)
    pred = e + a * shape
    if np.any(pred <= 0):
        return e, a, np.inf
    return e, float(np.clip(a, 1e-9, 1e9)), float(np.sum(np.log(pred / y) ** 2))
