"""Loader for lawsearch's own recorded grid: real runs of the demo's trainer, logged from step 0.

Unlike ``../shared/data`` (public curves, read in place), the grid is
lawsearch's own output (``python -m benchmarks.record_grid``) and ships in the
repository under ``data/grid/``: ``curves.csv.gz`` (one row per evaluation),
``positions.csv.gz`` (the per-token-position losses of each evaluation) and
``MANIFEST.json`` (command, seed, commit, machine). ``LAWSEARCH_GRID_DATA``
points elsewhere (e.g. a grid recorded by you, or a slice in a test).
"""

from __future__ import annotations

import csv
import gzip
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lawsearch.recorded import SharedDataMissing
from lawsearch.schedules import Schedule

__all__ = ["ENV_VAR", "GridRun", "grid_dir", "load_grid"]

ENV_VAR = "LAWSEARCH_GRID_DATA"
FloatArray = NDArray[np.float64]
#: schedule fields of a row (empty cells are the schedule's defaults)
_SCHEDULE_COLUMNS = (
    "family",
    "peak_lr",
    "warmup_steps",
    "decay_fraction",
    "final_lr",
    "total_steps",
)


@dataclass(frozen=True)
class GridRun:
    """One recorded run of the grid.

    Attributes:
        run_id: e.g. ``core012``.
        block: ``core`` / ``spread`` / ``seeds`` / ``large`` (see ``benchmarks.record_grid``).
        model: the model size's name (``demo``, ``x4``).
        params: non-embedding parameters of the model.
        seed: model initialisation and data order.
        mixture: domain -> weight.
        schedule_label: the schedule's grid name (``cosine``, ``wsd10``, ...).
        schedule: the exact LR schedule (``schedule.per_step()`` is the LR of every step).
        steps: the evaluated optimizer steps, from 0.
        tokens: training tokens seen at each step.
        losses: the mean held-out loss over the domains at each step.
        domain_losses: domain -> held-out loss at each step.
        positions: ``(len(steps), seq_len)`` held-out loss per token position, or None.
    """

    run_id: str
    block: str
    model: str
    params: int
    seed: int
    mixture: dict[str, float]
    schedule_label: str
    schedule: Schedule
    steps: FloatArray
    tokens: FloatArray
    losses: FloatArray
    domain_losses: dict[str, FloatArray] = field(default_factory=dict)
    positions: FloatArray | None = field(default=None, repr=False)

    @property
    def lr_per_step(self) -> FloatArray:
        """The LR of every optimizer step ``0 .. total_steps - 1``."""
        return self.schedule.per_step()

    @property
    def full_steps(self) -> int:
        return int(self.schedule.total_steps)

    @property
    def final_loss(self) -> float:
        return float(self.losses[-1])

    def config_key(self) -> tuple[Any, ...]:
        """What the run trained apart from its seed: model, mixture, schedule."""
        return (self.model, tuple(sorted(self.mixture.items())), repr(self.schedule))


def grid_dir() -> Path:
    """The grid folder: ``$LAWSEARCH_GRID_DATA``, else ``data/grid`` of the source checkout.

    Raises:
        SharedDataMissing: where the grid is not (e.g. an installed wheel), and how to fix it.
    """
    env = os.environ.get(ENV_VAR)
    folder = Path(env) if env else Path(__file__).resolve().parents[2] / "data" / "grid"
    if not (folder / "curves.csv.gz").is_file():
        raise SharedDataMissing(
            f"the recorded grid is not at {folder} (no curves.csv.gz); it ships with a source "
            f"checkout of lawsearch (data/grid/), or record one with "
            f"`python -m benchmarks.record_grid` and set {ENV_VAR} to its folder."
        )
    return folder


def load_grid(
    folder: str | os.PathLike[str] | None = None,
    *,
    positions: bool = False,
    blocks: tuple[str, ...] = (),
    models: tuple[str, ...] = (),
) -> tuple[GridRun, ...]:
    """The grid's runs in recording order.

    Args:
        folder: the grid folder (default ``grid_dir()``).
        positions: also read the per-position losses (a larger file).
        blocks: keep only these blocks (default all).
        models: keep only these model sizes (default all).
    """
    base = Path(folder) if folder is not None else grid_dir()
    rows: dict[str, list[dict[str, str]]] = defaultdict(list)
    with gzip.open(base / "curves.csv.gz", "rt", newline="") as fh:
        for row in csv.DictReader(fh):
            if blocks and row["block"] not in blocks:
                continue
            if models and row["model"] not in models:
                continue
            rows[row["run_id"]].append(row)
    pos = _positions(base, set(rows)) if positions else {}
    return tuple(_run(run_id, got, pos.get(run_id)) for run_id, got in rows.items())


def _run(run_id: str, rows: list[dict[str, str]], positions: FloatArray | None) -> GridRun:
    first = rows[0]
    domains = [k[2:] for k in first if k.startswith("w_")]
    spec: dict[str, Any] = {}
    for col in _SCHEDULE_COLUMNS:
        if first[col] != "":
            spec[col] = first[col] if col == "family" else float(first[col])
    spec["total_steps"] = int(spec["total_steps"])
    spec["warmup_steps"] = int(spec["warmup_steps"])

    def column(name: str) -> FloatArray:
        return np.array([float(r[name]) for r in rows])

    steps = column("step")
    if np.any(np.diff(steps) <= 0):
        raise ValueError(f"grid run {run_id!r}: `step` must increase; the file is corrupt.")
    return GridRun(
        run_id=run_id,
        block=first["block"],
        model=first["model"],
        params=int(first["params"]),
        seed=int(first["seed"]),
        mixture={d: float(first[f"w_{d}"]) for d in domains},
        schedule_label=first["schedule"],
        schedule=Schedule.from_dict(spec),
        steps=steps,
        tokens=column("tokens"),
        losses=column("loss"),
        domain_losses={d: column(f"loss_{d}") for d in domains},
        positions=positions,
    )


def _positions(base: Path, keep: set[str]) -> dict[str, FloatArray]:
    out: dict[str, list[list[float]]] = defaultdict(list)
    with gzip.open(base / "positions.csv.gz", "rt", newline="") as fh:
        reader = csv.reader(fh)
        next(reader)
        for row in reader:
            if row[0] in keep:
                out[row[0]].append([float(v) for v in row[2:]])
    return {k: np.array(v) for k, v in out.items()}
