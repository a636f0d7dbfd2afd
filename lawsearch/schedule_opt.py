"""Law-proposed LR schedules: the piecewise schedule a fitted law predicts ends lowest.

A schedule-aware law (the Multi-Power Law, or any law with ``uses_lr``) fitted
on a study's curves predicts the final loss of *any* LR schedule. Luo et al.
(ICLR 2025) minimise that prediction over the schedule itself and find
WSD-like shapes (a long stable phase, then a fast decay) that beat cosine.
``optimise_schedule`` does the same within a study's bounds: linear warmup to
``peak_lr``, then ``knots`` LR multipliers (``Schedule(family="piecewise")``),
the first 1, non-increasing, none below ``final_lr / peak_lr``.

The multipliers are a monotone map of unconstrained logits ``z`` (K of them:
K - 1 decrements and one "unused" share)::

    d = softmax(z),   m_0 = 1,   m_j = 1 - (1 - r) * (d_1 + ... + d_j),   r = final / peak

so every iterate of the optimiser is a valid schedule and no constraint is
needed. The objective is the law's prediction at ``total_steps``, evaluated with
the law's exact loss-drop sum (one block per LR decrease; the fitting default of
a few dozen equal-mass blocks makes the objective jump as knots move). The
starts are the hand families (cosine, linear, WSD with several decay fractions)
sampled at the knots; the best local search wins.

The optimiser finds the schedules where the law errs low as readily as the ones
that are better: a law fitted on a few hand families extrapolates to shapes it
never saw. ``within=`` keeps the proposal where the law interpolates instead:
convex combinations, step by step, of the given schedules (e.g. the ones the law
was fitted on), each of them monotone after warmup, so every combination is.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize
from scipy.special import softmax

from lawsearch._curve import FitResult, LRTrack
from lawsearch.schedules import Schedule

__all__ = ["ScheduleProposal", "hand_schedules", "optimise_schedule", "predict_final"]

FloatArray = NDArray[np.float64]
#: WSD decay fractions of the hand-family baselines and starts
WSD_FRACTIONS = (0.1, 0.2, 0.3, 0.5)
#: the smallest share a start gives a decrement (log of 0 is not a logit)
_MIN_SHARE = 1e-4
#: the objective of a schedule the law cannot predict (finite, so L-BFGS can step back)
_UNUSABLE = 1e10
#: the most evenly spaced knots a ``within`` proposal uses (plus its members' kinks)
_HULL_KNOTS = 65


@dataclass(frozen=True)
class ScheduleProposal:
    """The optimised schedule and what the law predicts for it and for the hand families.

    Attributes:
        schedule: the piecewise schedule (``family="piecewise"``).
        predicted_final: the law's prediction of the loss at ``total_steps``.
        baselines: the law's prediction for each hand family at the same peak,
            final LR and warmup: ``cosine``, ``linear``, ``wsd:<decay_fraction>``.
        law: the law's short name.
        evaluations: law evaluations the search spent.
        weights: with ``within``, the convex weight of each of its schedules (in
            order); empty otherwise.
    """

    schedule: Schedule
    predicted_final: float
    baselines: dict[str, float] = field(default_factory=dict)
    law: str = ""
    evaluations: int = 0
    weights: tuple[float, ...] = ()

    @property
    def best_baseline(self) -> tuple[str, float]:
        """The hand family the law predicts lowest, and its prediction."""
        name = min(self.baselines, key=lambda k: self.baselines[k])
        return name, self.baselines[name]


def hand_schedules(
    *, total_steps: int, peak_lr: float, final_lr: float, warmup: int
) -> dict[str, Schedule]:
    """The hand families at one peak: cosine, linear and WSD (linear decay) per fraction."""
    common = {
        "peak_lr": peak_lr,
        "total_steps": total_steps,
        "warmup_steps": warmup,
        "final_lr": final_lr,
    }
    out = {
        "cosine": Schedule(family="cosine", **common),  # type: ignore[arg-type]
        "linear": Schedule(family="linear", **common),  # type: ignore[arg-type]
    }
    for frac in WSD_FRACTIONS:
        out[f"wsd:{frac:g}"] = Schedule(family="wsd", decay_fraction=frac, **common)  # type: ignore[arg-type]
    return out


def predict_final(law_fit: FitResult, schedule: Schedule) -> float:
    """The law's prediction of the loss after all ``schedule.total_steps`` updates.

    Raises:
        ValueError: the fit is not of a schedule-aware law, or it failed.
    """
    _check_fit(law_fit)
    return _Objective(law_fit, schedule).final(schedule.per_step())


def optimise_schedule(
    law_fit: FitResult,
    *,
    total_steps: int,
    peak_lr: float,
    final_lr: float = 0.0,
    warmup: int = 0,
    knots: int = 12,
    knot_positions: Sequence[float] | None = None,
    max_iter: int = 200,
    within: Sequence[Schedule] | None = None,
) -> ScheduleProposal:
    """The piecewise schedule whose final loss ``law_fit`` predicts lowest.

    Args:
        law_fit: a fit of a schedule-aware law (e.g. one curve's result of a pooled
            ``MultiPowerLaw`` fit: the run whose amplitude the proposal inherits).
        total_steps: the full budget T in optimizer steps.
        peak_lr: the LR after warmup (the upper bound).
        final_lr: the lowest LR allowed (the lower bound).
        warmup: linear-warmup steps.
        knots: the number of LR multipliers (>= 2; the first is the peak).
        knot_positions: their places in the decay phase (fractions from 0 to 1,
            increasing); default evenly spaced. (Knots crowded at the end let the
            law put a drop into the last few steps, a shape none of the curves it
            was fitted on has, so its prediction there is the least tested.)
        max_iter: iterations of each local search (L-BFGS).
        within: if given, search only the convex combinations (LR step by step) of
            these schedules, e.g. the ones the law was fitted on: the law then
            interpolates between shapes it has seen rather than extrapolating to a
            new one. They must share ``total_steps``, ``peak_lr`` and ``warmup``,
            end no lower than ``final_lr``, and never rise after warmup. The
            knots are then placed where the combination is exact (at most
            65 evenly spaced plus every kink of a member); ``knots`` and
            ``knot_positions`` are ignored.

    Returns:
        A ``ScheduleProposal``: the schedule, its prediction and the hand families'.

    Raises:
        ValueError: bad bounds or options (the message names the field), or a fit
            that cannot predict schedules.
    """
    _check_fit(law_fit)
    if int(knots) != knots or knots < 2:
        raise ValueError(f"`knots` must be an integer >= 2; got {knots!r}.")
    if int(max_iter) != max_iter or max_iter < 1:
        raise ValueError(f"`max_iter` must be a positive integer; got {max_iter!r}.")
    hands = hand_schedules(
        total_steps=total_steps, peak_lr=peak_lr, final_lr=final_lr, warmup=warmup
    )  # validates total_steps, peak_lr, final_lr, warmup
    positions = () if knot_positions is None else tuple(float(u) for u in knot_positions)
    template = Schedule(
        family="piecewise",
        peak_lr=peak_lr,
        total_steps=total_steps,
        warmup_steps=warmup,
        final_lr=final_lr,
        knots=(1.0,) + (max(final_lr / peak_lr, 0.0),) * (int(knots) - 1),
        knot_positions=positions,
    )  # validates knot_positions against knots
    objective = _Objective(law_fit, template)
    baselines = {name: objective.final(s.per_step()) for name, s in hands.items()}
    floor = final_lr / peak_lr
    if floor >= 1.0:  # final == peak: the only valid schedule is constant
        sched = dataclasses.replace(template, knots=(1.0,) * int(knots))
        return ScheduleProposal(
            sched, objective.of_knots(np.ones(int(knots))), baselines, law_fit.law.name, 1
        )
    if within is not None:
        return _optimise_within(law_fit, list(within), template, baselines, max_iter=int(max_iter))
    pos = template.knot_grid
    starts = [_logits(_shape(s, pos), floor) for s in hands.values()]
    best_z = _local_search(objective, starts, int(max_iter))
    mult = _multipliers(best_z, floor)
    sched = dataclasses.replace(template, knots=tuple(float(m) for m in mult))
    return ScheduleProposal(
        sched, objective.of_knots(mult), baselines, law_fit.law.name, objective.calls
    )


def _optimise_within(
    law_fit: FitResult,
    members: list[Schedule],
    template: Schedule,
    baselines: dict[str, float],
    *,
    max_iter: int,
) -> ScheduleProposal:
    """The convex combination of ``members`` whose final loss the law predicts lowest."""
    _check_within(members, template)
    pos = _hull_grid(members, template)
    template = dataclasses.replace(
        template,
        knots=(1.0,) + (template.final_lr / template.peak_lr,) * (pos.size - 1),
        knot_positions=tuple(float(u) for u in pos),
    )
    shapes = np.array([_shape(m, pos) for m in members])  # (members, knots)
    objective = _Objective(law_fit, template)

    def of_logits(z: FloatArray) -> float:
        return objective.of_knots(softmax(np.asarray(z, dtype=float)) @ shapes)

    n = len(members)
    starts = [np.zeros(n)] + [
        np.log(np.where(np.arange(n) == i, 1.0, _MIN_SHARE)) for i in range(n)
    ]
    w = softmax(_local_search(of_logits, starts, max_iter))
    mult = np.minimum.accumulate(np.clip(w @ shapes, template.final_lr / template.peak_lr, 1.0))
    mult[0] = 1.0
    sched = dataclasses.replace(template, knots=tuple(float(m) for m in mult))
    return ScheduleProposal(
        sched,
        objective.of_knots(mult),
        baselines,
        law_fit.law.name,
        objective.calls,
        tuple(float(x) for x in w),
    )


def _local_search(
    f: Callable[[FloatArray], float], starts: list[FloatArray], max_iter: int
) -> FloatArray:
    """The lowest point of ``f`` found by L-BFGS from the 4 best ``starts`` (or the best start)."""
    scored = sorted(starts, key=f)
    best_z, best_f = scored[0], f(scored[0])
    for z0 in scored[:4]:
        res = minimize(f, z0, method="L-BFGS-B", options={"maxiter": max_iter, "eps": 1e-4})
        if np.isfinite(res.fun) and res.fun < best_f:
            best_z, best_f = np.asarray(res.x, dtype=float), float(res.fun)
    return best_z


def _check_within(members: list[Schedule], template: Schedule) -> None:
    if not members or not all(isinstance(m, Schedule) for m in members):
        raise ValueError("`within` must be a non-empty list of Schedule objects.")
    same = (
        "total_steps",
        "peak_lr",
        "warmup_steps",
        "warmup_includes_peak",
        "decay_ends_at_last_step",
    )
    for i, m in enumerate(members):
        for name in same:
            if getattr(m, name) != getattr(template, name):
                raise ValueError(
                    f"`within[{i}]` has {name}={getattr(m, name)!r} but the proposal has "
                    f"{getattr(template, name)!r}; every schedule in `within` must share "
                    "total_steps, peak_lr and warmup with it."
                )
        after = m.per_step()[m.warmup_steps :]
        if np.any(np.diff(after) > 1e-12 * m.peak_lr) or after.min() < template.final_lr * (
            1 - 1e-9
        ):
            raise ValueError(
                f"`within[{i}]` ({m.family}) rises after warmup or ends below `final_lr` "
                f"({template.final_lr:g}); give only non-increasing schedules that stay at "
                "or above it."
            )


def _hull_grid(members: list[Schedule], template: Schedule) -> FloatArray:
    """Knot positions at which a combination of ``members`` is exact, or nearly (cosine)."""
    start, end = template.warmup_steps, template.decay_end
    span = max(end - start, 1)
    pos = [np.linspace(0.0, 1.0, min(_HULL_KNOTS, span + 1))]
    for m in members:
        if m.family == "wsd":
            pos.append(np.array([(m.decay_start - start) / span]))
        elif m.family == "piecewise":
            pos.append(m.knot_grid)
        elif m.family not in ("constant", "linear", "cosine"):
            pos.append(np.arange(span + 1) / span)  # any other shape: every step
    return np.unique(np.clip(np.concatenate(pos), 0.0, 1.0))


def _check_fit(law_fit: FitResult) -> None:
    if not isinstance(law_fit, FitResult):
        raise ValueError(f"`law_fit` must be a FitResult; got {type(law_fit).__name__}.")
    if not law_fit.law.uses_lr:
        raise ValueError(
            f"`law_fit` is a {law_fit.law.name!r} fit, which ignores the LR schedule; fit a "
            "schedule-aware law (e.g. 'multipower') to optimise a schedule."
        )
    if not law_fit.ok:
        raise ValueError(f"`law_fit` failed ({law_fit.message}); refit before optimising.")


def _multipliers(z: FloatArray, floor: float) -> FloatArray:
    """The knots of logits ``z``: 1, then 1 minus cumulated softmax shares of ``1 - floor``."""
    d = softmax(np.asarray(z, dtype=float))
    mult = np.empty(d.size)
    mult[0] = 1.0
    mult[1:] = 1.0 - (1.0 - floor) * np.cumsum(d[:-1])
    # rounding may take the last knot a hair below the floor, or break monotonicity
    return np.maximum(np.minimum.accumulate(mult), floor)


def _logits(mult: FloatArray, floor: float) -> FloatArray:
    """Logits whose ``_multipliers`` are close to ``mult`` (non-increasing, from 1)."""
    drops = -np.diff(np.clip(mult, floor, 1.0)) / (1.0 - floor)
    share = np.append(drops, max(1.0 - float(drops.sum()), 0.0))
    return np.log(np.maximum(share, _MIN_SHARE))


def _shape(schedule: Schedule, positions: FloatArray) -> FloatArray:
    """A schedule's LR multipliers at ``positions`` of its decay phase (from warmup on)."""
    start, end = schedule.warmup_steps, schedule.decay_end
    return schedule.lr(start + positions * (end - start)) / schedule.peak_lr


