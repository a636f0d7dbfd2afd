"""The report of a study, rebuilt from its Optuna storage alone.

``collect(study, config)`` reads the trials and the search's decision records
(``lawsearch.optuna._records``: what ranked each trial at each rung, each cut's
ranking and who it kept) into ranked lineages; ``write_report`` turns that into
a folder, every view reading the same decisions:

* ``table.md`` / ``table.csv``: rank, reached budget, what ranked it, the
  full-budget estimate with its interval, the observed loss, the decision,
  mixture, schedule, compute;
* ``summary.json``: the same, machine-readable, with the decisions and cuts;
* ``curves.png``, ``predicted_vs_observed.png``, ``estimates.png``,
  ``cuts.png``, ``leaders.png`` (``lawsearch.report._figures``);
* ``report.html``: all of it on one self-contained page (plotly, offline),
  when plotly is installed (the ``[dashboard]`` extra).

Modules: ``_collect`` (lineages and decisions), ``_tables`` (text, CSV, JSON),
``_views`` (what each figure shows), ``_figures`` (PNG), ``_html`` (the page).
matplotlib and plotly are imported only when drawing.
"""

from __future__ import annotations

from pathlib import Path

from lawsearch.report._collect import Decision, Lineage, StudyReport, collect
from lawsearch.report._tables import (
    dashboard_command,
    format_table,
    summary,
    write_csv,
    write_summary,
)

__all__ = [
    "Decision",
    "Lineage",
    "StudyReport",
    "collect",
    "dashboard_command",
    "format_table",
    "summary",
    "write_report",
]


def write_report(report: StudyReport, out_dir: str | Path, *, html: bool = True) -> list[Path]:
    """Write the tables, summary, figures and (with plotly) the HTML page; return the files.

    Args:
        report: from ``collect``.
        out_dir: the report folder (created).
        html: also write ``report.html`` when plotly is installed.
    """
    from lawsearch.report._figures import write_figures

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md = out / "table.md"
    md.write_text(f"# {report.study_name}\n\n" + format_table(report) + "\n", encoding="utf-8")
    written = [md, out / "table.csv", out / "summary.json"]
    write_csv(report, written[1])
    write_summary(report, written[2])
    if report.lineages:
        written += write_figures(report, out)
    if html:
        try:
            import plotly  # noqa: F401
        except ImportError:
            return written
        from lawsearch.report._html import write_html

        written.append(write_html(report, out / "report.html"))
    return written
