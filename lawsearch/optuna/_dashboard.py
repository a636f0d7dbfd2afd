"""optuna-dashboard: each trial's figure and note, drawn from the search's decision records.

* ``trial_figure``: a trial's curve, the law's fit over it, the extrapolation
  that ranked it with its interval and the estimate (from its decision record;
  a trial without one, e.g. still running, is refitted and says so);
* ``save_trial_figure``: that figure as an artifact *of the trial*, redrawn in
  place (one artifact per trial, whose id is the attr ``lawsearch:figure``);
* ``LiveFigures``: a report hook that redraws a running trial's figure as it reports;
* ``trial_note``: the note at the top of the trial's page: the full-budget
  estimate and interval first, what ranked it and why, the cut's verdict, the
  mixture weights and the schedule;
* ``publish``: all of that for a study, plus the study figures
  (``lawsearch.optuna._study_figure``).

Every figure draws what its title promises or says on the figure what it could
not draw and why. matplotlib is imported inside the functions, so importing
``lawsearch.optuna`` stays light.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
import textwrap
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from lawsearch.laws import FitResult, Law, get_law
from lawsearch.optuna import _attrs
from lawsearch.optuna import _compat as compat
from lawsearch.optuna import _records as records
from lawsearch.optuna._kinds import OBSERVED_FINAL, value_kind
from lawsearch.optuna._mixture import get_schedule, mixture_from_params, mixture_specs

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure as MplFigure

    from lawsearch.optuna._compat import ArtifactStore

__all__ = [
    "LiveFigures",
    "fit_trial",
    "publish",
    "save_trial_figure",
    "study_note",
    "trial_figure",
    "trial_note",
]


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


def _say(ax: Axes, text: str, gid: str) -> None:
    """Write on the figure what could not be drawn, and why."""
    note = ax.text(
        0.02,
        0.03,
        text,
        transform=ax.transAxes,
        fontsize=7,
        color="#8a1c1c",
        va="bottom",
        wrap=True,
        bbox={"facecolor": "white", "alpha": 0.85, "lw": 0},
    )
    note.set_gid(gid)


def _draw_path(ax: Axes, path: Mapping[str, Any], level: float, label: str, target: float) -> bool:
    """Draw a record's path (line ``path``, band ``band``); True if it reaches ``target``."""
    steps = np.asarray(path["steps"], dtype=float)
    clean = [
        np.asarray([math.nan if v is None else v for v in path[k]], dtype=float)
        for k in ("mean", "lo", "hi")
    ]
    (line,) = ax.plot(steps, clean[0], "--", color="C1", label=label)
    line.set_gid("path")
    band = ax.fill_between(
        steps, clean[1], clean[2], color="C1", alpha=0.25, lw=0, label=f"{level:.0%} interval"
    )
    band.set_gid("band")
    return bool(steps[-1] >= target)


def _draw_record(ax: Axes, trial: FrozenTrial, rec: Mapping[str, Any]) -> str:
    """Draw the trial's decision (``records.decision``); return the figure's title."""
    target, level = float(rec["target"]), float(rec["level"])
    head = f"trial {trial.number}, rung {rec['rung']} ({rec['budget']} steps)"
    value, lo, hi = (
        math.nan if rec.get(k) is None else float(rec[k]) for k in ("value", "lo", "hi")
    )
    kind = value_kind(rec, trial.user_attrs.get(_attrs.TOKENS_PER_STEP))
    if rec["ranked_by"] == records.LAST_VALUE:
        (dia,) = ax.plot(
            [kind.at_step],
            [value],
            "D",
            ms=7,
            mfc="none",
            mew=1.5,
            color="C3",
            label=f"ranked value: {kind.label}",
        )
        dia.set_gid("observed-value")
        why = rec.get("why", "")
        _say(ax, f"no extrapolation: ranked by its loss {kind.label}: {why}", "missing")
        return f"{head}: ranked by its loss {kind.label}: {value:.4g} (not a prediction)"
    if rec["ranked_by"] == records.OBSERVED:
        (star,) = ax.plot([target], [value], "*", ms=10, color="k", label="observed final")
        star.set_gid("estimate")
        return f"{head}: observed {value:.4g} at the full budget (step {int(target)})"
    source = "joint refit" if rec["ranked_by"] == records.JOINT else "fit"
    if rec.get("path"):
        reached = _draw_path(ax, rec["path"], level, f"{rec['law']} {source}", target)
        if not reached:
            _say(ax, "the fit predicts no positive loss up to the full budget", "missing")
    else:
        _say(ax, "no path stored with the record", "missing")
    err = [[max(value - lo, 0.0)], [max(hi - value, 0.0)]]
    bars = ax.errorbar([target], [value], yerr=err, fmt="s", color="C3", capsize=3, ms=5)
    bars.lines[0].set_gid("estimate")
    verdict = ""
    if rec.get("position"):
        verdict = f"; {'kept' if rec['kept'] else 'cut'}: {rec['position']} of {rec['of']}"
    by = "the rung's joint refit" if rec["ranked_by"] == records.JOINT else "its own fit"
    return (
        f"{head}: ranked by {by} ({rec['law']}): {value:.4g} "
        f"[{lo:.4g}, {hi:.4g}] ({level:.0%}), {kind.label}{verdict}"
    )


