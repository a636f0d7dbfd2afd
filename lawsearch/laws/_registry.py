"""The laws by short name, and ``get_law``: one table the CLI, studies and ensembles read.

``EnsembleLaw`` combines the laws registered here, so this module imports every
single-curve law but not the ensemble; ``lawsearch.laws`` registers the
ensemble on top (``register``), which keeps the imports one-directional.
"""

from __future__ import annotations

from typing import Any

from lawsearch._errors import did_you_mean
from lawsearch.laws._base import Law
from lawsearch.laws._functional import FunctionalLaw
from lawsearch.laws._momentum import MomentumLaw
from lawsearch.laws._multipower import MultiPowerLaw
from lawsearch.laws._power import PowerLaw
from lawsearch.laws._temporal import TemporalLaw
from lawsearch.laws._two_phase import TwoPhaseLaw

__all__ = ["LAWS", "fallbacks", "get_law", "register"]

#: short name -> law class
LAWS: dict[str, type[Law]] = {
    cls.name: cls
    for cls in (
        PowerLaw,
        TwoPhaseLaw,
        TemporalLaw,
        MultiPowerLaw,
        MomentumLaw,
        FunctionalLaw,
    )
}


def register(cls: type[Law]) -> type[Law]:
    """Add a law class to the registry under its ``name`` (usable as a decorator)."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no `name`; set the class attribute `name = '...'`.")
    LAWS[cls.name] = cls
    return cls


def get_law(name: str, **options: Any) -> Law:
    """Build a law from its short name (``power``, ``multipower``, …) and options."""
    try:
        cls = LAWS[name]
    except KeyError:
        raise ValueError(
            f"unknown law {name!r}; choose one of {sorted(LAWS)}" + did_you_mean(name, LAWS)
        ) from None
    return cls(**options)


def fallbacks(law: Law) -> tuple[Law, ...]:
    """Less flexible laws to try, in order, when ``law`` cannot extrapolate a curve.

    A law with annealing terms falls back to the momentum law (one annealing
    term), then to a power law in intrinsic time, then in steps (which needs no
    LR); a two-phase law to its power law. A fit that fails or predicts below its
    floor is then replaced by the first of these that does not, rather than
    failing (``lawsearch._fit.fit_or_simpler``).
    """
    seed = {"seed": law.seed}
    steps = PowerLaw(time="steps", **seed)
    if isinstance(law, MultiPowerLaw | FunctionalLaw):
        return (MomentumLaw(**seed), PowerLaw(time="intrinsic", **seed), steps)
    if isinstance(law, MomentumLaw):
        return (PowerLaw(time="intrinsic", **seed), steps)
    if isinstance(law, PowerLaw | TwoPhaseLaw) and law.time == "intrinsic":
        head = (PowerLaw(time="intrinsic", **seed),) if isinstance(law, TwoPhaseLaw) else ()
        return (*head, steps)
    if isinstance(law, TwoPhaseLaw):
        return (steps,)
    return ()
