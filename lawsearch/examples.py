"""Synthetic example curves: a tidy CSV of a few runs with different LR schedules.

The curves follow the Multi-Power Law (Luo et al., ICLR 2025) with multiplicative
noise, so a schedule-aware law can be checked against a known truth without any
recorded data. ``lawsearch fit`` reads the CSV this module writes
(``run_id,step,lr,loss``).

The generating law, with ``S1(t) = sum_{s<t} lr_s`` (see ``lawsearch.schedules``)::

    L(t)  = L0 + A * (S1(t) + S_W) ** (-alpha) - LD(t)
    LD(t) = B * sum_k (lr_{k-1} - lr_k)^+ * G(lr_k ** (-gamma) * (S1(t) - S1(k)))
    G(x)  = 1 - (C * x + 1) ** (-beta)

Only LR *decreases* enter the sum, so the warmup ramp does not count as annealing.
"""

from __future__ import annotations

import csv
import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from lawsearch.schedules import Schedule, intrinsic_time

__all__ = ["EXAMPLE_LAW", "ExampleRun", "example_runs", "multi_power_loss", "write_example_csv"]

FloatArray = NDArray[np.float64]

#: true parameters of the generating Multi-Power Law (a small LM at peak LR 1e-3).
EXAMPLE_LAW: Mapping[str, float] = {
    "L0": 3.0,
    "A": 0.6,
    "alpha": 0.5,
    "S_W": 0.05,
    "B": 150.0,
    "C": 2.0,
    "beta": 0.6,
    "gamma": 0.6,
}


def _default_schedules() -> dict[str, Schedule]:
    peak, warm = 1e-3, 200
    return {
        "constant_6000": Schedule("constant", peak_lr=peak, total_steps=6000, warmup_steps=warm),
        "cosine_6000": Schedule(
            "cosine", peak_lr=peak, total_steps=6000, warmup_steps=warm, final_lr=1e-4
        ),
        "wsd_6000": Schedule(
            "wsd",
            peak_lr=peak,
            total_steps=6000,
            warmup_steps=warm,
            final_lr=1e-4,
            decay_fraction=0.2,
            decay_shape="linear",
        ),
        "cosine_3000": Schedule(
            "cosine", peak_lr=peak, total_steps=3000, warmup_steps=warm, final_lr=1e-4
        ),
    }


@dataclass(frozen=True)
class ExampleRun:
    """One synthetic run: logged steps, the LR and the noisy and clean loss there."""

    run_id: str
    schedule: Schedule
    steps: FloatArray
    lrs: FloatArray
    losses: FloatArray
    clean: FloatArray = field(repr=False)


def multi_power_loss(
    lr_per_step: FloatArray, steps: FloatArray, params: Mapping[str, float] = EXAMPLE_LAW
) -> FloatArray:
    """The Multi-Power Law loss at ``steps`` for the per-step schedule ``lr_per_step``.

    Args:
        lr_per_step: ``lr[0..T-1]``.
        steps: logged steps (integers below T).
        params: ``L0, A, alpha, S_W, B, C, beta, gamma`` (see the module docstring).

    Returns:
        The loss at each of ``steps``.
    """
    p = dict(params)
    eta = np.asarray(lr_per_step, dtype=float)
    s1 = intrinsic_time(eta)
    t = np.asarray(steps, dtype=int)
    drops = np.zeros_like(eta)
    drops[1:] = np.clip(eta[:-1] - eta[1:], 0.0, None)
    ks = np.flatnonzero(drops > 0)
    out = p["L0"] + p["A"] * (s1[t] + p["S_W"]) ** (-p["alpha"])
    if ks.size:
        scale = eta[ks] ** (-p["gamma"])
        for i, ti in enumerate(t):
            k = ks[ks <= ti]
            if k.size == 0:
                continue
            x = scale[: k.size] * (s1[ti] - s1[k])
            g = 1.0 - (p["C"] * x + 1.0) ** (-p["beta"])
            out[i] -= p["B"] * float(np.sum(drops[k] * g))
    return out


def example_runs(
    *, seed: int = 0, noise: float = 0.003, log_every: int = 50
) -> tuple[ExampleRun, ...]:
    """Four runs (constant, cosine, WSD at 6000 steps; cosine at 3000) with noisy losses.

    Args:
        seed: seeds the noise.
        noise: standard deviation of the multiplicative (log-space) noise.
        log_every: the logging interval in steps; logging starts after warmup.

    Returns:
        The runs, in a fixed order.
    """
    if not noise >= 0 or not math.isfinite(noise):
        raise ValueError(f"`noise` must be a finite number >= 0; got {noise!r}.")
    if int(log_every) != log_every or log_every < 1:
        raise ValueError(f"`log_every` must be a positive integer; got {log_every!r}.")
    rng = np.random.default_rng(seed)
    runs = []
    for run_id, sched in _default_schedules().items():
        lr = sched.per_step()
        steps = np.arange(sched.warmup_steps, sched.total_steps, int(log_every), dtype=float)
        if steps[-1] != sched.total_steps - 1:
            steps = np.append(steps, float(sched.total_steps - 1))
        clean = multi_power_loss(lr, steps)
        noisy = clean * np.exp(rng.normal(0.0, noise, size=clean.size))
        runs.append(ExampleRun(run_id, sched, steps, lr[steps.astype(int)], noisy, clean))
    return tuple(runs)


def write_example_csv(path: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """Write the example runs as a tidy CSV ``run_id,step,lr,loss`` (atomically).

    Returns:
        The path written.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["run_id", "step", "lr", "loss"])
            for run in example_runs(seed=seed):
                for s, lr, loss in zip(run.steps, run.lrs, run.losses, strict=True):
                    writer.writerow([run.run_id, int(s), f"{lr:.6g}", f"{loss:.6f}"])
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
