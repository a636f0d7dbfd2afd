"""Functional Scaling Law ansatz (2025): a signal power law plus an LR-noise convolution."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lawsearch.laws._base import Curve, FloatArray, Law, LRTrack, Param
from lawsearch.laws._multipower import (
    block_pairs,
    check_block_options,
    equal_mass_blocks,
    nonneg_linear_fit,
)

__all__ = ["FunctionalLaw"]

_TINY = 1e-12


@dataclass(frozen=True)
class FunctionalLaw(Law):
    """Functional Scaling Law (FSL) ansatz for LLM pre-training.

    The loss is a *signal* term that decays as a power of intrinsic time plus a
    *noise* term: the optimizer noise injected at every step, growing with the
    LR, forgotten through a power-law kernel in intrinsic time::

        L(t) = L0 + A * (S1(t) + S0) ** (-alpha) + B * N(t)
        N(t) = integral_0^{S1(t)} eta(s) * (eta(s) / lr_unit) ** (p - 1) * K(S1(t) - s) ds
        K(u) = (1 + u / tau) ** (-delta)

    where ``S1(t) = sum_{s < t} eta_s`` and ``eta(s)`` is the LR as a function of
    intrinsic time (``ds = eta_k`` per step, so with ``p = 1`` the integral is the
    continuous form of ``sum_{k < t} eta_k**2 K(S1(t) - S1(k))``). With ``p = 1``
    this is the structure of the FSL of Li et al. (2025, "Functional Scaling Laws
    in Kernel Regression"), whose noise term is
    ``sigma^2 * integral K(s(t) - s(tau)) eta(tau)^2 dtau`` with a power-law
    forgetting kernel. Here the kernel's scale ``tau`` and exponent ``delta > 1``
    are fitted, and so is ``p``: for SGD on kernel regression ``p = 1``, while
    the recorded Adam-trained LLM curves prefer ``p ~ 0.8`` (fitted on the 100M
    constant + cosine runs, it cuts the error of predicting the other schedules'
    finals from 1.0% to 0.17%). ``lr_unit`` only sets the unit of ``B``.

    How it differs from the Multi-Power Law: MPL subtracts a saturating benefit
    per LR *decrease*, with an ad-hoc shape ``G``; here the schedule acts through
    the whole LR history, so a constant LR ``eta`` settles at a noise floor
    ``B * eta * (eta / lr_unit) ** (p - 1) * tau / (delta - 1)`` above the
    signal, annealing removes that floor over a memory of ``~tau`` in intrinsic
    time, and LR *increases* (warmup, re-warming) raise the loss instead of
    being ignored.

    ``N`` is evaluated exactly for a piecewise-constant LR: the steps are grouped
    into about ``max_blocks`` blocks of equal LR variation (cut at every evaluated
    step), and each block contributes ``eta_bar * (F(u_start) - F(u_end))`` with
    ``F`` the integral of ``K`` and ``eta_bar = sum eta^2 / sum eta``.

    On a constant-LR curve the noise floor is a constant, indistinguishable from
    ``L0``, so a prefix before any LR change cannot tell how much annealing will
    gain: fit ``B, tau, delta, p`` on complete runs and share or fix them
    (``fit_pooled`` / ``fixed=``) to extrapolate through a decay.

    Args:
        max_blocks: the number of equal-LR-variation blocks; more is more exact.
        lr_unit: the LR unit of the noise amplitude (decorrelates ``B`` and ``p``).
    """

    max_blocks: int = 32
    lr_unit: float = 1e-3
    n_starts: int = 3
    name = "functional"
    floor_param = "L0"

    def __post_init__(self) -> None:
        check_block_options(self.max_blocks, self.lr_unit)

    @property
    def uses_lr(self) -> bool:
        return True

    def params(self) -> tuple[Param, ...]:
        return (
            Param("L0", 0.0, 1e3, "irreducible loss (the asymptote)"),
            Param("A", 0.0, 1e5, "amplitude of the signal power law"),
            Param("alpha", 1e-3, 3.0, "exponent of the signal power law in intrinsic time"),
            Param("S0", -1e3, 1e5, "intrinsic-time offset (warmup area not in the track)"),
            Param("B", 0.0, 1e7, "noise amplitude (loss per unit of LR-weighted memory)"),
            Param("tau", 1e-8, 1e4, "memory scale of the forgetting kernel (intrinsic time)"),
            Param("delta", 1.01, 6.0, "tail exponent of the forgetting kernel"),
            Param("p", 0.1, 3.0, "LR exponent of the injected noise (1 in SGD theory)"),
        )

    def features(self, steps: FloatArray, track: LRTrack | None) -> _NoiseFeatures:
        if track is None:
            raise ValueError("FunctionalLaw needs `lrs` (the LR schedule) to evaluate.")
        return _NoiseFeatures.build(steps, track, self.max_blocks, self.lr_unit)

    def evaluate(self, theta: FloatArray, feats: Any) -> FloatArray:
        l0, a, alpha, s0, b, tau, delta, p = theta
        f: _NoiseFeatures = feats
        base = np.maximum(f.s1 + s0, _TINY)
        loss = l0 + a * np.power(base, -alpha)
        if f.row.size:
            loss = loss + b * f.noise(tau, delta, p)
        return np.asarray(loss, dtype=float)

    def linear_params(self) -> tuple[str, ...]:
        return ("L0", "A", "B")

    def jacobian(self, theta: FloatArray, feats: Any) -> FloatArray:
        _, a, alpha, s0, b, tau, delta, p = theta
        f: _NoiseFeatures = feats
        jac = np.zeros((f.s1.size, 8))
        base = np.maximum(f.s1 + s0, _TINY)
        pw = np.power(base, -alpha)
        jac[:, 0] = 1.0
        jac[:, 1] = pw
        jac[:, 2] = -a * pw * np.log(base)
        jac[:, 3] = np.where(f.s1 + s0 > _TINY, -alpha * a * pw / base, 0.0)
        if f.row.size:
            h, dh_tau, dh_delta = [], [], []
            for u in (f.u_end, f.u_start):
                v = 1.0 + u / tau
                vp = np.exp((1.0 - delta) * np.log(v))  # v ** (1 - delta)
                h.append(tau / (delta - 1.0) * vp)
                dh_tau.append(vp / (delta - 1.0) + (u / tau) * vp / v)
                dh_delta.append(-tau * vp / (delta - 1.0) * (1.0 / (delta - 1.0) + np.log(v)))
            w = f.weight(p)
            jac[:, 4] = f.sum_rows(w * (h[0] - h[1]))
            jac[:, 5] = b * f.sum_rows(w * (dh_tau[0] - dh_tau[1]))
            jac[:, 6] = b * f.sum_rows(w * (dh_delta[0] - dh_delta[1]))
            jac[:, 7] = b * f.sum_rows(w * f.log_eta * (h[0] - h[1]))
        return jac

    def initial_guesses(self, curve: Curve) -> list[FloatArray]:
        """A grid over ``(alpha, S0, tau)`` with ``(L0, A, B)`` solved linearly, best first.

        ``tau`` is tried at a few hundred and a few thousand steps of the peak LR.
        """
        assert curve.track is not None
        f = self.features(curve.steps, curve.track)
        delta0, p0 = 1.5, 1.0
        peak = float(curve.track.lr.max())
        candidates = []
        for tau in (300.0 * peak, 3000.0 * peak):
            noise = f.noise(tau, delta0, p0) if f.row.size else np.zeros_like(f.s1)
            for s0 in (0.0, -0.5 * float(f.s1[0])):
                base = np.maximum(f.s1 + s0, _TINY)
                for alpha in (0.3, 0.5, 0.8):
                    cols = np.column_stack([np.power(base, -alpha), noise])
                    coef, rss = nonneg_linear_fit(cols, curve.losses, curve.weights)
                    if coef is not None:
                        l0, a, b = coef
                        candidates.append((rss, np.array([l0, a, alpha, s0, b, tau, delta0, p0])))
        candidates.sort(key=lambda item: item[0])
        return [theta for _, theta in candidates]


@dataclass(frozen=True)
class _NoiseFeatures:
    """What ``FunctionalLaw.evaluate`` needs at a set of steps.

    For every evaluated step ``t`` and every block of steps that starts before
    ``t``, the part of the block before ``t`` is one *pair* with its mean LR
    ``eta_bar`` (and ``log(eta_bar / lr_unit)``) and the kernel arguments
    ``u = S1(t) - S1`` at its two ends.
    """

    s1: FloatArray
    row: NDArray[np.intp]
    eta_bar: FloatArray
    log_eta: FloatArray
    u_start: FloatArray
    u_end: FloatArray

    @classmethod
    def build(
        cls, steps: FloatArray, track: LRTrack, max_blocks: int, lr_unit: float
    ) -> _NoiseFeatures:
        steps = np.asarray(steps, dtype=float)
        s1 = track.intrinsic_time(steps)
        lr = track.lr
        n_steps = min(int(np.ceil(steps.max())), lr.size) if steps.size else 0
        if n_steps == 0:
            empty = np.zeros(0)
            return cls(s1, np.zeros(0, dtype=np.intp), empty, empty, empty, empty)
        eta = lr[:n_steps]
        cum_var = np.concatenate([[0.0], np.cumsum(np.abs(np.diff(eta)))])
        first, end = equal_mass_blocks(cum_var, float(cum_var[-1]), max_blocks)
        zero = np.zeros(1)
        cum_eta = np.concatenate([zero, np.cumsum(eta)])
        cum_eta2 = np.concatenate([zero, np.cumsum(eta * eta)])
        # steps k < t feed the loss at t (fractional t: the partial step is left out)
        n_before = np.minimum(np.floor(steps).astype(np.intp), n_steps)
        row, col = block_pairs(np.searchsorted(first, n_before, side="left"))
        lo = first[col]
        hi = np.minimum(end[col], n_before[row])
        area = cum_eta[hi] - cum_eta[lo]
        eta_bar = np.where(area > 0, (cum_eta2[hi] - cum_eta2[lo]) / np.maximum(area, _TINY), 0.0)
        s_full = track.s1
        u_start = np.maximum(s1[row] - s_full[lo], 0.0)
        u_end = np.maximum(s1[row] - s_full[hi], 0.0)
        log_eta = np.log(np.maximum(eta_bar, _TINY * lr_unit) / lr_unit)
        return cls(s1, row, eta_bar, log_eta, u_start, u_end)

    def sum_rows(self, values: FloatArray) -> FloatArray:
        """Sum pair values into their evaluated steps."""
        return np.bincount(self.row, weights=values, minlength=self.s1.size).astype(float)

    def weight(self, p: float) -> FloatArray:
        """``eta_bar * (eta_bar / lr_unit) ** (p - 1)``: the noise each pair injects."""
        return self.eta_bar * np.exp((p - 1.0) * self.log_eta)

    def noise(self, tau: float, delta: float, p: float) -> FloatArray:
        """``N(t)``: the LR history convolved with the forgetting kernel."""
        q = 1.0 - delta
        h_end = np.exp(q * np.log1p(self.u_end / tau))
        h_start = np.exp(q * np.log1p(self.u_start / tau))
        return self.sum_rows(self.weight(p) * (h_end - h_start)) * (tau / (delta - 1.0))