class _Objective:
    """The law's final-loss prediction as a function of the knot logits."""

    def __init__(self, law_fit: FitResult, template: Schedule) -> None:
        law: Any = law_fit.law
        if hasattr(law, "max_blocks"):  # exact loss-drop sum: one block per decrease
            law = dataclasses.replace(law, max_blocks=max(int(template.total_steps), 1))
        self.law, self.theta = law, law_fit.theta
        self.template = template
        self.floor = template.final_lr / template.peak_lr
        t = np.arange(template.total_steps, dtype=float)
        self.warm = t < template.warmup_steps
        self.ramp = template.lr(t)  # right during warmup, whatever the knots
        start, end = template.warmup_steps, template.decay_end
        self.u = np.clip((t - start) / max(end - start, 1), 0.0, 1.0)
        self.grid = template.knot_grid
        self.at = np.array([float(template.total_steps)])
        self.calls = 0

    def final(self, lrs: FloatArray) -> float:
        self.calls += 1
        pred = self.law.predict_from(self.theta, self.at, LRTrack(lrs))
        value = float(pred[0])
        return value if math.isfinite(value) and value > 0 else _UNUSABLE

    def of_knots(self, mult: FloatArray) -> float:
        lrs = self.template.peak_lr * np.interp(self.u, self.grid, mult)
        return self.final(np.where(self.warm, self.ramp, lrs))

    def __call__(self, z: FloatArray) -> float:
        return self.of_knots(_multipliers(z, self.floor))
