"""The pruner's scores: a prediction bounded by the curve's own trend, and the rule that prunes."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from lawsearch._fit import half_and_last, trend_range
from lawsearch.laws import FitResult

__all__ = ["Prediction", "bounded_score", "loses"]


class Prediction:
    """A trial's extrapolation at ``target_step``: point, interval and how it was made.

    ``lo``/``hi`` are the written interval; ``edge`` is the optimistic end the
    decision compares (``mean`` when it compares the point score).
    """

    __slots__ = ("edge", "fit", "hi", "lo", "mean", "pooled", "rung", "status", "step")

    def __init__(
        self,
        *,
        step: int,
        rung: int,
        status: str,
        mean: float = math.nan,
        lo: float = math.nan,
        hi: float = math.nan,
        pooled: bool = False,
        fit: FitResult | None = None,
        edge: float | None = None,
    ) -> None:
        self.step, self.rung, self.status = step, rung, status
        self.mean, self.lo, self.hi = mean, lo, hi
        self.edge = mean if edge is None else edge
        self.pooled, self.fit = pooled, fit


def bounded_score(
    steps: np.ndarray,
    losses: np.ndarray,
    prediction: tuple[float, float, float],
    *,
    target: int,
    law_weight: float,
    trend_cap: float | None,
    max_trend_ratio: float | None,
    maximize: bool,
) -> tuple[float, float, float]:
    """``(mean, lo, hi)`` of a prediction, as ``LawPruner`` scores it (see its options).

    In order: shrunk toward the last value by ``law_weight``; bounded by
    ``trend_cap`` times the improvement over the curve's second half (and never
    worse than the last value); clipped within ``max_trend_ratio`` times the
    recent trend continued to ``target`` (``lawsearch._fit.trend_range``).
    """
    mean, lo, hi = prediction
    if law_weight < 1.0:  # shrink toward the last value (plateaus stay plateaus)
        w, last = law_weight, float(losses[-1])
        mean, lo, hi = (w * x + (1.0 - w) * last for x in (mean, lo, hi))
    if trend_cap is not None:
        mean, lo, hi = _cap(steps, losses, (mean, lo, hi), trend_cap, maximize)
    if max_trend_ratio is not None:
        low, high = trend_range(steps, losses, target, max_trend_ratio)
        mean, lo, hi = (min(max(x, low), high) for x in (mean, lo, hi))
    return mean, lo, hi


def _cap(
    steps: np.ndarray,
    losses: np.ndarray,
    prediction: tuple[float, float, float],
    cap: float,
    maximize: bool,
) -> tuple[float, float, float]:
    """Bound the score between the last value and ``cap`` x the recent improvement.

    A fitted law that predicts a final worse than the last report of a curve
    that is still improving is a misfit (the laws only flatten), so the score
    is never worse than the last value either.
    """
    mean, lo, hi = prediction
    ref, last = half_and_last(steps, losses)
    if maximize:
        bound = last + cap * max(last - ref, 0.0)
        mean = max(min(mean, bound), last)
        return mean, min(lo, mean), min(hi, bound)
    bound = last - cap * max(ref - last, 0.0)
    mean = min(max(mean, bound), last)
    return mean, max(lo, bound), max(hi, mean)


def loses(
    optimistic: float,
    scores: Sequence[float],
    values: Mapping[int, float],
    *,
    k: int,
    min_improvement: float,
    minimize: bool,
) -> bool:
    """Whether a trial's ``optimistic`` score is worse than the ``k``-th best of ``scores``.

    With a margin of ``min_improvement`` (relative to the k-th best); a negative
    margin, a tolerance, holds only for a curve (``values``: step -> value) that
    still improved by more than it over its second half, so ties on a plateau
    cannot pile up. False when there are fewer than ``k`` scores.
    """
    if k > len(scores):
        return False
    ranked = sorted(scores) if minimize else sorted(scores, reverse=True)
    kth = ranked[k - 1]
    margin = min_improvement * abs(kth)
    if margin < 0 and _recent_gain(values, minimize) <= -margin:
        margin = 0.0  # a flat curve gets no tolerance: ties on a plateau must not pile up
    return optimistic > kth - margin if minimize else optimistic < kth + margin


def _recent_gain(values: Mapping[int, float], minimize: bool) -> float:
    """Improvement from step ``ceil(step / 2)`` (or the first report) to the last step."""
    step = max(values)
    half = math.ceil(step / 2)
    earlier = [s for s in values if s <= half]
    ref = values[max(earlier)] if earlier else values[min(values)]
    return ref - values[step] if minimize else values[step] - ref
