"""Learning-rate schedules as pure, vectorised functions of the optimizer step.

Every schedule has a linear warmup from 0 to ``peak_lr`` over ``warmup_steps``
steps, then a family-specific shape. ``Schedule.lr(steps)`` evaluates any array
of steps; ``Schedule.per_step()`` returns the whole sequence ``lr[0..T-1]``.

Convention (matches the recorded curves in shared/data): the loss logged at
step ``t`` is measured *before* the update that uses ``lr[t]``, so the
intrinsic time reached at step ``t`` is ``S1(t) = sum_{s < t} lr[s]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.signal import lfilter

from lawsearch._errors import did_you_mean

__all__ = [
    "DECAY_SHAPES",
    "FAMILIES",
    "Schedule",
    "annealing_momentum",
    "intrinsic_time",
]

FAMILIES = (
    "constant",
    "linear",
    "cosine",
    "wsd",
    "multistep",
    "exponential",
    "inverse_sqrt",
    "piecewise",
)
DECAY_SHAPES = ("linear", "cosine", "1-sqrt", "exponential")


@dataclass(frozen=True)
class Schedule:
    """A learning-rate schedule with linear warmup.

    Families (``u`` is the progress through the decay phase, in [0, 1]):
        constant:     lr = peak
        linear:       lr = peak + (final - peak) * u, u over [warmup, T)
        cosine:       lr = final + (peak - final) * (1 + cos(pi u)) / 2
        wsd:          peak until the last ``decay_fraction`` of T, then decays to
                      ``final_lr`` with ``decay_shape`` (linear, cosine, 1-sqrt,
                      exponential = geometric)
        multistep:    lr = peak * gamma ** (number of milestones <= step)
        exponential:  lr = peak * gamma ** (step - warmup)
        inverse_sqrt: lr = peak * sqrt(max(warmup, 1) / max(step, warmup, 1))
        piecewise:    lr = peak * (knots interpolated linearly at u, over [warmup, T)):
                      LR multipliers, the first 1 (the peak), non-increasing, none
                      below final / peak (law-proposed schedules, ``lawsearch.schedule_opt``)

    Args:
        family: one of ``FAMILIES``.
        peak_lr: the learning rate after warmup.
        total_steps: the length T of the schedule in optimizer steps.
        warmup_steps: length of the linear warmup from 0 to ``peak_lr``.
        final_lr: the learning rate at the end (linear, cosine, wsd).
        decay_fraction: the fraction of T spent decaying (wsd).
        decay_shape: the decay shape of wsd, one of ``DECAY_SHAPES``.
        milestones: steps at which multistep multiplies by ``gamma``.
        gamma: the factor of multistep (per milestone) and exponential (per step).
        knots: the LR multipliers of piecewise (fractions of ``peak_lr``).
        knot_positions: where the knots sit in the decay phase (fractions in
            [0, 1], from 0 to 1, increasing); empty: evenly spaced.
        warmup_includes_peak: if True the warmup ramp reaches ``peak_lr`` at
            its last step, ``lr = peak * t / (warmup_steps - 1)``; if False
            (default) at the first step after it, ``lr = peak * t / warmup_steps``.
        decay_ends_at_last_step: if True (default) linear, cosine and wsd
            reach ``final_lr`` at the last step ``T - 1``; if False at step ``T``,
            one past the end (the PyTorch / Hugging Face convention, under which
            ``final_lr`` itself is never used).

    The recorded lr_schedules runs use ``warmup_includes_peak=True,
    decay_ends_at_last_step=False``.
    """

    family: str
    peak_lr: float
    total_steps: int
    warmup_steps: int = 0
    final_lr: float = 0.0
    decay_fraction: float = 0.2
    decay_shape: str = "linear"
    milestones: tuple[int, ...] = field(default_factory=tuple)
    gamma: float = 0.1
    knots: tuple[float, ...] = field(default_factory=tuple)
    knot_positions: tuple[float, ...] = field(default_factory=tuple)
    warmup_includes_peak: bool = False
    decay_ends_at_last_step: bool = True

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(
                f"`family` must be one of {FAMILIES}; got {self.family!r}"
                + did_you_mean(self.family, FAMILIES)
            )
        if not np.isfinite(self.peak_lr) or self.peak_lr <= 0:
            raise ValueError(f"`peak_lr` must be a positive number; got {self.peak_lr!r}.")
        if int(self.total_steps) != self.total_steps or self.total_steps < 1:
            raise ValueError(f"`total_steps` must be a positive integer; got {self.total_steps!r}.")
        if not 0 <= self.warmup_steps < self.total_steps:
            raise ValueError(
                f"`warmup_steps` must be in [0, total_steps={self.total_steps}); "
                f"got {self.warmup_steps!r}."
            )
        if not np.isfinite(self.final_lr) or not 0 <= self.final_lr <= self.peak_lr:
            raise ValueError(
                f"`final_lr` must be in [0, peak_lr={self.peak_lr}]; got {self.final_lr!r}."
            )
        if not 0 < self.decay_fraction <= 1:
            raise ValueError(f"`decay_fraction` must be in (0, 1]; got {self.decay_fraction!r}.")
        if self.decay_shape not in DECAY_SHAPES:
            raise ValueError(
                f"`decay_shape` must be one of {DECAY_SHAPES}; got {self.decay_shape!r}"
                + did_you_mean(self.decay_shape, DECAY_SHAPES)
            )
        if self.decay_shape == "exponential" and self.family == "wsd" and self.final_lr <= 0:
            raise ValueError("`final_lr` must be > 0 for an exponential (geometric) wsd decay.")
        if not 0 < self.gamma <= 1:
            raise ValueError(f"`gamma` must be in (0, 1]; got {self.gamma!r}.")
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))
        if any(b <= a for a, b in zip(self.milestones, self.milestones[1:], strict=False)):
            raise ValueError(f"`milestones` must increase strictly; got {self.milestones!r}.")
        object.__setattr__(self, "knots", tuple(float(k) for k in self.knots))
        object.__setattr__(self, "knot_positions", tuple(float(u) for u in self.knot_positions))
        if self.family == "piecewise":
            self._check_knots()
        elif self.knots or self.knot_positions:
            raise ValueError(
                f"`knots` and `knot_positions` belong to family 'piecewise'; family "
                f"{self.family!r} does not use them. Drop them or set family='piecewise'."
            )

    def _check_knots(self) -> None:
        k = np.asarray(self.knots, dtype=float)
        if k.size < 2:
            raise ValueError(
                f"`knots` of a piecewise schedule needs at least 2 LR multipliers (the first "
                f"1.0, the peak); got {list(self.knots)}."
            )
        if not np.all(np.isfinite(k)):
            raise ValueError(f"`knots` must be finite numbers; got {list(self.knots)}.")
        if k[0] != 1.0:
            raise ValueError(
                f"`knots[0]` must be 1.0 (knots are multipliers of peak_lr, and the first is "
                f"the peak); got {k[0]!r}. Scale `peak_lr` instead."
            )
        rise = np.flatnonzero(np.diff(k) > 0)
        if rise.size:
            i = int(rise[0]) + 1
            raise ValueError(
                f"`knots` must be non-increasing after warmup; knots[{i}]={k[i]!r} > "
                f"knots[{i - 1}]={k[i - 1]!r}. Sort them in decreasing order."
            )
        floor = self.final_lr / self.peak_lr
        if k[-1] < floor * (1.0 - 1e-9):
            raise ValueError(
                f"`knots` must stay within [final_lr, peak_lr]: the last multiplier "
                f"{k[-1]!r} is below final_lr / peak_lr = {floor:.6g}. Raise it, or lower "
                "`final_lr`."
            )
        u = np.asarray(self.knot_positions, dtype=float)
        if u.size == 0:
            return
        if u.size != k.size:
            raise ValueError(
                f"`knot_positions` has {u.size} values but `knots` has {k.size}; give one "
                "position per knot, or none (evenly spaced)."
            )
        if not (u[0] == 0.0 and u[-1] == 1.0 and np.all(np.diff(u) > 0)):
            raise ValueError(
                f"`knot_positions` must increase strictly from 0 to 1 (fractions of the decay "
                f"phase); got {list(self.knot_positions)}. Sort them and start at 0, end at 1."
            )

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> Schedule:
        """Build a schedule from a mapping (e.g. a TOML table); unknown keys are errors."""
        known = {f.name for f in fields(cls)}
        for key in spec:
            if key not in known:
                raise ValueError(f"unknown schedule key {key!r}" + did_you_mean(key, sorted(known)))
        missing = [k for k in ("family", "peak_lr", "total_steps") if k not in spec]
        if missing:
            raise ValueError(f"schedule is missing required key(s): {', '.join(missing)}.")
        kwargs = dict(spec)
        for key in ("milestones", "knots", "knot_positions"):
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key])
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """The schedule as a plain, JSON-safe dict (inverse of ``from_dict``).

        ``knots`` and ``knot_positions`` appear only when set (piecewise), so the
        dicts of the other families, stored on trials and hashed into run ids, are
        unchanged.
        """
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["milestones"] = list(self.milestones)
        for key in ("knots", "knot_positions"):
            if out[key]:
                out[key] = list(out[key])
            else:
                del out[key]
        return out

    @property
    def knot_grid(self) -> NDArray[np.float64]:
        """The knots' positions in the decay phase (fractions in [0, 1]; piecewise)."""
        if self.knot_positions:
            return np.asarray(self.knot_positions, dtype=float)
        return np.linspace(0.0, 1.0, len(self.knots))

    @property
    def decay_start(self) -> int:
        """The first step of the decay phase (the end of warmup, or of the stable phase)."""
        if self.family == "wsd":
            stable_end = round(self.total_steps * (1.0 - self.decay_fraction))
            return max(stable_end, self.warmup_steps)
        return self.warmup_steps

    @property
    def decay_end(self) -> int:
        """The step at which the decay reaches ``final_lr`` (``T - 1`` or ``T``)."""
        return self.total_steps - 1 if self.decay_ends_at_last_step else self.total_steps

    def lr(self, steps: ArrayLike) -> NDArray[np.float64]:
        """The learning rate at each of ``steps`` (any shape, integers or floats)."""
        t = np.asarray(steps, dtype=float)
        if np.any(t < 0) or not np.all(np.isfinite(t)):
            raise ValueError("`steps` must be finite and >= 0.")
        peak, final, warm = self.peak_lr, self.final_lr, self.warmup_steps
        out = self._after_warmup(t, peak, final)
        if warm > 0:
            ramp = peak * t / (max(warm - 1, 1) if self.warmup_includes_peak else warm)
            out = np.where(t < warm, ramp, out)
        return out

    def per_step(self) -> NDArray[np.float64]:
        """The whole schedule ``lr[0..total_steps-1]``."""
        return self.lr(np.arange(self.total_steps))

    def _after_warmup(
        self, t: NDArray[np.float64], peak: float, final: float
    ) -> NDArray[np.float64]:
        if self.family == "constant":
            return np.full_like(t, peak)
        if self.family in ("linear", "cosine"):
            u = _progress(t, self.warmup_steps, self.decay_end)
            return _decay(self.family, u, peak, final)
        if self.family == "wsd":
            u = _progress(t, self.decay_start, self.decay_end)
            return _decay(self.decay_shape, u, peak, final)
        if self.family == "multistep":
            drops = np.searchsorted(np.asarray(self.milestones, dtype=float), t, side="right")
            return np.asarray(peak * self.gamma**drops, dtype=float)
        if self.family == "exponential":
            return peak * self.gamma ** np.maximum(t - self.warmup_steps, 0.0)
        if self.family == "piecewise":
            u = _progress(t, self.warmup_steps, self.decay_end)
            return peak * np.interp(u, self.knot_grid, np.asarray(self.knots, dtype=float))
        # inverse_sqrt
        w = max(self.warmup_steps, 1)
        return peak * np.sqrt(w / np.maximum(t, w))


