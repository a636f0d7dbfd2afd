"""Temporal Scaling Law: per-token-position loss as a hyperbola drifting with trained tokens."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from lawsearch._fit import fit_curve
from lawsearch.laws._base import Curve, FitResult, FloatArray, Law, LRTrack, Param, Prior

__all__ = ["TemporalLaw"]

#: evaluations (rows) needed: a2(N) has E, B, beta and the shared n0, plus one
_MIN_EVALS = 5
#: positions (columns) needed: a0, a1, a2 of one hyperbola, plus one
_MIN_POSITIONS = 4


@dataclass(frozen=True)
class TemporalLaw(Law):
    """Per-position loss ``L_i(N) = a0(N) / (1 + a1(N) * i) + a2(N)`` (Xiong et al.).

    The Temporal Scaling Law models the loss at token position ``i`` of the
    context after ``N`` trained steps (or tokens) as a hyperbola in ``i``
    whose three parameters drift smoothly with ``N``. Here each is a power of
    ``u = N + n0`` (so ``log a_j`` is linear in ``log u``, the paper's log form
    applied to the logarithm, which keeps every ``a_j`` positive when
    extrapolating far in ``N``)::

        a0(N) = A0 * u ** (-k0)          amplitude of the position effect
        a1(N) = A1 * u ** k1             how fast the loss falls along the context
        a2(N) = E + B * u ** (-beta)     the loss far into the context (a power law)

    ``N`` can be steps or tokens: a change of unit is absorbed by ``n0``,
    ``A0``, ``A1`` and ``B``.

    Input: ``steps`` of shape ``(n_evals,)`` and ``losses`` of shape
    ``(n_evals, n_positions)``; ``weights`` are per position ``(n_positions,)``
    or per entry ``(n_evals, n_positions)`` (uniform by default).
    ``evaluate`` and ``FitResult.predict`` return the ``(n_steps,
    n_positions)`` matrix; the overall loss, the mean over positions, comes
    from ``TemporalLaw.predict_mean`` / ``interval_mean`` or from the ordinary
    ``FitResult`` returned by ``TemporalLaw.mean_result``.

    Args:
        positions: the position index ``i`` of each column; ``None`` means
            ``1..n_positions``, filled in by ``fit`` (``FitResult.law`` has them).
    """

    positions: tuple[float, ...] | None = None
    name = "temporal"
    floor_param = "E"

    def __post_init__(self) -> None:
        if self.positions is not None:
            pos = np.asarray(self.positions, dtype=float)
            if pos.ndim != 1 or pos.size < _MIN_POSITIONS or not np.all(np.isfinite(pos)):
                raise ValueError(
                    f"`positions` must be at least {_MIN_POSITIONS} finite numbers; "
                    f"got {self.positions!r}."
                )
            if np.any(pos < 0):
                raise ValueError("`positions` must be >= 0 (token index in the context).")
            object.__setattr__(self, "positions", tuple(float(p) for p in pos))

    def params(self) -> tuple[Param, ...]:
        return (
            Param("A0", 1e-8, 1e8, "amplitude of a0(N), the position effect"),
            Param("k0", -2.0, 3.0, "decay exponent of a0 in N"),
            Param("A1", 1e-10, 1e6, "amplitude of a1(N), the per-position decay rate"),
            Param("k1", -2.0, 3.0, "growth exponent of a1 in N"),
            Param("E", 0.0, 1e4, "irreducible loss far into the context"),
            Param("B", 0.0, 1e10, "amplitude of the long-context loss a2(N)"),
            Param("beta", 1e-3, 3.0, "decay exponent of a2 in N"),
            Param("n0", 0.0, 1e12, "offset of N (unlogged early training)"),
        )

    def min_points(self, n_fixed: int = 0) -> int:
        """Evaluations (rows) needed: the N-dependence of a2 has 4 parameters, plus one."""
        return _MIN_EVALS

    def linear_params(self) -> tuple[str, ...] | None:
        return ("A0", "E", "B")

    def _positions(self) -> FloatArray:
        if self.positions is None:
            raise ValueError(
                "TemporalLaw needs `positions` to evaluate; fit it first (the fitted "
                "result's law has them) or pass positions=(1, 2, …)."
            )
        return np.asarray(self.positions, dtype=float)

    def features(self, steps: FloatArray, track: LRTrack | None) -> Any:
        return np.asarray(steps, dtype=float)[:, None], self._positions()[None, :]

    def evaluate(self, theta: FloatArray, feats: Any) -> FloatArray:
        a0_amp, k0, a1_amp, k1, e, b, beta, n0 = theta
        n, i = feats[0], feats[1]
        u = n + n0
        a0 = a0_amp * np.power(u, -k0)
        a1 = a1_amp * np.power(u, k1)
        a2 = e + b * np.power(u, -beta)
        out = a0 / (1.0 + a1 * i) + a2
        if len(feats) > 2:  # fitting with position weights: see ``fit``
            out = np.power(out, feats[2])
        return np.asarray(out, dtype=float)

    def jacobian(self, theta: FloatArray, feats: Any) -> FloatArray | None:
        a0_amp, k0, a1_amp, k1, e, b, beta, n0 = theta
        n, i = feats[0], feats[1]
        u = n + n0
        if np.any(u <= 0):
            return None
        lu = np.log(u)
        a0 = a0_amp * u**-k0
        a1 = a1_amp * u**k1
        h = 1.0 / (1.0 + a1 * i)
        dh_da1 = -i * h**2  # d h / d a1
        p = b * u**-beta
        shape = np.broadcast_shapes(u.shape, i.shape)
        cols = [
            u**-k0 * h,
            -lu * a0 * h,
            a0 * dh_da1 * u**k1,
            a0 * dh_da1 * a1 * lu,
            np.ones(shape),
            u**-beta,
            -lu * p,
            -k0 * a0 * h / u + a0 * dh_da1 * a1 * k1 / u - beta * p / u,
        ]
        jac = np.stack([np.broadcast_to(c, shape) for c in cols], axis=-1)
        if len(feats) > 2:  # d(L ** p) = p L ** (p - 1) dL
            p_w = feats[2]
            out = a0 * h + (e + p)
            jac = jac * (p_w * np.power(out, p_w - 1.0))[..., None]
        return jac

    def initial_guesses(self, curve: Curve) -> list[FloatArray]:
        n = curve.steps
        rows = np.array([_hyperbola(self._positions(), y) for y in curve.losses])
        a0, a1, a2 = (np.maximum(rows[:, j], 1e-9) for j in range(3))
        lo, hi = self.bounds
        starts = []
        for frac in (0.1, 0.0, 1.0, 0.01):
            n0 = frac * float(n[0]) if n[0] > 0 else frac * float(n[-1] - n[0] + 1.0)
            lu = np.log(n + n0) if np.all(n + n0 > 0) else np.log(n + 1.0)
            k0_slope, c0 = np.polyfit(lu, np.log(a0), 1)
            k1_slope, c1 = np.polyfit(lu, np.log(a1), 1)
            e, b, beta = _power_floor(lu, a2)
            theta = np.array([math.exp(c0), -k0_slope, math.exp(c1), k1_slope, e, b, beta, n0])
            starts.append(np.clip(theta, lo, hi))
        return starts

    # ---- 2-D input --------------------------------------------------------------
    def _validate_losses(self, losses: ArrayLike, steps: FloatArray) -> FloatArray:
        y = np.array(losses, dtype=float, copy=True)
        if y.ndim != 2 or y.shape[0] != steps.size:
            raise ValueError(
                f"`losses` must be a matrix of shape (n_evals, n_positions) = ({steps.size}, P), "
                f"one row per step; got shape {y.shape}."
            )
        if y.shape[0] < _MIN_EVALS:
            raise ValueError(
                f"TemporalLaw needs at least {_MIN_EVALS} evaluations (rows of `losses`) to fit "
                f"how a0, a1, a2 drift with N; got {y.shape[0]}. Evaluate more often."
            )
        if y.shape[1] < _MIN_POSITIONS:
            raise ValueError(
                f"`losses` has {y.shape[1]} positions (columns); TemporalLaw needs at least "
                f"{_MIN_POSITIONS} to fit the hyperbola a0/(1 + a1*i) + a2."
            )
        bad = ~np.isfinite(y)
        if np.any(bad):
            r, c = (int(v[0]) for v in np.nonzero(bad))
            kind = "NaN" if np.isnan(y[r, c]) else "inf"
            raise ValueError(
                f"`losses` contains {kind} at row {r} (step {steps[r]:g}), column {c} "
                "(position index); values must be finite. Drop the evaluation or the position."
            )
        if np.any(y <= 0):
            r, c = (int(v[0]) for v in np.nonzero(y <= 0))
            raise ValueError(
                f"`losses` must be > 0 (laws fit log-loss); got {y[r, c]!r} at row {r} "
                f"(step {steps[r]:g}), column {c}."
            )
        if self.positions is not None and len(self.positions) != y.shape[1]:
            raise ValueError(
                f"`losses` has {y.shape[1]} columns but `positions` has {len(self.positions)} "
                "entries; give one position index per column."
            )
        return y

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
        """Fit the law to a matrix of per-position losses (see the class docstring).

        Position weights ``w`` are applied as ``sqrt(w) * (log pred - log y)``
        residuals; the shared fitter takes one weight per row, so within this
        method they are realised exactly by fitting ``y ** sqrt(w)`` with
        ``pred ** sqrt(w)`` (the log residuals scale by ``sqrt(w)``).
        """
        fixed = dict(fixed or {})
        self.check_names(fixed, "fixed")
        self.check_names(prior or {}, "prior")
        law = self
        shape = np.shape(losses)
        if self.positions is None and len(shape) == 2 and shape[1] >= _MIN_POSITIONS:
            law = replace(self, positions=tuple(float(i) for i in range(1, shape[1] + 1)))
        curve = law.make_curve(steps, losses, lrs=lrs)
        power = _weight_powers(weights, curve.losses.shape)
        if power is None:
            return fit_curve(law, curve, fixed=fixed, prior=dict(prior or {}))
        x, i = law.features(curve.steps, curve.track)
        weighted = replace(curve, losses=curve.losses**power)
        result = fit_curve(law, weighted, fixed=fixed, prior=dict(prior or {}), feats=(x, i, power))
        return replace(result, curve=curve)

    def fit_pooled(
        self,
        curves: Sequence[Mapping[str, Any]],
        *,
        shared: Sequence[str],
        fixed: Mapping[str, float] | None = None,
        prior: Mapping[str, Prior] | None = None,
    ) -> list[FitResult]:
        """``Law.fit_pooled`` on loss matrices (positions filled in from the first run).

        Position weights are not supported when pooling; weights, if given, are
        one per evaluation (row).
        """
        law = self
        if self.positions is None and curves:
            shape = np.shape(curves[0]["losses"])
            if len(shape) == 2 and shape[1] >= _MIN_POSITIONS:
                law = replace(self, positions=tuple(float(i) for i in range(1, shape[1] + 1)))
        if law is self:
            return super().fit_pooled(curves, shared=shared, fixed=fixed, prior=prior)
        return law.fit_pooled(curves, shared=shared, fixed=fixed, prior=prior)

    # ---- the overall loss: mean over positions -------------------------------------
    @staticmethod
    def mean_result(result: FitResult) -> FitResult:
        """A ``FitResult`` of the position-mean loss: ``predict``/``interval`` give 1-D."""
        law = result.law
        if not isinstance(law, TemporalLaw):
            raise ValueError(f"`result` must come from TemporalLaw.fit; got a {law.name} fit.")
        curve = result.curve
        calibration = dict(result.calibration)
        mean_curve = None
        if curve is not None:
            mean_curve = replace(curve, losses=curve.losses.mean(axis=1), weights=curve.weights)
            if result.ok:
                pred = law.predict_from(result.theta, curve.steps, None).mean(axis=1)
                r = np.log(pred) - np.log(mean_curve.losses)
                n = r.size
                sd = math.sqrt(float(np.sum(r**2)) / max(n - 3, 1))
                floor = calibration.get("noise", 0.0) / math.sqrt(curve.losses.shape[1])
                calibration["noise"] = max(sd, floor)
        return replace(
            result, law=_PositionMean(inner=law), curve=mean_curve, calibration=calibration
        )

    def overall_result(self, result: FitResult) -> FitResult:
        """The result for the overall (scalar per step) loss: ``mean_result``.

        Proposed as a ``Law`` hook (identity by default) so that generic code
        (pruner, CLI) can ask any law's fit for one loss per step.
        """
        return TemporalLaw.mean_result(result)

    @staticmethod
    def predict_mean(result: FitResult, steps: ArrayLike) -> FloatArray:
        """The mean loss over positions at ``steps`` (what an overall eval loss reports)."""
        return TemporalLaw.mean_result(result).predict(steps)

    @staticmethod
    def interval_mean(
        result: FitResult, steps: ArrayLike, *, level: float = 0.9
    ) -> tuple[FloatArray, FloatArray]:
        """A predictive interval of the position-mean loss at ``steps``."""
        return TemporalLaw.mean_result(result).interval(steps, level=level)


@dataclass(frozen=True)
class _PositionMean(Law):
    """The mean over positions of a fitted ``TemporalLaw`` (same parameters)."""

    inner: TemporalLaw = TemporalLaw()
    name = "temporal_mean"

    def params(self) -> tuple[Param, ...]:
        return self.inner.params()

    def features(self, steps: FloatArray, track: LRTrack | None) -> Any:
        return self.inner.features(steps, track)

    def evaluate(self, theta: FloatArray, feats: Any) -> FloatArray:
        return np.asarray(self.inner.evaluate(theta, feats).mean(axis=-1), dtype=float)

    def initial_guesses(self, curve: Curve) -> list[FloatArray]:
        raise NotImplementedError("fit TemporalLaw on the per-position matrix instead.")


def _weight_powers(weights: ArrayLike | None, shape: tuple[int, ...]) -> FloatArray | None:
    """``sqrt(w / mean(w))`` broadcast to ``shape``, or None for uniform weights."""
    if weights is None:
        return None
    w = np.array(weights, dtype=float, copy=True)
    if w.shape == shape[1:]:
        w = np.broadcast_to(w, shape)
    if w.shape != shape:
        raise ValueError(
            f"`weights` has shape {w.shape}; TemporalLaw takes one weight per position "
            f"{shape[1:]} or per entry {shape}."
        )
    bad = ~np.isfinite(w)
    if np.any(bad):
        r, c = (int(v[0]) for v in np.nonzero(bad))
        raise ValueError(f"`weights` contains a non-finite value at row {r}, column {c}.")
    if np.any(w < 0) or not np.any(w > 0):
        raise ValueError("`weights` must be >= 0 with at least one > 0.")
    if np.all(w == w.flat[0]):
        return None
    return np.asarray(np.sqrt(w / w.mean()), dtype=float)


def _hyperbola(i: FloatArray, y: FloatArray) -> tuple[float, float, float]:
    """``(a0, a1, a2)`` of ``y ~ a0 / (1 + a1 i) + a2``: grid over a1, linear in the rest."""
    best = (np.inf, 1.0, 1.0, float(y.min()))
    scale = float(np.max(i)) if np.max(i) > 0 else 1.0
    for a1 in np.geomspace(1e-2, 1e4, 49) / scale:
        h = 1.0 / (1.0 + a1 * i)
        design = np.column_stack([h, np.ones_like(h)])
        (a0, a2), *_ = np.linalg.lstsq(design, y, rcond=None)
        cost = float(np.sum((a0 * h + a2 - y) ** 2))
        if cost < best[0] and a0 > 0 and a2 > 0:
            best = (cost, float(a0), float(a1), float(a2))
    return best[1], best[2], best[3]


def _power_floor(lu: FloatArray, a2: FloatArray) -> tuple[float, float, float]:
    """``(E, B, beta)`` of ``a2 ~ E + B exp(-beta lu)``: grid over beta, linear in E, B."""
    best = (np.inf, 0.9 * float(a2.min()), 0.0, 0.3)
    for beta in np.geomspace(0.02, 2.0, 25):
        g = np.exp(-beta * lu)
        (e, b), *_ = np.linalg.lstsq(np.column_stack([np.ones_like(g), g]), a2, rcond=None)
        if e < 0 or b < 0:
            continue
        cost = float(np.sum((e + b * g - a2) ** 2))
        if cost < best[0]:
            best = (cost, float(e), float(b), float(beta))
    return best[1], best[2], best[3]
