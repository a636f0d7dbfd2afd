"""The report of a study, rebuilt from its Optuna storage alone.

``collect(study, config)`` walks the trials: every *candidate* (a trial without a
``lawsearch:parent``) and the continuation trials that extend it form one
lineage, whose curve is the concatenation of their reports. Lineages are ranked
the way the search reranks them: those that reached a longer budget first, then
by their value there (the observed loss at the full budget, else the law's
predicted final). ``write_report`` turns that into a folder:

* ``table.md`` / ``table.csv``: rank, mixture, schedule, predicted final and
  interval, observed loss, compute;
* ``curves.png``: each lineage's curve with the law's extrapolation from its
  short-budget prefix (line and interval band) to the full budget;
* ``predicted_vs_observed.png``: the short-budget prediction against the loss
  observed at the full budget, for every lineage that got there;
* ``leader_mixtures.png``: the mixture weights of the leading candidates;
* ``summary.json``: the same numbers, machine-readable.

matplotlib (Agg) is imported only when plots are drawn.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "Lineage",
    "StudyReport",
    "collect",
    "dashboard_command",
    "format_table",
    "write_report",
]

PREFIX = "lawsearch:"
_MIXTURE = PREFIX + "mixture:"


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
        predicted: the law's predicted final loss (latest prediction of the lineage).
        predicted_lo: lower end of its interval.
        predicted_hi: upper end of its interval.
        short_predicted: the prediction made from the short budget (the screening one).
        short_lo: lower end of the screening prediction's interval.
        short_hi: upper end of the screening prediction's interval.
        observed: the loss observed at the full budget (NaN if not reached).
        reached_step: the last step trained.
        compute_tokens: tokens trained by this lineage (continuations counted once).
        rank: 1 = the pick.
    """

    number: int
    trials: tuple[int, ...]
    state: str
    mixture: dict[str, float]
    schedule: str
    steps: tuple[int, ...]
    values: tuple[float, ...]
    predicted: float
    predicted_lo: float
    predicted_hi: float
    short_predicted: float
    short_lo: float
    short_hi: float
    observed: float
    reached_step: int
    compute_tokens: float
    lr_schedule: dict[str, Any] | None = None
    rank: int = 0


@dataclass(frozen=True)
class StudyReport:
    """A study's ranked lineages and its compute, against training every candidate."""

    study_name: str
    storage: str
    lineages: tuple[Lineage, ...]
    short_steps: int
    full_steps: int
    tokens_per_step: int
    compute_tokens: float
    full_compute_tokens: float
    law: str
    n_candidates: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def compute_fraction(self) -> float:
        """Compute spent / compute of training every candidate to the full budget."""
        return self.compute_tokens / self.full_compute_tokens if self.full_compute_tokens else 0.0

    @property
    def pick(self) -> Lineage | None:
        return self.lineages[0] if self.lineages else None


# ---- collecting ---------------------------------------------------------------------------


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
    children: dict[int, list[Any]] = {}
    roots = []
    for t in trials:
        if PREFIX + "surplus" in t.user_attrs or PREFIX + "duplicate_of" in t.user_attrs:
            continue  # not a candidate: an extra trial the search refused, or a duplicate
        parent = t.user_attrs.get(PREFIX + "parent")
        if parent is None or int(parent) not in by_number:
            roots.append(t)
        else:
            children.setdefault(int(parent), []).append(t)
    lineages = []
    for root in roots:
        chain = _chain(root, children)
        if all(t.state == optuna.trial.TrialState.WAITING for t in chain):
            continue
        lineages.append(_lineage(chain, config, tps))
    ranked = _rank(lineages, config.full_steps)
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
    return max(iv) if iv else int(trial.user_attrs.get(PREFIX + "resume_step", 0) or 0)


