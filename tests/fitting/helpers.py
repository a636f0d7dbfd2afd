"""The example runs as a table in every form ``lawsearch.fitting`` reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lawsearch.examples import example_runs


def example_columns(seed: int = 0) -> dict[str, list[Any]]:
    """The example runs as a mapping column -> values (floats, as a program holds them)."""
    cols: dict[str, list[Any]] = {"run_id": [], "step": [], "lr": [], "loss": []}
    for run in example_runs(seed=seed):
        for s, lr, loss in zip(run.steps, run.lrs, run.losses, strict=True):
            cols["run_id"].append(run.run_id)
            cols["step"].append(int(s))
            cols["lr"].append(float(lr))
            cols["loss"].append(float(loss))
    return cols


def write_csv(path: Path, columns: dict[str, list[Any]]) -> Path:
    """Write columns as a CSV whose floats read back exactly (``repr``); ``None`` is empty."""
    names = list(columns)
    lines = [",".join(names)]
    for row in zip(*(columns[n] for n in names), strict=True):
        lines.append(",".join(_cell(v) for v in row))
    path.write_text("\n".join(lines) + "\n")
    return path


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else str(value)
