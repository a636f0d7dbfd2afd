import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lawsearch.examples import example_runs
from lawsearch.fitting import CurveError, RunCurve, read_curves
from tests.fitting.helpers import example_columns, write_csv


def _assert_same_runs(a: dict[str, RunCurve], b: dict[str, RunCurve]) -> None:
    assert list(a) == list(b)
    for rid in a:
        np.testing.assert_array_equal(a[rid].steps, b[rid].steps)
        np.testing.assert_array_equal(a[rid].lrs, b[rid].lrs)
        np.testing.assert_array_equal(a[rid].losses, b[rid].losses)


def test_columns_and_csv_read_the_same_runs_in_table_order(tmp_path: Path) -> None:
    cols = example_columns()
    from_columns = read_curves(cols)
    _assert_same_runs(from_columns, read_curves(write_csv(tmp_path / "c.csv", cols)))
    assert list(from_columns) == [r.run_id for r in example_runs()]


def test_a_dataframe_reads_like_its_columns() -> None:
    pd = pytest.importorskip("pandas")
    cols = example_columns()
    frame = pd.DataFrame({**cols, "tokens": np.arange(len(cols["step"])) * 1024})
    _assert_same_runs(read_curves(frame), read_curves(cols))


def test_missing_dataframe_losses_are_future_rows() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(
        {"run_id": ["a"] * 3, "step": [1, 2, 3], "lr": [1e-3] * 3, "loss": [3.0, 2.9, None]}
    )
    frame["loss"] = frame["loss"].astype("Float64")  # nullable: the gap is pandas.NA
    run = read_curves(frame)["a"]
    assert run.observed() == 2 and math.isnan(run.losses[2])


def test_empty_or_nan_loss_marks_a_future_row(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("run_id,step,lr,loss,tokens\na,1,1e-3,3.0,10\na,2,1e-3,nan,20\na,3,5e-4,,30\n")
    run = read_curves(path)["a"]
    assert run.observed() == 1 and run.n_rows == 3
    np.testing.assert_array_equal(run.lrs, [1e-3, 1e-3, 5e-4])
    assert run.location(2) == "line 4"
    built = read_curves({"run_id": ["a"], "step": [5], "lr": [0.1], "loss": [2.0]})["a"]
    assert built.location(0) == "row 0"


def test_dense_lr_is_exact_when_the_per_step_schedule_is_known() -> None:
    steps = np.array([0.0, 4.0])
    run = RunCurve("a", steps, np.array([1.0, 0.0]), np.array([3.0, 2.0]))
    np.testing.assert_allclose(run.dense_lr(), [1.0, 0.75, 0.5, 0.25, 0.0])
    exact = np.array([1.0, 1.0, 1.0, 0.5, 0.0, 0.0])
    known = RunCurve("a", steps, np.array([1.0, 0.0]), np.array([3.0, 2.0]), lr_per_step=exact)
    np.testing.assert_array_equal(known.dense_lr(5), exact)


def _columns(**override: list[Any]) -> dict[str, list[Any]]:
    cols: dict[str, list[Any]] = {
        "run_id": ["a", "a", "a"],
        "step": [1, 2, 3],
        "lr": [1e-3, 1e-3, 1e-3],
        "loss": [3.0, 2.9, 2.8],
    }
    cols.update(override)
    return cols


@pytest.mark.parametrize(
    ("columns", "field", "match"),
    [
        ({"run_id": ["a"], "step": [1], "loss": [3.0]}, "lr", r"missing column\(s\) 'lr'"),
        (_columns(step=[1, 3, 3]), "step", r"`step` must increase; `data` row 2 has step 3"),
        (_columns(step=[1, 3, 2]), "step", r"`step` must increase; `data` row 2 has step 2"),
        (_columns(lr=[1e-3, "fast", 1e-3]), "lr", r"row 1: `lr` must be a number; got 'fast'"),
        (_columns(lr=[1e-3, None, 1e-3]), "lr", r"row 1: `lr` is empty"),
        (_columns(lr=[1e-3, -1.0, 1e-3]), "lr", r"`lr` must be a finite number >= 0"),
        (_columns(step=[1, 2.5, 3]), "step", r"`step` must be an integer >= 0; got 2.5"),
        (_columns(loss=[3.0, math.inf, 2.8]), "loss", r"`loss` must be finite \(or empty\)"),
        (_columns(run_id=["a", "", "a"]), "run_id", r"row 1: `run_id` is empty"),
        (_columns(step=[1, 2]), "data", r"different lengths \(run_id: 3, step: 2"),
        (_columns(step=5), "step", r"`data`\['step'\] must be a sequence"),
        (_columns(run_id="aaa"), "run_id", r"`data`\['run_id'\] must be a sequence"),
        ({"run_id": [], "step": [], "lr": [], "loss": []}, "data", "no data rows"),
    ],
)
def test_bad_columns_name_the_field(columns: dict[str, Any], field: str, match: str) -> None:
    with pytest.raises(CurveError, match=match) as info:
        read_curves(columns)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("run_id,step,loss\na,1,3.0", r"c.csv: missing column\(s\) 'lr'; the CSV needs the header"),
        ("run_id,step,lr,loss\na,1,1e-3,3\na,1,1e-3,2.9", r"c.csv line 3 has step 1 after step 1"),
        ("run_id,step,lr,loss\na,1,fast,3", r"c.csv line 2: `lr` must be a number; got 'fast'"),
        ("run_id,step,lr,loss\na,,1e-3,3", r"c.csv line 2: `step` is empty"),
        ("run_id,step,lr,loss\n", r"c.csv: no data rows"),
    ],
)
def test_bad_csv_names_the_file_line_and_column(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "c.csv"
    path.write_text(text + "\n")
    with pytest.raises(CurveError, match=match):
        read_curves(path)


def test_missing_file_and_unreadable_data_name_data(tmp_path: Path) -> None:
    with pytest.raises(CurveError, match=r"`data`: file '.*nope.csv' not found") as info:
        read_curves(tmp_path / "nope.csv")
    assert info.value.field == "data"
    with pytest.raises(CurveError, match="`data` must be a CSV path, a mapping"):
        read_curves(42)
