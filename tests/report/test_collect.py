"""The report reads the search's decision records: ranking, table, CSV and summary agree."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import optuna
import pytest

from lawsearch.optuna import _records as records
from lawsearch.optuna import attrs
from lawsearch.report import collect, dashboard_command, format_table, summary, write_report
from lawsearch.report._tables import estimate_text
from tests.report._study import distrusted_study, searched_study


def _decided(study: optuna.Study) -> dict[int, dict[str, Any]]:
    """Trial number -> what ranked it (its record, overridden by its cut), from storage."""
    cuts = records.read_cuts(study)
    out = {}
    for t in study.get_trials(deepcopy=False):
        d = records.decision(t, cuts)
        if d is not None:
            out[t.number] = d
    return out


def test_lineages_are_ranked_as_the_search_decided(searched: tuple[Any, Any, str]) -> None:
    study, cfg, _ = searched
    rep = collect(study, cfg)
    assert len(rep.lineages) == cfg.search.candidates == 6
    assert rep.level == pytest.approx(0.8) and rep.budgets == (40, 80, 200)
    pick = rep.pick
    assert pick is not None and pick.reached_step == cfg.full_steps
    assert pick.ranked_by == "observed" and pick.observed == pick.values[-1]
    # the same pick as the search's own rerank (SearchResult)
    best = max(
        (t for t in study.trials if t.state.name == "COMPLETE"),
        key=lambda t: (t.user_attrs[attrs.RUNG], -records.observed_value(t)),
    )
    assert pick.trials[-1] == best.number
    # then the lineage cut at the second rung, then the first rung's, in the cut's order
    assert [lin.decision.rung for lin in rep.lineages] == [2, 1, 0, 0, 0, 0]
    cut0 = [lin.decisions[0].position for lin in rep.lineages]
    assert sorted(cut0) == list(range(1, 7)) and cut0[2:] == [3, 4, 5, 6]
    losers = [lin for lin in rep.lineages[2:]]
    assert all(not lin.decision.kept and lin.decision.score > lin.decision.line for lin in losers)
    assert all(lin.decisions[0].kept for lin in rep.lineages[:2])
    # compute: 6 x 40 steps + 2 x 40 + 1 x 120, 64 tokens a step
    assert rep.compute_tokens == (6 * 40 + 2 * 40 + 120) * 64
    assert rep.compute_fraction == pytest.approx(440 / 1200)


def test_table_summary_and_records_agree(searched: tuple[Any, Any, str], tmp_path: Path) -> None:
    study, cfg, printed = searched
    rep = collect(study, cfg)
    files = write_report(rep, tmp_path / "report")
    assert {p.name for p in files} == {
        "table.md",
        "table.csv",
        "summary.json",
        "curves.png",
        "predicted_vs_observed.png",
        "estimates.png",
        "cuts.png",
        "leaders.png",
        "report.html",
    }
    decided = _decided(study)
    table = format_table(rep)
    assert table.splitlines()[0] in printed  # what `lawsearch run` printed
    rows = [r.split("|")[1:-1] for r in table.splitlines()[2 : 2 + len(rep.lineages)]]
    saved = json.loads((tmp_path / "report" / "summary.json").read_text())
    with (tmp_path / "report" / "table.csv").open() as fh:
        table_csv = list(csv.DictReader(fh))
    assert saved["interval_level"] == 0.8
    assert "80% interval (predictions only)" in table.splitlines()[0]
    for lin, row, entry, line in zip(rep.lineages, rows, saved["lineages"], table_csv, strict=True):
        d = decided[lin.trials[-1]] if lin.trials[-1] in decided else decided[lin.trials[-2]]
        # the table's number, the summary's and the CSV's are the stored record's
        assert row[4].strip() == estimate_text(d["value"], math.nan, math.nan)
        assert (entry["value"], entry["ranked_by"]) == (d["value"], d["ranked_by"])
        assert float(line["value"]) == d["value"] and line["ranked_by"] == d["ranked_by"]
        assert int(row[1]) == entry["number"] == int(line["trial"])
        assert entry["decisions"][-1]["position"] == d["position"]
        assert (
            row[3]
            .strip()
            .startswith(
                {"observed": "observed", "joint refit": "joint", "law": "power"}[d["ranked_by"]]
            )
        )
    assert saved["cuts"] == records.read_cuts(study)
    assert saved["pick"] == rep.pick.number


def test_a_trial_ranked_by_its_last_value_says_why(searched: tuple[Any, Any, str]) -> None:
    _, cfg, _ = searched
    study = distrusted_study(cfg)
    rep = collect(study, cfg, n_candidates=4)
    screened = [lin for lin in rep.lineages if lin.decision.rung == 0]
    assert screened and all(lin.ranked_by == "last value" for lin in screened)
    assert all("max_trend_ratio" in lin.why for lin in screened)
    for t in study.trials:  # the objective value is then the last value, and says so
        rec = records.read_trial_record(t)
        if rec is not None and rec["ranked_by"] == "last value":
            assert t.value == rec["observed"] and rec["lo"] is None
    table = format_table(rep)
    assert "last value [1]" in table and "[1] trial" in table and "max_trend_ratio" in table
    lin = screened[-1]
    assert summary(rep)["lineages"][-1]["why"] == lin.why


def test_a_search_that_ranks_by_the_loss_says_so(searched: tuple[Any, Any, str]) -> None:
    _, cfg, _ = searched
    study = searched_study(cfg, "by-loss", rank="loss")
    rep = collect(study, cfg, n_candidates=4)
    cut = [lin for lin in rep.lineages if lin.decision.position and not lin.decision.kept]
    assert cut and all(lin.ranked_by == "last value" for lin in cut)
    assert all("rank = 'loss'" in lin.why for lin in cut)
    # each trial's own record still holds its law prediction (the sampler learns from it)
    screened = [records.read_trial_record(t) for t in study.trials]
    assert any(r is not None and r["ranked_by"] == "law" for r in screened)
    assert "rank = 'loss'" in format_table(rep)


def test_empty_study_writes_tables_without_plots(
    searched: tuple[Any, Any, str], tmp_path: Path
) -> None:
    _, cfg, _ = searched
    rep = collect(optuna.create_study(study_name="empty"), cfg)
    files = write_report(rep, tmp_path / "r", html=False)
    assert {p.name for p in files} == {"table.md", "table.csv", "summary.json"}
    assert rep.compute_fraction == 0.0 and rep.pick is None


def test_dashboard_command_works_from_any_shell(tmp_path: Path) -> None:
    journal = tmp_path / "my runs" / "journal.log"
    cmd = dashboard_command(str(journal))
    assert cmd.endswith(f"optuna-dashboard '{journal}'")
    exe = cmd.split(" ")[0]
    assert exe == "optuna-dashboard" or (Path(exe).is_absolute() and Path(exe).is_file())
    assert dashboard_command("postgresql://u@h/db").endswith(" postgresql://u@h/db")
    art = tmp_path / "art"
    art.mkdir()
    assert dashboard_command("j.log", art).endswith(
        f"{Path('j.log').absolute()} --artifact-dir {art}"
    )


def test_dashboard_command_leaves_the_password_out() -> None:
    """The line goes to shared logs: no password, and a note on where libpq finds it."""
    cmd = dashboard_command("postgresql://user:s3cret@db.example:5432/study?sslmode=require")
    assert "s3cret" not in cmd and "***" not in cmd
    assert " 'postgresql://user@db.example:5432/study?sslmode=require'  # " in cmd
    assert cmd.endswith("# password left out: set PGPASSWORD or use ~/.pgpass")
