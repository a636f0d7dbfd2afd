"""The contract every law shares: ``Param``, ``LRTrack``, ``Curve``, ``Law`` and ``FitResult``.

A law is a frozen dataclass of *options*. Subclasses declare their parameters
once (``params``), precompute whatever they need at a set of steps
(``features``), evaluate the loss from a parameter vector (``evaluate``) and
propose deterministic starting points (``initial_guesses``). Fitting, input
validation, transfer priors, information criteria and intervals are shared.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from lawsearch._errors import FitError

__all__ = ["Curve", "FitResult", "LRTrack", "Law", "Param", "Prior"]

FloatArray = NDArray[np.float64]
#: A Gaussian prior on one parameter: (mean, standard deviation).
Prior = tuple[float, float]


@dataclass(frozen=True)
class Param:
    """One parameter of a law, declared once with its bounds and meaning."""

    name: str
    lower: float
    upper: float
    doc: str

    def __post_init__(self) -> None:
        if not self.lower < self.upper:
            raise ValueError(f"Param {self.name!r}: lower must be < upper.")


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
        _check_finite(v, name, steps if v.size == steps.size else None)
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
            if last < self.lr.size:
                return self
            raise ValueError(
                f"`lrs` is needed to predict beyond the fitted schedule (last known step "
                f"{self.lr.size - 1}, asked for {last}); pass the LR at each requested step."
            )
        v = np.asarray(lrs, dtype=float)
        if v.size > last and v.size != steps.size:
            return LRTrack.build(steps, v)
        if v.size != steps.size:
            return LRTrack.build(steps, v)  # raises the length-mismatch message
        _check_finite(v, "lrs", steps)
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


@dataclass(frozen=True)
class Law(abc.ABC):
    """Base of every law. Subclasses are frozen dataclasses of options.

    Options shared by all laws:
        huber_delta: threshold (in log-loss units) where the Huber loss turns linear.
        n_starts: the maximum number of deterministic starting points to try.
        seed: seeds every random choice (starts, bootstrap).
    """

    huber_delta: float = 0.01
    n_starts: int = 6
    seed: int = 0

    #: the short name used by the registry and the CLI.
    name: ClassVar[str] = ""

    @property
    def uses_lr(self) -> bool:
        """Whether the law needs the learning-rate schedule (``lrs``)."""
        return False

    # ---- what a subclass provides -------------------------------------------------
    @abc.abstractmethod
    def params(self) -> tuple[Param, ...]:
        """The parameters, in the order of the vectors ``evaluate`` receives."""

    @abc.abstractmethod
    def features(self, steps: FloatArray, track: LRTrack | None) -> Any:
        """Precompute what ``evaluate`` needs at ``steps`` (intrinsic time, …)."""

    @abc.abstractmethod
    def evaluate(self, theta: FloatArray, feats: Any) -> FloatArray:
        """The predicted loss at the steps ``feats`` was built for."""

    @abc.abstractmethod
    def initial_guesses(self, curve: Curve) -> list[FloatArray]:
        """Deterministic starting points (full parameter vectors, within bounds)."""

    # ---- optional hooks that make fitting faster ---------------------------------
    def linear_params(self) -> tuple[str, ...] | None:
        """Names of the parameters the loss is affine in (offsets, amplitudes).

        The fitter solves these exactly for each value of the others (variable
        projection). ``None`` (the default) lets the fitter detect them
        numerically; ``()`` turns the projection off. A wrong declaration is
        caught at fit time and falls back to the plain search.
        """
        return None

    def jacobian(self, theta: FloatArray, feats: Any) -> FloatArray | None:
        """``d evaluate / d theta`` with shape ``(*loss.shape, n_params)``, or None.

        ``None`` (the default) means finite differences.
        """
        return None

    # ---- shared behaviour -------------------------------------------------------
    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params())

    @property
    def bounds(self) -> tuple[FloatArray, FloatArray]:
        ps = self.params()
        return (np.array([p.lower for p in ps]), np.array([p.upper for p in ps]))

    def min_points(self, n_fixed: int = 0) -> int:
        """The fewest observations a fit accepts: free parameters + 1."""
        return len(self.params()) - n_fixed + 1

    def make_curve(
        self,
        steps: ArrayLike,
        losses: ArrayLike,
        *,
        lrs: ArrayLike | None = None,
        weights: ArrayLike | None = None,
        n_fixed: int = 0,
    ) -> Curve:
        """Validate inputs into a ``Curve`` (copies; never mutates the caller's arrays)."""
        s = np.array(steps, dtype=float, copy=True)
        if s.ndim != 1 or s.size == 0:
            raise ValueError(f"`steps` must be a non-empty 1-D array; got shape {s.shape}.")
        _check_finite(s, "steps", None)
        if np.any(s < 0):
            raise ValueError("`steps` must be >= 0.")
        bad = np.flatnonzero(np.diff(s) <= 0)
        if bad.size:
            i = int(bad[0]) + 1
            raise ValueError(
                f"`steps` must increase strictly; steps[{i}]={s[i]:g} follows "
                f"steps[{i - 1}]={s[i - 1]:g}. Sort the points and drop duplicates."
            )
        y = self._validate_losses(losses, s)
        need = self.min_points(n_fixed)
        if s.size < need:
            raise ValueError(
                f"{type(self).__name__} fits {len(self.params()) - n_fixed} free parameters, so "
                f"it needs at least {need} points; got {s.size}. Log more often or use a "
                f"simpler law (e.g. 'power')."
            )
        if weights is None:
            w = np.ones(s.size)
        else:
            w = np.array(weights, dtype=float, copy=True)
            if w.shape != s.shape:
                raise ValueError(f"`weights` has shape {w.shape}; expected {s.shape}.")
            _check_finite(w, "weights", s)
            if np.any(w < 0) or not np.any(w > 0):
                raise ValueError("`weights` must be >= 0 with at least one > 0.")
        track = None
        if lrs is not None:
            track = LRTrack.build(s, lrs)
        elif self.uses_lr:
            raise ValueError(
                f"{type(self).__name__} is schedule-aware and needs `lrs` (the learning rate at "
                f"each logged step, or the full per-step schedule)."
            )
        return Curve(steps=s, losses=y, weights=w, track=track)

    def _validate_losses(self, losses: ArrayLike, steps: FloatArray) -> FloatArray:
        y = np.array(losses, dtype=float, copy=True)
        if y.shape != steps.shape:
            raise ValueError(
                f"`losses` has shape {y.shape} but `steps` has shape {steps.shape}; "
                "give one loss per step."
            )
        _check_finite(y, "losses", steps, hint=" Drop the point, or treat the run as diverged.")
        if np.any(y <= 0):
            i = int(np.argmax(y <= 0))
            raise ValueError(
                f"`losses` must be > 0 (laws fit log-loss); got {y[i]!r} at index {i} "
                f"(step {steps[i]:g})."
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
        """Fit the law to one curve.

        Args:
            steps: optimizer steps of the observations, strictly increasing.
            losses: the loss at each step (> 0, finite).
            lrs: the LR at each step, or the full per-step schedule (schedule-aware laws).
            weights: non-negative weight per point (default 1).
            fixed: parameters held at given values (transfer mode).
            prior: Gaussian priors ``name -> (mean, sd)`` added as penalty residuals.

        Returns:
            A ``FitResult``; a fit that does not converge has ``status == "failed"``.

        Raises:
            ValueError: on bad input (the message names the field and the fix).
        """
        from lawsearch._fit import fit_curve

        fixed = dict(fixed or {})
        self._check_names(fixed, "fixed")
        self._check_names(prior or {}, "prior")
        curve = self.make_curve(steps, losses, lrs=lrs, weights=weights, n_fixed=len(fixed))
        return fit_curve(self, curve, fixed=fixed, prior=dict(prior or {}))

    def fit_pooled(
        self,
        curves: Sequence[Mapping[str, Any]],
        *,
        shared: Sequence[str],
        fixed: Mapping[str, float] | None = None,
        prior: Mapping[str, Prior] | None = None,
    ) -> list[FitResult]:
        """Fit several runs jointly: ``shared`` parameters common, the others per run.

        Args:
            curves: one mapping per run with keys ``steps``, ``losses`` and
                optionally ``lrs`` and ``weights`` (the arguments of ``fit``).
            shared: names of the parameters common to all runs (exponents,
                annealing parameters).
            fixed: parameters held at given values in every run.
            prior: Gaussian priors ``name -> (mean, sd)`` applied to every run
                (once for a shared parameter).

        Returns:
            One ``FitResult`` per curve, in order, with that run's full parameters
            and the covariance of its free parameters (shared and own).

        Raises:
            ValueError: on bad input; the message names the curve index.
        """
        from lawsearch._fit import fit_pooled

        return fit_pooled(self, curves, shared=shared, fixed=fixed, prior=prior)

    def _check_names(self, mapping: Mapping[str, Any], field_name: str) -> None:
        from lawsearch._errors import did_you_mean

        for key in mapping:
            if key not in self.param_names:
                raise ValueError(
                    f"`{field_name}` names unknown parameter {key!r} of {type(self).__name__}"
                    + did_you_mean(key, self.param_names)
                )

    def predict_from(
        self, theta: FloatArray, steps: ArrayLike, track: LRTrack | None
    ) -> FloatArray:
        """Evaluate at arbitrary steps with parameter vector ``theta``."""
        s = np.asarray(steps, dtype=float)
        return np.asarray(self.evaluate(theta, self.features(s, track)), dtype=float)


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

    law: Law
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
        from lawsearch._fit import predictive_interval

        self._require_ok()
        if not 0 < level < 1:
            raise ValueError(f"`level` must be in (0, 1); got {level!r}.")
        s = np.atleast_1d(np.asarray(steps, dtype=float))
        track = self.track_for(s, lrs)
        _check_usable(self.law.predict_from(self.theta, s, track), s, self)
        return predictive_interval(self, s, track, level)

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


def _check_finite(values: FloatArray, name: str, steps: FloatArray | None, hint: str = "") -> None:
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
