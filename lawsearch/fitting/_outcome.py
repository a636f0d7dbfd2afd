"""The extrapolation of one run: its prediction, interval, truth, status and fit."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lawsearch._fit import MAX_TREND_RATIO
from lawsearch._fit import trend_ratio as _trend_ratio
from lawsearch.fitting._curves import RunCurve
from lawsearch.laws import FitResult

__all__ = ["JSON_KEYS", "Outcome", "outcome_of"]

#: the keys of ``Outcome.to_json``, in order
JSON_KEYS = (
    "run_id",
    "law",
    "mode",
    "prefix",
    "target_step",
    "predicted_final",
    "predicted_lo",
    "predicted_hi",
    "true_final",
    "status",
    "message",
    "law_used",
    "fit_from_step",
)


@dataclass(frozen=True)
class Outcome:
    """The extrapolation of one run (what a table, a plot or a JSON record shows).

    Attributes:
        run_id: the run.
        law: the law's name.
        mode: ``independent``, ``pooled`` or ``transfer``.
        prefix: the fraction of the run's rows that was fitted.
        n_prefix: how many leading rows were fitted.
        target_step: the step whose loss is predicted.
        predicted_final: the predicted loss at ``target_step`` (None if the fit failed).
        predicted_lo: the lower end of the predictive interval.
        predicted_hi: the upper end of the predictive interval.
        true_final: the run's loss at ``target_step`` when the table gives it.
        status: ``ok``, ``degenerate`` (weakly identified, wide intervals) or ``failed``.
        message: why the status is not ``ok``.
        fit: the law's fit (None when it raised).
        fit_seconds: wall time of the fit (pooled: the joint fit divided by the runs).
        run: the whole run extrapolated (None when the outcome was built by hand).
    """

    run_id: str
    law: str
    mode: str
    prefix: float
    n_prefix: int
    target_step: int
    predicted_final: float | None
    predicted_lo: float | None
    predicted_hi: float | None
    true_final: float | None
    status: str
    message: str = ""
    fit: FitResult | None = field(default=None, repr=False)
    fit_seconds: float = float("nan")
    run: RunCurve | None = field(default=None, repr=False)

    @property
    def error(self) -> float | None:
        """Relative error of the predicted final loss, when both are known."""
        if self.predicted_final is None or self.true_final is None:
            return None
        return (self.predicted_final - self.true_final) / self.true_final

    @property
    def covered(self) -> bool | None:
        """Whether the interval holds the true final loss, when both are known."""
        if self.predicted_lo is None or self.predicted_hi is None or self.true_final is None:
            return None
        return self.predicted_lo <= self.true_final <= self.predicted_hi

    @property
    def law_used(self) -> str | None:
        """The law that made the prediction: ``law``, or the less flexible one it fell back to."""
        return None if self.fit is None else self.fit.law.name

    @property
    def fit_from_step(self) -> float | None:
        """The first step the fit saw (its window's start; earlier rows were left out)."""
        if self.fit is None or self.fit.curve is None or not self.fit.curve.n_points:
            return None
        return float(self.fit.curve.steps[0])

    @property
    def rows_used(self) -> int | None:
        """How many prefix rows the fit saw (the window; ``n_prefix`` minus those left out)."""
        return None if self.fit is None or self.fit.curve is None else self.fit.curve.n_points

    @property
    def trend_ratio(self) -> float | None:
        """The predicted improvement over the fitted curve's recent trend continued.

        ``lawsearch._fit.trend_ratio`` of the fitted prefix at the target: 1 means
        "as much again as the second half of the prefix gives when continued in
        log time". None when there is no prediction or the ratio is undefined.
        """
        if self.fit is None or self.fit.curve is None or self.predicted_final is None:
            return None
        curve = self.fit.curve
        return _trend_ratio(curve.steps, curve.losses, self.target_step, self.predicted_final)

    @property
    def implausible(self) -> bool:
        """Whether the prediction is beyond ``MAX_TREND_RATIO`` times the recent trend.

        Real curves stay under about 2; far beyond it, a parameter the prefix does
        not identify is the likely cause (fit a longer prefix, pool or transfer).
        """
        ratio = self.trend_ratio
        return ratio is not None and abs(ratio) > MAX_TREND_RATIO

    def to_json(self) -> dict[str, Any]:
        """The JSON record (``JSON_KEYS``): plain floats, ints, strings and None."""
        out = {k: getattr(self, k) for k in JSON_KEYS}
        out["prefix"] = float(self.prefix)
        out["target_step"] = int(self.target_step)
        return out


def outcome_of(
    base: dict[str, Any], fit: FitResult | None, level: float, message: str = ""
) -> Outcome:
    """The outcome of a fit: its prediction and interval at ``base["target_step"]``.

    Args:
        base: every ``Outcome`` field but the prediction, status and message.
        fit: the law's fit, or None when it raised (``message`` says why).
        level: the probability mass of the interval.
        message: why there is no fit.
    """
    if fit is None or fit.status == "failed":
        msg = message or (fit.message if fit is not None else "fit failed")
        return _failed(base, fit, msg)
    try:
        t = np.array([float(base["target_step"])])
        pred = float(fit.predict(t)[0])
        lo, hi = fit.interval(t, level=level)
        lo_f, hi_f = float(lo[0]), float(hi[0])
    except (ValueError, FloatingPointError, np.linalg.LinAlgError) as exc:
        return _failed(base, fit, f"prediction failed: {exc}")
    if not all(math.isfinite(v) for v in (pred, lo_f, hi_f)):
        return _failed(base, fit, "the fit predicts a non-finite loss at the target step")
    return Outcome(
        **base,
        fit=fit,
        predicted_final=pred,
        predicted_lo=lo_f,
        predicted_hi=hi_f,
        status=fit.status,
        message=fit.message,
    )


def _failed(base: dict[str, Any], fit: FitResult | None, message: str) -> Outcome:
    return Outcome(
        **base,
        fit=fit,
        predicted_final=None,
        predicted_lo=None,
        predicted_hi=None,
        status="failed",
        message=message,
    )
