"""``law.name = "temporal"`` end to end: per-position losses reach the trial and the law ranks."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from lawsearch.config import parse_study
from lawsearch.optuna import _attrs
from lawsearch.optuna._positions import MAX_EVALS, MAX_POSITIONS, add_row, read_positions
from lawsearch.study import build_search
from lawsearch.train import TrainResult

TARGET = {"a": 0.6, "b": 0.3, "c": 0.1}
SEQ = 64


def per_position(mixture: Mapping[str, float], step: int) -> np.ndarray:
    """A temporal-law matrix row: a0/(1 + a1 i) + a2, the floor a2 set by the mixture."""
    u = step + 20.0
    floor = 2.0 + 4.0 * sum((mixture[d] - v) ** 2 for d, v in TARGET.items())
    i = np.arange(1, SEQ + 1, dtype=float)
    return 1.5 * u**-0.3 / (1.0 + 0.05 * u**0.2 * i) + floor + 3.0 * u**-0.5


class PositionTrainer:
    """Reports the mean over positions as the value and the row as ``loss_per_position``."""

    compute_unit = "steps"

    def train(
        self,
        config: Mapping[str, Any],
        *,
        budget_steps: int,
        resume_from: str | None = None,
        report: Any,
    ) -> TrainResult:
        step = int(resume_from.split(":")[1]) if resume_from else 0
        steps, values = [], []
        while step < budget_steps:
            step = min(step + 4, budget_steps)
            row = per_position(config["mixture"], step)
            steps.append(step)
            values.append(float(row.mean()))
            report(step, values[-1], {"loss_per_position": [float(v) for v in row]})
        return TrainResult(
            final_step=step,
            final_value=values[-1],
            steps=tuple(steps),
            values=tuple(values),
            checkpoint=f"positions:{step}",
        )


def test_the_temporal_law_ranks_a_search(tmp_path: Path) -> None:
    for name in "abc":
        (tmp_path / f"{name}.txt").write_text("x")
    cfg = parse_study(
        {
            "study": {"name": "temporal", "seed": 0},
            "domains": {name: {"paths": [f"{name}.txt"]} for name in "abc"},
            "budgets": {"short_tokens": 40 * 256, "full_tokens": 200 * 256},
            "law": {"name": "temporal"},
            "pruner": {"enabled": False},
            "search": {"candidates": 6, "survivors": 1, "rungs": [1.0]},
            "train": {"batch_size": 4, "seq_len": SEQ, "eval_every": 4},
        },
        base_dir=tmp_path,
        run_root=tmp_path,
    )
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "journal.log")))
    study = optuna.create_study(
        storage=storage, sampler=optuna.samplers.RandomSampler(seed=1), direction="minimize"
    )
    result = build_search(cfg, trainer=PositionTrainer()).run(study)
    trials = study.get_trials(deepcopy=False)
    screened = [t for t in trials if t.user_attrs.get(_attrs.RUNG) == 0]
    assert len(screened) == 6
    for t in screened:
        assert t.user_attrs[_attrs.LAW] == "temporal"
        assert t.user_attrs[_attrs.FIT_STATUS] == "ok", t.user_attrs[_attrs.FIT_STATUS]
        steps, positions, losses = read_positions(t.user_attrs)  # type: ignore[misc]
        assert list(steps) == list(range(4, 41, 4)) and losses.shape == (10, len(positions))
        assert positions[0] == 1 and positions[-1] == SEQ and len(positions) <= MAX_POSITIONS
    truth = {t.number: float(per_position(_mixture(t), cfg.full_steps).mean()) for t in screened}
    predicted = {t.number: t.user_attrs[_attrs.PREDICTED_FINAL] for t in screened}
    errors = {n: abs(predicted[n] / truth[n] - 1) for n in truth}
    assert max(errors.values()) < 0.02  # the temporal fit extrapolates 40 -> 200 steps
    best = min(truth, key=truth.__getitem__)
    finished = [t for t in trials if t.state == TrialState.COMPLETE]
    winner = next(t for t in finished if t.number == result.best_trial)
    assert winner.user_attrs[_attrs.ROOT] == best  # the true best candidate wins
    # the continuation extends its parent's matrix instead of starting over
    steps, _, _ = read_positions(winner.user_attrs)  # type: ignore[misc]
    assert steps[0] == 4 and steps[-1] == cfg.full_steps and steps.size <= MAX_EVALS


def _mixture(t: optuna.trial.FrozenTrial) -> dict[str, float]:
    return {d: t.user_attrs[_attrs.mixture_weight_key("mixture", d)] for d in "abc"}


def test_the_record_stays_bounded_and_json_safe() -> None:
    record = None
    for step in range(1, 501):
        record = add_row(record, step, list(np.linspace(5.0, 3.0, 1024) + 1.0 / step))
    assert record is not None
    assert 24 <= len(record["positions"]) <= MAX_POSITIONS and record["positions"][-1] == 1024
    assert len(record["steps"]) <= MAX_EVALS and record["steps"][-1] == 500
    assert record["steps"][0] == 1 and record["steps"] == sorted(record["steps"])
    assert len(json.dumps(record)) < 20_000
    with pytest.raises(ValueError, match="a trial keeps one sequence length"):
        add_row(record, 501, [3.0] * 64)
    same = add_row(record, 502, [math.nan] * 1024)  # a diverged evaluation is not stored
    assert same["steps"][-1] == 500
