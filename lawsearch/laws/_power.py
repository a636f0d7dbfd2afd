"""Power law with an offset: the schedule-free baseline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lawsearch.laws._base import Curve, FloatArray, Law, LRTrack, Param

__all__ = ["PowerLaw"]

_TIMES = ("steps", "intrinsic")


@dataclass(frozen=True)
class PowerLaw(Law):
    """Power law in time with an irreducible loss.

    ``L(t) = E + A * (t + t0) ** (-alpha)``, where t is the step, or with
    ``time="intrinsic"`` the intrinsic time ``S1(t) = sum_{s<t} lr_s``
    (then t0 absorbs the LR area before the first logged step).

    Args:
        time: ``"steps"`` or ``"intrinsic"``.
    """

    time: str = "steps"
    name = "power"
    floor_param = "E"

    def __post_init__(self) -> None:
        if self.time not in _TIMES:
            raise ValueError(f"`time` must be one of {_TIMES}; got {self.time!r}.")

    @property
    def uses_lr(self) -> bool:
        return self.time == "intrinsic"

    def params(self) -> tuple[Param, ...]:
        return (
            Param("E", 0.0, 1e4, "irreducible loss (the asymptote)"),
            Param("A", 1e-10, 1e10, "amplitude of the reducible part"),
            Param("alpha", 1e-3, 4.0, "decay exponent"),
            Param("t0", 0.0, 1e9, "time offset (unlogged early training)"),
        )

    def features(self, steps: FloatArray, track: LRTrack | None) -> Any:
        if self.time == "intrinsic":
            assert track is not None
            return track.intrinsic_time(steps)
        return steps

    def evaluate(self, theta: FloatArray, feats: Any) -> FloatArray:
        e, a, alpha, t0 = theta
        return e + a * np.power(feats + t0, -alpha)

    def initial_guesses(self, curve: Curve) -> list[FloatArray]:
        t = np.asarray(self.features(curve.steps, curve.track), dtype=float)
        y = curve.losses
        scale = max(float(t[-1] - t[0]), 1e-12)
        starts = []
        for e_frac in (0.9, 0.6, 0.0):
            for alpha in (0.5, 1.0, 0.25):
                t0 = max(0.05 * scale - float(t[0]), 0.0)
                e = e_frac * float(y.min())
                a = max(float(y[0]) - e, 1e-6) * (float(t[0]) + t0) ** alpha
                starts.append(np.array([e, a, alpha, t0]))
        return starts
