import json
from pathlib import Path

import pytest

from benchmarks import extrapolation
from lawsearch.laws import LAWS


@pytest.mark.slow
def test_tiny_benchmark_writes_json_markdown_and_png(shared_data: Path, tmp_path: Path, capsys):
    assert extrapolation.main(["--tiny", "--out", str(tmp_path)]) == 0
    payload = json.loads((tmp_path / "extrapolation.json").read_text())
    assert payload["tiny"] is True and payload["n_runs"] == 2
    assert payload["prefixes"] == [0.2]
    expected_laws = [n for n in ("multipower", "power") if n in LAWS]
    assert [s for s in payload["laws"] if "[" not in s][: len(expected_laws)] == expected_laws
    cells = {(r["law"], r["mode"]) for r in payload["summary"]}
    for label in ("last value", "curve_fit power (steps)", "curve_fit power (S1)"):
        assert (label, "baseline") in cells
    for law in payload["laws"]:
        for mode in ("independent", "pooled", "transfer"):
            assert (law, mode) in cells
    # the two runs are each other's transfer reference (neither is a branch of the other)
    assert payload["references"] == {
        "100M_cosine_24000": "100M_cosine_72000",
        "100M_cosine_72000": "100M_cosine_24000",
    }
    last = next(r for r in payload["summary"] if r["law"] == "last value")
    assert 0.05 < last["mean_error"] < 0.15  # a 20% prefix is far above the final loss
    goals = {t["target"] for t in payload["targets"]}
    assert "transfer mean error" in goals and "MultiPowerLaw median fit time" in goals
    assert payload["taskset"] and payload["taskset_curves"] == 2
    md = (tmp_path / "extrapolation.md").read_text()
    assert md.startswith("# Extrapolation benchmark") and "| law | mode | prefix |" in md
    assert (tmp_path / "extrapolation.png").read_bytes()[:4] == b"\x89PNG"
    assert "## Targets (20% prefix)" in capsys.readouterr().out


def test_reference_is_never_the_run_nor_a_branch_relative(shared_data: Path) -> None:
    runs = extrapolation.load_runs()
    for run in runs:
        ref = extrapolation.choose_reference(run, runs)
        assert ref is not None and ref.run_id != run.run_id and ref.size == run.size
        assert not extrapolation.related(ref, run)
    by_id = {r.run_id: r for r in runs}
    # WSD runs of 100M branch off constant_24000; 25M ones off constant_72000
    assert extrapolation.related(by_id["100M_wsd_20000_24000"], by_id["100M_constant_24000"])
    assert extrapolation.related(by_id["25M_wsdcon_3"], by_id["25M_constant_72000"])
    assert not extrapolation.related(by_id["25M_cosine_24000"], by_id["25M_constant_72000"])
    assert extrapolation.choose_reference(by_id["25M_wsdcon_9"], runs).run_id == "25M_cosine_72000"


def test_held_out_coverage_uses_constants_from_the_other_model_size(shared_data: Path) -> None:
    """25M errors 10x the 100M ones: 100M-calibrated intervals miss 25M runs, and
    25M-calibrated ones cover every 100M run; a run never calibrates its own interval."""
    import numpy as np

    runs = extrapolation.load_runs()
    rng = np.random.default_rng(0)
    terms: dict[float, dict[str, tuple[float, float, float, float]]] = {}
    for prefix in (0.2, 0.4):
        terms[prefix] = {}
        for r in runs:
            big = 10.0 if r.run_id.startswith("25M") else 1.0
            e = big * 1e-3 * rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.5)
            terms[prefix][r.run_id] = (1.0, 1e-6, 0.5, e)
    cov, constants = extrapolation.loso_coverage(terms, runs)
    loro = extrapolation.loro_coverage(terms, runs)
    assert set(loro) == {0.2, 0.4} and all(0.0 <= v <= 1.0 for v in loro.values() if v is not None)
    assert set(constants) == {"25M", "100M"}
    assert cov[0.2] is not None and cov[0.4] is not None
    assert 0.4 <= cov[0.2] <= 0.6  # all 100M runs covered, few 25M ones
    assert constants["100M"][1] > constants["25M"][1] or constants["100M"][0] > constants["25M"][0]
    one_size = [r for r in runs if r.run_id.startswith("100M")]
    assert extrapolation.loso_coverage({0.2: {}}, one_size) == ({}, {})
