import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lawsearch
from lawsearch.examples import example_runs
from lawsearch.fitting import (
    CurveError,
    Outcome,
    extrapolate,
    fit_curves,
    prefix_rows,
    read_curves,
)
from lawsearch.laws import LAWS, PowerLaw
from tests.fitting.helpers import example_columns, write_csv


@pytest.fixture(scope="module")
def columns() -> dict[str, list[Any]]:
    return example_columns(seed=0)


def _key(o: Outcome) -> tuple[Any, ...]:
    """Everything an outcome reports but its timing."""
    return (o.n_prefix, o.fit.params if o.fit else None, *o.to_json().values())


def test_columns_and_csv_give_the_same_outcomes(columns, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "curves.csv", columns)
    from_columns = fit_curves(columns, law="power", prefix=0.5)
    from_csv = fit_curves(path, law="power", prefix=0.5)
    assert [_key(o) for o in from_columns] == [_key(o) for o in from_csv]
    runs = example_runs(seed=0)
    assert [o.run_id for o in from_columns] == [r.run_id for r in runs]
    for o, run in zip(from_columns, runs, strict=True):
        assert o.status in ("ok", "degenerate") and o.mode == "independent"
        assert o.n_prefix == prefix_rows(run.steps.size, 0.5)
        assert o.target_step == int(run.steps[-1]) and o.true_final == run.losses[-1]
        assert o.predicted_lo <= o.predicted_final <= o.predicted_hi
        assert abs(o.error) < 0.06  # a power law on half a curve lands within a few percent
        assert o.run is not None and o.run.run_id == o.run_id


def test_a_law_by_name_or_as_an_object_fits_the_same(columns) -> None:
    by_name = fit_curves(columns, law="power", prefix=0.4)
    by_object = extrapolate(PowerLaw(), list(read_curves(columns).values()), prefix=0.4)
    assert [_key(o) for o in by_name] == [_key(o) for o in by_object]


def test_pooled_shares_the_shape_across_runs(columns) -> None:
    outs = fit_curves(columns, law="power", prefix=0.4, mode="pooled")
    assert len(outs) == 4 and all(o.mode == "pooled" for o in outs)
    alphas = {o.fit.params["alpha"] for o in outs if o.fit is not None}
    assert len(alphas) == 1  # one exponent for all runs
    assert all(o.predicted_final is not None for o in outs)


def test_transfer_extrapolates_every_run_but_the_references(columns) -> None:
    outs = fit_curves(columns, law="power", prefix=0.3, mode="transfer", references="constant_6000")
    assert [o.run_id for o in outs] == ["cosine_6000", "wsd_6000", "cosine_3000"]
    assert all(o.mode == "transfer" and o.status != "failed" for o in outs)


def test_the_default_law_pooled_recovers_the_generating_law(columns) -> None:
    for o in fit_curves(columns, prefix=0.3, mode="pooled"):
        assert o.law == "multipower"
        assert abs(o.error) < 0.02, o


def test_future_rows_give_the_schedule_up_to_the_target(tmp_path: Path) -> None:
    run = example_runs(seed=0)[1]
    cols: dict[str, list[Any]] = {
        "run_id": ["a"] * run.steps.size,
        "step": [int(s) for s in run.steps],
        "lr": list(run.lrs),
        "loss": [float(y) if i < 40 else None for i, y in enumerate(run.losses)],
    }
    (o,) = fit_curves(cols, law=PowerLaw(time="intrinsic"), target_step=4000)
    assert o.n_prefix == 40 and o.target_step == 4000 and o.true_final is None
    assert o.predicted_final is not None


def test_the_public_api_exports_the_workflow() -> None:
    assert lawsearch.fit_curves is fit_curves
    assert lawsearch.CurveError is CurveError and issubclass(CurveError, ValueError)


def test_curve_errors_pickle_with_their_field() -> None:
    err = pickle.loads(pickle.dumps(CurveError("`prefix` must be in (0, 1]", field="prefix")))
    assert err.field == "prefix" and str(err) == "`prefix` must be in (0, 1]"


def _with(columns: dict[str, list[Any]], row: int, **values: Any) -> dict[str, list[Any]]:
    out = {k: list(v) for k, v in columns.items()}
    for key, value in values.items():
        out[key][row] = value
    return out


