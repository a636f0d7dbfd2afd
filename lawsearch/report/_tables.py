"""The report as text: the ranking table, its CSV, ``summary.json`` and the dashboard command.

Every number comes from the lineages' decisions (``lawsearch.report._collect``),
which read the decision records the search stored, so the table, the CSV and
the summary say the same thing.
"""

from __future__ import annotations

import csv
import json
import math
import shlex
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import sqlalchemy

from lawsearch.optuna._kinds import ValueKind, human_tokens, value_kind
from lawsearch.report._collect import Decision, Lineage, StudyReport

__all__ = [
    "dashboard_command",
    "estimate_text",
    "format_table",
    "human",
    "summary",
    "verdict",
    "write_csv",
]


#: ``245760`` -> ``246k``
human = human_tokens


def estimate_text(value: float, lo: float, hi: float) -> str:
    """``5.1234 [5.0012, 5.2345]``, or ``5.1234`` without an interval, or ``-``."""
    if not math.isfinite(value):
        return "-"
    text = f"{value:.4f}"
    if math.isfinite(lo) and math.isfinite(hi) and lo < hi:  # observed: no interval
        text += f" [{lo:.4f}, {hi:.4f}]"
    return text


def interval_text(lin: Lineage) -> str:
    """``[5.0012, 5.2345]`` for a prediction; ``-`` for an observed value (it has none)."""
    if lin.kind is None or not lin.kind.predicted:
        return "-"
    lo, hi = lin.predicted_lo, lin.predicted_hi
    return f"[{lo:.4f}, {hi:.4f}]" if math.isfinite(lo) and math.isfinite(hi) else "-"


def ranked_by_text(report: StudyReport, lin: Lineage) -> str:
    """What ranked the lineage last: ``observed``, ``momentum law``, ``joint refit``, ..."""
    if lin.ranked_by == "law":
        return f"{report.law} law"
    if lin.ranked_by == "joint refit":
        return f"joint {report.law} refit"
    return lin.ranked_by


def verdict(report: StudyReport, lin: Lineage) -> str:
    """The search's verdict on a lineage, in words."""
    d = lin.decision
    if d is None:
        step = lin.reached_step
        if lin.state == "PRUNED":
            return f"pruned at step {step} (inside the first budget)"
        if lin.state == "COMPLETE":  # a study searched before the search stored its decisions
            return f"complete at step {step}; no decision record (searched before 2026-12-04)"
        return f"{lin.state.lower()} at step {step}, no rung finished"
    at = f"{human(report.tokens(d.budget))} tok"
    if lin.rank == 1 and d.budget >= report.full_steps:
        return "pick: best at the full budget"
    if lin.rank == 1:
        return f"pick so far: best at the deepest budget reached ({at})"
    if d.position:
        if d.kept:
            return f"kept at {at} ({d.position} of {d.of}); its continuation has not finished"
        return (
            f"cut at {at}: {_ordinal(d.position)} of {d.of}, keep {d.keep}; optimistic "
            f"{d.score:.4f} vs line {d.line:.4f}"
        )
    if d.budget >= report.full_steps:
        return "reached the full budget"
    return f"waiting for the cut at {at}"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _columns(report: StudyReport) -> tuple[str, ...]:
    return (
        "rank",
        "trial",
        "reached",
        "ranked by",
        "ranked value",
        "value is",
        f"{report.level:.0%} interval (predictions only)",
        "observed at its budget",
        "decision",
        "mixture",
        "schedule",
        "compute",
    )


