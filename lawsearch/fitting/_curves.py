"""Loss curves as the fit workflow reads them: one ``RunCurve`` per run of a tidy table.

The table is tidy: one row per logged point, columns ``run_id, step, lr, loss``
(others, such as ``tokens``, are read and ignored: the laws work in optimizer
steps and intrinsic time). ``lr`` is the learning rate at that step. Rows after
the prefix give the future schedule and, when their ``loss`` is filled in, the
true losses a prediction is scored against; an empty or NaN ``loss`` marks a
future row.

The table comes as a CSV path, a mapping of column names to sequences, or a
DataFrame (anything with ``columns`` and ``frame[name]``; pandas is never
imported here).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
from numpy.typing import NDArray

from lawsearch._errors import CurveError

__all__ = ["REQUIRED", "CurvesData", "RunCurve", "read_curves"]

FloatArray = NDArray[np.float64]
#: the columns every table needs
REQUIRED = ("run_id", "step", "lr", "loss")
#: a CSV path, a mapping column -> sequence, or a DataFrame-like object
CurvesData: TypeAlias = "str | os.PathLike[str] | Mapping[str, Any] | Any"


@dataclass(frozen=True)
class RunCurve:
    """One run of the table: every row, with NaN where the loss is not given.

    Attributes:
        run_id: the run's name.
        steps: the logged steps (strictly increasing).
        lrs: the learning rate at each step.
        losses: the loss at each step (NaN for future rows without a loss).
        locations: where each row came from, for messages (``"line 7"`` of a
            CSV, ``"row 6"`` of columns); empty when the curve was built in code.
        lr_per_step: the exact per-step schedule ``lr[0..T-1]`` when known;
            otherwise it is interpolated from ``lrs``.
    """

    run_id: str
    steps: FloatArray
    lrs: FloatArray
    losses: FloatArray
    locations: tuple[str, ...] = ()
    lr_per_step: FloatArray | None = field(default=None, repr=False)

    @property
    def n_rows(self) -> int:
        return int(self.steps.size)

    def location(self, i: int) -> str:
        """Where row ``i`` of this run came from (``"line 7"``), for messages."""
        return self.locations[i] if self.locations else f"row {i}"

    def dense_lr(self, last_step: float | None = None) -> FloatArray:
        """The per-step LR ``lr[0..max(last row, last_step)]`` (exact if known)."""
        end = int(max(self.steps[-1], last_step if last_step is not None else 0.0)) + 1
        if self.lr_per_step is not None and self.lr_per_step.size >= end:
            return np.asarray(self.lr_per_step, dtype=float)
        grid = np.arange(end, dtype=float)
        return np.interp(grid, self.steps, self.lrs)

    def observed(self) -> int:
        """How many leading rows have a loss."""
        missing = np.flatnonzero(~np.isfinite(self.losses))
        return int(missing[0]) if missing.size else self.n_rows


@dataclass(frozen=True)
class _Source:
    """How messages name the table and a row of it."""

    name: str  # "curves.csv", or "`data`" for columns
    unit: str  # "line" or "row"
    needs: str  # what a table without the required columns is told

    def at(self, where: int) -> str:
        return f"{self.name} {self.unit} {where}"


#: one input row: (line or row number, run_id, step, lr, loss), values as given
_Record = tuple[int, Any, Any, Any, Any]


def read_curves(data: CurvesData) -> dict[str, RunCurve]:
    """Read and validate a tidy table of loss curves; runs keep the order of first appearance.

    Args:
        data: a CSV path, a mapping of column names to equally long sequences,
            or a DataFrame, with the columns ``run_id, step, lr, loss``.

    Raises:
        CurveError: naming the file or ``data``, the line or row, the run and the
            column at fault.
    """
    if isinstance(data, str | os.PathLike):
        return _read_csv(Path(data))
    columns = _columns(data)
    source = _Source("`data`", "row", "`data` needs the columns")
    _check_header(source, list(columns))
    n = _column_length(columns)
    records = zip(range(n), *(columns[c] for c in REQUIRED), strict=True)
    return _runs(source, records)


def _read_csv(path: Path) -> dict[str, RunCurve]:
    if not path.is_file():
        raise CurveError(f"`data`: file {str(path)!r} not found.", field="data")
    source = _Source(path.name, "line", "the CSV needs the header")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in (reader.fieldnames or [])]
        _check_header(source, header)
        reader.fieldnames = header

        def records() -> Iterator[_Record]:
            for row in reader:
                run_id, step, lr, loss = (row.get(c) or "" for c in REQUIRED)
                yield reader.line_num, run_id, step, lr, loss

        return _runs(source, records())


def _columns(data: Any) -> dict[str, list[Any]]:
    """The table's columns as lists, from a mapping or a DataFrame (duck-typed)."""
    if isinstance(data, Mapping):
        items: Iterable[tuple[Any, Any]] = data.items()
    elif hasattr(data, "columns") and hasattr(data, "__getitem__"):
        items = ((name, data[name]) for name in data.columns)
    else:
        raise CurveError(
            "`data` must be a CSV path, a mapping of column names to sequences, or a "
            f"DataFrame; got {type(data).__name__}.",
            field="data",
        )
    columns: dict[str, list[Any]] = {}
    for name, values in items:
        if isinstance(values, str | bytes) or not isinstance(values, Iterable):
            raise CurveError(
                f"`data`[{name!r}] must be a sequence of values, one per row; "
                f"got {type(values).__name__}.",
                field=str(name),
            )
        columns[str(name).strip()] = list(values)
    return columns


