"""A study's lineages and the search's decisions about them, read from the storage alone.

Every candidate (a trial without ``lawsearch:parent``) and the continuations that
extend it form one *lineage*. Each trial that finished a rung carries its
decision record, and each cut is recorded on the study
(``lawsearch.optuna._records``); a lineage's ``decisions`` join the two, one
per rung: what ranked it there (the cut's ranking where the lineage took part
in a cut, else its own record), the number, the interval, and the cut's verdict.

Lineages are ordered as the search decided: those that reached a deeper rung
first; within a rung, by their place in that rung's cut; then by the
full-budget estimate (at the full budget: the observed loss). Rank 1 is the
search's pick.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lawsearch.optuna import _attrs as attrs
from lawsearch.optuna import _kinds as kinds
from lawsearch.optuna import _records as records

__all__ = ["Decision", "Lineage", "StudyReport", "collect"]


@dataclass(frozen=True)
class Decision:
    """What ranked a lineage at one rung.

    Attributes:
        rung: the rung (index into the budgets).
        trial: the trial that trained to the rung's budget.
        budget: that budget in steps.
        observed: the loss observed at the budget.
        ranked_by: ``observed``, ``law``, ``joint refit`` or ``last value``.
        why: why it was ranked by its last value (or lost its joint refit).
        value: the value it was ranked by: a full-budget prediction or an
            observed loss, as ``kind`` says.
        kind: what ``value`` is, and at which step (``lawsearch.optuna._kinds``).
        lo: lower end of the interval at ``level`` (NaN: none, e.g. an observed value).
        hi: upper end.
        level: the interval level.
        path: the fit's path (``steps``, ``mean``, ``lo``, ``hi``) or None.
        own: the trial's own record (before any cut's joint refit).
        position: 1-based place in the rung's cut (0: in no cut).
        of: candidates ranked in that cut.
        kept: the cut kept it.
        score: the optimistic end the cut sorted by.
        line: the cut line (score of the last kept).
        keep: how many the cut kept.
    """

    rung: int
    trial: int
    budget: int
    observed: float
    ranked_by: str
    why: str
    value: float
    kind: kinds.ValueKind
    lo: float
    hi: float
    level: float
    path: dict[str, Any] | None
    own: dict[str, Any]
    position: int = 0
    of: int = 0
    kept: bool = False
    score: float = math.nan
    line: float = math.nan
    keep: int = 0


@dataclass(frozen=True)
class Lineage:
    """One candidate and its continuations, as the report shows it.

    Attributes:
        number: the candidate's trial number.
        trials: trial numbers of the lineage, root first.
        state: state of the deepest trial (COMPLETE, PRUNED, RUNNING, ...).
        mixture: domain -> weight.
        schedule: a short description of the LR schedule.
        steps: reported steps of the whole lineage.
        values: reported values at ``steps``.
        decisions: one per rung the lineage finished, in rung order.
        predicted: the value the search ranked it by last (or the pruner's latest
            prediction): a full-budget prediction or an observed loss, as ``kind`` says.
        predicted_lo: lower end of its interval (NaN unless ``kind`` is a prediction).
        predicted_hi: upper end of its interval.
        kind: what ``predicted`` is (None: no value).
        ranked_by: what produced ``predicted``.
        why: why it was ranked by its last value ("" otherwise).
        short_predicted: the screen's own estimate (the rung-0 trial's record).
        short_lo: lower end of the screen's interval.
        short_hi: upper end of the screen's interval.
        observed: the loss observed at the full budget (NaN if not reached).
        reached_step: the last step trained.
        compute_tokens: tokens trained by this lineage (continuations counted once).
        lr_schedule: the schedule's dict (``Schedule.from_dict``), if stored.
        rank: 1 = the pick.
    """

    number: int
    trials: tuple[int, ...]
    state: str
    mixture: dict[str, float]
    schedule: str
    steps: tuple[int, ...]
    values: tuple[float, ...]
    decisions: tuple[Decision, ...]
    predicted: float
    predicted_lo: float
    predicted_hi: float
    kind: kinds.ValueKind | None
    ranked_by: str
    why: str
    short_predicted: float
    short_lo: float
    short_hi: float
    observed: float
    reached_step: int
    compute_tokens: float
    lr_schedule: dict[str, Any] | None = None
    rank: int = 0

    @property
    def decision(self) -> Decision | None:
        """The latest decision (the deepest rung)."""
        return self.decisions[-1] if self.decisions else None


@dataclass(frozen=True)
class StudyReport:
    """A study's ranked lineages, its cuts and its compute, against training every candidate."""

    study_name: str
    storage: str
    lineages: tuple[Lineage, ...]
    short_steps: int
    full_steps: int
    tokens_per_step: int
    compute_tokens: float
    full_compute_tokens: float
    law: str
    level: float = 0.8
    budgets: tuple[int, ...] = ()
    cuts: tuple[dict[str, Any], ...] = ()
    maximize: bool = False
    n_candidates: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def compute_fraction(self) -> float:
        """Compute spent / compute of training every candidate to the full budget."""
        return self.compute_tokens / self.full_compute_tokens if self.full_compute_tokens else 0.0

    @property
    def pick(self) -> Lineage | None:
        return self.lineages[0] if self.lineages else None

    def tokens(self, steps: float) -> float:
        return float(steps) * self.tokens_per_step