@pytest.mark.parametrize(
    ("kwargs", "field", "match"),
    [
        ({"law": "powr"}, "law", r"`law`: unknown law 'powr'; did you mean 'power'\?"),
        ({"mode": "transfr"}, "mode", r"`mode`: unknown mode 'transfr'; did you mean 'transfer'"),
        ({"mode": "transfer"}, "references", r"`mode` transfer needs at least one `references`"),
        ({"references": ["cosine_600"], "mode": "transfer"}, "references", r"no run 'cosine_600'"),
        ({"references": ["wsd_6000"]}, "references", r"`references` is only used with `mode`"),
        ({"shared": ["alpha"]}, "shared", r"`shared` is only used with `mode` pooled"),
        ({"mode": "pooled", "shared": "alpah"}, "shared", r"no parameter\(s\) 'alpah'; did you"),
        ({"prefix": 0.02}, "prefix", r"needs at least 5 \(free parameters \+ 1\); raise `prefix`"),
        ({"prefix": 1.5}, "prefix", r"`prefix` must be in \(0, 1\]"),
        ({"prefix": float("nan")}, "prefix", r"`prefix` must be in \(0, 1\]"),
        ({"level": 1.0}, "level", r"`level` must be in \(0, 1\); got 1.0"),
        ({"prefix": 0.5, "target_step": 1000}, "target_step", r"`target_step` 1000 is before"),
        ({"law": "multipower", "target_step": 9000}, "target_step", r"needs the learning rate"),
    ],
)
def test_bad_options_name_the_field(columns, kwargs, field: str, match: str) -> None:
    kwargs = {"law": "power", **kwargs}
    with pytest.raises(CurveError, match=match) as info:
        fit_curves(columns, **kwargs)
    assert info.value.field == field


def test_every_run_a_reference_is_bad_input(columns) -> None:
    refs = [r.run_id for r in example_runs(seed=0)]
    with pytest.raises(CurveError, match="every run is in `references`"):
        fit_curves(columns, law="power", mode="transfer", references=refs)


def test_nan_inside_the_prefix_names_the_run_and_row(columns) -> None:
    bad = _with(columns, 5, loss=float("nan"))
    match = r"run 'constant_6000': `loss` is missing \(empty or NaN\) at row 5 \(step 450\)"
    with pytest.raises(CurveError, match=match) as info:
        fit_curves(bad, law="power", prefix=0.3)
    assert info.value.field == "loss"


def test_a_non_positive_loss_inside_the_prefix_is_bad_input(columns) -> None:
    with pytest.raises(CurveError, match=r"`loss` must be > 0; got -1 at row 2"):
        fit_curves(_with(columns, 2, loss=-1.0), law="power", prefix=0.3)


def test_bad_rows_are_found_before_any_fit(columns) -> None:
    bad = _with(columns, 3, step=columns["step"][2])  # a duplicate step
    match = r"run 'constant_6000': `step` must increase; `data` row 3"
    with pytest.raises(CurveError, match=match):
        fit_curves(bad, law="power")
    with pytest.raises(CurveError, match=r"`data` row 7: `loss` must be a number; got 'low'"):
        fit_curves(_with(columns, 7, loss="low"), law="power")
    missing = {k: v for k, v in columns.items() if k != "lr"}
    with pytest.raises(CurveError, match=r"missing column\(s\) 'lr'"):
        fit_curves(missing, law="power")


def test_a_law_that_needs_other_input_is_bad_input(columns) -> None:
    if "temporal" not in LAWS:
        pytest.skip("the per-position temporal law is not registered in this build")
    with pytest.raises(CurveError, match="law 'temporal' cannot fit it") as info:
        fit_curves(columns, law="temporal")
    assert info.value.field == "law"


def test_a_run_without_a_first_loss_has_nothing_to_fit() -> None:
    cols = {"run_id": ["a", "a"], "step": [1, 2], "lr": [1.0, 1.0], "loss": [None, 2.0]}
    with pytest.raises(CurveError, match=r"run 'a': the first row \(row 0\) has no loss"):
        fit_curves(cols, law="power")


def test_outcomes_are_deterministic(columns) -> None:
    a = fit_curves(columns, law="power", prefix=0.4, mode="pooled")
    b = fit_curves(columns, law="power", prefix=0.4, mode="pooled")
    assert [_key(o) for o in a] == [_key(o) for o in b]
    np.testing.assert_array_equal(a[0].run.losses, b[0].run.losses)  # type: ignore[union-attr]
