"""Figures for optuna-dashboard: a per-trial extrapolation (artifact) and a study summary.

matplotlib and plotly are imported inside the functions, so importing
``lawsearch.optuna`` stays light.
"""

from __future__ import annotations

import math
import os
import tempfile
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from lawsearch.laws import FitResult, Law, get_law
from lawsearch.optuna import _attrs
from lawsearch.optuna._mixture import get_schedule, mixture_from_params, mixture_specs

if TYPE_CHECKING:
    from matplotlib.figure import Figure as MplFigure
    from optuna.artifacts._protocol import ArtifactStore

__all__ = ["fit_trial", "save_study_figure", "save_trial_figure", "study_figure", "trial_figure"]


def _law_of(law: Law | str | None, trial: FrozenTrial) -> Law:
    if isinstance(law, Law):
        return law
    return get_law(law or str(trial.user_attrs.get(_attrs.LAW, "power")))


def fit_trial(
    trial: FrozenTrial, *, law: Law | str | None = None, target_step: int | None = None
) -> tuple[FitResult, np.ndarray | None]:
    """Fit ``law`` (default: the one the pruner recorded) to a trial's reported curve.

    Returns the fit and the per-step LRs up to ``target_step`` (schedule-aware laws).

    Raises:
        ValueError: when the trial has no finite reports or lacks a needed schedule.
    """
    items = sorted((s, v) for s, v in trial.intermediate_values.items() if math.isfinite(v))
    if not items:
        raise ValueError(f"trial {trial.number} has no finite reported values to fit.")
    steps = np.array([s for s, _ in items], dtype=float)
    losses = np.array([v for _, v in items], dtype=float)
    the_law = _law_of(law, trial)
    lrs = None
    if the_law.uses_lr:
        schedule = get_schedule(trial.user_attrs)
        if schedule is None:
            raise ValueError(
                f"{the_law.name} needs the LR schedule of trial {trial.number}; store it with "
                "lawsearch.optuna.set_schedule(trial, schedule)."
            )
        end = max(int(target_step or 0), int(steps[-1])) + 1
        lrs = schedule.lr(np.arange(end))
    return the_law.fit(steps, losses, lrs=lrs), lrs


def trial_figure(
    trial: FrozenTrial,
    *,
    law: Law | str | None = None,
    target_step: int | None = None,
    level: float = 0.8,
    fit: FitResult | None = None,
) -> MplFigure:
    """A matplotlib figure: observed curve, fitted law and its extrapolation band.

    ``fit`` draws a given fit (e.g. the pruner's pooled one) instead of refitting.
    """
    from matplotlib.figure import Figure

    items = sorted(trial.intermediate_values.items())
    steps = np.array([s for s, _ in items], dtype=float)
    values = np.array([v for _, v in items], dtype=float)
    fig = Figure(figsize=(6.0, 4.0), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(steps, values, "o", ms=3, color="C0", label="reported")
    end = float(target_step or (steps.max() if steps.size else 1.0))
    title = f"trial {trial.number} ({trial.state.name.lower()})"
    if fit is None:
        try:
            fit, _ = fit_trial(trial, law=law, target_step=int(end))
        except ValueError as exc:
            ax.set_title(f"{title}: no fit ({exc})", fontsize=8)
            return fig
    if fit.ok:
        first = float(steps[np.isfinite(values)].min())
        grid = np.unique(np.concatenate([np.geomspace(max(first, 1.0), end, 200), [end]]))
        grid = _usable_grid(fit, grid)
        if grid.size:
            ax.plot(grid, fit.predict(grid), "-", color="C1", label=f"{fit.law.name} fit")
            lo, hi = fit.interval(grid, level=level)
            ax.fill_between(grid, lo, hi, color="C1", alpha=0.25, label=f"{level:.0%} interval")
        ax.axvline(float(steps.max()), color="0.6", lw=0.8, ls=":")
        if grid.size and grid[-1] >= end:
            pred = float(fit.predict([end])[0])
            ax.set_title(f"{title}: predicted {pred:.4g} at step {int(end)}", fontsize=9)
        else:
            last = f" after step {grid[-1]:.0f}" if grid.size else ""
            ax.set_title(f"{title}: the fit leaves positive losses{last}", fontsize=8)
    else:
        ax.set_title(f"{title}: fit {fit.status} ({fit.message})", fontsize=8)
    ax.set_xlabel("step")
    ax.set_ylabel("objective")
    ax.set_xscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _usable_grid(fit: FitResult, grid: np.ndarray) -> np.ndarray:
    """The leading part of ``grid`` where the fit predicts usable (positive) losses.

    ``FitResult.predict`` raises rather than answer a non-positive loss; a figure
    draws what it can instead of failing.
    """
    try:
        fit.predict(grid)
        fit.interval(grid)
        return grid
    except ValueError:
        pass
    ok = 0
    for i, g in enumerate(grid):
        try:
            fit.predict([g])
            fit.interval([g])
        except ValueError:
            break
        ok = i + 1
    return grid[:ok]


def save_trial_figure(
    study: optuna.Study,
    trial: FrozenTrial,
    *,
    artifact_store: ArtifactStore,
    law: Law | str | None = None,
    target_step: int | None = None,
    level: float = 0.8,
    fit: FitResult | None = None,
) -> str:
    """Draw ``trial_figure`` as a PNG and upload it to the artifact store.

    A running trial (e.g. from ``LawPruner(artifact_store=...)`` just before it
    prunes) gets the artifact itself; Optuna does not let finished trials change,
    so their figure is attached to the study, named after the trial.

    Returns:
        The artifact id (shown in optuna-dashboard under the trial or the study).
    """
    from optuna.artifacts import upload_artifact

    fig = trial_figure(trial, law=law, target_step=target_step, level=level, fit=fit)
    owner: optuna.Study | FrozenTrial = trial if trial.state == TrialState.RUNNING else study
    with tempfile.TemporaryDirectory(prefix="lawsearch-") as tmp:
        path = os.path.join(tmp, f"trial-{trial.number}-extrapolation.png")
        fig.savefig(path, format="png")
        return upload_artifact(
            artifact_store=artifact_store,
            file_path=path,
            study_or_trial=owner,
            storage=study._storage,
            mimetype="image/png",
        )


def _score(t: FrozenTrial) -> float | None:
    if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value):
        return float(t.value)
    pred = t.user_attrs.get(_attrs.PREDICTED_FINAL)
    return None if pred is None else float(pred)


