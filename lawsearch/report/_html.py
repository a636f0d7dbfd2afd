"""``report.html``: the report as one self-contained page (plotly, offline, no CDN).

The same views as the PNG figures (``lawsearch.report._views``) drawn with
plotly, the ranking table and its notes, and plotly.js embedded once, so the
file opens anywhere without a server or a network.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

from lawsearch.optuna._kinds import OBSERVED_FALLBACK
from lawsearch.optuna._study_figure import SYMBOLS, cut_lines
from lawsearch.report import _views as views
from lawsearch.report._collect import StudyReport
from lawsearch.report._tables import _columns, _rows, human

__all__ = ["figures", "write_html"]


def _opt(v: Any) -> float | None:
    return None if v is None or not math.isfinite(float(v)) else float(v)


def _curves(report: StudyReport, go: Any, make_subplots: Any) -> Any:
    panels = views.curve_panels(report)
    ncols = min(3, max(1, len(panels)))
    nrows = max(1, math.ceil(len(panels) / ncols))
    fig = make_subplots(
        rows=nrows, cols=ncols, subplot_titles=[p.title for p in panels] or ["no curve yet"]
    )
    target = report.tokens(report.full_steps)
    notes: list[str] = []
    shown: set[str] = set()
    for i, p in enumerate(panels):
        row, col = i // ncols + 1, i % ncols + 1
        first = i == 0
        fig.add_trace(
            go.Scatter(
                x=p.x,
                y=p.y,
                mode="markers",
                marker={"size": 4, "color": "#1f77b4"},
                name="observed",
                legendgroup="observed",
                showlegend=first,
            ),
            row=row,
            col=col,
        )
        for b in p.bands:
            color = views.RUNG_COLORS[b.rung % len(views.RUNG_COLORS)]
            group = f"{b.ranked_by} at {human(b.made_at)} tok"
            fig.add_trace(
                go.Scatter(
                    x=list(b.x) + list(b.x)[::-1],
                    y=list(b.hi) + list(b.lo)[::-1],
                    fill="toself",
                    fillcolor=color,
                    opacity=0.18,
                    line={"width": 0},
                    name=f"{report.level:.0%} interval",
                    legendgroup=group,
                    showlegend=False,
                    hoverinfo="skip",
                ),
                row=row,
                col=col,
            )
            fig.add_trace(
                go.Scatter(
                    x=b.x,
                    y=b.mean,
                    mode="lines",
                    line={"dash": "dash" if b.ranked_by == "law" else "dashdot", "color": color},
                    name=group,
                    legendgroup=group,
                    showlegend=group not in shown,
                ),
                row=row,
                col=col,
            )
            fig.add_trace(
                go.Scatter(
                    x=[target],
                    y=[b.value],
                    mode="markers",
                    marker={"symbol": "square", "color": color, "size": 7},
                    error_y={
                        "type": "data",
                        "symmetric": False,
                        "array": [max((_opt(b.value_hi) or b.value) - b.value, 0.0)],
                        "arrayminus": [max(b.value - (_opt(b.value_lo) or b.value), 0.0)],
                    },
                    name=f"estimate (rung {b.rung})",
                    showlegend=False,
                    hovertext=f"rung {b.rung}: {b.value:.4f} [{b.value_lo:.4f}, {b.value_hi:.4f}]",
                ),
                row=row,
                col=col,
            )
            shown.add(group)
        for rung, x, v in p.fallbacks:
            fig.add_trace(
                go.Scatter(
                    x=[x],
                    y=[v],
                    mode="markers",
                    marker={
                        "symbol": SYMBOLS[OBSERVED_FALLBACK],
                        "color": views.RUNG_COLORS[rung % len(views.RUNG_COLORS)],
                        "size": 9,
                    },
                    name="ranked by the loss observed there",
                    legendgroup="fallback",
                    showlegend="fallback" not in shown,
                    hovertext=f"rung {rung}: observed {v:.4f} (no usable fit, or rank = loss)",
                ),
                row=row,
                col=col,
            )
            shown.add("fallback")
        if math.isfinite(p.observed_final):
            fig.add_trace(
                go.Scatter(
                    x=[target],
                    y=[p.observed_final],
                    mode="markers",
                    marker={"symbol": "star", "color": "black", "size": 10},
                    name="observed final",
                    legendgroup="final",
                    showlegend=False,
                ),
                row=row,
                col=col,
            )
        limits = p.y_range()
        if limits is not None:
            fig.update_yaxes(range=list(limits), row=row, col=col)
        notes += [f"trial {p.lineage.number}: {m}" for m in p.missing]
    fig.update_xaxes(title_text="training tokens")
    fig.update_yaxes(title_text="held-out loss")
    fig.update_layout(
        height=320 * nrows + 80,
        title_text=(
            f"curves, the {report.law} fit over each and its extrapolation to {human(target)} "
            f"tokens (band = {report.level:.0%} interval)"
        ),
    )
    return fig, notes


def _estimates(report: StudyReport, go: Any) -> Any:
    fig = go.Figure()
    for t in views.trajectories(report):
        pred = [k.predicted for k in t.kinds]
        fig.add_trace(
            go.Scatter(
                x=t.made_at,
                y=t.value,
                mode="lines+markers",
                name=f"#{t.rank} trial {t.number}",
                marker={"symbol": [SYMBOLS[k.kind] for k in t.kinds], "size": 9},
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": [
                        max((_opt(h) or v) - v, 0.0) if p else 0.0
                        for v, h, p in zip(t.value, t.hi, pred, strict=True)
                    ],
                    "arrayminus": [
                        max(v - (_opt(lo) or v), 0.0) if p else 0.0
                        for v, lo, p in zip(t.value, t.lo, pred, strict=True)
                    ],
                },
                hovertext=[f"{by}: {k.label}" for by, k in zip(t.ranked_by, t.kinds, strict=True)],
            )
        )
    width = 0.12 * report.tokens(report.full_steps)
    for trace in cut_lines(report.cuts, report.tokens_per_step, width):
        fig.add_trace(trace)
    fig.update_layout(
        title_text=(
            "what each candidate was ranked by as its budget grew: filled = a prediction of the "
            f"full-budget loss ({report.level:.0%} interval), open diamond = the loss observed at "
            "the budget (no usable extrapolation, or rank = loss), star = observed final"
        ),
        xaxis_title="training tokens when the candidate was ranked",
        yaxis_title=views.value_axis_title(report),
        height=460,
    )
    return fig


def _cuts(report: StudyReport, go: Any, make_subplots: Any) -> Any:
    shown = list(report.cuts)
    sizes = [len(c["candidates"]) + 3 for c in shown] or [1]
    fig = make_subplots(
        rows=max(1, len(shown)),
        cols=1,
        row_heights=[s / sum(sizes) for s in sizes],
        vertical_spacing=0.3 / max(1, len(shown)),
        subplot_titles=[views.cut_label(report, c) for c in shown] or ["no cut yet"],
    )
    for i, cut in enumerate(shown):
        kinds = views.candidate_kinds(report, cut)
        labels = [f"trial {c['trial']} ({c['ranked_by']})" for c in cut["candidates"]]
        cands = cut["candidates"]
        pred = [k.predicted for k in kinds]
        fig.add_trace(
            go.Scatter(
                x=[c["value"] for c in cands],
                y=labels,
                mode="markers",
                marker={
                    "color": [views.KEPT if c["kept"] else views.CUT for c in cands],
                    "symbol": [SYMBOLS[k.kind] for k in kinds],
                    "size": 8,
                },
                error_x={
                    "type": "data",
                    "symmetric": False,
                    "array": [
                        max((c["hi"] or c["value"]) - c["value"], 0.0) if p else 0.0
                        for c, p in zip(cands, pred, strict=True)
                    ],
                    "arrayminus": [
                        max(c["value"] - (c["lo"] or c["value"]), 0.0) if p else 0.0
                        for c, p in zip(cands, pred, strict=True)
                    ],
                },
                name=f"rung {cut['rung']} candidates",
                showlegend=False,
                hovertext=[
                    f"{k.label}" + (f": {c['why']}" if c["why"] else "")
                    for c, k in zip(cands, kinds, strict=True)
                ],
            ),
            row=i + 1,
            col=1,
        )
        if cut.get("line") is not None:
            fig.add_vline(x=cut["line"], line_dash="dash", line_color="#b03030", row=i + 1, col=1)
        fig.update_yaxes(autorange="reversed", tickmode="array", tickvals=labels, row=i + 1, col=1)
    fig.update_xaxes(
        title_text=(
            views.value_axis_title(report)
            + f"; {report.level:.0%} interval for predictions; dashed: the cut line; green: kept"
        ),
        row=max(1, len(shown)),
        col=1,
    )
    fig.update_layout(height=sum(26 * len(c["candidates"]) + 110 for c in shown) or 300)
    return fig


def _checks(report: StudyReport, go: Any) -> Any:
    got = views.checks(report)
    fig = go.Figure()
    for rung, ranked in sorted({(c.rung, c.ranked) for c in got}):
        sel = [c for c in got if c.rung == rung and c.ranked == ranked]
        fig.add_trace(
            go.Scatter(
                x=[c.predicted for c in sel],
                y=[c.observed for c in sel],
                mode="markers",
                marker={"symbol": "circle" if ranked else "circle-open"},
                name=f"predicted at rung {rung}" + ("" if ranked else " (own fit, not ranked by)"),
                error_x={
                    "type": "data",
                    "symmetric": False,
                    "array": [max(c.hi - c.predicted, 0.0) for c in sel],
                    "arrayminus": [max(c.predicted - c.lo, 0.0) for c in sel],
                },
                text=[f"#{c.rank} trial {c.number} at {human(c.at)} tok" for c in sel],
            )
        )
    if got:
        lo = min(min(c.predicted, c.observed) for c in got)
        hi = max(max(c.predicted, c.observed) for c in got)
        fig.add_trace(
            go.Scatter(
                x=[lo, hi],
                y=[lo, hi],
                mode="lines",
                name="y = x",
                line={"dash": "dot", "color": "black"},
            )
        )
        title = (
            f"predictions checked by later budgets: {sum(c.covered for c in got)} of {len(got)} "
            f"inside the {report.level:.0%} interval"
        )
    else:
        title = "predictions checked by later budgets: none yet (no lineage trained past one)"
    fig.update_layout(
        title_text=title,
        xaxis_title="loss predicted for that budget",
        yaxis_title="loss observed there",
        height=460,
    )
    return fig


def _leaders(report: StudyReport, go: Any, make_subplots: Any) -> Any:
    from lawsearch.schedules import Schedule

    top = views.leaders(report)
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=["mixtures of the leaders (best first)", "their LR schedules"],
    )
    labels = [f"#{lin.rank} trial {lin.number}" for lin in top]
    for d in sorted({d for lin in top for d in lin.mixture}):
        fig.add_trace(
            go.Bar(y=labels, x=[lin.mixture.get(d, 0.0) for lin in top], name=d, orientation="h"),
            row=1,
            col=1,
        )
    for lin in top[:6]:
        if lin.lr_schedule is None:
            continue
        steps = list(range(int(lin.lr_schedule.get("total_steps", report.full_steps))))
        lrs = Schedule.from_dict(lin.lr_schedule).lr(steps)
        fig.add_trace(
            go.Scatter(
                x=[report.tokens(s) for s in steps],
                y=list(lrs),
                mode="lines",
                name=f"#{lin.rank}: {lin.schedule}",
            ),
            row=1,
            col=2,
        )
    fig.update_layout(barmode="stack", height=420)
    fig.update_yaxes(autorange="reversed", row=1, col=1)
    fig.update_xaxes(title_text="mixture weight", range=[0, 1], row=1, col=1)
    fig.update_xaxes(title_text="training tokens", row=1, col=2)
    fig.update_yaxes(title_text="learning rate", row=1, col=2)
    return fig


def figures(report: StudyReport) -> dict[str, tuple[Any, list[str]]]:
    """The page's plotly figures by section title, each with what it could not draw."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    curves, missing = _curves(report, go, make_subplots)
    return {
        "Curves and the law's extrapolations": (curves, missing),
        "Estimates as the budget grew, and the cut lines": (_estimates(report, go), []),
        "Each cut: the ranked candidates and who was kept": (
            _cuts(report, go, make_subplots),
            [] if report.cuts else ["no cut has been made yet"],
        ),
        "How good the predictions were": (_checks(report, go), []),
        "Mixture and schedule of the leaders": (_leaders(report, go, make_subplots), []),
    }


