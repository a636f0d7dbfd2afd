"""The study report rebuilt from storage (``lawsearch.report``)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest

from lawsearch.config import StudyConfig, parse_study
from lawsearch.report import collect, dashboard_command, format_table, write_report

P = "lawsearch:"


def _config(tmp_path: Path) -> StudyConfig:
    for name in ("a", "b"):
        (tmp_path / f"{name}.txt").write_text("x\n")
    return parse_study(
        {
            "study": {"name": "rep"},
            "domains": {"a": {"paths": ["a.txt"]}, "b": {"paths": ["b.txt"]}},
            "budgets": {"short_tokens": 4 * 16 * 40, "full_tokens": 4 * 16 * 200},
            "search": {"candidates": 4, "survivors": 2},
            "train": {"batch_size": 4, "seq_len": 16, "eval_every": 5},
        },
        base_dir=tmp_path,
        run_root=tmp_path,
    )


def _curve(e: float, steps: np.ndarray) -> np.ndarray:
    return e + 3.0 * (steps + 5.0) ** -0.5


def _add(
    study: optuna.Study,
    e: float,
    steps: np.ndarray,
    state: optuna.trial.TrialState,
    attrs: dict[str, Any],
) -> int:
    values = _curve(e, steps)
    study.add_trial(
        optuna.trial.create_trial(
            state=state,
            value=float(values[-1]) if state == optuna.trial.TrialState.COMPLETE else None,
            params={"mix:stick0": 0.5},
            distributions={"mix:stick0": optuna.distributions.FloatDistribution(0, 1)},
            intermediate_values={int(s): float(v) for s, v in zip(steps, values, strict=True)},
            user_attrs=attrs,
        )
    )
    return study.trials[-1].number


def _study(cfg: StudyConfig) -> optuna.Study:
    """Four candidates screened for 40 steps; the two best continued to 200."""
    study = optuna.create_study(study_name="rep")
    short = np.arange(5, 41, 5, dtype=float)
    longer = np.arange(45, 201, 5, dtype=float)
    finals = {}
    for i, e in enumerate((1.0, 1.2, 1.4, 1.6)):
        pred = float(_curve(e, np.array([200.0]))[0])
        state = optuna.trial.TrialState.COMPLETE if i < 2 else optuna.trial.TrialState.PRUNED
        steps = short if i < 3 else short[:5]
        n = _add(
            study,
            e,
            steps,
            state,
            {
                f"{P}predicted_final": pred,
                f"{P}predicted_lo": pred - 0.05,
                f"{P}predicted_hi": pred + 0.05,
                f"{P}mixture:mix:a": 0.2 * (i + 1),
                f"{P}mixture:mix:b": 1 - 0.2 * (i + 1),
                f"{P}schedule": {"family": "cosine", "peak_lr": 0.003, "total_steps": 200},
            },
        )
        finals[n] = e
    for parent in (0, 1):
        _add(
            study,
            finals[parent],
            longer,
            optuna.trial.TrialState.COMPLETE,
            {f"{P}parent": parent, f"{P}resume_step": 40},
        )
    return study


def test_collect_ranks_lineages_and_counts_compute(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    rep = collect(_study(cfg), cfg)
    assert [lin.number for lin in rep.lineages] == [0, 1, 2, 3]
    pick = rep.pick
    assert pick is not None and pick.trials == (0, 4)
    assert pick.reached_step == 200 and pick.observed == pytest.approx(_curve(1.0, 200.0))
    assert pick.mixture == {"a": pytest.approx(0.2), "b": pytest.approx(0.8)}
    assert pick.schedule == "cosine lr=0.003"
    assert math.isnan(rep.lineages[2].observed)
    assert rep.lineages[3].state == "PRUNED"
    # 2 lineages x 200 steps + 40 + 25 steps, 64 tokens each; reference: 4 x 200 steps
    assert rep.compute_tokens == (2 * 200 + 40 + 25) * 64
    assert rep.full_compute_tokens == 4 * 200 * 64
    assert rep.compute_fraction == pytest.approx(465 / 800)
    assert rep.counts == {"COMPLETE": 4, "PRUNED": 2}


def test_table_and_files(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    rep = collect(_study(cfg), cfg)
    table = format_table(rep)
    lines = table.splitlines()
    assert lines[0].startswith("| rank | trial | state")
    assert "a=0.20 b=0.80" in lines[2] and "[" in lines[2]
    assert "58.1% of training all 4 candidates" in table
    files = write_report(rep, tmp_path / "report")
    names = {p.name for p in files}
    assert names == {
        "table.md",
        "table.csv",
        "summary.json",
        "curves.png",
        "predicted_vs_observed.png",
        "leader_mixtures.png",
    }
    for p in files:
        assert p.stat().st_size > 0
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["lineages"][0]["trials"] == [0, 4]
    assert summary["lineages"][2]["observed"] is None  # NaN is not JSON
    rows = (tmp_path / "report" / "table.csv").read_text().splitlines()
    assert rows[0].startswith("rank,trial,state,w_a,w_b,schedule")
    assert len(rows) == 5


def test_empty_study_writes_tables_without_plots(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    rep = collect(optuna.create_study(study_name="rep"), cfg)
    files = write_report(rep, tmp_path / "r")
    assert {p.name for p in files} == {"table.md", "table.csv", "summary.json"}
    assert rep.compute_fraction == 0.0


def test_dashboard_command(tmp_path: Path) -> None:
    journal = tmp_path / "my runs" / "journal.log"
    assert dashboard_command(str(journal)) == f"optuna-dashboard '{journal}'"
    assert dashboard_command("postgresql://u@h/db") == "optuna-dashboard postgresql://u@h/db"
    art = tmp_path / "art"
    art.mkdir()
    assert dashboard_command("j.log", art).endswith(f"--artifact-dir {art}")