def study_figure(study: optuna.Study, *, mixture: str | None = None, top: int = 10) -> Any:
    """A plotly figure: predicted vs observed finals, and the leaders' mixture weights."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    specs = mixture_specs(study)
    name = mixture or (sorted(specs)[0] if specs else None)
    fig = make_subplots(
        rows=1,
        cols=2 if name else 1,
        subplot_titles=["predicted vs observed final", f"mixture {name!r} of the leaders"][
            : 2 if name else 1
        ],
    )
    done = [
        t
        for t in trials
        if t.state == TrialState.COMPLETE
        and t.value is not None
        and _attrs.PREDICTED_FINAL in t.user_attrs
    ]
    xs = [float(t.user_attrs[_attrs.PREDICTED_FINAL]) for t in done]
    ys = [float(t.value) for t in done if t.value is not None]
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=ys,
            mode="markers",
            name="completed",
            text=[f"trial {t.number}" for t in done],
        ),
        row=1,
        col=1,
    )
    if xs:
        lo, hi = min(xs + ys), max(xs + ys)
        fig.add_trace(
            go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x", line={"dash": "dot"}),
            row=1,
            col=1,
        )
    fig.update_xaxes(title_text="predicted final", row=1, col=1)
    fig.update_yaxes(title_text="observed final", row=1, col=1)
    if name:
        bounds = specs[name]
        sign = -1.0 if study.direction == StudyDirection.MAXIMIZE else 1.0
        scored = [(sign * s, t) for t in trials if (s := _score(t)) is not None]
        leaders = [t for _, t in sorted(scored, key=lambda p: p[0])[:top]]
        labels = [f"#{t.number}" for t in leaders]
        weights = [mixture_from_params(t.params, name, bounds) for t in leaders]
        for d in bounds.domains:
            fig.add_trace(
                go.Bar(x=labels, y=[w[d] if w else 0.0 for w in weights], name=d),
                row=1,
                col=2,
            )
        fig.update_layout(barmode="stack")
        fig.update_yaxes(title_text="weight", range=[0, 1], row=1, col=2)
    fig.update_layout(title_text=f"lawsearch: {study.study_name}", height=420)
    return fig


def save_study_figure(
    study: optuna.Study,
    *,
    mixture: str | None = None,
    top: int = 10,
    graph_object_id: str = "lawsearch-study",
) -> str:
    """Save ``study_figure`` with ``optuna_dashboard.save_plotly_graph_object``; returns its id."""
    from optuna_dashboard import save_plotly_graph_object

    fig = study_figure(study, mixture=mixture, top=top)
    return save_plotly_graph_object(study, fig, graph_object_id=graph_object_id)
