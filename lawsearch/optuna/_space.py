"""The joint space ``LawSampler`` retrieves in: mixture weights and LR-schedule parameters.

``suggest_mixture`` records each mixture's bounds and ``suggest_schedule`` each
schedule's ranges as study system attrs; ``JointSpace`` reads them and maps a
point of the unit cube to Optuna parameters (the mixture's stick coordinates,
the schedule's family, peak LR on a log scale, warmup and decay fractions) and
to the surrogate's inputs (the weights, and the schedule as ``extra`` columns in
[0, 1] plus the family as a categorical).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
)

from lawsearch.mixtures import MixtureBounds

__all__ = ["JointSpace", "ScheduleSpec", "schedule_param_names"]

FloatArray = NDArray[np.float64]
#: the schedule parameters ``suggest_schedule`` may search (besides the family)
_NUMERIC = ("peak_lr", "warmup_fraction", "decay_fraction")


def schedule_param_names(name: str) -> dict[str, str]:
    """Optuna parameter names of schedule ``name``: field -> ``<name>:<field>``."""
    return {f: f"{name}:{f}" for f in ("family", *_NUMERIC)}


@dataclass(frozen=True)
class ScheduleSpec:
    """The searchable ranges of one ``suggest_schedule`` (a fixed value is not searched)."""

    families: tuple[str, ...]
    ranges: dict[str, tuple[float, float]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "families": list(self.families),
            "ranges": {k: list(v) for k, v in self.ranges.items()},
        }

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> ScheduleSpec:
        return cls(
            families=tuple(spec["families"]),
            ranges={k: (float(v[0]), float(v[1])) for k, v in spec["ranges"].items()},
        )

    def distributions(self, name: str) -> dict[str, BaseDistribution]:
        names = schedule_param_names(name)
        out: dict[str, BaseDistribution] = {}
        if len(self.families) > 1:
            out[names["family"]] = CategoricalDistribution(self.families)
        for f, (lo, hi) in self.ranges.items():
            out[names[f]] = FloatDistribution(lo, hi, log=f == "peak_lr")
        return out


class JointSpace:
    """The unit cube of every searched mixture and schedule of a study.

    Coordinates, in order: each mixture's ``K - 1`` stick coordinates, then each
    schedule's family (when there is a choice) and its ranged fields. A family
    coordinate ``u`` picks ``families[floor(u * n)]``.
    """

    def __init__(
        self, mixtures: Mapping[str, MixtureBounds], schedules: Mapping[str, ScheduleSpec]
    ) -> None:
        self.mixtures = dict(sorted(mixtures.items()))
        self.schedules = dict(sorted(schedules.items()))
        self._dims: list[tuple[str, str]] = []  # (block, field)
        for name, bounds in self.mixtures.items():
            self._dims += [(name, f"stick{i}") for i in range(bounds.k - 1)]
        for name, spec in self.schedules.items():
            if len(spec.families) > 1:
                self._dims.append((name, "family"))
            self._dims += [(name, f) for f in spec.ranges]

    @property
    def dim(self) -> int:
        return len(self._dims)

    @property
    def signature(self) -> str:
        """A string that two spaces share exactly when their coordinates mean the same."""
        blocks = [(n, b.to_dict()) for n, b in self.mixtures.items()]
        blocks += [(n, s.to_dict()) for n, s in self.schedules.items()]
        return json.dumps(blocks, sort_keys=True, default=str)

    def __bool__(self) -> bool:
        return self.dim > 0

    def distributions(self) -> dict[str, BaseDistribution]:
        """Every parameter of the space, as Optuna distributions."""
        out: dict[str, BaseDistribution] = {}
        for name, bounds in self.mixtures.items():
            for i in range(bounds.k - 1):
                out[f"{name}:stick{i}"] = FloatDistribution(0.0, 1.0)
        for name, spec in self.schedules.items():
            out.update(spec.distributions(name))
        return out

    # ---- unit cube <-> parameters ---------------------------------------------------------------
    def to_params(self, u: FloatArray) -> dict[str, Any]:
        """Optuna parameter values of a point of the unit cube."""
        out: dict[str, Any] = {}
        for (block, field), x in zip(self._dims, np.clip(u, 0.0, 1.0), strict=True):
            key = f"{block}:{field}"
            if block in self.mixtures:
                out[key] = float(x)
            elif field == "family":
                fams = self.schedules[block].families
                out[key] = fams[min(int(x * len(fams)), len(fams) - 1)]
            else:
                lo, hi = self.schedules[block].ranges[field]
                value = (
                    math.exp(math.log(lo) + x * (math.log(hi) - math.log(lo)))
                    if field == "peak_lr"
                    else lo + x * (hi - lo)
                )
                # clamped: exp(log(lo)) can round below lo, and Optuna then drops the
                # proposal as outside the distribution and lets the inner sampler pick
                out[key] = float(min(max(value, lo), hi))
        return out

    def from_params(self, params: Mapping[str, Any]) -> FloatArray | None:
        """The unit-cube point of a trial's parameters (None if it lacks a searched one).

        A field the trial did not suggest because its family has none (the decay
        fraction of a cosine schedule) sits at the middle of its range.
        """
        u = np.empty(self.dim)
        for i, (block, field) in enumerate(self._dims):
            key = f"{block}:{field}"
            if block in self.mixtures:
                if key not in params:
                    return None
                u[i] = float(params[key])
            elif field == "family":
                fams = self.schedules[block].families
                if params.get(key) not in fams:
                    return None
                u[i] = (fams.index(params[key]) + 0.5) / len(fams)
            elif key not in params:
                if field == "decay_fraction":
                    u[i] = 0.5
                    continue
                return None
            else:
                lo, hi = self.schedules[block].ranges[field]
                v = float(params[key])
                u[i] = (
                    (math.log(v) - math.log(lo)) / (math.log(hi) - math.log(lo))
                    if field == "peak_lr"
                    else (v - lo) / (hi - lo)
                )
        return np.clip(u, 0.0, 1.0)

    # ---- what the surrogate sees ----------------------------------------------------------------
    def features(self, units: FloatArray) -> tuple[FloatArray, dict[str, Any]]:
        """The surrogate's inputs of unit-cube points: ``(weights, extra)``.

        The first mixture gives the weights (a study without a mixture gives a
        constant 2-column one); other mixtures' weights, every schedule's ranged
        fields (already in [0, 1]) and families (strings) are ``extra`` columns.
        """
        x = np.atleast_2d(np.asarray(units, dtype=float))
        n = x.shape[0]
        cols: dict[str, Any] = {}
        weights: FloatArray | None = None
        j = 0
        for name, bounds in self.mixtures.items():
            w = bounds.from_unit(x[:, j : j + bounds.k - 1])
            j += bounds.k - 1
            if weights is None:
                weights = w
            else:
                cols.update({f"{name}:{d}": w[:, i] for i, d in enumerate(bounds.domains)})
        for name, spec in self.schedules.items():
            if len(spec.families) > 1:
                fams = spec.families
                idx = np.minimum((x[:, j] * len(fams)).astype(int), len(fams) - 1)
                cols[f"{name}:family"] = np.array([fams[i] for i in idx], dtype=object)
                j += 1
            for field in spec.ranges:
                cols[f"{name}:{field}"] = x[:, j]
                j += 1
        if weights is None:
            weights = np.full((n, 2), 0.5)
        return weights, cols

    def spread(self, units: FloatArray) -> FloatArray:
        """Points for distances: the weights, then the schedule coordinates (unit cube)."""
        x = np.atleast_2d(np.asarray(units, dtype=float))
        weights, _ = self.features(x)
        k = sum(b.k - 1 for b in self.mixtures.values())
        return np.concatenate([weights, x[:, k:]], axis=1)

    def sample(self, n: int, rng: np.random.Generator) -> FloatArray:
        """``n`` uniform points (uniform on each mixture's feasible region)."""
        parts = []
        for bounds in self.mixtures.values():
            parts.append(bounds.to_unit(bounds.sample(n, rng=rng)))
        rest = self.dim - sum(b.k - 1 for b in self.mixtures.values())
        parts.append(rng.random((n, rest)))
        return np.clip(np.concatenate(parts, axis=1), 0.0, 1.0)

    def sobol(self, index: int, seed: int) -> FloatArray:
        """Point ``index`` of a scrambled Sobol sequence (mixtures through their sticks)."""
        from scipy.stats import qmc

        m = max(math.ceil(math.log2(index + 1)), 0)
        points = qmc.Sobol(d=max(self.dim, 1), scramble=True, seed=seed).random_base2(m=m)
        return np.asarray(points[index, : self.dim], dtype=float)
