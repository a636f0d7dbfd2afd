"""The pruner's pool: a few scored trials whose curves estimate the study's shared parameters."""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from optuna.trial import FrozenTrial

from lawsearch._fit import profile_shared
from lawsearch.laws import Law
from lawsearch.optuna._mixture import get_schedule
from lawsearch.schedules import Schedule

__all__ = ["PoolCurve", "median_pool", "pool_members", "pooled_estimate"]

#: shared parameter name -> (value, sd)
SharedEstimate = dict[str, tuple[float, float]]


class PoolCurve:
    """A scored trial's curve (and schedule), kept for pooled fits."""

    __slots__ = ("pred", "schedule", "steps", "values")

    def __init__(
        self, pred: float, steps: np.ndarray, values: np.ndarray, schedule: Schedule | None
    ) -> None:
        self.pred, self.steps, self.values, self.schedule = pred, steps, values, schedule

    @classmethod
    def of(cls, trial: FrozenTrial, pred: float) -> PoolCurve | None:
        items = sorted(trial.intermediate_values.items())
        if not items or not all(math.isfinite(v) and v > 0 for _, v in items):
            return None
        try:
            schedule = get_schedule(trial.user_attrs)
        except (ValueError, TypeError):
            schedule = None
        steps = np.array([s for s, _ in items], dtype=float)
        return cls(pred, steps, np.array([v for _, v in items], dtype=float), schedule)


def pool_members(
    preds: Mapping[int, float], *, maximize: bool, size: int, n_random: int, seed: int
) -> list[int]:
    """The ``size`` best trials (by prediction) plus ``n_random`` seeded random others."""
    sign = -1.0 if maximize else 1.0
    ranked = sorted(preds, key=lambda n: (sign * preds[n], n))
    members = ranked[:size]
    rest = ranked[size:]
    if rest and n_random:
        # a seeded hash per trial: the random members stay put as trials arrive,
        # so the pool (and its joint fit) changes only when the leaders change
        members += sorted(rest, key=lambda n: zlib.crc32(f"{seed}:{n}".encode()))[:n_random]
    return members


def pooled_estimate(
    law: Law,
    members: Sequence[PoolCurve],
    shared: Sequence[str],
    *,
    horizon: int,
    min_pool: int,
    spread: Mapping[str, tuple[float, float]],
) -> SharedEstimate:
    """Fit the members jointly: the shared values and their sd ({} when that fails).

    A grid profile (``lawsearch._fit.profile_shared``) when the law is affine in
    its other parameters, else ``Law.fit_pooled``; then the sd is the larger of
    the joint fit's standard error, ``spread`` (of the members' own full fits:
    trials differ, e.g. in LR), and 5% of the value. A schedule-aware law uses
    only the members with a schedule; fewer than ``min_pool`` of them give {}.
    """
    specs = []
    for c in members:
        spec: dict[str, Any] = {"steps": c.steps, "losses": c.values}
        if law.uses_lr:
            if c.schedule is None:
                continue
            end = max(horizon, int(c.steps[-1])) + 1
            spec["lrs"] = c.schedule.lr(np.arange(end))
        specs.append(spec)
    if len(specs) < min_pool:
        return {}
    profiled = profile_shared(law, specs, shared, horizon=horizon)
    if profiled is not None:
        return profiled
    try:
        results = law.fit_pooled(specs, shared=shared)
    except (ValueError, np.linalg.LinAlgError):
        return {}
    if not results or not results[0].ok:
        return {}
    lo_b, hi_b = law.bounds
    pool = {}
    for n in shared:
        i = law.param_names.index(n)
        mu = min(max(float(results[0].params[n]), lo_b[i]), hi_b[i])
        se = float(results[0].stderr.get(n, math.nan))
        sd = max(se if math.isfinite(se) else 0.0, spread.get(n, (0.0, 0.0))[1], 0.05 * abs(mu))
        pool[n] = (mu, max(sd, 1e-6))
    return pool


def median_pool(
    law: Law,
    shared: Sequence[str],
    full: Mapping[int, tuple[float, dict[str, float]]],
    min_pool: int,
) -> SharedEstimate:
    """Median and robust spread of the trials' own full fits (the fallback estimate).

    Args:
        full: trial number -> (prediction, shared values) of its latest full fit.
        min_pool: fewest full fits for an estimate ({} below).
    """
    if len(full) < min_pool:
        return {}
    pool: SharedEstimate = {}
    lo_b, hi_b = law.bounds
    for n in shared:
        vals = np.array([p[n] for _, p in full.values()])
        mu = float(np.median(vals))
        mad = 1.4826 * float(np.median(np.abs(vals - mu)))
        i = law.param_names.index(n)
        pool[n] = (min(max(mu, lo_b[i]), hi_b[i]), max(mad, 0.05 * abs(mu), 1e-6))
    return pool
