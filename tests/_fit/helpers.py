"""Synthetic curves and small laws shared by the fitting-engine tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lawsearch.laws import Curve, Law, LRTrack, Param, PowerLaw

STEPS = np.arange(100.0, 20_000.0, 100.0)


def power_curves(
    n: int, *, alpha: float = 0.4, noise: float = 2e-3, seed: int = 0
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``n`` noisy PowerLaw curves on ``STEPS`` sharing ``alpha``; (thetas, losses)."""
    rng = np.random.default_rng(seed)
    thetas, losses = [], []
    for _ in range(n):
        theta = np.array(
            [
                2.0 + 0.3 * rng.random(),
                4.0 + 4.0 * rng.random(),
                alpha,
                100.0 + 200.0 * rng.random(),
            ]
        )
        clean = PowerLaw().predict_from(theta, STEPS, None)
        thetas.append(theta)
        losses.append(clean * np.exp(rng.normal(0.0, noise, STEPS.size)))
    return thetas, losses


@dataclass(frozen=True)
class NaNLaw(Law):
    """A broken law: every prediction is NaN."""

    name = "nan"

    def params(self) -> tuple[Param, ...]:
        return (Param("a", 0.0, 10.0, "a"), Param("b", 0.0, 10.0, "b"))

    def features(self, steps: np.ndarray, track: LRTrack | None) -> Any:
        return steps

    def evaluate(self, theta: np.ndarray, feats: Any) -> np.ndarray:
        return np.full(np.shape(feats), np.nan)

    def initial_guesses(self, curve: Curve) -> list[np.ndarray]:
        return [np.array([1.0, 1.0]), np.array([2.0, 3.0])]


@dataclass(frozen=True)
class AnalyticPowerLaw(PowerLaw):
    """PowerLaw with an analytic Jacobian (to compare against finite differences)."""

    def jacobian(self, theta: np.ndarray, feats: Any) -> np.ndarray:
        _, a, alpha, t0 = theta
        u = np.asarray(feats, dtype=float) + t0
        p = np.power(u, -alpha)
        return np.stack([np.ones_like(u), p, -a * p * np.log(u), -alpha * a * p / u], axis=-1)


@dataclass(frozen=True)
class WrongLinearPowerLaw(PowerLaw):
    """PowerLaw that wrongly declares its exponent linear: the fitter must notice."""

    def linear_params(self) -> tuple[str, ...] | None:
        return ("E", "alpha")
