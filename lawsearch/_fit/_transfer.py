"""Transfer mode: parameters from completed reference runs fix or inform a new prefix.

Runs of one study share their exponents and annealing parameters; only the
offset and amplitude are specific to a run. A completed run pins those shared
parameters far better than a 20 % prefix can, so a new run is fitted with
them held (``mode="fixed"``) or as Gaussian priors (``mode="prior"``) and only
``free`` parameters left open.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from lawsearch._curve import FitResult, LawModel, Prior

__all__ = ["fit_transfer", "transfer_prior"]

_MODES = ("prior", "fixed")


def _free_names(law: LawModel, free: Sequence[str] | None, ref: FitResult) -> tuple[str, ...]:
    if free is None:
        declared = law.linear_params()
        if declared is None and ref.curve is not None:
            from lawsearch._fit._least_squares import law_starts, linear_indices, make_problem

            prob = make_problem(law, ref.curve, fixed={}, prior={})
            starts = law_starts(law, ref.curve, prob.free_idx, prob.fixed_vec)
            declared = tuple(law.param_names[i] for i in linear_indices(prob, starts))
        if not declared:
            raise ValueError(
                f"{type(law).__name__} declares no linear parameters, so `free` has no "
                f"default; name the per-run parameters, e.g. free=('E', 'A')."
            )
        return tuple(declared)
    if isinstance(free, str):
        raise ValueError(f"`free` must be a sequence of names; got the string {free!r}.")
    law.check_names(dict.fromkeys(free), "free")
    return tuple(free)


def transfer_prior(
    reference: FitResult | Sequence[FitResult],
    *,
    free: Sequence[str] | None = None,
    mode: str = "prior",
    inflate: float = 2.0,
) -> tuple[dict[str, float], dict[str, Prior]]:
    """The ``(fixed, prior)`` mappings that carry reference fits over to a new run.

    For every parameter not in ``free`` the reference value is the mean over the
    references; its sd combines the references' standard errors and their
    spread: ``sd = inflate * sqrt(mean(stderr**2) + var(values))``, floored at
    1e-3 of the value's magnitude so that a near-exact reference never becomes
    a hard constraint in ``prior`` mode. A parameter the references could not
    pin (NaN standard error) gets a weak prior as wide as its value.

    Args:
        reference: one fit or several fits of the same law on completed runs.
        free: parameters fitted anew on the new run (default: the law's linear
            parameters, e.g. ``("E", "A")`` for the power law, declared by
            ``Law.linear_params`` or detected on the first reference's curve).
        mode: ``"prior"`` (Gaussian priors) or ``"fixed"`` (held at the mean).
        inflate: factor (>= 1) on the prior sd, for runs that differ from the
            references more than the references differ from each other.

    Returns:
        ``(fixed, prior)``, to pass as ``law.fit(..., fixed=fixed, prior=prior)``.

    Raises:
        ValueError: on an unknown mode or name, mixed laws, or no usable reference.
    """
    refs = [reference] if isinstance(reference, FitResult) else list(reference)
    if not refs:
        raise ValueError("`reference` is empty; give at least one fitted reference run.")
    if mode not in _MODES:
        raise ValueError(f"`mode` must be one of {_MODES}; got {mode!r}.")
    if not (np.isfinite(inflate) and inflate >= 1.0):
        raise ValueError(f"`inflate` must be >= 1; got {inflate!r}.")
    law = refs[0].law
    for i, r in enumerate(refs):
        if r.law.param_names != law.param_names:
            raise ValueError(
                f"reference[{i}] is a {type(r.law).__name__} fit but reference[0] is a "
                f"{type(law).__name__} fit; transfer between fits of one law."
            )
        if r.status == "failed":
            raise ValueError(f"reference[{i}] is a failed fit ({r.message}); drop it.")
    names = _free_names(law, free, refs[0])
    fixed: dict[str, float] = {}
    prior: dict[str, Prior] = {}
    for n in law.param_names:
        if n in names:
            continue
        vals = np.array([r.params[n] for r in refs], dtype=float)
        ses = np.array([r.stderr[n] for r in refs], dtype=float)
        mean = float(vals.mean())
        if mode == "fixed":
            fixed[n] = mean
            continue
        spread = float(vals.var(ddof=1)) if vals.size > 1 else 0.0
        if np.all(np.isfinite(ses)):
            sd = inflate * float(np.sqrt(np.mean(ses**2) + spread))
        else:  # the reference could not pin it: a weak prior, as wide as the value
            sd = inflate * float(np.sqrt(mean**2 + spread)) + 1e-6
        prior[n] = (mean, max(sd, 1e-3 * max(abs(mean), 1e-6)))
    return fixed, prior


def fit_transfer(
    law: LawModel,
    steps: ArrayLike,
    losses: ArrayLike,
    *,
    reference: FitResult | Sequence[FitResult],
    lrs: ArrayLike | None = None,
    weights: ArrayLike | None = None,
    free: Sequence[str] | None = None,
    mode: str = "prior",
    inflate: float = 2.0,
) -> FitResult:
    """Fit ``law`` to a new prefix with the other parameters taken from ``reference``.

    Args:
        law: the law to fit (the references must be fits of the same law).
        steps, losses, lrs, weights: the new run, as in ``Law.fit``.
        reference: fits of completed runs (see ``transfer_prior``).
        free, mode, inflate: see ``transfer_prior``.

    Returns:
        The ``FitResult`` of the new run.
    """
    refs = [reference] if isinstance(reference, FitResult) else list(reference)
    for i, r in enumerate(refs):
        if r.law.param_names != law.param_names:
            raise ValueError(
                f"reference[{i}] is a {type(r.law).__name__} fit; it cannot inform a "
                f"{type(law).__name__}."
            )
    fixed, prior = transfer_prior(refs, free=free, mode=mode, inflate=inflate)
    lo, hi = law.bounds
    idx = {n: i for i, n in enumerate(law.param_names)}
    fixed = {n: float(np.clip(v, lo[idx[n]], hi[idx[n]])) for n, v in fixed.items()}
    kwargs: dict[str, Any] = {"lrs": lrs, "weights": weights}
    return law.fit(steps, losses, fixed=fixed, prior=prior, **kwargs)