def collect(study: Any, config: Any, *, n_candidates: int | None = None) -> StudyReport:
    """Build the report of ``study`` (an ``optuna.Study``) for a ``StudyConfig``.

    Args:
        study: the study, loaded from its storage.
        config: the ``lawsearch.config.StudyConfig`` it was run with.
        n_candidates: candidates of the "train everything fully" reference
            (default: ``config.search.candidates``).
    """
    import optuna

    trials = study.get_trials(deepcopy=False)
    by_number = {t.number: t for t in trials}
    tps = int(config.train.tokens_per_step)
    cuts = tuple(records.read_cuts(study))
    children: dict[int, list[Any]] = {}
    roots = []
    for t in trials:
        if attrs.SURPLUS in t.user_attrs or attrs.DUPLICATE_OF in t.user_attrs:
            continue  # not a candidate: an extra trial the search refused, or a duplicate
        parent = t.user_attrs.get(attrs.PARENT)
        if parent is None or int(parent) not in by_number:
            roots.append(t)
        else:
            children.setdefault(int(parent), []).append(t)
    lineages = []
    for root in roots:
        chain = _chain(root, children)
        if all(t.state == optuna.trial.TrialState.WAITING for t in chain):
            continue
        lineages.append(_lineage(chain, config, tps, cuts))
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    ranked = _rank(lineages, maximize)
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    n = n_candidates if n_candidates is not None else config.search.candidates
    n = max(n, len(ranked))
    return StudyReport(
        study_name=study.study_name,
        storage=config.study.storage,
        lineages=tuple(ranked),
        short_steps=int(config.short_steps),
        full_steps=int(config.full_steps),
        tokens_per_step=tps,
        compute_tokens=float(sum(lin.compute_tokens for lin in ranked)),
        full_compute_tokens=float(n * config.full_steps * tps),
        law=str(config.law.name),
        level=records.interval_level(config.pruner.search_quantile),
        budgets=tuple(int(b) for b in config.budget_steps),
        cuts=cuts,
        maximize=maximize,
        n_candidates=n,
        counts=counts,
    )


def _chain(root: Any, children: Mapping[int, list[Any]]) -> list[Any]:
    """The root and, at each level, the continuation that got furthest."""
    chain = [root]
    while children.get(chain[-1].number):
        kids = children[chain[-1].number]
        # a failed continuation (a dead worker's) loses to its retry
        chain.append(max(kids, key=lambda t: (t.state.name != "FAIL", _last_step(t), -t.number)))
    return chain


def _last_step(trial: Any) -> int:
    iv = trial.intermediate_values
    return max(iv) if iv else int(trial.user_attrs.get(attrs.RESUME_STEP, 0) or 0)


def _compute(chain: list[Any], tps: int) -> float:
    compute = 0.0
    for t in chain:
        attr = t.user_attrs.get(attrs.COMPUTE_TOKENS)
        steps_attr = t.user_attrs.get(attrs.COMPUTE_STEPS)
        if attr is not None:
            compute += float(attr)
        elif steps_attr is not None:
            compute += float(steps_attr) * tps
        elif t.intermediate_values:
            start = int(t.user_attrs.get(attrs.RESUME_STEP, 0) or 0)
            compute += (max(t.intermediate_values) - start) * tps
    return compute