def _draw_refit(
    ax: Axes,
    trial: FrozenTrial,
    law: Law | str | None,
    end: float,
    level: float,
    fit: FitResult | None,
) -> str:
    """Fit the law to the curve so far (no decision yet) and draw it; return the title."""
    head = f"trial {trial.number} ({trial.state.name.lower()}, no decision yet)"
    if fit is None:
        try:
            fit, _ = fit_trial(trial, law=law, target_step=int(end))
        except ValueError as exc:
            _say(ax, f"no fit: {exc}", "missing")
            return head
    if not fit.ok:
        _say(ax, f"the {fit.law.name} fit {fit.status}: {fit.message}", "missing")
        return head
    steps = [s for s, v in trial.intermediate_values.items() if math.isfinite(v)]
    path = records.fit_path(fit, float(max(min(steps), 1.0)), end, level)
    if path is None:
        _say(ax, f"the {fit.law.name} fit predicts no positive loss beyond the curve", "missing")
        return head
    if not _draw_path(ax, path, level, f"{fit.law.name} fit (refitted)", end):
        _say(ax, "the fit predicts no positive loss up to the target", "missing")
        return head
    pred = float(fit.predict([end])[0])
    return f"{head}: the {fit.law.name} fit predicts {pred:.4g} at step {int(end)}"


