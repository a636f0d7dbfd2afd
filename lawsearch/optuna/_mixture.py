"""``suggest_mixture`` and ``suggest_schedule``: search spaces any Optuna sampler can explore."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import optuna

from lawsearch.mixtures import BoundSpec, MixtureBounds
from lawsearch.optuna import _attrs
from lawsearch.optuna import _compat as compat
from lawsearch.optuna._space import ScheduleSpec
from lawsearch.schedules import FAMILIES, Schedule

__all__ = [
    "get_schedule",
    "mixture_from_params",
    "mixture_param_names",
    "mixture_specs",
    "schedule_specs",
    "set_schedule",
    "suggest_mixture",
    "suggest_schedule",
]

Range = float | tuple[float, float]
#: study system attrs that record what each suggested mixture and schedule searches
_SPEC_PREFIX = {"mixture": _attrs.MIXTURE_SPEC_PREFIX, "schedule": _attrs.SCHEDULE_SPEC_PREFIX}


def mixture_param_names(name: str, k: int) -> list[str]:
    """The K-1 ``suggest_float`` names that encode mixture ``name`` of K domains."""
    return [f"{name}:stick{i}" for i in range(k - 1)]


def suggest_mixture(
    trial: optuna.trial.BaseTrial,
    name: str,
    domains: Sequence[str],
    *,
    low: BoundSpec = 0.0,
    high: BoundSpec = 1.0,
    tokens_available: Mapping[str, float] | Sequence[float] | None = None,
    max_epochs: float | None = None,
    total_tokens: float | None = None,
) -> dict[str, float]:
    """Suggest a data mixture: a dict domain -> weight, summing to 1, within bounds.

    The weights are the bounded stick-breaking image (``MixtureBounds.from_unit``)
    of K-1 ``suggest_float(0, 1)`` values named ``<name>:stick<i>``, so every
    sampler (TPE, GP, CMA-ES, QMC, random) explores the mixture, and every point
    it proposes is feasible. The bounds are recorded in the study so that
    ``LawSampler`` can propose the mixture jointly; each weight is stored as the
    user attr ``lawsearch:mixture:<name>:<domain>``.

    Args:
        trial: the trial.
        name: the mixture's name (prefix of its parameters).
        domains: the domain names.
        low: lower weight per domain (scalar, dict domain -> value, or sequence).
        high: upper weight per domain.
        tokens_available: tokens each domain holds; with ``max_epochs`` and
            ``total_tokens`` caps ``w_i <= max_epochs * tokens_i / total_tokens``.
        max_epochs: the most times any domain may be repeated.
        total_tokens: the tokens one run trains on.

    Raises:
        ValueError: impossible bounds (call ``validate_mixture_bounds`` up front to
            fail before any trial), or a name reused with different bounds.
    """
    bounds = MixtureBounds.build(
        domains,
        low=low,
        high=high,
        tokens_available=tokens_available,
        max_epochs=max_epochs,
        total_tokens=total_tokens,
    )
    _register(trial, name, bounds)
    x = np.array([trial.suggest_float(p, 0.0, 1.0) for p in mixture_param_names(name, bounds.k)])
    w = bounds.from_unit(x)
    out = {d: float(v) for d, v in zip(bounds.domains, w, strict=True)}
    for d, v in out.items():
        trial.set_user_attr(_attrs.mixture_weight_key(name, d), v)
    return out


def _register(trial: optuna.trial.BaseTrial, name: str, bounds: MixtureBounds) -> None:
    """Record the mixture's bounds as a study system attr (read by ``LawSampler``)."""
    if not isinstance(trial, optuna.trial.Trial):
        return
    _register_spec(
        trial.study,
        "mixture",
        name,
        bounds.to_dict(),
        same=lambda known: MixtureBounds.from_dict(known) == bounds,
        differs="domains or bounds",
    )