def _rows(report: StudyReport, top: int | None = None) -> tuple[list[list[str]], list[str]]:
    rows: list[list[str]] = []
    notes: list[str] = []
    for lin in report.lineages[:top]:
        d = lin.decision
        mix = " ".join(f"{k}={w:.2f}" for k, w in lin.mixture.items()) or "-"
        reached = (
            f"{human(report.tokens(lin.reached_step))} tok ({lin.reached_step} st)"
            if lin.steps
            else "-"
        )
        by = ranked_by_text(report, lin)
        if lin.why:
            notes.append(f"[{len(notes) + 1}] trial {lin.number}: {lin.why}")
            by += f" [{len(notes)}]"
        obs = (
            f"{d.observed:.4f}"
            if d is not None
            else (f"{lin.values[-1]:.4f}" if lin.values else "-")
        )
        rows.append(
            [
                str(lin.rank),
                str(lin.number),
                reached,
                by,
                f"{lin.predicted:.4f}" if math.isfinite(lin.predicted) else "-",
                lin.kind.label if lin.kind is not None else "-",
                interval_text(lin),
                obs,
                verdict(report, lin),
                mix,
                lin.schedule,
                f"{human(lin.compute_tokens)} tok",
            ]
        )
    return rows, notes


def format_table(report: StudyReport, *, top: int | None = None) -> str:
    """The ranking as a Markdown table (what the CLI prints), its notes, and the compute line."""
    rows, notes = _rows(report, top)
    columns = _columns(report)
    widths = [
        max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(columns)
    ]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [line(columns), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in rows]
    out.append("")
    out.append(
        "A ranked value is either predicted (the law's estimate of the loss at the full budget, "
        f"{human(report.tokens(report.full_steps))} tokens, with a {report.level:.0%} interval, "
        "the level the search ranks with; a cut keeps the best by the optimistic end) or "
        "observed (the loss measured at the step it names: no usable extrapolation there, a "
        "search that ranks by the loss, or the full budget reached; no interval). 'value is' "
        "says which."
    )
    out += notes
    out.append(
        f"compute: {human(report.compute_tokens)} tokens = {100 * report.compute_fraction:.1f}% "
        f"of training all {report.n_candidates} "
        f"candidates to the full budget ({human(report.full_compute_tokens)} tokens)"
    )
    return "\n".join(out)


def write_csv(report: StudyReport, path: Path) -> None:
    domains = sorted({d for lin in report.lineages for d in lin.mixture})
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "rank",
                "trial",
                "state",
                *(f"w_{d}" for d in domains),
                "schedule",
                "ranked_by",
                "value",
                "value_kind",
                "value_at_step",
                "value_at_tokens",
                "value_label",
                "interval_lo",
                "interval_hi",
                "interval_level",
                "observed_at_reached",
                "observed_full",
                "reached_step",
                "reached_tokens",
                "decision",
                "compute_tokens",
            ]
        )
        for lin in report.lineages:
            d = lin.decision
            vk = lin.kind
            predicted = _predicted(vk)
            w.writerow(
                [
                    lin.rank,
                    lin.number,
                    lin.state,
                    *(f"{lin.mixture.get(k, 0.0):.6f}" for k in domains),
                    lin.schedule,
                    lin.ranked_by,
                    lin.predicted if vk is not None else "",
                    *(("",) * 4 if vk is None else (vk.kind, vk.at_step, vk.at_tokens, vk.label)),
                    lin.predicted_lo if predicted else "",
                    lin.predicted_hi if predicted else "",
                    report.level if predicted else "",
                    d.observed if d is not None else math.nan,
                    lin.observed,
                    lin.reached_step,
                    report.tokens(lin.reached_step),
                    verdict(report, lin),
                    lin.compute_tokens,
                ]
            )


