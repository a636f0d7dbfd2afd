"""Fit a law to the prefixes of loss curves and extrapolate them, in one of three modes.

* ``independent``: each run's prefix alone;
* ``pooled``: all prefixes together, the law's shape parameters shared and the
  offsets and amplitudes per run;
* ``transfer``: complete reference runs fitted whole, their shape parameters
  carried over to each prefix as priors.

Every input is checked for every run before anything is fitted, so bad input
raises ``CurveError`` and a failed fit is an outcome (``status == "failed"``).
"""

from __future__ import annotations

import math
import numbers
import os
import time
from collections.abc import Sequence
from pathlib import Path

from lawsearch._errors import CurveError, did_you_mean
from lawsearch._fit import fit_or_simpler, fit_transfer, pooled_or_simpler, window_start
from lawsearch.fitting._curves import CurvesData, RunCurve, read_curves
from lawsearch.fitting._outcome import Outcome, outcome_of
from lawsearch.fitting._prefix import Prefix, check_prefix, prefix_of, reference_of
from lawsearch.laws import LAWS, FitResult, Law, fallbacks, get_law, shared_params

__all__ = ["MODES", "extrapolate", "fit_curves", "resolve_law"]

MODES = ("independent", "pooled", "transfer")


def resolve_law(law: str | Law) -> Law:
    """A law given by its registered name (default options) or as a ``Law``.

    Raises:
        CurveError: an unknown name (with the closest registered one).
    """
    if isinstance(law, Law):
        return law
    if not isinstance(law, str) or law not in LAWS:
        raise CurveError(
            f"`law`: unknown law {law!r}"
            + did_you_mean(law, LAWS).rstrip(".")
            + f" (registered: {', '.join(sorted(LAWS))}).",
            field="law",
        )
    return get_law(law)


def fit_curves(
    data: CurvesData,
    *,
    law: str | Law = "multipower",
    prefix: float | None = None,
    mode: str = "independent",
    references: str | Sequence[str] = (),
    target_step: int | None = None,
    level: float = 0.9,
    shared: str | Sequence[str] | None = None,
    window: bool = True,
) -> list[Outcome]:
    """Fit ``law`` to the prefix of every run in a table and predict each run's loss.

    Example::

        outcomes = fit_curves("curves.csv", law="multipower", prefix=0.3, mode="pooled")
        for o in outcomes:
            print(o.run_id, o.predicted_final, (o.predicted_lo, o.predicted_hi), o.error)

    Args:
        data: the tidy table ``run_id, step, lr, loss``: a CSV path, a mapping of
            column names to sequences, or a DataFrame. Rows after the prefix give
            the future schedule and, when their loss is given, the truth.
        law: a registered law name or a ``Law`` (options).
        prefix: the fraction of each run's rows fitted, in (0, 1]; ``None`` fits
            every leading row that has a loss.
        mode: ``independent``, ``pooled`` or ``transfer`` (see the module docstring).
        references: the run ids of complete runs used whole in transfer mode; they
            are not extrapolated themselves.
        target_step: the step to predict (default: each run's last row).
        level: the probability mass of the predictive interval.
        shared: the parameters pooled/transfer modes share across runs (default
            ``lawsearch.laws.shared_params(law)``: the shape, not offsets and amplitudes).
        window: fit each curve from ``lawsearch._fit.window_start`` on: past step 0,
            the warmup and an early transient that no law describes, for curves
            logged from the start of training; a law that fails or predicts below
            its floor is replaced by a less flexible one (``lawsearch.laws.fallbacks``).
            False fits every row of the prefix with the law asked for.

    Returns:
        One ``Outcome`` per run that is not a reference, in table order; a failed
        fit has ``status == "failed"`` and its message.

    Raises:
        CurveError: bad input, naming the field, the value and the fix; raised
            before anything is fitted.
    """
    chosen = resolve_law(law)
    runs = read_curves(data)
    refs = (references,) if isinstance(references, str) else tuple(references)
    source = Path(data).name if isinstance(data, str | os.PathLike) else "`data`"
    for ref in refs:
        if ref not in runs:
            raise CurveError(
                f"`references`: no run {ref!r} in {source}"
                + did_you_mean(ref, runs).rstrip(".")
                + f" (runs: {', '.join(runs)}).",
                field="references",
            )
    evaluated = [r for rid, r in runs.items() if rid not in set(refs)]
    if not evaluated:
        raise CurveError(
            "every run is in `references`; leave at least one run to extrapolate.",
            field="references",
        )
    return extrapolate(
        chosen,
        evaluated,
        mode=mode,
        prefix=prefix,
        references=[runs[r] for r in refs],
        target_step=target_step,
        level=level,
        shared=(shared,) if isinstance(shared, str) else shared,
        window=window,
    )


