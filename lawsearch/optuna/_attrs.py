"""Every trial and study attribute key lawsearch writes or reads (all under ``lawsearch:``).

This registry is the one place a key is spelled and documented; every module
imports the constant. Trial *user* attrs hold everything a person should see:
optuna-dashboard shows them as columns and every storage (in-memory, SQLite,
journal file, PostgreSQL) round-trips them as JSON. Values are plain ``float``,
``int``, ``str``, or small JSON lists/dicts (never numpy scalars, never NaN) so
they survive JSON and the dashboard can sort them. Study *system* attrs hold
machine-facing state (the bounds of each mixture, which figures were drawn).
"""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "BUDGET",
    "CHECKPOINT",
    "CHECKPOINTS_DELETED",
    "CHECKPOINT_OUT",
    "COMPUTE_STEPS",
    "COMPUTE_TOKENS",
    "CUT_PREFIX",
    "DECISION",
    "DEFAULT_MIXTURE",
    "DIVERGED",
    "DUPLICATE_OF",
    "ERROR",
    "FIGURED_TRIALS",
    "FIGURE_ARTIFACT",
    "FIT_STATUS",
    "GRAD_ACCUMULATION",
    "INTERVAL_LEVEL",
    "LAST_CHECKPOINT",
    "LAST_CHECKPOINT_STEP",
    "LAW",
    "LOSS_PER_POSITION",
    "LR",
    "MICRO_BATCH",
    "MIXTURE_SPEC_PREFIX",
    "MIXTURE_WEIGHT_PREFIX",
    "OBSERVED",
    "OOM_RETRIES",
    "PARAM_PREFIX",
    "PARENT",
    "PREDICTED_AT_STEP",
    "PREDICTED_FINAL",
    "PREDICTED_HI",
    "PREDICTED_LO",
    "PREFIX",
    "PROPOSAL",
    "PROPOSED_FINAL",
    "PROPOSED_FROM",
    "PROPOSED_SCHEDULE",
    "RANKED_BY",
    "RESUME_STEP",
    "RETRIES",
    "RETRY_OF",
    "ROOT",
    "RUNG",
    "RUNG_PREFIX",
    "SCHEDULE",
    "SCHEDULE_SPEC_PREFIX",
    "SURPLUS",
    "TOKENS_PER_STEP",
    "VALUE_KIND",
    "WORKER",
    "cut_key",
    "mixture_weight_key",
    "plain",
    "rung_key",
]

PREFIX = "lawsearch:"

# ---- predictions (trial user attrs, written by LawPruner and RetrievalRerank) ---------------
#: the law's point prediction of the objective at the full budget (``target_step``)
PREDICTED_FINAL = PREFIX + "predicted_final"
#: the lower / upper end of the prediction interval at the full budget
PREDICTED_LO = PREFIX + "predicted_lo"
PREDICTED_HI = PREFIX + "predicted_hi"
#: the step whose report the latest prediction was made from
PREDICTED_AT_STEP = PREFIX + "predicted_at_step"
#: the short name of the law that made the prediction
LAW = PREFIX + "law"
#: ``ok`` / ``degenerate`` / ``failed`` / ``diverged`` / ``skipped`` / ``observed``, or why
#: the trial was ranked by its last value
FIT_STATUS = PREFIX + "fit_status"
#: 1.0 when a report was NaN or infinite (the trial is then stopped)
DIVERGED = PREFIX + "diverged"
#: ``lawsearch:param:<name>`` the fitted law parameters (pooled across processes)
PARAM_PREFIX = PREFIX + "param:"
#: ``lawsearch:rung:<r>`` the pruner's score when the trial reached its rung r
RUNG_PREFIX = PREFIX + "rung:"

