"""The study-level plotly figures lawsearch gives optuna-dashboard, from the decision records.

* ``study_figure``: each candidate's full-budget estimate (with its interval)
  at each budget it reached, and the line each cut drew;
* ``leaders_figure``: the mixtures of the leaders, in the order the search decided;
* ``importance_figure``: which mixture weights and schedule parameters the
  full-budget estimates depend on (PED-ANOVA, as optuna-dashboard's own
  importance plot, but on the weights rather than the stick-breaking
  parameters ``<mixture>:stick<i>`` the samplers explore);
* ``save_study_figures``: both, through ``optuna_dashboard.save_plotly_graph_object``.

plotly is imported inside the functions.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, FloatDistribution
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial

from lawsearch.optuna import _attrs
from lawsearch.optuna import _kinds as kinds
from lawsearch.optuna import _records as records
from lawsearch.optuna._kinds import value_kind
from lawsearch.optuna._mixture import mixture_from_params, mixture_param_names, mixture_specs

__all__ = [
    "SYMBOLS",
    "cut_lines",
    "importance_figure",
    "leaders_figure",
    "lineage_estimates",
    "save_study_figures",
    "study_figure",
    "tokens_per_step",
]


def tokens_per_step(trials: Sequence[FrozenTrial]) -> float | None:
    """The tokens a step is, when a trial says (``lawsearch:tokens_per_step``)."""
    for t in trials:
        tps = t.user_attrs.get(_attrs.TOKENS_PER_STEP)
        if tps:
            return float(tps)
    return None


def _scale(trials: Sequence[FrozenTrial]) -> tuple[float, str]:
    """Steps -> tokens when the trials say how many tokens a step is."""
    tps = tokens_per_step(trials)
    return (tps, "training tokens") if tps else (1.0, "optimizer steps")


def lineage_estimates(study: optuna.Study) -> dict[int, list[dict[str, Any]]]:
    """Candidate (lineage root) -> its decisions, one per rung, in the order the search ranks.

    Each decision is ``records.decision`` of the trial that finished the rung.
    """
    cuts = records.read_cuts(study)
    out: dict[int, list[dict[str, Any]]] = {}
    for t in study.get_trials(deepcopy=False):
        d = records.decision(t, cuts)
        if d is not None:
            d["trial"] = t.number
            out.setdefault(int(t.user_attrs.get(_attrs.ROOT, t.number)), []).append(d)
    maximize = study.direction == StudyDirection.MAXIMIZE
    for ds in out.values():
        ds.sort(key=lambda d: int(d["rung"]))

    def key(item: tuple[int, list[dict[str, Any]]]) -> tuple[float, float, float, int]:
        d = item[1][-1]
        return records.rank_key(d["rung"], d["position"], d["value"], item[0], maximize=maximize)

    return dict(sorted(out.items(), key=key))


def _y(d: dict[str, Any]) -> tuple[float, float, float]:
    v = math.nan if d["value"] is None else float(d["value"])
    lo = v if d["lo"] is None else float(d["lo"])
    hi = v if d["hi"] is None else float(d["hi"])
    return v, max(v - lo, 0.0), max(hi - v, 0.0)


def cut_lines(cuts: Sequence[dict[str, Any]], scale: float, half_width: float) -> list[Any]:
    """One plotly line per cut: the bound a candidate had to beat, at the cut's budget.

    Args:
        cuts: the cut records.
        scale: x units per step (tokens per step, or 1).
        half_width: half the line's length, in x units.
    """
    import plotly.graph_objects as go

    return [
        go.Scatter(
            x=[x - half_width, x + half_width],
            y=[cut["line"]] * 2,
            mode="lines",
            line={"color": "black", "width": 4},
            name=f"cut line at {cut['budget']} steps: keep {cut['keep']} of {cut['screened']}",
        )
        for cut in cuts
        if cut.get("line") is not None
        for x in [float(cut["budget"]) * scale]
    ]


#: the plotly marker of a ranked value by its kind: filled for a prediction, open for observed
SYMBOLS = {
    kinds.LAW_PREDICTION: "circle",
    kinds.JOINT_PREDICTION: "square",
    kinds.OBSERVED_FALLBACK: "diamond-open",
    kinds.OBSERVED_FINAL: "star",
}


def study_figure(study: optuna.Study) -> Any:
    """A plotly figure: each candidate's full-budget estimate by budget, and the cut lines."""
    import plotly.graph_objects as go

    trials = study.get_trials(deepcopy=False)
    scale, unit = _scale(trials)
    lineages = lineage_estimates(study)
    level = next((float(d["level"]) for ds in lineages.values() for d in ds), 0.8)
    full = max((float(d["target"]) for ds in lineages.values() for d in ds), default=1.0)
    fig = go.Figure()
    tps = tokens_per_step(trials)
    for rank, (root, ds) in enumerate(lineages.items(), start=1):
        kinds = [value_kind(d, tps) for d in ds]
        # only a prediction has an interval; an observed loss is drawn open, without one
        ys = [
            _y(d) if k.predicted else (_y(d)[0], 0.0, 0.0) for d, k in zip(ds, kinds, strict=True)
        ]
        fig.add_trace(
            go.Scatter(
                x=[d["budget"] * scale for d in ds],
                y=[y[0] for y in ys],
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": [y[2] for y in ys],
                    "arrayminus": [y[1] for y in ys],
                },
                mode="lines+markers",
                marker={"symbol": [SYMBOLS[k.kind] for k in kinds], "size": 9},
                name=f"#{rank} candidate {root}",
                text=[
                    f"trial {d['trial']}: ranked by {d['ranked_by']}, {k.label}"
                    for d, k in zip(ds, kinds, strict=True)
                ],
            )
        )
    for trace in cut_lines(records.read_cuts(study), scale, 0.1 * full * scale):
        fig.add_trace(trace)
    fig.update_layout(
        title_text=(
            f"what each candidate was ranked by: filled = predicted full-budget loss ({level:.0%} "
            "interval), open diamond = loss observed at the budget (no usable extrapolation, or "
            "rank = loss), "
            "star = observed final; and the cut lines"
        ),
        xaxis_title=f"{unit} when the candidate was ranked",
        yaxis_title="ranked value: loss predicted at the full budget or observed at the budget",
        legend={"orientation": "h", "y": -0.25},
        height=560,
    )
    return fig