def _lineage(chain: list[Any], config: Any, tps: int, cuts: tuple[dict[str, Any], ...]) -> Lineage:
    points: dict[int, float] = {}
    for t in chain:
        points.update({int(s): float(v) for s, v in t.intermediate_values.items()})
    steps = tuple(sorted(points))
    values = tuple(points[s] for s in steps)
    root, last = chain[0], chain[-1]
    schedule_spec = root.user_attrs.get(attrs.SCHEDULE)
    if isinstance(schedule_spec, str):
        schedule_spec = json.loads(schedule_spec)
    decisions = tuple(_decisions(chain, cuts, tps))
    latest = decisions[-1] if decisions else None
    own0 = decisions[0].own if decisions and decisions[0].rung == 0 else {}
    kind: kinds.ValueKind | None
    if latest is not None:
        predicted, lo, hi = latest.value, latest.lo, latest.hi
        ranked_by, why, kind = latest.ranked_by, latest.why, latest.kind
    else:  # no rung finished: a running, failed or pruned candidate (the pruner's prediction)
        kind = kinds.pruner_kind(last, int(config.full_steps), tps)
        predicted, lo, hi = (
            (math.nan, math.nan, math.nan)
            if kind is None  # no current prediction (its latest fit failed)
            else tuple(
                _float(last.user_attrs.get(k))
                for k in (attrs.PREDICTED_FINAL, attrs.PREDICTED_LO, attrs.PREDICTED_HI)
            )
        )
        ranked_by, why = ("pruned" if last.state.name == "PRUNED" else "-"), ""
    reached = steps[-1] if steps else 0
    observed = values[-1] if steps and reached >= config.full_steps else math.nan
    return Lineage(
        number=root.number,
        trials=tuple(t.number for t in chain),
        state=last.state.name,
        mixture=_mixture(root.user_attrs) or _mixture(last.user_attrs),
        schedule=_describe_schedule(schedule_spec, root.params) + _proposed(root.user_attrs),
        steps=steps,
        values=values,
        decisions=decisions,
        predicted=predicted,
        predicted_lo=lo,
        predicted_hi=hi,
        kind=kind,
        ranked_by=ranked_by,
        why=why,
        short_predicted=_float(own0.get("value")),
        short_lo=_float(own0.get("lo")),
        short_hi=_float(own0.get("hi")),
        observed=observed,
        reached_step=reached,
        compute_tokens=_compute(chain, tps),
        lr_schedule=schedule_spec if isinstance(schedule_spec, dict) else None,
    )


def _decisions(chain: list[Any], cuts: tuple[dict[str, Any], ...], tps: int) -> list[Decision]:
    """One decision per rung a trial of the chain finished (``records.decision``).

    Only a prediction keeps an interval: an observed value has none.
    """
    out = []
    for t in chain:
        d = records.decision(t, cuts)
        if d is None:
            continue
        kind = kinds.value_kind(d, tps)
        lo, hi = (_float(d.get("lo")), _float(d.get("hi"))) if kind.predicted else (math.nan,) * 2
        out.append(
            Decision(
                rung=int(d["rung"]),
                trial=t.number,
                budget=int(d["budget"]),
                observed=_float(d.get("observed")),
                ranked_by=str(d["ranked_by"]),
                why=str(d.get("why") or ""),
                value=_float(d.get("value")),
                kind=kind,
                lo=lo,
                hi=hi,
                level=float(d["level"]),
                path=d.get("path"),
                own=d["own"],
                position=int(d["position"]),
                of=int(d["of"]),
                kept=bool(d["kept"]),
                score=_float(d.get("score")),
                line=_float(d.get("line")),
                keep=int(d["keep"]),
            )
        )
    return out


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _mixture(user_attrs: Mapping[str, Any]) -> dict[str, float]:
    """Domain -> weight from the ``lawsearch:mixture:[<name>:]<domain>`` attrs."""
    out = {}
    for k, v in user_attrs.items():
        if k.startswith(attrs.MIXTURE_WEIGHT_PREFIX):
            out[k[len(attrs.MIXTURE_WEIGHT_PREFIX) :].split(":")[-1]] = float(v)
    return out


def _describe_schedule(spec: Any, params: Mapping[str, Any]) -> str:
    if not isinstance(spec, dict):
        return (
            ", ".join(
                f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                for k, v in params.items()
                if "stick" not in k
            )
            or "-"
        )
    text = f"{spec.get('family', '?')} lr={float(spec.get('peak_lr', math.nan)):.2g}"
    if spec.get("family") == "wsd":
        text += f" decay={float(spec.get('decay_fraction', math.nan)):.2f}"
    return text


def _proposed(user_attrs: Mapping[str, Any]) -> str:
    """Where a law-proposed schedule came from (``lawsearch.search._propose``), else ``""``."""
    source = user_attrs.get(attrs.PROPOSED_FROM)
    return "" if source is None else f" (law-proposed for #{int(source)}'s mixture)"


def _rank(lineages: list[Lineage], maximize: bool) -> list[Lineage]:
    """Deepest rung first; within it, the place in its cut; then the full-budget estimate."""

    def key(lin: Lineage) -> tuple[float, float, float, int]:
        d = lin.decision
        if d is None:  # no rung finished: last, by the pruner's prediction if any
            return records.rank_key(None, 0, lin.predicted, lin.number, maximize=maximize)
        return records.rank_key(d.rung, d.position, d.value, lin.number, maximize=maximize)

    ordered = sorted(lineages, key=key)
    return [dataclasses.replace(lin, rank=i + 1) for i, lin in enumerate(ordered)]
