"""Synthetic power-law curves with known finals, reported through an Optuna objective."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import optuna

TARGET = 160
STEPS = np.arange(8, TARGET + 1, 8)


def curve(level: float, *, alpha: float = 0.5, noise: float = 0.002, seed: int = 0) -> np.ndarray:
    """``level + 4 (t + 5)^-alpha`` times log-normal noise, at ``STEPS``."""
    rng = np.random.default_rng(seed)
    clean = level + 4.0 * (STEPS + 5.0) ** -alpha
    return clean * np.exp(rng.normal(0.0, noise, STEPS.size))


def objective(
    values_of: Callable[[optuna.Trial], np.ndarray],
) -> Callable[[optuna.Trial], float]:
    """An objective that reports a given curve step by step and obeys the pruner."""

    def run(trial: optuna.Trial) -> float:
        ys = values_of(trial)
        for step, y in zip(STEPS, ys, strict=True):
            trial.report(float(y), int(step))
            if trial.should_prune():
                raise optuna.TrialPruned()
        return float(ys[-1])

    return run


def level_objective(trial: optuna.Trial) -> float:
    """Reports ``curve(level)`` where ``level`` is an (enqueued) parameter."""
    level = trial.suggest_float("level", 0.5, 5.0)
    return objective(lambda t: curve(level, seed=t.number))(trial)
