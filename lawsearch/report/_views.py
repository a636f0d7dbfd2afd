"""What the report's figures show, as plain data both renderers draw (PNG and HTML).

Each view is computed once from the lineages' decisions, so the matplotlib
figures and the plotly page cannot differ; x axes are in training tokens.
Whatever a view cannot show is a ``missing`` line saying why, which the
renderers print on the figure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from lawsearch.optuna import _records as records
from lawsearch.optuna._kinds import ValueKind, value_kind
from lawsearch.report._collect import Decision, Lineage, StudyReport
from lawsearch.report._tables import human, ranked_by_text

__all__ = [
    "CUT",
    "KEPT",
    "RUNG_COLORS",
    "Band",
    "Check",
    "Panel",
    "Trajectory",
    "candidate_kinds",
    "checks",
    "curve_panels",
    "cut_label",
    "leaders",
    "trajectories",
    "value_axis_title",
]


#: the colors of a kept and a cut candidate, and of the extrapolation made at each rung
KEPT, CUT = "#2a7f3f", "#9a9a9a"
RUNG_COLORS = ("#e67e22", "#c0392b", "#8e44ad", "#16a085")


@dataclass(frozen=True)
class Band:
    """The path that ranked a lineage at one rung: the fit over its curve, extrapolated.

    A lineage that finished no rung (pruned, running) has at most the pruner's latest
    prediction: a one-point band at the full budget (the pruner stores no path).
    """

    rung: int
    trial: int
    ranked_by: str
    made_at: float
    x: tuple[float, ...]
    mean: tuple[float, ...]
    lo: tuple[float, ...]
    hi: tuple[float, ...]
    value: float
    value_lo: float
    value_hi: float
    reaches_target: bool


@dataclass(frozen=True)
class Panel:
    """One lineage: its curve and, per rung, what ranked it."""

    lineage: Lineage
    title: str
    x: tuple[float, ...]
    y: tuple[float, ...]
    bands: tuple[Band, ...]
    observed_final: float
    missing: tuple[str, ...] = field(default=())
    #: ``(rung, tokens, value)`` of each rung ranked by the loss observed there (no extrapolation)
    fallbacks: tuple[tuple[int, float, float], ...] = field(default=())

    def y_range(self) -> tuple[float, float] | None:
        """Curve and estimates in view (a wide band must not flatten them), room for notes."""
        seen = [v for v in self.y if math.isfinite(v)]
        for b in self.bands:
            seen += [v for v in b.mean if math.isfinite(v)] + [b.value]
        if math.isfinite(self.observed_final):
            seen.append(self.observed_final)
        if not seen:
            return None
        lo, hi = min(seen), max(seen)
        span = hi - lo or 1.0
        return lo - (0.08 + (0.45 if self.missing else 0.0)) * span, hi + 0.08 * span


@dataclass(frozen=True)
class Check:
    """A prediction made at one budget against the loss the lineage later observed.

    ``ranked`` is True for the prediction the rung's cut ranked by; False for the
    trial's own fit where the cut ranked by something else (an observed loss,
    the last value), so what the law said is checked even when it was not used.
    """

    number: int
    rank: int
    rung: int
    ranked_by: str
    made_at: float
    at: float
    predicted: float
    lo: float
    hi: float
    observed: float
    ranked: bool = True

    @property
    def covered(self) -> bool:
        return self.lo <= self.observed <= self.hi


@dataclass(frozen=True)
class Trajectory:
    """The values a lineage was ranked by as its budget grew, each with its kind.

    A value is a full-budget prediction (with an interval) or a loss observed at
    the budget (``kinds``); ``lo``/``hi`` are NaN for an observed one.
    """

    number: int
    rank: int
    made_at: tuple[float, ...]
    value: tuple[float, ...]
    lo: tuple[float, ...]
    hi: tuple[float, ...]
    ranked_by: tuple[str, ...]
    rungs: tuple[int, ...] = ()
    kinds: tuple[ValueKind, ...] = ()


def value_axis_title(report: StudyReport) -> str:
    """The axis title of a ranked value: predicted at the full budget, or observed."""
    return (
        f"ranked value: loss predicted at {human(report.tokens(report.full_steps))} tokens "
        "(filled) or observed at the budget (hollow)"
    )


def candidate_kinds(report: StudyReport, cut: dict[str, Any]) -> list[ValueKind]:
    """The kind of each of a cut's candidates' values, in the cut's order."""
    return [
        value_kind({**c, "target": cut["target"], "budget": cut["budget"]}, report.tokens_per_step)
        for c in cut["candidates"]
    ]


def _clean(values: Any) -> tuple[float, ...]:
    return tuple(math.nan if v is None else float(v) for v in values)


def _band(report: StudyReport, d: Decision) -> Band | str:
    """The decision's path as a band, or why there is none."""
    at = f"{human(report.tokens(d.budget))} tok"
    if d.ranked_by == records.LAST_VALUE:
        return f"{at}: no extrapolation, ranked by the last value: {d.why or 'no reason stored'}"
    if not d.path or not d.path.get("steps"):
        return f"{at}: ranked by the {d.ranked_by} ({d.value:.4f}) but no path was stored"
    steps = _clean(d.path["steps"])
    return Band(
        rung=d.rung,
        trial=d.trial,
        ranked_by=d.ranked_by,
        made_at=report.tokens(d.budget),
        x=tuple(report.tokens(s) for s in steps),
        mean=_clean(d.path["mean"]),
        lo=_clean(d.path["lo"]),
        hi=_clean(d.path["hi"]),
        value=d.value,
        value_lo=d.lo,
        value_hi=d.hi,
        reaches_target=steps[-1] >= report.full_steps,
    )