# ---- decisions (written by RetrievalRerank; schema in ``lawsearch.optuna._records``) --------
#: trial *system* attr: the trial's decision record (a JSON dict, written when it finishes a
#: rung): what it was ranked by (``observed`` / ``law`` / ``last value``) and why, its
#: full-budget estimate (also its objective value) with the interval, the law's path over its
#: curve. Machine-facing (every view reads it), so kept out of the dashboard's attr lists
DECISION = PREFIX + "decision"
#: the loss observed at the trial's own budget (its last report): the objective value is the
#: full-budget estimate, so the short-budget loss lives here
OBSERVED = PREFIX + "observed"
#: what ranked the trial when it finished its rung: ``observed``, ``law`` or ``last value``
RANKED_BY = PREFIX + "ranked_by"
#: what the trial's objective value is, in words (``lawsearch.optuna._kinds``): ``predicted at
#: 246k tokens`` (the law's full-budget prediction) or ``observed at step 48 (12.3k tokens)`` /
#: ``observed final at step 240 (246k tokens)`` (a loss measured there, never an estimate)
VALUE_KIND = PREFIX + "value_kind"
#: the level of ``predicted_lo`` / ``predicted_hi`` (``1 - 2 * quantile``: 0.8 by default)
INTERVAL_LEVEL = PREFIX + "interval_level"
#: the artifact id of the trial's figure in optuna-dashboard (redrawn in place as it reports)
FIGURE_ARTIFACT = PREFIX + "figure"
#: study system attr ``lawsearch:cut:<rung>:<kept>``: the record of a cut (who was ranked by
#: what, the intervals, the cut line, who was kept)
CUT_PREFIX = PREFIX + "cut:"

# ---- what the trial trained (written by the trainer wiring) ---------------------------------
#: the (peak) learning rate and the tokens per optimizer step
LR = PREFIX + "lr"
TOKENS_PER_STEP = PREFIX + "tokens_per_step"
#: the LR schedule, a dict accepted by ``lawsearch.schedules.Schedule.from_dict``
SCHEDULE = PREFIX + "schedule"
#: ``lawsearch:mixture:<domain>`` the weight of a domain in the mixture named ``mixture`` (the
#: study file's), ``lawsearch:mixture:<name>:<domain>`` in any other mixture ``name``
MIXTURE_WEIGHT_PREFIX = PREFIX + "mixture:"
#: the mixture name whose weights omit the name (no ``lawsearch:mixture:mixture:<domain>``)
DEFAULT_MIXTURE = "mixture"
#: training tokens this trial alone consumed (from its resume step to where it stopped)
COMPUTE_TOKENS = PREFIX + "compute_tokens"
#: held-out loss per token position per evaluation, for the Temporal Scaling Law:
#: ``{"positions": [...], "steps": [...], "losses": [[...], ...]}`` (one row per step,
#: one column per position = context length). Bounded: at most 32 log-spaced positions
#: and 48 evaluations (when full, every second stored row is dropped; the last is kept),
#: values to 5 significant digits; see ``lawsearch.optuna._positions``. Written once per
#: trial (when ``law.name = "temporal"``); a continuation starts from its parent's.
LOSS_PER_POSITION = PREFIX + "loss_per_position"