def extrapolate(
    law: str | Law,
    runs: Sequence[RunCurve],
    *,
    mode: str = "independent",
    prefix: float | None = None,
    references: Sequence[RunCurve] = (),
    target_step: int | None = None,
    level: float = 0.9,
    shared: Sequence[str] | None = None,
    window: bool = True,
) -> list[Outcome]:
    """``fit_curves`` on runs already read (``RunCurve``), the references given apart.

    Args:
        law: a registered law name or a ``Law``.
        runs: the runs to extrapolate.
        mode: ``independent``, ``pooled`` or ``transfer``.
        prefix: the fraction of each run's rows fitted; ``None`` fits every
            leading row that has a loss.
        references: complete runs for transfer mode (used whole).
        target_step: the step to predict (default: each run's last row).
        level: the probability mass of the predictive interval.
        shared: the parameters pooled/transfer modes share across runs.
        window: see ``fit_curves``.

    Returns:
        One ``Outcome`` per run, in order.

    Raises:
        CurveError: on bad input (checked for every run before any fitting).
    """
    law = resolve_law(law)
    if mode not in MODES:
        raise CurveError(f"`mode`: unknown mode {mode!r}" + did_you_mean(mode, MODES), field="mode")
    if shared is not None and mode == "independent":
        raise CurveError(
            "`shared` is only used with `mode` pooled or `mode` transfer.", field="shared"
        )
    if prefix is not None and not (
        isinstance(prefix, numbers.Real) and math.isfinite(prefix) and 0 < prefix <= 1
    ):
        raise CurveError(
            f"`prefix` must be in (0, 1] (a fraction of each run's rows); got {prefix!r}.",
            field="prefix",
        )
    if not (isinstance(level, numbers.Real) and 0 < level < 1):
        raise CurveError(f"`level` must be in (0, 1); got {level!r}.", field="level")
    if mode == "transfer" and not references:
        raise CurveError(
            "`mode` transfer needs at least one `references` run (a complete run).",
            field="references",
        )
    if mode != "transfer" and references:
        raise CurveError("`references` is only used with `mode` transfer.", field="references")
    shared_names = () if mode == "independent" else _shared(law, shared)
    label = "observed" if prefix is None else f"{prefix:.0%}"
    prefixes = [prefix_of(r, prefix, target_step, law) for r in runs]
    for p in prefixes:
        # a pooled curve fits only its own parameters; the shared ones come from all
        check_prefix(law, p, label, len(shared_names) if mode == "pooled" else 0)
    refs = [reference_of(r, law) for r in references]
    if mode == "independent":
        out = []
        for p in prefixes:
            fit, seconds, message = _fit_one(law, p, window)
            out.append(outcome_of(p.outcome_fields(law, mode, seconds), fit, level, message))
        return out
    if mode == "pooled":
        return _pooled(law, prefixes, level, shared_names, window)
    return _transfer(law, prefixes, refs, level, shared_names, window)