def _progress(t: NDArray[np.float64], start: int, end: int) -> NDArray[np.float64]:
    """Progress in [0, 1] from ``start`` to ``end``."""
    span = max(end - start, 1)
    return np.clip((t - start) / span, 0.0, 1.0)


def _decay(shape: str, u: NDArray[np.float64], peak: float, final: float) -> NDArray[np.float64]:
    if shape == "linear":
        return peak + (final - peak) * u
    if shape == "cosine":
        return final + (peak - final) * 0.5 * (1.0 + np.cos(np.pi * u))
    if shape == "1-sqrt":
        return final + (peak - final) * (1.0 - np.sqrt(u))
    # exponential: geometric interpolation peak -> final
    return peak ** (1.0 - u) * final**u


def intrinsic_time(lrs: ArrayLike) -> NDArray[np.float64]:
    """Intrinsic time ``S1``: ``out[t] = sum_{s < t} lrs[s]`` for t = 0..len(lrs).

    Args:
        lrs: the per-step learning rates ``lr[0..T-1]``.

    Returns:
        An array of length ``T + 1``; ``out[t]`` is the LR area before step t.
    """
    eta = np.asarray(lrs, dtype=float)
    out = np.zeros(eta.size + 1)
    np.cumsum(eta, out=out[1:])
    return out


def annealing_momentum(lrs: ArrayLike, decay: float = 0.999) -> NDArray[np.float64]:
    """The annealing area ``S2`` of Tissue et al. (2024).

    ``m_i = decay * m_{i-1} + (lr_{i-1} - lr_i)`` and ``S2(t) = sum_{i < t} m_i``,
    so a sharp LR drop enters S2 gradually, as the optimizer's momentum forgets.

    Args:
        lrs: the per-step learning rates ``lr[0..T-1]``.
        decay: the momentum factor lambda in (0, 1).

    Returns:
        An array of length ``T + 1`` aligned with ``intrinsic_time``.
    """
    if not 0 < decay < 1:
        raise ValueError(f"`decay` must be in (0, 1); got {decay!r}.")
    eta = np.asarray(lrs, dtype=float)
    drops = np.zeros_like(eta)
    drops[1:] = eta[:-1] - eta[1:]
    m = lfilter([1.0], [1.0, -decay], drops)
    out = np.zeros(eta.size + 1)
    np.cumsum(m, out=out[1:])
    return out