# ---- the search's lineages (written by RetrievalRerank) -------------------------------------
#: the rung (index into the search's budgets) a trial trained to
RUNG = PREFIX + "rung"
#: the budget (absolute step) a trial trained to
BUDGET = PREFIX + "budget"
#: optimizer steps trained by this trial alone (budget − resume step)
COMPUTE_STEPS = PREFIX + "compute_steps"
#: the lineage root: the number of the candidate trial the lineage started from
ROOT = PREFIX + "root"
#: continuations: the parent trial's number, the step it resumes from, its checkpoint
PARENT = PREFIX + "parent"
RESUME_STEP = PREFIX + "resume_step"
CHECKPOINT = PREFIX + "checkpoint"
#: the checkpoint this trial wrote at its budget (``CHECKPOINT`` is where it resumed from)
CHECKPOINT_OUT = PREFIX + "checkpoint_out"
#: a continuation added twice for one (parent, rung): the number of the one that runs
DUPLICATE_OF = PREFIX + "duplicate_of"
#: a candidate asked for after ``n_candidates`` existed (failed without training)
SURPLUS = PREFIX + "surplus"
#: a trial re-queued for a failed one: the failed trial's number
RETRY_OF = PREFIX + "retry_of"
#: how many times this trial's (lineage, rung) was retried before it (0 for the first try)
RETRIES = PREFIX + "retries"
#: the last checkpoint a trial wrote while it trained (its path or token), and its optimizer
#: step, recorded as each is written (after the atomic rename): a retry resumes from it
LAST_CHECKPOINT = PREFIX + "last_checkpoint"
LAST_CHECKPOINT_STEP = PREFIX + "last_checkpoint_step"
#: why a trial failed: ``"<ExceptionType>: <message>"`` (the trial's state is FAIL)
ERROR = PREFIX + "error"
#: the process that claimed the trial (``<host>-<pid>``): on a journal file a RUNNING trial
#: whose process holds no lock any more is failed and retried by a live worker
WORKER = PREFIX + "worker"
#: the micro-batch (sequences per forward/backward pass) the trial trains with, and the
#: gradient-accumulation passes per optimizer step (``batch_size / micro_batch``): written by a
#: trainer that accumulates before it trains; a retry after an out-of-memory error halves the
#: micro-batch (same effective batch) and a continuation keeps its parent's
MICRO_BATCH = PREFIX + "micro_batch"
GRAD_ACCUMULATION = PREFIX + "grad_accumulation"
#: how many out-of-memory retries (each at a smaller micro-batch) came before this trial
OOM_RETRIES = PREFIX + "oom_retries"
#: a law-proposed schedule (``[search] propose_schedules``, ``lawsearch.search._propose``):
#: the extra candidate trains this piecewise schedule (a ``Schedule.to_dict()``; its
#: continuations and retries inherit it, so every try trains the same schedule), which the
#: law predicted to end at ``PROPOSED_FINAL``, for the mixture of screened trial ``PROPOSED_FROM``
PROPOSED_SCHEDULE = PREFIX + "proposed_schedule"
PROPOSED_FINAL = PREFIX + "proposed_final"
PROPOSED_FROM = PREFIX + "proposed_from"
#: checkpoint files of the trial that retention deleted (no continuation or retry can use them)
CHECKPOINTS_DELETED = PREFIX + "checkpoints_deleted"

# ---- study system attrs -----------------------------------------------------------------------
#: ``lawsearch:mixture_spec:<name>`` the bounds of a mixture
MIXTURE_SPEC_PREFIX = PREFIX + "mixture_spec:"
#: ``lawsearch:schedule_spec:<name>`` the families and ranges ``suggest_schedule`` searches
SCHEDULE_SPEC_PREFIX = PREFIX + "schedule_spec:"
#: the schedule-proposal decision, made once per study after the screen: what was proposed
#: (trial numbers, predictions, the best hand schedule's prediction) or why nothing was
PROPOSAL = PREFIX + "schedule_proposal"
#: trial number -> id of its dashboard figure attached to the study (a trial first drawn
#: after it finished: Optuna freezes finished trials); rewritten in place on each redraw
FIGURED_TRIALS = PREFIX + "figured_trials"


def rung_key(rung: int) -> str:
    """The attr holding the pruner's score of a trial at ``rung``."""
    return f"{RUNG_PREFIX}{int(rung)}"


def mixture_weight_key(mixture: str, domain: str) -> str:
    """The attr holding ``domain``'s weight in mixture ``mixture``.

    The study file's mixture is named ``mixture``; its weights read
    ``lawsearch:mixture:code``, not ``lawsearch:mixture:mixture:code``.
    """
    if mixture == DEFAULT_MIXTURE:
        return f"{MIXTURE_WEIGHT_PREFIX}{domain}"
    return f"{MIXTURE_WEIGHT_PREFIX}{mixture}:{domain}"


def cut_key(rung: int, kept: int) -> str:
    """The study user attr holding the record of the cut that kept ``kept`` trials of ``rung``."""
    return f"{CUT_PREFIX}{int(rung)}:{int(kept)}"


def plain(value: Any) -> float | None:
    """A plain Python float, or None when not finite (NaN is not valid JSON for the dashboard)."""
    out = float(value)
    return out if math.isfinite(out) else None
