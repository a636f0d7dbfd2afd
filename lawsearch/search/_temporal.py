"""The Temporal Scaling Law in the search: fit a trial's per-position losses, rank by their mean."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from lawsearch.laws import FitResult, Law, TemporalLaw
from lawsearch.optuna import _attrs
from lawsearch.optuna._positions import read_positions

__all__ = ["fit_per_position"]


def fit_per_position(law: Law, user_attrs: Mapping[str, Any], last_step: float) -> FitResult:
    """Fit ``law`` (a ``TemporalLaw``) to the trial's per-position matrix up to ``last_step``.

    Returns the fit of the position-mean loss (``TemporalLaw.mean_result``), which
    predicts one value per step like every other law.

    Raises:
        ValueError: the trial carries no per-position losses (the message says why).
    """
    if not isinstance(law, TemporalLaw):
        raise ValueError(f"fit_per_position needs a TemporalLaw; got {law.name!r}.")
    found = read_positions(user_attrs)
    if found is None:
        raise ValueError(
            f"the trial has no `{_attrs.LOSS_PER_POSITION}`; lawsearch.study stores it for "
            "law 'temporal' (a trainer must report `loss_per_position` in its extras)"
        )
    steps, positions, losses = found
    keep = (steps > 0) & (steps <= last_step)
    fitted = dataclasses.replace(law, positions=positions).fit(steps[keep], losses[keep])
    return TemporalLaw.mean_result(fitted)
