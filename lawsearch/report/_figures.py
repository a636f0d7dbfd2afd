"""The report's PNG figures (matplotlib, Agg), drawn from ``lawsearch.report._views``.

A figure draws what its title promises or says on the figure what it could not
draw and why: nothing is dropped silently. Each promised element carries a
``gid`` (``observed:<trial>``, ``path:<trial>:<rung>``, ``band:<trial>:<rung>``,
``estimate:<trial>:<rung>``, ``cut-line:<rung>:<keep>``, ``missing:...``) so
tests can check the artists.

* ``curves.png``: per lineage, its curve, the law's fit over it and the
  extrapolation (dashed, band = interval) that ranked it at each rung;
* ``predicted_vs_observed.png``: every prediction a later budget checked (a
  trial's own fit, hollow, where its cut ranked by an observed loss);
* ``estimates.png``: each lineage's full-budget estimate as its budget grew,
  with each cut's line;
* ``cuts.png``: each cut's ranked candidates with their intervals and the line;
* ``leaders.png``: the mixture and the LR schedule of the leading candidates.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from lawsearch.optuna import _kinds
from lawsearch.report import _views as views
from lawsearch.report._collect import StudyReport
from lawsearch.report._tables import human

__all__ = ["FIGURES", "draw", "write_figures"]

#: what ranked a cut's candidate, as its y label says it
_SHORT = {"joint refit": "J", "law": "L", "last value": "V", "observed": "O"}


def _note(
    ax: Any, lines: list[str] | tuple[str, ...], gid: str, *, y: float = 0.02, width: int = 60
) -> None:
    """Say on the axes what could not be drawn (never drop it silently).

    A long reason is cut to three lines; the whole of it is in ``table.md``.
    """
    if lines:
        wrapped = []
        for line in lines:
            parts = textwrap.wrap(line, width)
            if len(parts) > 3:
                parts = [*parts[:2], parts[2][: width - 18] + " ... (see table.md)"]
            wrapped += parts
        text = ax.text(
            0.01,
            y,
            "\n".join(wrapped),
            transform=ax.transAxes,
            fontsize=6,
            va="bottom",
            ha="left",
            color="#8a1c1c",
            bbox={"facecolor": "white", "alpha": 0.8, "lw": 0},
        )
        text.set_gid(gid)


def _tokens_axis(ax: Any) -> None:
    from matplotlib.ticker import FuncFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: human(v)))
    ax.set_xlabel("training tokens")


def curves(report: StudyReport, plt: Any) -> Any:
    panels = views.curve_panels(report)
    ncols = min(4, max(1, len(panels)))
    nrows = max(1, math.ceil(len(panels) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 2.9 * nrows + 0.6), squeeze=False)
    for ax in axes.ravel()[len(panels) :]:
        ax.set_visible(False)
    target = report.tokens(report.full_steps)
    for ax, p in zip(axes.ravel(), panels, strict=False):
        n = p.lineage.number
        (dots,) = ax.plot(p.x, p.y, "o", ms=2.2, color="C0", label="observed")
        dots.set_gid(f"observed:{n}")
        for b in p.bands:
            color = views.RUNG_COLORS[b.rung % len(views.RUNG_COLORS)]
            style = "--" if b.ranked_by == "law" else "-."
            label = f"{b.ranked_by} at {human(b.made_at)} tok"
            (line,) = ax.plot(b.x, b.mean, style, lw=1.1, color=color, label=label)
            line.set_gid(f"path:{n}:{b.rung}")
            band = ax.fill_between(b.x, b.lo, b.hi, color=color, alpha=0.18, lw=0)
            band.set_gid(f"band:{n}:{b.rung}")
            err = [[max(b.value - b.value_lo, 0.0)], [max(b.value_hi - b.value, 0.0)]]
            bars = ax.errorbar(
                [target], [b.value], yerr=err, fmt="s", ms=3.5, color=color, capsize=2, lw=1
            )
            bars.lines[0].set_gid(f"estimate:{n}:{b.rung}")
        for rung, x, v in p.fallbacks:
            color = views.RUNG_COLORS[rung % len(views.RUNG_COLORS)]
            (dia,) = ax.plot(
                [x],
                [v],
                "D",
                ms=5,
                mfc="none",
                mew=1.3,
                color=color,
                label=f"ranked by the loss observed at {human(x)} tok",
            )
            dia.set_gid(f"observed-value:{n}:{rung}")
        if math.isfinite(p.observed_final):
            (star,) = ax.plot([target], [p.observed_final], "*", ms=8, color="k")
            star.set_gid(f"final:{n}")
        for budget in report.budgets:
            ax.axvline(report.tokens(budget), color="0.8", lw=0.7, ls=":")
        limits = p.y_range()
        if limits is not None:
            ax.set_ylim(*limits)
        _note(ax, p.missing, f"missing:{n}")
        ax.set_title(p.title, fontsize=8)
        ax.set_ylabel("held-out loss", fontsize=7)
        ax.tick_params(labelsize=6.5)
        _tokens_axis(ax)
        ax.xaxis.label.set_fontsize(7)
        ax.legend(fontsize=6, loc="upper right")
    if not panels:
        _note(axes[0, 0], ["no candidate has reported yet"], "missing:curves", y=0.5)
    fig.suptitle(
        f"{report.study_name}: curves, the {report.law} fit over each and its extrapolation "
        f"to {human(target)} tokens (dashed; band = {report.level:.0%} interval; square = the "
        "prediction ranked by; hollow diamond = an observed loss ranked by, where no "
        "extrapolation was usable or rank = loss; star = observed final)",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def predicted_vs_observed(report: StudyReport, plt: Any) -> Any:
    got = views.checks(report)
    fig, ax = plt.subplots(figsize=(5.4, 5.0))
    if got:
        x = np.array([c.predicted for c in got])
        y = np.array([c.observed for c in got])
        for i, (rung, ranked) in enumerate(sorted({(c.rung, c.ranked) for c in got})):
            sel = [c for c in got if c.rung == rung and c.ranked == ranked]
            err = [
                [max(c.predicted - c.lo, 0.0) for c in sel],
                [max(c.hi - c.predicted, 0.0) for c in sel],
            ]
            made = human(sel[0].made_at)
            what = "ranked by" if ranked else "own fit, not ranked by"
            bars = ax.errorbar(
                [c.predicted for c in sel],
                [c.observed for c in sel],
                xerr=err,
                fmt="o",
                color=f"C{i}",
                mfc=None if ranked else "none",
                capsize=2,
                label=f"predicted at {made} tok (rung {rung}, {what})",
            )
            bars.lines[0].set_gid(f"checks:{rung}" + ("" if ranked else ":own"))
            for c in sel:
                ax.annotate(
                    f"#{c.rank} @{human(c.at)}",
                    (c.predicted, c.observed),
                    fontsize=7,
                    xytext=(3, 3),
                    textcoords="offset points",
                )
        lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
        pad = 0.05 * (hi - lo or 1.0)
        (diag,) = ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=1, label="y = x")
        diag.set_gid("diagonal")
        covered = sum(c.covered for c in got)
        errors = [abs(c.predicted - c.observed) / c.observed for c in got]
        own = sum(not c.ranked for c in got)
        ax.set_title(
            f"predictions checked by later budgets: {covered} of {len(got)} inside the "
            f"{report.level:.0%} interval,\nmean |error| {100 * float(np.mean(errors)):.1f}%"
            + (f"; {own} of them own fits a cut did not rank by (hollow)" if own else ""),
            fontsize=9,
        )
        ax.legend(fontsize=7)
    else:
        ax.set_title("predictions checked by later budgets", fontsize=9)
        _note(
            ax,
            ["no lineage has yet trained past a budget where it was extrapolated"],
            "missing:checks",
            y=0.5,
        )
    ax.set_xlabel(f"loss predicted for that budget ({report.level:.0%} interval)")
    ax.set_ylabel("loss observed there")
    return fig


#: the marker of a ranked value by its kind: filled for a prediction, hollow for an observation
_MARKERS = {
    _kinds.LAW_PREDICTION: "o",
    _kinds.JOINT_PREDICTION: "s",
    _kinds.OBSERVED_FALLBACK: "D",
    _kinds.OBSERVED_FINAL: "*",
}


def _kind_legend(ax: Any, kinds: set[str], report: StudyReport) -> Any:
    """Legend handles saying what each marker is (only the kinds drawn)."""
    from matplotlib.lines import Line2D

    target = human(report.tokens(report.full_steps))
    text = {
        _kinds.LAW_PREDICTION: f"law prediction at {target} tok ({report.level:.0%} interval)",
        _kinds.JOINT_PREDICTION: f"joint refit prediction at {target} tok ({report.level:.0%} int)",
        _kinds.OBSERVED_FALLBACK: "observed at the budget (no usable fit, or rank = loss)",
        _kinds.OBSERVED_FINAL: f"observed final ({target} tok)",
    }
    return [
        Line2D(
            [],
            [],
            ls="",
            marker=_MARKERS[k],
            color="k",
            mfc="none" if k == _kinds.OBSERVED_FALLBACK else "k",
            label=text[k],
        )
        for k in _MARKERS
        if k in kinds
    ]


def estimates(report: StudyReport, plt: Any) -> Any:
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    paths = views.trajectories(report)
    drawn: set[str] = set()
    for i, t in enumerate(paths):
        color = f"C{i % 10}"
        (line,) = ax.plot(
            t.made_at, t.value, "-", lw=1, color=color, label=f"#{t.rank} trial {t.number}"
        )
        line.set_gid(f"trajectory:{t.number}")
        for x, v, lo, hi, rung, k in zip(
            t.made_at, t.value, t.lo, t.hi, t.rungs, t.kinds, strict=True
        ):
            drawn.add(k.kind)
            if k.predicted:
                err = [
                    [max(v - lo, 0.0) if math.isfinite(lo) else 0.0],
                    [max(hi - v, 0.0) if math.isfinite(hi) else 0.0],
                ]
                bars = ax.errorbar(
                    [x], [v], yerr=err, fmt=_MARKERS[k.kind], ms=4, color=color, capsize=2, lw=1
                )
                bars.lines[0].set_gid(f"predicted-value:{t.number}:{rung}")
            else:
                filled = k.kind == _kinds.OBSERVED_FINAL
                (dot,) = ax.plot(
                    [x],
                    [v],
                    _MARKERS[k.kind],
                    ms=7 if filled else 5,
                    color=color,
                    mfc=color if filled else "none",
                    mew=1.3,
                )
                dot.set_gid(f"observed-value:{t.number}:{rung}")
    width = 0.12 * report.tokens(report.full_steps)
    for cut in report.cuts:
        if cut.get("line") is None:
            continue
        x = report.tokens(cut["budget"])
        (line,) = ax.plot(
            [x - width, x + width], [cut["line"]] * 2, "-", color="k", lw=2.2, alpha=0.7
        )
        line.set_gid(f"cut-line:{cut['rung']}:{cut['keep']}")
        ax.annotate(
            f"cut line (keep {cut['keep']})",
            (x + width, cut["line"]),
            fontsize=7,
            va="center",
            xytext=(2, 0),
            textcoords="offset points",
        )
    hidden = sum(1 for lin in report.lineages if lin.decisions) - len(paths)
    if hidden:
        _note(ax, [f"{hidden} lower-ranked lineages not drawn"], "missing:more")
    if not paths:
        _note(ax, ["no rung has finished: no estimate yet"], "missing:estimates", y=0.5)
    ax.set_ylabel(views.value_axis_title(report), fontsize=8)
    _tokens_axis(ax)
    ax.set_xlabel("training tokens when the candidate was ranked")
    ax.set_title(
        "what each candidate was ranked by as its budget grew: a prediction of the full-budget "
        f"loss ({report.level:.0%} interval)\nor, without a usable extrapolation or with "
        "rank = loss, the loss observed at the budget\n(cut lines: the optimistic bound a "
        "candidate had to beat)",
        fontsize=8,
    )
    handles, _ = ax.get_legend_handles_labels()
    kinds = _kind_legend(ax, drawn, report)
    if handles or kinds:
        legend = ax.legend(handles=handles + kinds, fontsize=6, ncol=2, loc="upper right")
        legend.set_gid("legend:kinds")
    return fig


def cuts(report: StudyReport, plt: Any) -> Any:
    shown = list(report.cuts)
    fig, axes = plt.subplots(
        max(1, len(shown)),
        1,
        figsize=(7.5, sum(0.28 * len(c["candidates"]) + 1.0 for c in shown) or 2.5),
        squeeze=False,
    )
    drawn: set[str] = set()
    for ax, cut in zip(axes[:, 0], shown, strict=False):
        cands = cut["candidates"]
        kinds = views.candidate_kinds(report, cut)
        ys = np.arange(len(cands))
        for y, c, k in zip(ys, cands, kinds, strict=True):
            drawn.add(k.kind)
            color = views.KEPT if c["kept"] else views.CUT
            value = c["value"] if c["value"] is not None else math.nan
            if k.predicted and c["lo"] is not None and c["hi"] is not None:
                (bar,) = ax.plot([c["lo"], c["hi"]], [y, y], "-", color=color, lw=3, alpha=0.6)
                bar.set_gid(f"interval:{cut['rung']}:{c['trial']}")
            (dot,) = ax.plot(
                [value],
                [y],
                _MARKERS[k.kind],
                color=color,
                ms=4 if k.predicted else 5,
                mfc=color if k.predicted else "none",
            )
            dot.set_gid(f"candidate:{cut['rung']}:{c['trial']}:{k.kind}")
            if c["score"] is not None:
                ax.plot([c["score"]], [y], "|", color="k", ms=9, mew=1.5)
        if cut.get("line") is not None:
            line = ax.axvline(cut["line"], color="#b03030", lw=1.2, ls="--")
            line.set_gid(f"cut-line:{cut['rung']}:{cut['keep']}")
        ax.set_yticks(
            ys,
            [f"cand. {c['root']}, trial {c['trial']} ({_SHORT[c['ranked_by']]})" for c in cands],
            fontsize=7,
        )
        ax.invert_yaxis()
        by = {k.label for k in kinds}
        ax.set_title(
            views.cut_label(report, cut) + (f"; every value {by.pop()}" if len(by) == 1 else ""),
            fontsize=8.5,
        )
        ax.tick_params(axis="x", labelsize=7)
    if not shown:
        _note(axes[0, 0], ["no cut has been made yet"], "missing:cuts", y=0.5)
    axes[-1, 0].set_xlabel(
        views.value_axis_title(report)
        + f"\nbar: {report.level:.0%} interval (predictions only); tick: the end ranked by; "
        "dashed: cut line. " + ", ".join(f"{v} {k}" for k, v in _SHORT.items()),
        fontsize=7,
    )
    if drawn:
        axes[0, 0].legend(
            handles=_kind_legend(axes[0, 0], drawn, report), fontsize=6, loc="best"
        ).set_gid("legend:kinds")
    fig.tight_layout()
    return fig


def leaders(report: StudyReport, plt: Any) -> Any:
    from lawsearch.schedules import Schedule

    top = views.leaders(report)
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(11, 0.42 * max(len(top), 3) + 1.6), gridspec_kw={"width_ratios": [1.2, 1]}
    )
    labels = [f"#{lin.rank} trial {lin.number}" for lin in top]
    domains = sorted({d for lin in top for d in lin.mixture})
    if domains:
        start = np.zeros(len(top))
        for j, d in enumerate(domains):
            w = np.array([lin.mixture.get(d, 0.0) for lin in top])
            bars = left.barh(labels, w, left=start, color=plt.get_cmap("tab10")(j % 10), label=d)
            for patch in bars.patches:
                patch.set_gid(f"mixture:{d}")
            start += w
        left.invert_yaxis()
        left.set_xlim(0, 1)
        left.legend(
            fontsize=7,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.12),
            ncol=min(len(domains), 5),
            title="domain",
            title_fontsize=7,
        )
    else:
        _note(left, ["no mixture was searched (one domain)"], "missing:mixture", y=0.5)
    left.set_xlabel("mixture weight")
    left.set_title("mixtures of the leading candidates (best first)", fontsize=9)
    missing = []
    for i, lin in enumerate(top[:6]):
        if lin.lr_schedule is None:
            missing.append(f"trial {lin.number}: no schedule stored")
            continue
        try:
            sched = Schedule.from_dict(lin.lr_schedule)
        except (ValueError, TypeError, KeyError) as exc:
            missing.append(f"trial {lin.number}: unreadable schedule ({exc})")
            continue
        steps = np.arange(int(lin.lr_schedule.get("total_steps", report.full_steps)))
        (line,) = right.plot(
            [report.tokens(float(s)) for s in steps],
            sched.lr(steps),
            lw=1.8 if i == 0 else 1.0,
            color=f"C{i}",
            label=f"#{lin.rank}: {lin.schedule}",
        )
        line.set_gid(f"schedule:{lin.number}")
    for budget in report.budgets:
        right.axvline(report.tokens(budget), color="0.8", lw=0.7, ls=":")
    _note(right, missing, "missing:schedules")
    right.set_ylabel("learning rate")
    _tokens_axis(right)
    right.set_title("their LR schedules (dotted: the budgets)", fontsize=9)
    if right.lines:
        right.legend(fontsize=7)
    fig.tight_layout()
    return fig


#: file name -> drawing function
FIGURES = {
    "curves.png": curves,
    "predicted_vs_observed.png": predicted_vs_observed,
    "estimates.png": estimates,
    "cuts.png": cuts,
    "leaders.png": leaders,
}


def draw(report: StudyReport, name: str) -> Any:
    """The matplotlib figure ``name`` (a key of ``FIGURES``), not yet saved or closed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return FIGURES[name](report, plt)


def write_figures(report: StudyReport, out: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    paths = []
    for name in FIGURES:
        fig = draw(report, name)
        fig.savefig(out / name, dpi=110, bbox_inches="tight")
        plt.close(fig)
        paths.append(out / name)
    return paths