def _shared(law: Law, shared: Sequence[str] | None) -> tuple[str, ...]:
    names = shared_params(law) if shared is None else tuple(shared)
    unknown = [n for n in names if n not in law.param_names]
    if unknown:
        raise CurveError(
            f"`shared`: {law.name!r} has no parameter(s) {', '.join(map(repr, unknown))}"
            + did_you_mean(unknown[0], law.param_names).rstrip(".")
            + f" (parameters: {', '.join(law.param_names)}).",
            field="shared",
        )
    return names


def _fit_one(law: Law, prefix: Prefix, window: bool) -> tuple[FitResult | None, float, str]:
    steps, losses, lrs = prefix.arrays(law)
    start = time.perf_counter()
    try:
        if window:
            fit = fit_or_simpler(
                law,
                steps,
                losses,
                target=prefix.target_step,
                lrs=lrs,
                fallbacks=fallbacks(law),
            )
        else:
            fit = law.fit(steps, losses, lrs=lrs)
    except Exception as exc:  # a law bug must not abort the other runs
        return None, time.perf_counter() - start, f"{type(exc).__name__}: {exc}"
    return fit, time.perf_counter() - start, ""


def _pooled(
    law: Law, prefixes: list[Prefix], level: float, shared: tuple[str, ...], window: bool
) -> list[Outcome]:
    curves = []
    for p in prefixes:
        steps, losses, lrs = p.arrays(law)
        curves.append({"steps": steps, "losses": losses, "lrs": lrs, "target": p.target_step})
    start = time.perf_counter()
    try:
        fits: list[FitResult | None]
        if window:
            target = max(p.target_step for p in prefixes)
            fits = pooled_or_simpler(
                law, curves, shared=shared, target=target, fallbacks=fallbacks(law)
            )
        else:
            fits = list(law.fit_pooled(curves, shared=shared))
        message = ""
    except Exception as exc:  # a law bug fails these runs, it does not crash the caller
        fits, message = [None] * len(prefixes), f"pooled fit: {type(exc).__name__}: {exc}"
    per_curve = (time.perf_counter() - start) / len(prefixes)
    return [
        outcome_of(p.outcome_fields(law, "pooled", per_curve), fit, level, message)
        for p, fit in zip(prefixes, fits, strict=True)
    ]


def _transfer(
    law: Law,
    prefixes: list[Prefix],
    refs: list[Prefix],
    level: float,
    shared: tuple[str, ...],
    window: bool,
) -> list[Outcome]:
    """Fit the references whole, then each prefix with the shared parameters as priors."""
    ref_fits = []
    for ref in refs:
        ref_fit, _, message = _fit_one(law, ref, window)
        if ref_fit is not None and ref_fit.law != law:  # a fallback cannot inform this law
            message, ref_fit = ref_fit.message, None
        if ref_fit is None or ref_fit.status == "failed":
            why = message or (ref_fit.message if ref_fit is not None else "")
            msg = f"reference {ref.run.run_id!r} fit failed: {why}"
            return [
                outcome_of(p.outcome_fields(law, "transfer", math.nan), None, level, msg)
                for p in prefixes
            ]
        ref_fits.append(ref_fit)
    free = tuple(n for n in law.param_names if n not in shared)
    out = []
    for p in prefixes:
        steps, losses, lrs = p.arrays(law)
        k = 0
        if window:
            need = law.min_points(len(law.param_names) - len(free))
            k = window_start(steps, horizon=p.target_step, lrs=lrs, losses=losses, need=need)
        start = time.perf_counter()
        try:
            fit: FitResult | None = fit_transfer(
                law, steps[k:], losses[k:], reference=ref_fits, lrs=lrs, free=free
            )
            message = ""
        except Exception as exc:  # a law bug fails this run, not the caller
            fit, message = None, f"{type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - start
        out.append(outcome_of(p.outcome_fields(law, "transfer", seconds), fit, level, message))
    return out
