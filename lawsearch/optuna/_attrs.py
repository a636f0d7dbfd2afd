"""Trial and study attribute keys written and read by lawsearch (all under ``lawsearch:``).

Trial *user* attrs are used for everything a person should see: optuna-dashboard
shows them as table columns, and every storage (in-memory, SQLite, journal file,
PostgreSQL) round-trips them as JSON. Values are plain ``float`` or ``str``
(never numpy scalars) so they survive JSON and the dashboard can sort them.
Study *system* attrs hold machine-facing specs (the bounds of each mixture).
"""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "CHECKPOINT",
    "DIVERGED",
    "FIT_STATUS",
    "LAW",
    "LR",
    "MIXTURE_SPEC_PREFIX",
    "MIXTURE_WEIGHT_PREFIX",
    "PARAM_PREFIX",
    "PARENT",
    "PREDICTED_AT_STEP",
    "PREDICTED_FINAL",
    "PREDICTED_HI",
    "PREDICTED_LO",
    "PREFIX",
    "RESUME_STEP",
    "RUNG_PREFIX",
    "SCHEDULE",
    "TOKENS_PER_STEP",
    "plain",
    "rung_key",
]

PREFIX = "lawsearch:"

#: the law's point prediction of the objective at the pruner's ``target_step``
PREDICTED_FINAL = PREFIX + "predicted_final"
#: the lower / upper end of the prediction interval at ``target_step``
PREDICTED_LO = PREFIX + "predicted_lo"
PREDICTED_HI = PREFIX + "predicted_hi"
#: the step whose report the latest prediction was made from
PREDICTED_AT_STEP = PREFIX + "predicted_at_step"
#: the short name of the law that made the prediction
LAW = PREFIX + "law"
#: ``ok`` / ``degenerate`` / ``failed`` / ``diverged`` / ``skipped``
FIT_STATUS = PREFIX + "fit_status"
#: 1.0 when a report was NaN or infinite (the pruner then prunes the trial)
DIVERGED = PREFIX + "diverged"
#: the (peak) learning rate and the tokens per optimizer step, stored by the trainer
LR = PREFIX + "lr"
TOKENS_PER_STEP = PREFIX + "tokens_per_step"
#: the LR schedule, a dict accepted by ``lawsearch.schedules.Schedule.from_dict``
SCHEDULE = PREFIX + "schedule"
#: continuation trials: the parent trial number, the step to resume from, the checkpoint
PARENT = PREFIX + "parent"
RESUME_STEP = PREFIX + "resume_step"
CHECKPOINT = PREFIX + "checkpoint"
#: ``lawsearch:param:<name>`` the fitted law parameters (pooled across processes)
PARAM_PREFIX = PREFIX + "param:"
#: ``lawsearch:rung:<r>`` the point prediction made when the trial reached rung r
RUNG_PREFIX = PREFIX + "rung:"
#: ``lawsearch:mixture:<name>:<domain>`` the weight of a domain (trial user attr)
MIXTURE_WEIGHT_PREFIX = PREFIX + "mixture:"
#: ``lawsearch:mixture_spec:<name>`` the bounds of a mixture (study system attr)
MIXTURE_SPEC_PREFIX = PREFIX + "mixture_spec:"


def rung_key(rung: int) -> str:
    """The attr holding the prediction a trial had at ``rung``."""
    return f"{RUNG_PREFIX}{int(rung)}"


def plain(value: Any) -> float | None:
    """A plain Python float, or None when not finite (NaN is not valid JSON for the dashboard)."""
    out = float(value)
    return out if math.isfinite(out) else None
