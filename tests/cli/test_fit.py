import json
from pathlib import Path

import numpy as np
import pytest

from lawsearch.cli import main
from lawsearch.examples import example_runs, write_example_csv
from lawsearch.laws import LAWS, PowerLaw

JSON_KEYS = {
    "run_id",
    "law",
    "law_used",
    "fit_from_step",
    "mode",
    "prefix",
    "target_step",
    "predicted_final",
    "predicted_lo",
    "predicted_hi",
    "true_final",
    "status",
    "message",
}


@pytest.fixture
def curves(tmp_path: Path) -> Path:
    return write_example_csv(tmp_path / "curves.csv", seed=0)


def _write(path: Path, text: str) -> Path:
    path.write_text(text.strip() + "\n")
    return path


def _rows(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_fit_prints_tables_writes_json_and_plot(curves: Path, tmp_path: Path, capsys) -> None:
    out_json, out_png = tmp_path / "o" / "fit.json", tmp_path / "o" / "fit.png"
    argv = ["fit", str(curves), "--law", "power", "--prefix", "0.5"]
    rc = main([*argv, "--json", str(out_json), "--plot", str(out_png)])
    assert rc == 0
    text = capsys.readouterr().out
    runs = example_runs(seed=0)
    for run in runs:
        assert f"run {run.run_id}: law power (independent)" in text
    assert "predicted loss at step 5999" in text
    assert "alpha" in text and "90% interval" in text
    records = json.loads(out_json.read_text())
    assert [r["run_id"] for r in records] == [r.run_id for r in runs]
    for rec, run in zip(records, runs, strict=True):
        assert set(rec) == JSON_KEYS
        assert rec["law"] == "power" and rec["mode"] == "independent"
        assert rec["law_used"] == "power" and rec["fit_from_step"] >= run.steps[0]
        assert rec["target_step"] == int(run.steps[-1])
        assert rec["prefix"] == pytest.approx(0.5, abs=1 / run.steps.size)
        assert rec["status"] in ("ok", "degenerate")
        assert rec["true_final"] == pytest.approx(run.losses[-1], abs=1e-6)
        assert rec["predicted_lo"] <= rec["predicted_final"] <= rec["predicted_hi"]
        # a power law in steps on half a curve lands within a few percent
        assert abs(rec["predicted_final"] / rec["true_final"] - 1) < 0.06
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out_json.parent.iterdir()) == ["fit.json", "fit.png"]


def test_future_rows_without_loss_give_the_schedule(tmp_path: Path, capsys) -> None:
    run = example_runs(seed=0)[1]
    lines = ["run_id,step,lr,loss,tokens"]
    for i, (s, lr, y) in enumerate(zip(run.steps, run.lrs, run.losses, strict=True)):
        loss = f"{y:.6f}" if i < 40 else ""
        lines.append(f"a,{int(s)},{lr:.6g},{loss},{int(s) * 1024}")
    path = _write(tmp_path / "c.csv", "\n".join(lines))
    out = tmp_path / "r.json"
    argv = ["fit", str(path), "--law", "power", "--law-option", "time=intrinsic"]
    assert main([*argv, "--target-step", "4000", "--json", str(out)]) == 0
    (rec,) = json.loads(out.read_text())
    assert rec["true_final"] is None and rec["target_step"] == 4000
    assert rec["prefix"] == pytest.approx(40 / run.steps.size)
    assert "true loss: –" in capsys.readouterr().out


def test_transfer_excludes_references_from_the_evaluated_runs(curves: Path, tmp_path) -> None:
    out = tmp_path / "t.json"
    argv = ["fit", str(curves), "--law", "power", "--prefix", "0.3", "--mode", "transfer"]
    rc = main([*argv, "--reference", "constant_6000", "--json", str(out)])
    assert rc == 0
    records = json.loads(out.read_text())
    assert [r["run_id"] for r in records] == ["cosine_6000", "wsd_6000", "cosine_3000"]
    assert all(r["mode"] == "transfer" and r["status"] != "failed" for r in records)


def test_pooled_fits_every_run(curves: Path, tmp_path) -> None:
    out = tmp_path / "p.json"
    argv = ["fit", str(curves), "--law", "power", "--prefix", "0.4", "--mode", "pooled"]
    assert main([*argv, "--json", str(out)]) == 0
    records = json.loads(out.read_text())
    assert len(records) == 4 and all(r["mode"] == "pooled" for r in records)
    assert all(r["predicted_final"] is not None for r in records)


