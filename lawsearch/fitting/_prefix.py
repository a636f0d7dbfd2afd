"""The prefix of a run that a law is fitted to, and the checks it must pass before fitting."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lawsearch._errors import CurveError
from lawsearch.fitting._curves import RunCurve
from lawsearch.laws import Law

__all__ = ["Prefix", "check_prefix", "prefix_of", "prefix_rows", "reference_of"]

FloatArray = NDArray[np.float64]


def prefix_rows(n_rows: int, fraction: float) -> int:
    """How many leading rows a prefix ``fraction`` of ``n_rows`` keeps (at least 1)."""
    return max(1, min(n_rows, math.floor(fraction * n_rows + 1e-9)))


@dataclass(frozen=True)
class Prefix:
    """The first ``n`` rows of a run, the step to predict and the truth there."""

    run: RunCurve
    n: int
    target_step: int
    true_final: float | None

    def arrays(self, law: Law) -> tuple[FloatArray, FloatArray, FloatArray | None]:
        """Steps and losses of the prefix, and the whole per-step LR up to the target.

        Schedule-free laws get no LR, so an ``lr`` column never changes their fit.
        """
        lrs = self.run.dense_lr(self.target_step) if law.uses_lr else None
        return self.run.steps[: self.n], self.run.losses[: self.n], lrs

    def outcome_fields(self, law: Law, mode: str, seconds: float) -> dict[str, Any]:
        """Every ``Outcome`` field that does not depend on the fit."""
        return {
            "run_id": self.run.run_id,
            "law": law.name,
            "mode": mode,
            "prefix": self.n / self.run.n_rows,
            "n_prefix": self.n,
            "target_step": self.target_step,
            "true_final": self.true_final,
            "fit_seconds": seconds,
            "run": self.run,
        }


def prefix_of(run: RunCurve, prefix: float | None, target_step: int | None, law: Law) -> Prefix:
    """The prefix fitted of ``run``: a fraction of its rows, or every leading observed row.

    Raises:
        CurveError: no loss in the first row, or a target step the law cannot reach.
    """
    n = run.observed() if prefix is None else prefix_rows(run.n_rows, prefix)
    if n == 0:
        raise CurveError(
            f"run {run.run_id!r}: the first row ({run.location(0)}) has no loss; nothing to fit.",
            field="loss",
        )
    target = int(run.steps[-1]) if target_step is None else int(target_step)
    if target < run.steps[n - 1]:
        raise CurveError(
            f"`target_step` {target} is before the end of run {run.run_id!r}'s prefix "
            f"(step {run.steps[n - 1]:g}); choose a later step.",
            field="target_step",
        )
    if target > run.steps[-1] and law.uses_lr and run.lr_per_step is None:
        raise CurveError(
            f"`target_step` {target} is past run {run.run_id!r}'s last row (step "
            f"{run.steps[-1]:g}); law {law.name!r} needs the learning rate up to the target, "
            "so add rows (step, lr, empty loss) up to it.",
            field="target_step",
        )
    hit = np.flatnonzero(run.steps == target)
    true = float(run.losses[hit[0]]) if hit.size and np.isfinite(run.losses[hit[0]]) else None
    return Prefix(run, n, target, true)


def reference_of(run: RunCurve, law: Law) -> Prefix:
    """A complete reference run for transfer mode: every observed row, checked."""
    n = run.observed()
    if n == 0:
        raise CurveError(
            f"`references` {run.run_id!r}: the first row ({run.location(0)}) has no loss; a "
            "reference must be a complete run.",
            field="references",
        )
    ref = Prefix(run, n, int(run.steps[n - 1]), float(run.losses[n - 1]))
    check_prefix(law, ref, "reference (whole run)")
    return ref


def check_prefix(law: Law, prefix: Prefix, label: str, n_fixed: int = 0) -> None:
    """Check that ``law`` can be fitted to the prefix (``n_fixed`` parameters held fixed).

    Raises:
        CurveError: a missing or non-positive loss inside the prefix, too few points
            for the law, or input the law itself rejects.
    """
    run, n = prefix.run, prefix.n
    y = run.losses[:n]
    nan = np.flatnonzero(~np.isfinite(y))
    if nan.size:
        i = int(nan[0])
        raise CurveError(
            f"run {run.run_id!r}: `loss` is missing (empty or NaN) at {run.location(i)} "
            f"(step {run.steps[i]:g}), inside the {label} prefix ({n} of {run.n_rows} "
            "rows); fill it in, drop the row, or lower `prefix`.",
            field="loss",
        )
    bad = np.flatnonzero(y <= 0)
    if bad.size:
        i = int(bad[0])
        raise CurveError(
            f"run {run.run_id!r}: `loss` must be > 0; got {y[i]:g} at {run.location(i)} "
            f"(step {run.steps[i]:g}).",
            field="loss",
        )
    need = law.min_points(n_fixed)
    if n < need:
        raise CurveError(
            f"run {run.run_id!r}: the {label} prefix has {n} points but law "
            f"{law.name!r} needs at least {need} (free parameters + 1); raise `prefix`, "
            "log more often, or use a simpler law (e.g. `law` power).",
            field="prefix",
        )
    steps, losses, lrs = prefix.arrays(law)
    try:  # the law's own input rules (e.g. a per-position law needs a loss matrix)
        law.make_curve(steps, losses, lrs=lrs, n_fixed=n_fixed)
    except ValueError as exc:
        raise CurveError(
            f"run {run.run_id!r}: law {law.name!r} cannot fit it: {exc}", field="law"
        ) from None