def _register_spec(
    study: optuna.Study,
    kind: str,
    name: str,
    spec: dict[str, Any],
    *,
    same: Callable[[dict[str, Any]], bool],
    differs: str,
) -> None:
    """Store ``spec`` as study system attr ``lawsearch:<kind>_spec:<name>`` once; refuse another.

    ``same`` says whether an already-stored spec equals ``spec``; ``differs`` names what
    may differ (for the message).
    """
    store, sid = compat.storage(study), compat.study_id(study)
    key = _SPEC_PREFIX[kind] + name
    known = store.get_study_system_attrs(sid).get(key)
    if known is None:
        store.set_study_system_attr(sid, key, spec)
    elif not same(known):
        raise ValueError(
            f"{kind} {name!r} is already registered in study {study.study_name!r} with other "
            f"{differs} ({known}); use a new {kind} name for a different search space."
        )


def _specs(study: optuna.Study, kind: str) -> dict[str, dict[str, Any]]:
    """The stored specs of one kind (``mixture`` or ``schedule``): name -> its dict."""
    prefix = _SPEC_PREFIX[kind]
    attrs = compat.storage(study).get_study_system_attrs(compat.study_id(study))
    return {k[len(prefix) :]: v for k, v in attrs.items() if k.startswith(prefix)}


def mixture_specs(study: optuna.Study) -> dict[str, MixtureBounds]:
    """The mixtures suggested in ``study``: name -> bounds."""
    return {n: MixtureBounds.from_dict(v) for n, v in _specs(study, "mixture").items()}


def mixture_from_params(
    params: Mapping[str, Any], name: str, bounds: MixtureBounds
) -> dict[str, float] | None:
    """Rebuild a trial's mixture from its parameters (None if it did not suggest it)."""
    names = mixture_param_names(name, bounds.k)
    if not all(p in params for p in names):
        return None
    w = bounds.from_unit(np.array([float(params[p]) for p in names]))
    return {d: float(v) for d, v in zip(bounds.domains, w, strict=True)}


def _suggest_range(
    trial: optuna.trial.BaseTrial, name: str, value: Range, *, log: bool = False
) -> float:
    if isinstance(value, tuple):
        lo, hi = value
        return float(trial.suggest_float(name, lo, hi, log=log))
    return float(value)