def test_a_failed_fit_is_reported_and_the_other_runs_are_written(
    curves: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    real_fit = PowerLaw.fit

    def flaky(self, steps, losses, **kw):
        if float(np.asarray(steps)[-1]) == 1550.0:  # cosine_3000's half prefix ends there
            raise RuntimeError("simulated divergence")
        return real_fit(self, steps, losses, **kw)

    monkeypatch.setattr(PowerLaw, "fit", flaky)
    out, png = tmp_path / "f.json", tmp_path / "f.png"
    argv = ["fit", str(curves), "--law", "power", "--prefix", "0.5"]
    assert main([*argv, "--json", str(out), "--plot", str(png)]) == 1
    records = {r["run_id"]: r for r in json.loads(out.read_text())}
    assert records["cosine_3000"]["status"] == "failed"
    assert "simulated divergence" in records["cosine_3000"]["message"]
    assert records["cosine_3000"]["predicted_final"] is None
    assert all(r["status"] != "failed" for k, r in records.items() if k != "cosine_3000")
    assert png.exists()
    captured = capsys.readouterr()
    assert "1 of 4 fits failed: cosine_3000" in captured.out
    assert "Traceback" not in captured.err


def _bad(tmp_path: Path, capsys, argv: list[str], match: str) -> None:
    out_json, out_png = tmp_path / "bad.json", tmp_path / "bad.png"
    rc = main(["fit", *argv, "--json", str(out_json), "--plot", str(out_png)])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert match in err, err
    assert "Traceback" not in err
    assert not out_json.exists() and not out_png.exists()
    assert not list(tmp_path.glob(".bad*"))


def test_missing_columns(tmp_path: Path, capsys) -> None:
    path = _write(tmp_path / "c.csv", "run_id,step,loss\na,1,3.0\na,2,2.9")
    _bad(tmp_path, capsys, [str(path), "--law", "power"], "missing column(s) 'lr'")


def test_nan_loss_inside_the_prefix_names_run_and_line(curves: Path, tmp_path, capsys) -> None:
    lines = _rows(curves)
    cells = lines[5].split(",")
    lines[5] = ",".join([*cells[:3], "nan"])
    path = _write(tmp_path / "c.csv", "\n".join(lines))
    argv = [str(path), "--law", "power", "--prefix", "0.3"]
    _bad(tmp_path, capsys, argv, "run 'constant_6000': `loss` is missing (empty or NaN) at line 6")


def test_empty_loss_inside_the_prefix(curves: Path, tmp_path, capsys) -> None:
    lines = _rows(curves)
    lines[3] = lines[3].rsplit(",", 1)[0] + ","
    path = _write(tmp_path / "c.csv", "\n".join(lines))
    _bad(tmp_path, capsys, [str(path), "--law", "power", "--prefix", "0.5"], "at line 4")


def test_non_increasing_steps(tmp_path: Path, capsys) -> None:
    path = _write(tmp_path / "c.csv", "run_id,step,lr,loss\na,1,1e-3,3\na,3,1e-3,2.9\na,3,1e-3,2.8")
    _bad(tmp_path, capsys, [str(path), "--law", "power"], "`step` must increase; c.csv line 4")


def test_non_numeric_lr(tmp_path: Path, capsys) -> None:
    path = _write(tmp_path / "c.csv", "run_id,step,lr,loss\na,1,fast,3")
    _bad(tmp_path, capsys, [str(path), "--law", "power"], "line 2: `lr` must be a number")


@pytest.mark.parametrize(("name", "suggestion"), [("powr", "power"), ("multipowr", "multipower")])
def test_unknown_law_suggests_the_closest(curves: Path, tmp_path, capsys, name, suggestion) -> None:
    if suggestion not in LAWS:
        pytest.skip(f"law {suggestion!r} is not registered in this build")
    _bad(tmp_path, capsys, [str(curves), "--law", name], f"did you mean {suggestion!r}")


def test_unknown_law_option(curves: Path, tmp_path, capsys) -> None:
    argv = [str(curves), "--law", "power", "--law-option", "tim=intrinsic"]
    _bad(tmp_path, capsys, argv, "has no option 'tim'; did you mean 'time'")


@pytest.mark.parametrize("prefix", ["0", "1.5", "-0.2", "nan"])
def test_prefix_outside_the_unit_interval(curves: Path, tmp_path, capsys, prefix) -> None:
    argv = [str(curves), "--law", "power", "--prefix", prefix]
    _bad(tmp_path, capsys, argv, "--prefix must be in (0, 1]")


def test_unknown_reference_run(curves: Path, tmp_path, capsys) -> None:
    argv = [str(curves), "--law", "power", "--mode", "transfer", "--reference", "cosine_600"]
    _bad(tmp_path, capsys, argv, "no run 'cosine_600' in curves.csv; did you mean 'cosine_6000'")


def test_transfer_without_reference(curves: Path, tmp_path, capsys) -> None:
    argv = [str(curves), "--law", "power", "--mode", "transfer"]
    _bad(tmp_path, capsys, argv, "needs at least one --reference")


def test_too_few_points_for_the_law(curves: Path, tmp_path, capsys) -> None:
    argv = [str(curves), "--law", "power", "--prefix", "0.02"]
    _bad(tmp_path, capsys, argv, "needs at least 5 (free parameters + 1)")


def test_target_before_the_prefix_ends(curves: Path, tmp_path, capsys) -> None:
    argv = [str(curves), "--law", "power", "--prefix", "0.5", "--target-step", "1000"]
    _bad(tmp_path, capsys, argv, "--target-step 1000 is before the end")


def test_missing_file(tmp_path: Path, capsys) -> None:
    _bad(tmp_path, capsys, [str(tmp_path / "nope.csv"), "--law", "power"], "not found")


def test_default_shared_parameters_are_the_shape_not_offset_or_amplitude() -> None:
    from lawsearch.laws import shared_params

    assert shared_params(PowerLaw()) == ("alpha", "t0")


def test_unknown_shared_parameter(curves: Path, tmp_path, capsys) -> None:
    argv = [str(curves), "--law", "power", "--mode", "pooled", "--shared", "alpah"]
    _bad(tmp_path, capsys, argv, "--shared: 'power' has no parameter(s) 'alpah'; did you mean")


def test_shared_needs_a_pooled_or_transfer_mode(curves: Path, tmp_path, capsys) -> None:
    argv = [str(curves), "--law", "power", "--shared", "alpha"]
    _bad(tmp_path, capsys, argv, "--shared is only used with --mode pooled")


def test_demo_flow_default_law_pooled_recovers_the_example(curves: Path, tmp_path) -> None:
    """scripts/demo.sh: the Multi-Power Law, pooled over the runs, on the example curves."""
    out = tmp_path / "fit.json"
    assert (
        main(["fit", str(curves), "--prefix", "0.3", "--mode", "pooled", "--json", str(out)]) == 0
    )
    records = json.loads(out.read_text())
    assert {r["law"] for r in records} == {"multipower"}
    for r in records:
        # the example is generated by a Multi-Power Law, so 30% of each run predicts its end
        assert abs(r["predicted_final"] / r["true_final"] - 1) < 0.02, r


def test_a_law_that_needs_other_input_is_bad_input(curves: Path, tmp_path, capsys) -> None:
    if "temporal" not in LAWS:
        pytest.skip("the per-position temporal law is not registered in this build")
    _bad(tmp_path, capsys, [str(curves), "--law", "temporal"], "law 'temporal' cannot fit it")


def test_a_prediction_far_beyond_the_curves_trend_gets_a_warning(curves: Path, capsys) -> None:
    import dataclasses

    from lawsearch.cli._fit import format_run

    argv = ["fit", str(curves), "--law", "power", "--prefix", "0.5"]
    assert main(argv) == 0
    assert "warning:" not in capsys.readouterr().out  # smooth example curves: plausible
    run = example_runs(seed=0)[0]
    half = run.steps.size // 2
    fit = PowerLaw().fit(run.steps[:half], run.losses[:half])
    from lawsearch.fitting import Outcome

    sound = Outcome(
        run_id=run.run_id,
        law="power",
        mode="independent",
        prefix=0.5,
        n_prefix=half,
        target_step=int(run.steps[-1]),
        predicted_final=float(fit.predict([run.steps[-1]])[0]),
        predicted_lo=None,
        predicted_hi=None,
        true_final=None,
        status="ok",
        fit=fit,
    )
    assert "warning:" not in format_run(sound, 0.9)
    absurd = dataclasses.replace(sound, predicted_final=0.05 * float(run.losses[half - 1]))
    text = format_run(absurd, 0.9)
    assert "warning: the prediction is" in text and "--mode pooled" in text
