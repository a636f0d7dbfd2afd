"""The README's Python examples run as written (with a synthetic training loop)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import optuna

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_extrapolation_example_runs_and_is_close(capsys) -> None:
    exec(_python_blocks()[0], {})
    printed = capsys.readouterr().out
    numbers = [float(x) for x in re.findall(r"\d+\.\d+", printed)]
    predicted, lo, hi, true = numbers[0], numbers[1], numbers[2], numbers[3]
    assert abs(predicted / true - 1) < 0.02
    assert lo <= true <= hi
    assert lo <= predicted <= hi


def _my_training(mixture: dict[str, float], schedule):
    """A stand-in training loop: a power-law curve whose level depends on the mixture."""
    level = 2.0 + abs(mixture["code"] - 0.3) + 0.2 * schedule.peak_lr
    for step in range(500, schedule.total_steps + 1, 500):
        yield step, level + 3.0 * step**-0.3


def test_pruner_example_runs_with_a_training_loop() -> None:
    namespace: dict[str, object] = {"my_training": _my_training}
    exec(_python_blocks()[1], namespace)
    study = namespace["study"]
    assert isinstance(study, optuna.Study)
    study.optimize(namespace["objective"], n_trials=12)
    states = {t.state for t in study.trials}
    assert optuna.trial.TrialState.COMPLETE in states
    finals = [t.user_attrs.get("lawsearch:predicted_final") for t in study.trials]
    assert any(isinstance(v, float) and np.isfinite(v) for v in finals)