def write_html(report: StudyReport, path: Path) -> Path:
    """Write ``report.html``: the table and every figure, plotly.js embedded (offline)."""
    import plotly.io as pio

    rows, notes = _rows(report)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in _columns(report))
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows
    )
    pick = report.pick
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>lawsearch report: {html.escape(report.study_name)}</title>",
        "<style>body{font-family:sans-serif;margin:1.5em;max-width:1400px}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;"
        "padding:3px 6px;text-align:left}th{background:#f0f0f0}.miss{color:#8a1c1c}</style>",
        "</head><body>",
        f"<h1>lawsearch report: {html.escape(report.study_name)}</h1>",
        "<p id='summary'>"
        + (
            f"Pick: trial {pick.number} ({html.escape(pick.schedule)}). "
            if pick
            else "No pick yet. "
        )
        + f"Compute {100 * report.compute_fraction:.1f}% of training all {report.n_candidates} "
        f"candidates to the full budget ({human(report.tokens(report.full_steps))} tokens). "
        f"Law: {html.escape(report.law)}. Every interval is {report.level:.0%}, the level the "
        "search ranks with.</p>",
        f"<h2>Ranking</h2><table id='ranking'><tr>{head}</tr>{body}</table>",
        "".join(f"<p class='note'>{html.escape(n)}</p>" for n in notes),
    ]
    first = True
    for title, (fig, missing) in figures(report).items():
        parts.append(f"<h2>{html.escape(title)}</h2>")
        parts += [f"<p class='miss'>{html.escape(m)}</p>" for m in missing]
        parts.append(pio.to_html(fig, include_plotlyjs=first, full_html=False))
        first = False
    parts.append("</body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