def summary(report: StudyReport) -> dict[str, Any]:
    """``summary.json``: the report, the decisions and the cut records, JSON-safe."""

    def lineage(lin: Lineage) -> dict[str, Any]:
        out = asdict(lin)
        out.pop("kind")
        # the value it was ranked by, named for what it is (`predicted` only for a prediction)
        value = out.pop("predicted")
        lo, hi = out.pop("predicted_lo"), out.pop("predicted_hi")
        out["value"] = value if lin.kind is not None else None
        out.update(_kind_fields(lin.kind))
        out["interval_lo"], out["interval_hi"] = (lo, hi) if _predicted(lin.kind) else (None, None)
        screen = lin.decisions[0] if lin.decisions and lin.decisions[0].rung == 0 else None
        out["short_value_kind"] = _screen_kind(report, screen)
        out["decisions"] = [_decision(d) for d in lin.decisions]
        out["decision"] = verdict(report, lin)
        out["reached_tokens"] = report.tokens(lin.reached_step)
        return out

    return _json_safe(
        {
            "study": report.study_name,
            "storage": report.storage,
            "law": report.law,
            "interval_level": report.level,
            "direction": "maximize" if report.maximize else "minimize",
            "budgets": list(report.budgets),
            "short_steps": report.short_steps,
            "full_steps": report.full_steps,
            "tokens_per_step": report.tokens_per_step,
            "compute_tokens": report.compute_tokens,
            "full_compute_tokens": report.full_compute_tokens,
            "compute_fraction": report.compute_fraction,
            "trial_states": report.counts,
            "pick": report.pick.number if report.pick else None,
            "lineages": [lineage(lin) for lin in report.lineages],
            "cuts": list(report.cuts),
        }
    )


def _predicted(kind: ValueKind | None) -> bool:
    return kind is not None and kind.predicted


def _kind_fields(kind: ValueKind | None) -> dict[str, Any]:
    """``value_kind``, ``value_at_step``, ``value_at_tokens``, ``value_label`` (None: no value)."""
    if kind is None:
        return {
            "value_kind": None,
            "value_at_step": None,
            "value_at_tokens": None,
            "value_label": None,
        }
    return dict(kind.as_dict())


def _screen_kind(report: StudyReport, d: Decision | None) -> str | None:
    """The kind of the screen's own value (``short_predicted``): the rung-0 trial's record."""
    if d is None:
        return None
    return value_kind(d.own, report.tokens_per_step).kind


def _decision(d: Decision) -> dict[str, Any]:
    out = asdict(d)
    out.pop("own")  # the trial's record, kept once: under the cut's entries and here
    out.pop("kind")
    out.update(_kind_fields(d.kind))
    out["own_value"] = d.own.get("value")
    out["own_ranked_by"] = d.own.get("ranked_by")
    return out


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj


def write_summary(report: StudyReport, path: Path) -> None:
    path.write_text(json.dumps(summary(report), indent=1), encoding="utf-8")


def dashboard_command(storage: str, artifact_dir: str | Path | None = None) -> str:
    """The ``optuna-dashboard`` command line that opens the study, from any shell.

    It names the executable by its full path next to this Python (a virtual
    environment's ``bin/`` is not on a fresh shell's ``PATH``) and a journal
    file and the artifact folder by absolute paths. optuna-dashboard 0.21 takes
    a journal file path as is and a PostgreSQL URL as an RDB URL. A URL's password
    is left out (the line goes to logs and terminals a cluster shares); the
    command then ends with a shell comment saying where libpq reads it from.
    """
    exe = Path(sys.executable).parent / "optuna-dashboard"  # not resolved: the venv's bin/
    cmd = shlex.quote(str(exe)) if exe.is_file() else "optuna-dashboard"
    target, hidden = _without_password(str(storage))
    cmd += f" {shlex.quote(target)}"
    if artifact_dir is not None and Path(artifact_dir).is_dir():
        cmd += f" --artifact-dir {shlex.quote(str(Path(artifact_dir).absolute()))}"
    if hidden:
        cmd += "  # password left out: set PGPASSWORD or use ~/.pgpass"
    return cmd


def _without_password(storage: str) -> tuple[str, bool]:
    """A journal path made absolute, or an RDB URL without its password (and whether it had one)."""
    if "://" not in storage:
        return str(Path(storage).absolute()), False
    try:
        url = sqlalchemy.engine.make_url(storage)
    except sqlalchemy.exc.ArgumentError:
        return storage, False
    if url.password is None:
        return storage, False
    # URL.set() reads None as "unchanged"; the URL is a named tuple
    return url._replace(password=None).render_as_string(hide_password=False), True