def _lineage(chain: list[Any], config: Any, tps: int) -> Lineage:
    points: dict[int, float] = {}
    compute = 0.0
    for t in chain:
        points.update({int(s): float(v) for s, v in t.intermediate_values.items()})
        attr = t.user_attrs.get(PREFIX + "compute_tokens")
        steps_attr = t.user_attrs.get(PREFIX + "compute_steps")
        if attr is not None:
            compute += float(attr)
        elif steps_attr is not None:
            compute += float(steps_attr) * tps
        elif t.intermediate_values:
            start = int(t.user_attrs.get(PREFIX + "resume_step", 0) or 0)
            compute += (max(t.intermediate_values) - start) * tps
    steps = tuple(sorted(points))
    values = tuple(points[s] for s in steps)
    root, last = chain[0], chain[-1]
    mixture = _mixture(root.user_attrs) or _mixture(last.user_attrs)
    schedule_spec = root.user_attrs.get(PREFIX + "schedule")
    if isinstance(schedule_spec, str):
        schedule_spec = json.loads(schedule_spec)
    predicted = _latest(chain, "predicted_final")
    lo = _latest(chain, "predicted_lo")
    hi = _latest(chain, "predicted_hi")
    short = _float(root.user_attrs.get(PREFIX + "predicted_final"))
    short_lo = _float(root.user_attrs.get(PREFIX + "predicted_lo"))
    short_hi = _float(root.user_attrs.get(PREFIX + "predicted_hi"))
    reached = steps[-1] if steps else 0
    observed = values[-1] if steps and reached >= config.full_steps else math.nan
    return Lineage(
        number=root.number,
        trials=tuple(t.number for t in chain),
        state=last.state.name,
        mixture=mixture,
        schedule=_describe_schedule(schedule_spec, root.params),
        steps=steps,
        values=values,
        predicted=predicted,
        predicted_lo=lo,
        predicted_hi=hi,
        short_predicted=short,
        short_lo=short_lo,
        short_hi=short_hi,
        observed=observed,
        reached_step=reached,
        compute_tokens=compute,
        lr_schedule=schedule_spec if isinstance(schedule_spec, dict) else None,
    )


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _latest(chain: list[Any], key: str) -> float:
    for t in reversed(chain):
        v = _float(t.user_attrs.get(PREFIX + key))
        if math.isfinite(v):
            return v
    return math.nan


def _mixture(attrs: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for k, v in attrs.items():
        if k.startswith(_MIXTURE):
            # lawsearch:mixture:<mixture name>:<domain>
            out[k[len(_MIXTURE) :].split(":", 1)[-1]] = float(v)
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


def _rank(lineages: list[Lineage], full_steps: int) -> list[Lineage]:
    """Furthest budget first; then observed final loss, else predicted final."""

    def key(lin: Lineage) -> tuple[float, float, int]:
        reached = min(lin.reached_step, full_steps)
        value = lin.observed if math.isfinite(lin.observed) else lin.predicted
        if not math.isfinite(value):
            value = lin.values[-1] if lin.values else math.inf
        return (-reached, value, lin.number)

    ordered = sorted(lineages, key=key)
    return [_with_rank(lin, i + 1) for i, lin in enumerate(ordered)]


def _with_rank(lin: Lineage, rank: int) -> Lineage:
    import dataclasses

    return dataclasses.replace(lin, rank=rank)


# ---- text ---------------------------------------------------------------------------------

_COLUMNS = (
    "rank",
    "trial",
    "state",
    "mixture",
    "schedule",
    "predicted final",
    "observed",
    "compute",
)


def _rows(report: StudyReport, top: int | None = None) -> list[list[str]]:
    rows = []
    for lin in report.lineages[:top]:
        mix = " ".join(f"{d}={w:.2f}" for d, w in lin.mixture.items()) or "-"
        # the prediction that screened the candidate: from its short-budget curve
        mean, lo, hi = lin.short_predicted, lin.short_lo, lin.short_hi
        if not math.isfinite(mean):
            mean, lo, hi = lin.predicted, lin.predicted_lo, lin.predicted_hi
        if math.isfinite(mean):
            pred = f"{mean:.4f}"
            if math.isfinite(lo) and math.isfinite(hi):
                pred += f" [{lo:.4f}, {hi:.4f}]"
        else:
            pred = "-"
        obs = (
            f"{lin.observed:.4f}"
            if math.isfinite(lin.observed)
            else (f"({lin.values[-1]:.4f} @ {lin.reached_step})" if lin.values else "-")
        )
        comp = f"{_human(lin.compute_tokens)} tok"
        rows.append([str(lin.rank), str(lin.number), lin.state, mix, lin.schedule, pred, obs, comp])
    return rows


def format_table(report: StudyReport, *, top: int | None = None) -> str:
    """The ranking as a Markdown table (what the CLI prints), plus the compute line."""
    rows = _rows(report, top)
    widths = [
        max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(_COLUMNS)
    ]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [line(_COLUMNS), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in rows]
    out.append("")
    out.append(
        f"compute: {_human(report.compute_tokens)} tokens = {100 * report.compute_fraction:.1f}% "
        f"of training all {report.n_candidates} "
        f"candidates to the full budget ({_human(report.full_compute_tokens)} tokens)"
    )
    return "\n".join(out)


def _human(n: float) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.0f}"


