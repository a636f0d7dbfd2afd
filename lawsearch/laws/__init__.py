"""Scaling laws that extrapolate partial loss curves (one module per family).

``get_law(name, **options)`` builds a law by its short name (as the CLI does).
"""

from __future__ import annotations

from typing import Any

from lawsearch._errors import did_you_mean
from lawsearch.laws._base import Curve, FitResult, Law, LRTrack, Param
from lawsearch.laws._ensemble import EnsembleFitResult, EnsembleLaw
from lawsearch.laws._functional import FunctionalLaw
from lawsearch.laws._momentum import MomentumLaw
from lawsearch.laws._multipower import MultiPowerLaw
from lawsearch.laws._power import PowerLaw
from lawsearch.laws._temporal import TemporalLaw
from lawsearch.laws._two_phase import TwoPhaseLaw

__all__ = [
    "LAWS",
    "Curve",
    "EnsembleFitResult",
    "EnsembleLaw",
    "FitResult",
    "FunctionalLaw",
    "LRTrack",
    "Law",
    "MomentumLaw",
    "MultiPowerLaw",
    "Param",
    "PowerLaw",
    "TemporalLaw",
    "TwoPhaseLaw",
    "get_law",
]

#: short name -> law class
LAWS: dict[str, type[Law]] = {
    PowerLaw.name: PowerLaw,
    TwoPhaseLaw.name: TwoPhaseLaw,
    TemporalLaw.name: TemporalLaw,
    EnsembleLaw.name: EnsembleLaw,
    MultiPowerLaw.name: MultiPowerLaw,
    MomentumLaw.name: MomentumLaw,
    FunctionalLaw.name: FunctionalLaw,
}


def get_law(name: str, **options: Any) -> Law:
    """Build a law from its short name (``power``, ``multipower``, …) and options."""
    try:
        cls = LAWS[name]
    except KeyError:
        raise ValueError(
            f"unknown law {name!r}; choose one of {sorted(LAWS)}" + did_you_mean(name, LAWS)
        ) from None
    return cls(**options)