def suggest_schedule(
    trial: optuna.trial.BaseTrial,
    name: str = "schedule",
    *,
    total_steps: int,
    families: Sequence[str] = ("cosine", "wsd", "linear"),
    peak_lr: Range = (1e-4, 1e-2),
    warmup: Range = (0.0, 0.1),
    decay_fraction: Range = (0.1, 0.3),
    final_lr_fraction: float = 0.0,
) -> Schedule:
    """Suggest an LR schedule: family, peak LR (log scale), warmup and decay fraction.

    A tuple is a range to search, a number is fixed. The schedule is stored on
    the trial (``set_schedule``) so schedule-aware laws in ``LawPruner`` can
    rebuild the LR at every step.

    Args:
        trial: the trial.
        name: prefix of the parameters (``<name>:family``, ``<name>:peak_lr``, ...).
        total_steps: the schedule length T in optimizer steps.
        families: the families to choose from (``lawsearch.schedules.FAMILIES``).
        peak_lr: the peak learning rate, or its (low, high) range (searched in log scale).
        warmup: the warmup length as a fraction of T, or its range.
        decay_fraction: the fraction of T spent decaying (``wsd`` only), or its range.
        final_lr_fraction: the final LR as a fraction of the peak (linear, cosine, wsd).
    """
    fams = tuple(families)
    if not fams:
        raise ValueError("`families` is empty; give at least one of " + ", ".join(FAMILIES) + ".")
    for f in fams:
        if f not in FAMILIES:
            raise ValueError(f"`families` contains unknown family {f!r}; choose from {FAMILIES}.")
        if f == "piecewise":
            raise ValueError(
                "`families` contains 'piecewise': its knots are proposed by a fitted law "
                "(lawsearch.schedule_opt.optimise_schedule), not searched; remove it."
            )
    if int(total_steps) != total_steps or total_steps < 2:
        raise ValueError(f"`total_steps` must be an integer >= 2; got {total_steps!r}.")
    if not 0 <= final_lr_fraction <= 1:
        raise ValueError(f"`final_lr_fraction` must be in [0, 1]; got {final_lr_fraction!r}.")
    for field_name, value in (
        ("peak_lr", peak_lr),
        ("warmup", warmup),
        ("decay_fraction", decay_fraction),
    ):
        if isinstance(value, tuple) and not (len(value) == 2 and value[0] < value[1]):
            raise ValueError(
                f"`{field_name}` must be a number or a (low, high) range with low < high; "
                f"got {value!r}."
            )
    if isinstance(peak_lr, tuple) and peak_lr[0] <= 0:
        raise ValueError(f"`peak_lr` must be > 0; got the range {peak_lr!r}.")
    _register_schedule(trial, name, fams, peak_lr, warmup, decay_fraction)
    family = fams[0] if len(fams) == 1 else str(trial.suggest_categorical(f"{name}:family", fams))
    lr = _suggest_range(trial, f"{name}:peak_lr", peak_lr, log=True)
    warm = _suggest_range(trial, f"{name}:warmup_fraction", warmup)
    if not 0 <= warm < 1:
        raise ValueError(f"`warmup` must be a fraction of total_steps in [0, 1); got {warm!r}.")
    spec: dict[str, Any] = {
        "family": family,
        "peak_lr": lr,
        "total_steps": int(total_steps),
        "warmup_steps": min(round(warm * total_steps), int(total_steps) - 1),
    }
    if family in ("linear", "cosine", "wsd"):
        spec["final_lr"] = lr * float(final_lr_fraction)
    if family == "wsd":
        spec["decay_fraction"] = _suggest_range(trial, f"{name}:decay_fraction", decay_fraction)
    schedule = Schedule.from_dict(spec)
    set_schedule(trial, schedule)
    return schedule


def _register_schedule(
    trial: optuna.trial.BaseTrial,
    name: str,
    families: tuple[str, ...],
    peak_lr: Range,
    warmup: Range,
    decay_fraction: Range,
) -> None:
    """Record what schedule ``name`` searches as a study system attr (read by ``LawSampler``)."""
    if not isinstance(trial, optuna.trial.Trial):
        return
    ranges = {
        field: value
        for field, value in (
            ("peak_lr", peak_lr),
            ("warmup_fraction", warmup),
            ("decay_fraction", decay_fraction if "wsd" in families else 0.0),
        )
        if isinstance(value, tuple)
    }
    spec = ScheduleSpec(families=families, ranges=ranges).to_dict()
    stored = ScheduleSpec.from_dict(spec)  # what reading the attr back gives
    _register_spec(
        trial.study,
        "schedule",
        name,
        spec,
        same=lambda known: ScheduleSpec.from_dict(known) == stored,
        differs="families or ranges",
    )


def schedule_specs(study: optuna.Study) -> dict[str, ScheduleSpec]:
    """The schedules suggested in ``study``: name -> searched families and ranges."""
    return {n: ScheduleSpec.from_dict(v) for n, v in _specs(study, "schedule").items()}


def set_schedule(trial: optuna.trial.BaseTrial, schedule: Schedule) -> None:
    """Store ``schedule`` as the ``lawsearch:schedule`` user attr (a JSON-safe dict)."""
    trial.set_user_attr(_attrs.SCHEDULE, json.loads(json.dumps(schedule.to_dict())))


def get_schedule(user_attrs: Mapping[str, Any]) -> Schedule | None:
    """The schedule stored on a trial (a dict, or its JSON string), or None."""
    spec = user_attrs.get(_attrs.SCHEDULE)
    if spec is None:
        return None
    if isinstance(spec, str):
        spec = json.loads(spec)
    return Schedule.from_dict(spec)
