"""``LawPruner``'s one knob for caution and the settings it stands for.

``caution = 0`` is the setting that measured best on the TaskSet pruning replay
(``benchmarks/search_replay.py``; chosen on those same 9 tasks, so in-sample):
keep 30% per rung and compare the point score. Raising it keeps more trials at
every decision, in two ways that each can only turn a prune into a keep for the
same study state: a larger kept fraction, and a more optimistic quantile of the
prediction's interval. (The near-tie tolerance ``min_improvement`` is left out:
it applies only to curves that improved by more than it, so a wider one is not
always kinder.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

__all__ = ["WRITTEN_QUANTILE", "CautionSettings", "at_quantile", "caution_settings"]

#: the quantile of the interval written to the trial attrs (an 80% interval), whatever
#: quantile a decision compares, so every trial's interval means the same thing
WRITTEN_QUANTILE = 0.1
#: caution 0 and 1: keep fraction, decision quantile (0.5: the point)
_LEAST = (0.3, 0.5)
_MOST = (0.6, 0.1)


@dataclass(frozen=True)
class CautionSettings:
    """What a ``caution`` level sets: each moves toward keeping as caution rises.

    Attributes:
        keep_fraction: fraction of a rung's trials kept.
        quantile: the quantile of the prediction compared (0.5: the point score).
    """

    keep_fraction: float
    quantile: float


def caution_settings(caution: float) -> CautionSettings:
    """The settings of ``caution`` in [0, 1], linear between the two ends.

    ``0``: keep 30%, the point score (the measured best, in-sample);
    ``1``: keep 60%, the 10% quantile (as the defaults before were).
    """
    if not 0.0 <= caution <= 1.0 or math.isnan(caution):
        raise ValueError(
            f"`caution` must be in [0, 1] (0: prune the most, as measured best; "
            f"1: the most careful); got {caution!r}."
        )
    keep, q = (a + caution * (b - a) for a, b in zip(_LEAST, _MOST, strict=True))
    return CautionSettings(keep_fraction=keep, quantile=q)


def at_quantile(mean: float, lo: float, hi: float, quantile: float) -> tuple[float, float]:
    """The ``[quantile, 1 - quantile]`` interval from the ``WRITTEN_QUANTILE`` one.

    The interval is Gaussian in log loss (``lawsearch._fit.delta_interval``), so
    another quantile scales the log distances from ``mean`` by the ratio of the
    normal quantiles; ``quantile = 0.5`` gives ``(mean, mean)``.
    """
    if quantile >= 0.5:
        return mean, mean
    if quantile == WRITTEN_QUANTILE or not (mean > 0 and lo > 0 and hi > 0):
        return lo, hi
    ratio = NormalDist().inv_cdf(quantile) / NormalDist().inv_cdf(WRITTEN_QUANTILE)

    def scaled(edge: float) -> float:
        return mean * math.exp(max(-700.0, min(700.0, ratio * math.log(edge / mean))))

    return scaled(lo), scaled(hi)
