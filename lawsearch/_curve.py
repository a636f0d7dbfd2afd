"""Types the laws and the fitting engine share: ``LRTrack``, ``Curve``, ``FitResult``, ``Prior``.

This is the lowest module of the numeric core: ``lawsearch.laws`` (the formulas)
and ``lawsearch._fit`` (the one fitting engine) both import it, and it imports
neither, so the two never form a cycle. ``LawModel`` is the interface of a law
as the engine and a ``FitResult`` see it; ``lawsearch.laws.Law`` implements it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

from lawsearch._errors import FitError

__all__ = [
    "Curve",
    "FitResult",
    "FloatArray",
    "LRTrack",
    "LawModel",
    "Prior",
    "check_finite",
    "information_criteria",
]

FloatArray = NDArray[np.float64]
#: A Gaussian prior on one parameter: (mean, standard deviation).
Prior = tuple[float, float]


class LRTrack:
    """Dense per-step learning rates ``lr[0..T-1]`` and their running sum.

    Built from either a full per-step schedule (``len(lrs) > max(steps)``) or
    the learning rate at each logged step (``len(lrs) == len(steps)``). In the
    second case the LR between logged steps is interpolated linearly and the LR
    before the first logged step is taken equal to the first logged value; laws
    absorb that unknown early area with an offset parameter.
    """

    __slots__ = ("lr", "s1")

    def __init__(self, dense_lr: ArrayLike) -> None:
        lr = np.asarray(dense_lr, dtype=float)
        if lr.ndim != 1 or lr.size == 0:
            raise ValueError("`lrs` must be a non-empty 1-D array.")
        self.lr: FloatArray = lr
        self.s1: FloatArray = np.concatenate([[0.0], np.cumsum(lr)])

    @classmethod
    def from_knots(cls, steps: ArrayLike, lrs: ArrayLike, length: int) -> LRTrack:
        """Interpolate LR known at ``steps`` onto steps ``0..length-1``."""
        s = np.asarray(steps, dtype=float)
        v = np.asarray(lrs, dtype=float)
        grid = np.arange(max(int(length), int(s.max()) + 1), dtype=float)
        return cls(np.interp(grid, s, v))

    @classmethod
    def build(cls, steps: FloatArray, lrs: ArrayLike, *, name: str = "lrs") -> LRTrack:
        """Validate ``lrs`` against ``steps`` and build the dense track."""
        v = np.asarray(lrs, dtype=float)
        if v.ndim != 1:
            raise ValueError(f"`{name}` must be 1-D; got shape {v.shape}.")
        check_finite(v, name, steps if v.size == steps.size else None)
        if np.any(v < 0):
            i = int(np.argmax(v < 0))
            raise ValueError(f"`{name}` must be >= 0; got {v[i]!r} at index {i}.")
        last = int(steps.max())
        if v.size > last:
            return cls(v)
        if v.size == steps.size:
            return cls.from_knots(steps, v, last + 1)
        raise ValueError(
            f"`{name}` has {v.size} values but `steps` has {steps.size} (last step {last}); "
            f"pass one LR per logged step, or the full per-step schedule of at least "
            f"{last + 1} values."
        )

    def extend(self, steps: FloatArray, lrs: ArrayLike | None) -> LRTrack:
        """This history continued with the LRs at later ``steps`` (for prediction)."""
        last = int(steps.max()) if steps.size else 0
        if lrs is None:
            if last <= self.lr.size:  # S1(t) and S2(t) use lr[0 .. t-1] only
                return self
            raise ValueError(
                f"`lrs` is needed to predict beyond the fitted schedule (it has the LR of steps "
                f"0..{self.lr.size - 1}, so it reaches step {self.lr.size}; asked for {last}); "
                "pass the LR at each requested step."
            )
        v = np.asarray(lrs, dtype=float)
        if v.size > last and v.size != steps.size:
            return LRTrack.build(steps, v)
        if v.size != steps.size:
            return LRTrack.build(steps, v)  # raises the length-mismatch message
        check_finite(v, "lrs", steps)
        if np.any(v < 0):
            raise ValueError("`lrs` must be >= 0.")
        known = np.arange(self.lr.size, dtype=float)
        new = steps >= self.lr.size
        knot_s = np.concatenate([known, steps[new]])
        knot_v = np.concatenate([self.lr, v[new]])
        return LRTrack.from_knots(knot_s, knot_v, last + 1)

    def intrinsic_time(self, steps: ArrayLike) -> FloatArray:
        """``S1(t) = sum_{s < t} lr[s]`` at (possibly fractional) steps."""
        t = np.asarray(steps, dtype=float)
        return np.interp(t, np.arange(self.s1.size, dtype=float), self.s1)

    def __getstate__(self) -> dict[str, Any]:
        return {"lr": self.lr}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["lr"])  # type: ignore[misc]


@dataclass(frozen=True)
class Curve:
    """Validated observations of one run: what ``Law.fit`` works on."""

    steps: FloatArray
    losses: FloatArray
    weights: FloatArray
    track: LRTrack | None = None

    @property
    def n_points(self) -> int:
        return int(self.steps.size)


class LawModel(Protocol):
    """What the fitting engine and a ``FitResult`` use of a law (``lawsearch.laws.Law``)."""

    @property
    def name(self) -> str: ...

    @property
    def huber_delta(self) -> float: ...

    @property
    def n_starts(self) -> int: ...

    @property
    def seed(self) -> int: ...

    @property
    def uses_lr(self) -> bool: ...

    @property
    def param_names(self) -> tuple[str, ...]: ...

    @property
    def bounds(self) -> tuple[FloatArray, FloatArray]: ...

    def features(self, steps: FloatArray, track: LRTrack | None) -> Any: ...

    def evaluate(self, theta: FloatArray, feats: Any) -> FloatArray: ...

    def initial_guesses(self, curve: Curve) -> list[FloatArray]: ...

    def linear_params(self) -> tuple[str, ...] | None: ...

    def jacobian(self, theta: FloatArray, feats: Any) -> FloatArray | None: ...

    def min_points(self, n_fixed: int = 0) -> int: ...

    def make_curve(
        self,
        steps: ArrayLike,
        losses: ArrayLike,
        *,
        lrs: ArrayLike | None = None,
        weights: ArrayLike | None = None,
        n_fixed: int = 0,
    ) -> Curve: ...

    def check_names(self, mapping: Mapping[str, Any], field_name: str) -> None: ...

    def predict_from(
        self, theta: FloatArray, steps: ArrayLike, track: LRTrack | None
    ) -> FloatArray: ...

    def fit(
        self,
        steps: ArrayLike,
        losses: ArrayLike,
        *,
        lrs: ArrayLike | None = None,
        weights: ArrayLike | None = None,
        fixed: Mapping[str, float] | None = None,
        prior: Mapping[str, Prior] | None = None,
    ) -> FitResult: ...

    def predictive_interval(
        self, fit: FitResult, steps: FloatArray, track: LRTrack | None, level: float
    ) -> tuple[FloatArray, FloatArray]: ...


@dataclass(frozen=True)
class FitResult:
    """The immutable outcome of a fit.

    Attributes:
        law: the law (options) that was fitted.
        params: fitted values by name (fixed ones included).
        stderr: standard errors by name (0 for fixed parameters, NaN if unknown).
        covariance: covariance of the free parameters (order of ``free``).
        free: names of the parameters that were fitted.
        objective: the robust objective at the optimum.
        rss: the residual sum of squares in log-loss space.
        aic: Akaike information criterion (least-squares form).
        bic: Bayesian information criterion.
        n_points: number of observations.
        status: ``ok``, ``degenerate`` (unidentifiable direction) or ``failed``.
        message: why the status is not ``ok`` (empty otherwise).
        curve: the observations the fit saw (for intervals and plotting).
        calibration: extra uncertainty terms fitted from the data (see ``_fit``).
        prior: the Gaussian priors the fit used (needed to refit for intervals).
        shared: parameters fitted jointly with other runs (``fit_pooled``).
    """

    law: LawModel
    params: dict[str, float]
    stderr: dict[str, float]
    covariance: FloatArray
    free: tuple[str, ...]
    objective: float
    rss: float
    aic: float
    bic: float
    n_points: int
    status: str
    message: str = ""
    curve: Curve | None = None
    calibration: dict[str, float] = field(default_factory=dict)
    prior: dict[str, Prior] = field(default_factory=dict)
    shared: tuple[str, ...] = ()
    #: lazily computed interval terms (backtests); not part of equality
    _cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def ok(self) -> bool:
        return self.status != "failed"

    @property
    def theta(self) -> FloatArray:
        return np.array([self.params[n] for n in self.law.param_names])

    def _require_ok(self) -> None:
        if self.status == "failed":
            raise FitError(f"cannot predict from a failed {self.law.name} fit: {self.message}")

    def track_for(self, steps: FloatArray, lrs: ArrayLike | None) -> LRTrack | None:
        """The LR history joined with the LRs given at the prediction steps."""
        if not self.law.uses_lr:
            return None
        if self.curve is None or self.curve.track is None:
            if lrs is None:
                raise ValueError("`lrs` is required to predict with a schedule-aware law.")
            return LRTrack.build(steps, lrs)
        return self.curve.track.extend(steps, lrs)

    def predict(self, steps: ArrayLike, *, lrs: ArrayLike | None = None) -> FloatArray:
        """Predicted loss at ``steps`` (``lrs``: the LR at those steps, for future steps)."""
        self._require_ok()
        s = np.atleast_1d(np.asarray(steps, dtype=float))
        pred = self.law.predict_from(self.theta, s, self.track_for(s, lrs))
        _check_usable(pred, s, self)
        return pred

    def interval(
        self, steps: ArrayLike, *, lrs: ArrayLike | None = None, level: float = 0.9
    ) -> tuple[FloatArray, FloatArray]:
        """A predictive interval ``(lo, hi)`` at ``steps`` holding ``level`` of outcomes."""
        self._require_ok()
        if not 0 < level < 1:
            raise ValueError(f"`level` must be in (0, 1); got {level!r}.")
        s = np.atleast_1d(np.asarray(steps, dtype=float))
        track = self.track_for(s, lrs)
        _check_usable(self.law.predict_from(self.theta, s, track), s, self)
        return self.law.predictive_interval(self, s, track, level)

    def summary(self) -> dict[str, Any]:
        """Plain-Python (JSON-safe) summary."""
        return {
            "law": self.law.name,
            "status": self.status,
            "message": self.message,
            "params": {k: float(v) for k, v in self.params.items()},
            "stderr": {k: float(v) for k, v in self.stderr.items()},
            "aic": float(self.aic),
            "bic": float(self.bic),
            "n_points": int(self.n_points),
        }


def _check_usable(pred: FloatArray, steps: FloatArray, result: FitResult) -> None:
    """A law extrapolated into a non-positive or non-finite loss has no answer to give."""
    bad = ~(np.isfinite(pred) & (pred > 0))
    if np.any(bad):
        i = int(np.flatnonzero(bad.reshape(bad.shape[0], -1).any(axis=1))[0])
        raise FitError(
            f"the {result.law.name} fit (status {result.status}"
            + (f": {result.message}" if result.message else "")
            + f") predicts a loss of {float(np.ravel(pred[i])[0]):.4g} at step {steps[i]:g}; "
            "it cannot extrapolate that far. Fit a longer prefix, pool it with other runs, "
            "or transfer parameters from a finished run."
        )


def check_finite(values: FloatArray, name: str, steps: FloatArray | None, hint: str = "") -> None:
    bad = ~np.isfinite(values)
    if np.any(bad):
        i = int(np.flatnonzero(bad.reshape(bad.shape[0], -1).any(axis=1))[0])
        kind = "NaN" if np.any(np.isnan(values)) else "inf"
        where = f"index {i}" + (f" (step {steps[i]:g})" if steps is not None else "")
        raise ValueError(f"`{name}` contains {kind} at {where}; values must be finite.{hint}")


def information_criteria(rss: float, n: int, k: int) -> tuple[float, float]:
    """Least-squares AIC and BIC: ``n log(RSS/n) + 2k`` and ``n log(RSS/n) + k log n``."""
    rss = max(rss, 1e-300)
    base = n * math.log(rss / n)
    return base + 2 * k, base + k * math.log(n)
