"""The law contract: ``Param`` and ``Law`` (options, parameters, formula, fitting entry points).

A law is a frozen dataclass of *options*. Subclasses declare their parameters
once (``params``), precompute whatever they need at a set of steps
(``features``), evaluate the loss from a parameter vector (``evaluate``) and
propose deterministic starting points (``initial_guesses``). Fitting goes
through the one engine, ``lawsearch._fit``; the result types (``Curve``,
``FitResult``, ``LRTrack``, ``Prior``) live in ``lawsearch._curve``, which both
import.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike

from lawsearch._curve import Curve, FitResult, FloatArray, LRTrack, Prior, check_finite
from lawsearch._errors import did_you_mean
from lawsearch._fit import fit_curve, fit_pooled, predictive_interval

# Curve, FitResult, LRTrack and Prior are re-exported: every law module names them.
__all__ = ["Curve", "FitResult", "FloatArray", "LRTrack", "Law", "Param", "Prior"]


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
    #: the parameter no prediction of the law may go below (its irreducible loss),
    #: where the law's formula makes it one: then a prediction below it is a
    #: misidentified term. None: the law's only floor is a positive loss (the
    #: annealing laws: their ``L0`` is the constant-LR asymptote, and annealing may
    #: take the loss below it, as on the recorded 72k-step cosine runs).
    floor_param: ClassVar[str | None] = None

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
        check_finite(s, "steps", None)
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
            check_finite(w, "weights", s)
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
        check_finite(y, "losses", steps, hint=" Drop the point, or treat the run as diverged.")
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
        fixed = dict(fixed or {})
        self.check_names(fixed, "fixed")
        self.check_names(prior or {}, "prior")
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
        return fit_pooled(self, curves, shared=shared, fixed=fixed, prior=prior)

    def check_names(self, mapping: Mapping[str, Any], field_name: str) -> None:
        """Raise a ``ValueError`` naming ``field_name`` if a key is not a parameter."""
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

    def predictive_interval(
        self, fit: FitResult, steps: FloatArray, track: LRTrack | None, level: float
    ) -> tuple[FloatArray, FloatArray]:
        """The interval ``FitResult.interval`` returns (``lawsearch._fit.predictive_interval``).

        A law with its own notion of uncertainty (e.g. an ensemble) overrides it.
        """
        return predictive_interval(fit, steps, track, level)
