"""Loader for ``lr_schedules/``: Multi-Power Law loss curves with exact per-step LR."""

from __future__ import annotations

import csv
import gzip
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from lawsearch.recorded import shared_data_dir

__all__ = ["ScheduleRun", "load_lr_schedule_runs"]


@dataclass(frozen=True)
class ScheduleRun:
    """One recorded pre-training run.

    Attributes:
        run_id: e.g. ``100M_cosine_24000``.
        model_params: nominal size (25M or 100M).
        schedule: family (constant, cosine, wsd_exp, wsd_linear, two_stage).
        total_steps: the schedule length T.
        steps: logged steps.
        losses: loss at each logged step.
        lrs: LR at each logged step.
        lr_per_step: the exact per-step LR ``lr[0..T-1]``.
    """

    run_id: str
    model_params: int
    schedule: str
    total_steps: int
    steps: NDArray[np.float64]
    losses: NDArray[np.float64]
    lrs: NDArray[np.float64]
    lr_per_step: NDArray[np.float64]


@lru_cache(maxsize=1)
def load_lr_schedule_runs() -> tuple[ScheduleRun, ...]:
    """All 18 runs, ordered as in ``runs.csv``."""
    folder = shared_data_dir("lr_schedules")
    schedules: dict[str, list[float]] = defaultdict(list)
    with gzip.open(folder / "lr_per_step.csv.gz", "rt") as fh:
        for row in csv.DictReader(fh):
            schedules[row["schedule_id"]].append(float(row["lr"]))
    points: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for size in ("25M", "100M"):
        with open(folder / f"mpl_{size}.csv") as fh:
            for row in csv.DictReader(fh):
                points[row["run_id"]].append(
                    (float(row["step"]), float(row["lr"]), float(row["loss"]))
                )
    runs = []
    with open(folder / "runs.csv") as fh:
        for row in csv.DictReader(fh):
            rid = row["run_id"]
            arr = np.array(points[rid])
            runs.append(
                ScheduleRun(
                    run_id=rid,
                    model_params=int(row["model_params"]),
                    schedule=row["schedule"],
                    total_steps=int(row["total_steps"]),
                    steps=arr[:, 0],
                    losses=arr[:, 2],
                    lrs=arr[:, 1],
                    lr_per_step=np.array(schedules[rid.split("_", 1)[1]]),
                )
            )
    return tuple(runs)