def _pruner_band(report: StudyReport, lin: Lineage) -> Band | None:
    """The prediction a lineage that finished no rung was last given by the pruner, if any."""
    if lin.kind is None or not lin.kind.predicted or not math.isfinite(lin.predicted):
        return None
    target = report.tokens(report.full_steps)
    lo = lin.predicted_lo if math.isfinite(lin.predicted_lo) else lin.predicted
    hi = lin.predicted_hi if math.isfinite(lin.predicted_hi) else lin.predicted
    return Band(
        rung=0,
        trial=lin.trials[-1],
        ranked_by=lin.ranked_by,
        made_at=report.tokens(lin.reached_step),
        x=(target,),
        mean=(lin.predicted,),
        lo=(lo,),
        hi=(hi,),
        value=lin.predicted,
        value_lo=lo,
        value_hi=hi,
        reaches_target=True,
    )


def curve_panels(report: StudyReport, top: int = 12) -> list[Panel]:
    """One panel per lineage (the best ``top``): curve, each rung's path and estimate."""
    panels = []
    for lin in report.lineages[:top]:
        bands, missing, fallbacks = [], [], []
        for d in lin.decisions:
            if d.ranked_by == records.OBSERVED:
                continue  # no extrapolation: the observed final is drawn as such
            if not d.kind.predicted and math.isfinite(d.value):
                fallbacks.append((d.rung, report.tokens(d.kind.at_step), d.value))
            got = _band(report, d)
            if isinstance(got, str):
                missing.append(got)
                continue
            bands.append(got)
            if not got.reaches_target:
                missing.append(
                    f"{human(got.made_at)} tok: the {report.law} fit predicts no positive loss "
                    f"beyond {human(got.x[-1])} tok; its estimate {got.value:.4f} is drawn alone"
                )
        if not lin.decisions:
            stopped = _pruner_band(report, lin)
            if stopped is None:
                missing.append(f"no rung finished ({lin.state.lower()}): nothing was extrapolated")
            else:
                bands.append(stopped)
                missing.append(
                    f"{lin.state.lower()} at {human(stopped.made_at)} tok, before a rung "
                    "finished: the pruner's latest prediction (square) is drawn alone; it "
                    "stores no path"
                )
        verdict_short = ranked_by_text(report, lin)
        panels.append(
            Panel(
                lineage=lin,
                title=f"#{lin.rank} trial {lin.number}: ranked by {verdict_short}",
                x=tuple(report.tokens(s) for s in lin.steps),
                y=tuple(lin.values),
                bands=tuple(bands),
                observed_final=lin.observed,
                missing=tuple(missing),
                fallbacks=tuple(fallbacks),
            )
        )
    return panels


def checks(report: StudyReport) -> list[Check]:
    """Every prediction a lineage's later budgets can check: predicted vs observed there.

    A rung's prediction is the path its cut ranked by; where the cut ranked by
    no path (an observed loss or the last value), the trial's own fit, if it
    has one (``Check.ranked`` False).
    """
    out = []
    for lin in report.lineages:
        for i, d in enumerate(lin.decisions):
            path, ranked = d.path, True
            if not path:
                path, ranked = d.own.get("path"), False
            for later in lin.decisions[i + 1 :]:
                got = records.path_at(path, later.budget)
                if got is None or not math.isfinite(later.observed):
                    continue
                out.append(
                    Check(
                        number=lin.number,
                        rank=lin.rank,
                        rung=d.rung,
                        ranked_by=d.ranked_by,
                        made_at=report.tokens(d.budget),
                        at=report.tokens(later.budget),
                        predicted=got[0],
                        lo=got[1],
                        hi=got[2],
                        observed=later.observed,
                        ranked=ranked,
                    )
                )
    return out


def trajectories(report: StudyReport, top: int = 12) -> list[Trajectory]:
    """The values the best ``top`` lineages were ranked by, by the budget they were made at.

    ``made_at`` is dodged a little per lineage, so estimates made at one budget
    stand side by side.
    """
    ranked = [lin for lin in report.lineages if lin.decisions][:top]
    dodge = 0.006 * report.tokens(report.full_steps)
    return [
        Trajectory(
            number=lin.number,
            rank=lin.rank,
            made_at=tuple(
                report.tokens(d.budget) + (i - len(ranked) / 2) * dodge for d in lin.decisions
            ),
            value=tuple(d.value for d in lin.decisions),
            lo=tuple(d.lo for d in lin.decisions),
            hi=tuple(d.hi for d in lin.decisions),
            ranked_by=tuple(d.ranked_by for d in lin.decisions),
            rungs=tuple(d.rung for d in lin.decisions),
            kinds=tuple(d.kind for d in lin.decisions),
        )
        for i, lin in enumerate(ranked)
    ]


def cut_label(report: StudyReport, cut: dict[str, Any]) -> str:
    """``cut at 98.3k tok (rung 0): keep 3 of 10``."""
    return (
        f"cut at {human(report.tokens(cut['budget']))} tok (rung {cut['rung']}): keep "
        f"{cut['keep']} of {cut['screened']}"
        + (f", {len(cut['pruned'])} pruned before" if cut.get("pruned") else "")
    )


def leaders(report: StudyReport, top: int = 10) -> list[Lineage]:
    """The leading lineages that searched a mixture or a schedule."""
    return [lin for lin in report.lineages if lin.mixture or lin.lr_schedule][:top]