def _column_length(columns: Mapping[str, list[Any]]) -> int:
    lengths = {c: len(columns[c]) for c in REQUIRED}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{c}: {n}" for c, n in lengths.items())
        raise CurveError(
            f"`data`: the columns have different lengths ({shown}); every column needs "
            "one value per row.",
            field="data",
        )
    return lengths[REQUIRED[0]]


def _check_header(source: _Source, header: list[str]) -> None:
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise CurveError(
            f"{source.name}: missing column(s) {', '.join(repr(m) for m in missing)}; "
            f"{source.needs} {','.join(REQUIRED)} (optional tokens); "
            f"found {','.join(header) or 'no header'}.",
            field=missing[0],
        )


def _is_missing(value: Any) -> bool:
    """Empty, ``nan``, ``None`` or a DataFrame's missing marker (``pandas.NA``)."""
    if isinstance(value, str):
        return value.strip() == "" or value.strip().lower() == "nan"
    if value is None or type(value).__name__ == "NAType":
        return True
    return isinstance(value, float | np.floating) and math.isnan(value)


def _number(value: Any, *, column: str, where: str, allow_empty: bool = False) -> float:
    if _is_missing(value):
        if allow_empty:
            return float("nan")
        raise CurveError(f"{where}: `{column}` is empty; every row needs a {column}.", field=column)
    shown = value.strip() if isinstance(value, str) else value
    try:
        return float(shown)
    except (TypeError, ValueError):
        fix = "write a number" + (", or leave it empty for a future row" if allow_empty else "")
        raise CurveError(
            f"{where}: `{column}` must be a number; got {shown!r}; {fix}.", field=column
        ) from None


def _run_id(value: Any) -> str:
    return "" if _is_missing(value) else str(value).strip()


def _runs(source: _Source, records: Iterable[_Record]) -> dict[str, RunCurve]:
    """Validate every row and group the rows by run."""
    rows: dict[str, list[tuple[int, float, float, float]]] = {}
    for where, run_value, step_value, lr_value, loss_value in records:
        at = source.at(where)
        run_id = _run_id(run_value)
        if not run_id:
            raise CurveError(f"{at}: `run_id` is empty.", field="run_id")
        step = _number(step_value, column="step", where=at)
        lr = _number(lr_value, column="lr", where=at)
        loss = _number(loss_value, column="loss", where=at, allow_empty=True)
        if not math.isfinite(step) or step < 0 or step != int(step):
            raise CurveError(f"{at}: `step` must be an integer >= 0; got {step!r}.", field="step")
        if not math.isfinite(lr) or lr < 0:
            raise CurveError(f"{at}: `lr` must be a finite number >= 0; got {lr!r}.", field="lr")
        if math.isinf(loss):
            raise CurveError(f"{at}: `loss` must be finite (or empty); got {loss!r}.", field="loss")
        rows.setdefault(run_id, []).append((where, step, lr, loss))
    if not rows:
        raise CurveError(
            f"{source.name}: no data rows; expected {','.join(REQUIRED)} rows.", field="data"
        )
    runs = {}
    for run_id, pts in rows.items():
        arr = np.array([r[1:] for r in pts], dtype=float)
        wheres = [r[0] for r in pts]
        bad = np.flatnonzero(np.diff(arr[:, 0]) <= 0)
        if bad.size:
            i = int(bad[0]) + 1
            raise CurveError(
                f"run {run_id!r}: `step` must increase; {source.at(wheres[i])} has step "
                f"{arr[i, 0]:g} after step {arr[i - 1, 0]:g} on {source.unit} {wheres[i - 1]}. "
                "Sort the rows of each run by step and drop duplicates.",
                field="step",
            )
        locations = tuple(f"{source.unit} {w}" for w in wheres)
        runs[run_id] = RunCurve(run_id, arr[:, 0], arr[:, 1], arr[:, 2], locations)
    return runs