def leaders_figure(study: optuna.Study, *, mixture: str | None = None, top: int = 10) -> Any:
    """A plotly figure: the mixture weights of the leading candidates, best first."""
    import plotly.graph_objects as go

    specs = mixture_specs(study)
    name = mixture or (sorted(specs)[0] if specs else None)
    fig = go.Figure()
    if name is None:
        fig.add_annotation(text="no mixture was searched", showarrow=False)
        return fig
    bounds = specs[name]
    leaders = list(lineage_estimates(study))[:top]
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    weights = [mixture_from_params(by_number[r].params, name, bounds) for r in leaders]
    for d in bounds.domains:
        fig.add_trace(
            go.Bar(
                x=[f"#{i + 1} c{r}" for i, r in enumerate(leaders)],
                y=[w[d] if w else 0.0 for w in weights],
                name=d,
            )
        )
    fig.update_layout(
        barmode="stack",
        title_text=f"mixture {name!r} of the leaders (best first)",
        yaxis={"title": "weight", "range": [0, 1]},
        legend={"orientation": "h", "y": -0.2},
        height=560,
    )
    return fig


def _weight_study(study: optuna.Study) -> tuple[optuna.Study, int]:
    """An in-memory study of the candidates: weights and schedule parameters -> estimate."""
    specs = mixture_specs(study)
    sticks = {p for name, b in specs.items() for p in mixture_param_names(name, b.k)}
    lineages = lineage_estimates(study)
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    out = optuna.create_study(direction=study.direction)
    for root, ds in lineages.items():
        value = ds[-1]["value"]
        trial = by_number[root]
        if value is None:
            continue
        params: dict[str, Any] = {}
        dists: dict[str, BaseDistribution] = {}
        for name, bounds in specs.items():
            w = mixture_from_params(trial.params, name, bounds)
            for i, (d, v) in enumerate((w or {}).items()):
                key = d if name == _attrs.DEFAULT_MIXTURE else f"{name}:{d}"
                params[key] = v
                dists[key] = FloatDistribution(float(bounds.lo[i]), float(bounds.hi[i]))
        for p, v in trial.params.items():
            if p not in sticks:
                params[p], dists[p] = v, trial.distributions[p]
        out.add_trial(
            optuna.trial.create_trial(params=params, distributions=dists, value=float(value))
        )
    return out, len(out.trials)


def importance_figure(study: optuna.Study) -> Any:
    """A plotly bar chart: PED-ANOVA importance of the weights and schedule on the estimates.

    Every candidate counts once, by its latest full-budget estimate (so a
    screened and a continued candidate are compared at equal budgets). With few
    candidates the importances are rough; the title says how many.
    """
    import plotly.graph_objects as go
    from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances

    fig = go.Figure()
    weights, n = _weight_study(study)
    title = f"importance on the full-budget estimates of {n} candidates (PED-ANOVA)"
    why = ""
    if n < 2:
        why = "fewer than 2 candidates with an estimate"
    else:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # PED-ANOVA warns on few trials; n is shown
                imp = get_param_importances(weights, evaluator=PedAnovaImportanceEvaluator())
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            why = f"PED-ANOVA failed: {exc}"
        else:
            names = list(imp)[::-1]
            fig.add_trace(
                go.Bar(x=[imp[k] for k in names], y=names, orientation="h", name="importance")
            )
    if why:
        fig.add_annotation(
            text=f"no importance: {why}", showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper"
        )
    fig.update_layout(title_text=title, xaxis_title="importance", height=560)
    return fig


def save_study_figures(study: optuna.Study, *, mixture: str | None = None) -> list[str]:
    """Save the three study figures for optuna-dashboard; return what could not be drawn."""
    from optuna_dashboard import save_plotly_graph_object

    problems = []
    for gid, draw in (
        ("lawsearch-estimates", lambda: study_figure(study)),
        ("lawsearch-leaders", lambda: leaders_figure(study, mixture=mixture)),
        ("lawsearch-importance", lambda: importance_figure(study)),
    ):
        try:
            save_plotly_graph_object(study, draw(), graph_object_id=gid)
        except (ValueError, TypeError) as exc:
            problems.append(f"no dashboard figure {gid}: {exc}")
    return problems