def dashboard_command(storage: str, artifact_dir: str | Path | None = None) -> str:
    """The exact ``optuna-dashboard`` command line that opens the study's storage.

    optuna-dashboard 0.21 takes a journal file path as is (it checks it is a file
    and not SQLite) and a PostgreSQL URL as an RDB URL.
    """
    import shlex

    cmd = f"optuna-dashboard {shlex.quote(str(storage))}"
    if artifact_dir is not None and Path(artifact_dir).is_dir():
        cmd += f" --artifact-dir {shlex.quote(str(artifact_dir))}"
    return cmd


# ---- files --------------------------------------------------------------------------------


def write_report(report: StudyReport, out_dir: str | Path, *, law: Any = None) -> list[Path]:
    """Write the tables, summary and plots into ``out_dir``; return the files written.

    Args:
        report: from ``collect``.
        out_dir: the report folder (created).
        law: the ``Law`` used to draw extrapolations (default: ``report.law`` by name).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    md = out / "table.md"
    md.write_text(f"# {report.study_name}\n\n" + format_table(report) + "\n", encoding="utf-8")
    written.append(md)
    csv_path = out / "table.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        domains = sorted({d for lin in report.lineages for d in lin.mixture})
        w.writerow(
            [
                "rank",
                "trial",
                "state",
                *(f"w_{d}" for d in domains),
                "schedule",
                "predicted",
                "predicted_lo",
                "predicted_hi",
                "short_predicted",
                "observed",
                "reached_step",
                "compute_tokens",
            ]
        )
        for lin in report.lineages:
            w.writerow(
                [
                    lin.rank,
                    lin.number,
                    lin.state,
                    *(f"{lin.mixture.get(d, 0.0):.6f}" for d in domains),
                    lin.schedule,
                    lin.predicted,
                    lin.predicted_lo,
                    lin.predicted_hi,
                    lin.short_predicted,
                    lin.observed,
                    lin.reached_step,
                    lin.compute_tokens,
                ]
            )
    written.append(csv_path)
    summary = out / "summary.json"
    payload = {
        "study": report.study_name,
        "storage": report.storage,
        "law": report.law,
        "short_steps": report.short_steps,
        "full_steps": report.full_steps,
        "tokens_per_step": report.tokens_per_step,
        "compute_tokens": report.compute_tokens,
        "full_compute_tokens": report.full_compute_tokens,
        "compute_fraction": report.compute_fraction,
        "trial_states": report.counts,
        "lineages": [_json_safe(asdict(lin)) for lin in report.lineages],
    }
    summary.write_text(json.dumps(payload, indent=1), encoding="utf-8")
    written.append(summary)
    if report.lineages:
        written += _plots(report, out, law)
    return written


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj


def _plots(report: StudyReport, out: Path, law: Any) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if law is None:
        from lawsearch.laws import get_law

        law = get_law(report.law)
    paths = [out / "curves.png", out / "predicted_vs_observed.png", out / "leader_mixtures.png"]
    for path, draw in zip(paths, (_plot_curves, _plot_pred_vs_obs, _plot_mixtures), strict=True):
        fig = draw(report, law, plt)
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
    return paths


def _extrapolation(lin: Lineage, report: StudyReport, law: Any) -> tuple[Any, ...] | None:
    """The law fitted to the short-budget prefix, evaluated up to the full budget."""
    steps = np.array(lin.steps, dtype=float)
    values = np.array(lin.values, dtype=float)
    keep = (steps <= report.short_steps) & np.isfinite(values) & (values > 0)
    steps, values = steps[keep], values[keep]
    if steps.size < law.min_points():
        return None
    lrs = None
    if law.uses_lr:
        if lin.lr_schedule is None:
            return None
        from lawsearch.schedules import Schedule

        lrs = Schedule.from_dict(lin.lr_schedule).per_step()
    try:
        fit = law.fit(steps, values, lrs=lrs)
        if not fit.ok:
            return None
        grid = np.linspace(steps[0], report.full_steps, 120)
        lo, hi = fit.interval(grid)
        return grid, fit.predict(grid), lo, hi
    except ValueError:
        return None


def _plot_curves(report: StudyReport, law: Any, plt: Any) -> Any:
    fig, ax = plt.subplots(figsize=(8, 5))
    cmap = plt.get_cmap("tab10")
    top = report.lineages[:10]
    seen: list[float] = []
    for i, lin in enumerate(top):
        seen += [v for v in lin.values if math.isfinite(v)]
        color = cmap(i % 10)
        ax.plot(
            lin.steps,
            lin.values,
            "o-",
            ms=2.5,
            lw=1.2,
            color=color,
            label=f"#{lin.rank} trial {lin.number}",
        )
        ext = _extrapolation(lin, report, law)
        if ext is not None:
            grid, pred, lo, hi = ext
            ax.plot(grid, pred, "--", lw=1, color=color)
            ax.fill_between(grid, lo, hi, color=color, alpha=0.12, lw=0)
            seen += [float(v) for v in pred if math.isfinite(v)]
    for lin in report.lineages[10:]:
        ax.plot(lin.steps, lin.values, "-", lw=0.6, color="0.7")
    if seen:
        # scale to curves and predictions: a wide interval must not flatten them
        lo_y, hi_y = min(seen), max(seen)
        pad = 0.08 * (hi_y - lo_y or 1.0)
        ax.set_ylim(lo_y - pad, hi_y + pad)
    ax.axvline(report.short_steps, color="0.3", ls=":", lw=1)
    ax.text(report.short_steps, ax.get_ylim()[1], " short budget", va="top", fontsize=8)
    ax.axvline(report.full_steps, color="0.3", ls=":", lw=1)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("held-out loss")
    ax.set_title(
        f"{report.study_name}: curves and {report.law} extrapolations (dashed, band = interval)"
    )
    ax.legend(fontsize=7, ncol=2)
    return fig


def _plot_pred_vs_obs(report: StudyReport, law: Any, plt: Any) -> Any:
    fig, ax = plt.subplots(figsize=(5, 5))
    done = [
        lin
        for lin in report.lineages
        if math.isfinite(lin.observed) and math.isfinite(lin.short_predicted)
    ]
    if done:
        x = np.array([lin.short_predicted for lin in done])
        y = np.array([lin.observed for lin in done])
        lo_x = np.array([lin.short_lo for lin in done])
        hi_x = np.array([lin.short_hi for lin in done])
        err = np.where(np.isfinite([lo_x, hi_x]), np.abs(np.stack([x - lo_x, hi_x - x])), 0.0)
        ax.errorbar(
            x,
            y,
            xerr=err,
            fmt="o",
            color="C0",
            ecolor="C0",
            elinewidth=1,
            capsize=2,
            zorder=3,
            label="candidate (interval from the short budget)",
        )
        for lin in done:
            ax.annotate(
                f"#{lin.rank}",
                (lin.short_predicted, lin.observed),
                fontsize=8,
                xytext=(3, 3),
                textcoords="offset points",
            )
        lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
        pad = 0.05 * (hi - lo or 1.0)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=1, label="y = x")
        ax.legend(fontsize=8)
    else:
        ax.text(
            0.5,
            0.5,
            "no candidate has reached the full budget yet",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
    ax.set_xlabel("final loss predicted from the short budget")
    ax.set_ylabel("loss observed at the full budget")
    ax.set_title("predicted vs observed")
    return fig


def _plot_mixtures(report: StudyReport, law: Any, plt: Any) -> Any:
    leaders = [lin for lin in report.lineages if lin.mixture][:10]
    fig, ax = plt.subplots(figsize=(8, 0.45 * max(len(leaders), 2) + 1.2))
    if leaders:
        domains = sorted({d for lin in leaders for d in lin.mixture})
        left = np.zeros(len(leaders))
        labels = [f"#{lin.rank} trial {lin.number}" for lin in leaders]
        for j, d in enumerate(domains):
            w = np.array([lin.mixture.get(d, 0.0) for lin in leaders])
            ax.barh(labels, w, left=left, color=plt.get_cmap("tab10")(j % 10), label=d)
            left += w
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="domain")
    else:
        ax.text(0.5, 0.5, "no mixture searched", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("mixture weight")
    ax.set_title("mixtures of the leading candidates (best first)")
    return fig
