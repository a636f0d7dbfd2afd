"""Every view says what kind of number a ranked value is: a prediction or an observed loss.

A study whose fits are all refused ranks each screened candidate by the loss
observed at its short budget; the pick reaches the full budget (observed final).
The table, CSV, ``summary.json``, the figures and the dashboard note must say
so, and never call an observed loss an estimate.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from lawsearch.optuna import _kinds
from lawsearch.optuna import _records as records
from lawsearch.optuna._dashboard import trial_note
from lawsearch.report import collect, format_table, write_report
from lawsearch.report._figures import draw
from tests.report._study import distrusted_study


def _gids(fig: Any) -> set[str]:
    return {a.get_gid() for ax in fig.axes for a in ax.get_children() if a.get_gid()}


def test_observed_fallbacks_are_labelled_observed_everywhere(
    searched: tuple[Any, Any, str], tmp_path: Path
) -> None:
    _, cfg, _ = searched
    study = distrusted_study(cfg)
    rep = collect(study, cfg, n_candidates=4)
    write_report(rep, tmp_path, html=False)
    cuts = records.read_cuts(study)
    by_trial = {t.number: t for t in study.trials}
    table = format_table(rep)
    header, rows = table.splitlines()[0], table.splitlines()[2 : 2 + len(rep.lineages)]
    assert "full-budget estimate" not in header and "value is" in header
    saved = json.loads((tmp_path / "summary.json").read_text())
    with (tmp_path / "table.csv").open() as fh:
        lines = list(csv.DictReader(fh))
    kinds_seen = set()
    for lin, row, entry, line in zip(rep.lineages, rows, saved["lineages"], lines, strict=True):
        d = records.decision(by_trial[lin.decision.trial], cuts)
        kind = _kinds.value_kind(d, cfg.train.tokens_per_step)
        kinds_seen.add(kind.kind)
        assert not kind.predicted  # every fit was refused
        cells = [c.strip() for c in row.split("|")[1:-1]]
        assert cells[5] == kind.label and cells[5].startswith("observed")
        assert cells[6] == "-"  # no interval for an observed loss
        assert entry["value_kind"] == kind.kind == line["value_kind"]
        assert entry["value_label"] == kind.label == line["value_label"]
        assert entry["value_at_step"] == kind.at_step == int(line["value_at_step"])
        assert entry["interval_lo"] is None and line["interval_lo"] == ""
        assert "predicted" not in entry
        assert study.trials[lin.decision.trial].user_attrs["lawsearch:value_kind"] == (
            _kinds.value_kind(d["own"], cfg.train.tokens_per_step).label
        )
        note = trial_note(study, by_trial[lin.decision.trial], cuts)
        assert note.startswith("**Ranked value: ") and "not an" in note.split("\n\n")[0]
        assert kind.label in note and "Full-budget estimate" not in note
    assert {_kinds.OBSERVED_FALLBACK, _kinds.OBSERVED_FINAL} <= kinds_seen
    fallback = next(lin for lin in rep.lineages if lin.kind.kind == _kinds.OBSERVED_FALLBACK)
    assert f"observed at step {fallback.kind.at_step} (" in fallback.kind.label
    fig = draw(rep, "estimates.png")
    gids = _gids(fig)
    n, rung = fallback.number, fallback.decision.rung
    assert f"observed-value:{n}:{rung}" in gids and f"predicted-value:{n}:{rung}" not in gids
    assert "estimated" not in fig.axes[0].get_ylabel()
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any("observed at the budget" in t for t in labels)
    assert not any("prediction" in t for t in labels)


def test_a_prediction_keeps_its_interval(searched: tuple[Any, Any, str]) -> None:
    study, cfg, _ = searched
    rep = collect(study, cfg)
    predicted = [lin for lin in rep.lineages if lin.kind is not None and lin.kind.predicted]
    assert predicted
    table = format_table(rep)
    rows = {int(r.split("|")[2]): r for r in table.splitlines()[2 : 2 + len(rep.lineages)]}
    for lin in predicted:
        cells = [c.strip() for c in rows[lin.number].split("|")[1:-1]]
        assert cells[5].startswith(("predicted at", "joint refit, predicted at"))
        assert cells[6] == f"[{lin.predicted_lo:.4f}, {lin.predicted_hi:.4f}]"
    fig = draw(rep, "estimates.png")
    assert any(g.startswith("predicted-value:") for g in _gids(fig))


def test_best_value_says_pred_only_for_a_prediction(searched: tuple[Any, Any, str]) -> None:
    _, cfg, _ = searched
    study = distrusted_study(cfg)
    trials = [t for t in study.trials if t.user_attrs.get("lawsearch:rung") == 0]
    got = _kinds.best_value(trials, [], cfg.full_steps)
    assert got is not None and got[1].short == f"observed@{cfg.budget_steps[0]}"