def trial_figure(
    trial: FrozenTrial,
    *,
    law: Law | str | None = None,
    target_step: int | None = None,
    level: float = 0.8,
    fit: FitResult | None = None,
    cuts: list[dict[str, Any]] | None = None,
) -> MplFigure:
    """A matplotlib figure: the trial's curve, the law's fit, the extrapolation and estimate.

    With a decision record (a trial that finished a rung) it draws exactly what
    the search ranked the trial by (with ``cuts``, the study's cut records: the
    cut's ranking where one ranked it); otherwise (``fit`` given, e.g. the
    pruner's, or a running trial) it fits the law to the curve so far and says so.
    """
    from matplotlib.figure import Figure

    items = sorted(trial.intermediate_values.items())
    fig = Figure(figsize=(6.4, 4.2), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    (dots,) = ax.plot(
        [s for s, _ in items], [v for _, v in items], "o", ms=3, color="C0", label="reported"
    )
    dots.set_gid("observed")
    rec = records.decision(trial, cuts or []) if fit is None else None
    end = float(target_step or (rec or {}).get("target") or (max(dict(items)) if items else 1))
    if rec is not None:
        title = _draw_record(ax, trial, rec)
    elif items:
        title = _draw_refit(ax, trial, law, end, level, fit)
    else:
        title = f"trial {trial.number}: nothing reported yet"
        _say(ax, "no report to draw", "missing")
    if items:
        ax.axvline(float(max(dict(items))), color="0.6", lw=0.8, ls=":")
    ax.set_title(title, fontsize=8)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("objective (loss)")
    ax.set_xscale("log")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _png(fig: MplFigure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


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
    """Draw ``trial_figure`` as a PNG into the trial's one figure artifact; return its id.

    The first call for a running trial uploads the artifact to the trial (shown
    on its page) and stores its id in ``lawsearch:figure``; later calls, also
    after the trial finished, rewrite that artifact in place. A trial first drawn
    after it finished (Optuna freezes finished trials) gets an artifact of the
    study, named after it, also rewritten in place later.
    """
    from optuna.artifacts import upload_artifact

    cuts = records.read_cuts(study)
    fig = trial_figure(trial, law=law, target_step=target_step, level=level, fit=fit, cuts=cuts)
    png = _png(fig)
    db, sid = compat.storage(study), compat.study_id(study)
    raw = db.get_study_system_attrs(sid).get(_attrs.FIGURED_TRIALS)
    figured = dict(raw) if isinstance(raw, dict) else {}  # a list in studies before 2026-12
    known = trial.user_attrs.get(_attrs.FIGURE_ARTIFACT) or figured.get(str(trial.number))
    if known:
        artifact_store.write(str(known), io.BytesIO(png))
        return str(known)
    running = trial.state == TrialState.RUNNING
    with tempfile.TemporaryDirectory(prefix="lawsearch-") as tmp:
        path = os.path.join(tmp, f"trial-{trial.number}-extrapolation.png")
        with open(path, "wb") as fh:
            fh.write(png)
        artifact_id = upload_artifact(
            artifact_store=artifact_store,
            file_path=path,
            study_or_trial=trial if running else study,
            storage=db,
            mimetype="image/png",
        )
    if running:
        db.set_trial_user_attr(compat.trial_id(trial), _attrs.FIGURE_ARTIFACT, artifact_id)
    else:
        figured[str(trial.number)] = artifact_id
        db.set_study_system_attr(sid, _attrs.FIGURED_TRIALS, figured)
    return artifact_id


class LiveFigures:
    """A report hook that redraws a running trial's dashboard figure as it reports.

    Call it as ``on_report(trial_number, step, value, tokens)`` (the hook of
    ``lawsearch.study.build_search``); it refits the law to the curve so far at
    most every ``every`` seconds per trial. A figure that cannot be saved never
    stops training: why is kept in ``problems`` (one line each) for the caller to show.
    """

    def __init__(
        self,
        study: optuna.Study,
        *,
        artifact_store: ArtifactStore,
        law: Law | str | None = None,
        target_step: int | None = None,
        level: float = 0.8,
        every: float = 10.0,
    ) -> None:
        self.study, self.artifact_store = study, artifact_store
        self.law, self.target_step, self.level, self.every = law, target_step, level, every
        self._last: dict[int, float] = {}
        self._lock = threading.Lock()
        self.problems: list[str] = []

    def __call__(self, trial: int, step: int, value: float, tokens: float) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(trial, -math.inf) < self.every:
                return
        frozen = compat.trial_by_number(self.study, trial)
        law = _law_of(self.law, frozen)
        if frozen.state != TrialState.RUNNING or len(frozen.intermediate_values) < law.min_points():
            return
        with self._lock:
            self._last[trial] = now
        try:
            save_trial_figure(
                self.study,
                frozen,
                artifact_store=self.artifact_store,
                law=law,
                target_step=self.target_step,
                level=self.level,
            )
        except (OSError, ValueError) as exc:
            with self._lock:
                self.problems.append(f"no live figure for trial {trial}: {exc}")


# ---- notes ------------------------------------------------------------------------------------


def _fmt(x: Any) -> str:
    return "–" if x is None or not math.isfinite(float(x)) else f"{float(x):.4f}"


def _tokens(trial: FrozenTrial, steps: float) -> str:
    tps = trial.user_attrs.get(_attrs.TOKENS_PER_STEP)
    if not tps:
        return f"step {int(steps)}"
    n = float(steps) * float(tps)
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{int(steps)} steps = {n / scale:.3g}{unit} tokens"
    return f"{int(steps)} steps = {n:.0f} tokens"


def _paragraphs(lines: list[str], width: int = 95) -> str:
    """Markdown paragraphs with hard line breaks: the dashboard's note box does not wrap."""
    return "\n\n".join("  \n".join(textwrap.wrap(line, width)) for line in lines)


def trial_note(
    study: optuna.Study, trial: FrozenTrial, cuts: list[dict[str, Any]] | None = None
) -> str:
    """The Markdown note of a trial: estimate and interval first, then why, then its inputs."""
    d = records.decision(trial, cuts if cuts is not None else records.read_cuts(study))
    lines = []
    if d is None:
        lines.append(f"**No decision yet** ({trial.state.name.lower()}).")
    else:
        tps = trial.user_attrs.get(_attrs.TOKENS_PER_STEP)
        kind = value_kind(d, tps)
        if kind.predicted:
            lines.append(
                f"**Full-budget estimate: {_fmt(d['value'])}**, {float(d['level']):.0%} interval "
                f"[{_fmt(d['lo'])}, {_fmt(d['hi'])}], {kind.label} ({kind.kind})."
            )
        else:
            what = (
                "the full budget reached"
                if kind.kind == OBSERVED_FINAL
                else "no usable extrapolation (or `search.rank = 'loss'`), so the search ranked it "
                "by this loss"
            )
            lines.append(
                f"**Ranked value: {_fmt(d['value'])}, {kind.label}**: a measured loss, not an "
                f"estimate, so no interval ({what})."
            )
        by = d["ranked_by"]
        lines.append(
            f"Ranked by: **{by}**"
            + (f" ({d['law']})" if by in (records.LAW, records.JOINT) else "")
            + f". Observed {_fmt(d['observed'])} at {_tokens(trial, d['observed_step'] or 0)}"
            f", rung {d['rung']}."
        )
        if d["why"]:
            lines.append(f"Why: {d['why']}")
        own = d["own"]
        if own["value"] != d["value"] or own["ranked_by"] != d["ranked_by"]:
            lines.append(
                f"Objective value {_fmt(own['value'])}: its own {own['ranked_by']} value, "
                f"{value_kind(own, tps).label}, told before the cut ranked the rung."
            )
        if d["position"]:
            verdict = "**kept**" if d["kept"] else "**cut**"
            lines.append(
                f"Cut at {_tokens(trial, d['budget'])}: {verdict}, place {d['position']} of "
                f"{d['of']} (optimistic {_fmt(d['score'])}; cut line {_fmt(d['line'])}, "
                f"keep {d['keep']})."
            )
    for name, bounds in mixture_specs(study).items():
        w = mixture_from_params(trial.params, name, bounds)
        if w:
            label = "Mixture" if name == _attrs.DEFAULT_MIXTURE else f"Mixture {name!r}"
            lines.append(f"{label}: " + ", ".join(f"{k} **{v:.3f}**" for k, v in w.items()) + ".")
    spec = trial.user_attrs.get(_attrs.SCHEDULE)
    if isinstance(spec, dict):
        shown = ("family", "peak_lr", "warmup_steps", "decay_fraction", "final_lr")
        lines.append(
            "Schedule: "
            + ", ".join(
                f"{k} **{spec[k]:.4g}**" if isinstance(spec[k], float) else f"{k} **{spec[k]}**"
                for k in shown
                if k in spec and not (k == "decay_fraction" and spec.get("family") != "wsd")
            )
            + "."
        )
    lines.append(
        "Objective value = the value the trial was ranked by when it finished its rung: a "
        "full-budget prediction, or a loss observed where no extrapolation was usable or the "
        "study ranks by the loss (`search.rank = 'loss'`; `lawsearch:value_kind` says "
        "which); `lawsearch:observed` = the loss at this trial's budget."
    )
    return _paragraphs(lines)


def study_note(study: optuna.Study) -> str:
    """The study's Markdown note: the pick, and what each cut kept and why."""
    from lawsearch.optuna._study_figure import lineage_estimates, tokens_per_step

    lineages = lineage_estimates(study)
    cuts = records.read_cuts(study)
    level = next((float(d["level"]) for ds in lineages.values() for d in ds), 0.8)
    lines = [f"## How lawsearch decided ({level:.0%} intervals throughout)"]
    if lineages:
        root, ds = next(iter(lineages.items()))
        d = ds[-1]
        label = value_kind(d, tokens_per_step(study.get_trials(deepcopy=False))).label
        lines.append(
            f"**Pick: candidate {root}** (trial {d['trial']}), ranked by {d['ranked_by']}: "
            f"{_fmt(d['value'])}, {label} (budget step {d['budget']} of {d['target']})."
        )
    for cut in cuts:
        kept = [str(c["trial"]) for c in cut["candidates"] if c["kept"]]
        lines.append(
            f"- Cut at step {cut['budget']}: kept {cut['keep']} of {cut['screened']} (trials "
            f"{', '.join(kept)}) by the optimistic end of the interval; cut line "
            f"{_fmt(cut['line'])}."
        )
    lines.append(
        "A trial's objective value is what it was ranked by: the law's full-budget prediction, "
        "or, where no extrapolation was usable or the study ranks by the loss, the loss observed "
        "at its own budget (a measured "
        "loss, not comparable with a prediction); `lawsearch:value_kind` says which and "
        "`lawsearch:observed` is the loss at its own budget. Each trial's note says "
        "what ranked it and why. The lawsearch figures below: the estimates by budget with the "
        "cut lines, the leaders' mixtures, and the importance of the weights (optuna-dashboard's "
        "own importance plot ranks the stick-breaking parameters the samplers explore)."
    )
    return _paragraphs(lines)


def publish(
    study: optuna.Study,
    *,
    artifact_store: ArtifactStore,
    law: Law | str | None = None,
    target_step: int | None = None,
    level: float = 0.8,
    mixture: str | None = None,
) -> list[str]:
    """Every finished trial's figure and note, and the study figures, for optuna-dashboard.

    Needs the ``[dashboard]`` extra. Returns what could not be drawn (one line each).
    """
    from lawsearch.optuna._study_figure import save_study_figures

    problems = []
    cuts = records.read_cuts(study)
    for trial in study.get_trials(deepcopy=False):
        if trial.state not in (TrialState.COMPLETE, TrialState.PRUNED):
            continue
        compat.save_trial_note(study, trial, trial_note(study, trial, cuts))
        if not trial.intermediate_values:
            continue
        try:
            save_trial_figure(
                study,
                trial,
                artifact_store=artifact_store,
                law=law,
                target_step=target_step,
                level=level,
            )
        except (OSError, ValueError) as exc:
            problems.append(f"no dashboard figure for trial {trial.number}: {exc}")
    problems += save_study_figures(study, mixture=mixture)
    from optuna_dashboard import get_note, save_note

    note = study_note(study)
    if get_note(study) != note:
        save_note(study, note)
    return problems
