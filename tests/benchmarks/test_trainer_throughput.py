import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from benchmarks import trainer_throughput


@pytest.mark.slow
def test_tiny_benchmark_measures_loops_and_the_data_pipeline(tmp_path: Path, capsys) -> None:
    argv = ["--tiny", "--out", str(tmp_path), "--repeats", "2", "--sizes", "0.001"]
    assert trainer_throughput.main(argv) == 0
    payload = json.loads((tmp_path / "trainer_throughput.json").read_text())
    assert payload["tiny"] is True and payload["repeats"] == 2
    train = payload["train"]
    for runs in train["tokens_per_s"].values():
        assert len(runs) == 2 and all(v > 0 for v in runs)
    med = train["median"]
    assert train["ratio_one_eval"] == pytest.approx(med["one_eval"] / med["bare"])
    assert train["ratio_demo_cadence"] == pytest.approx(med["demo_cadence"] / med["bare"])
    assert train["eval_every"] == 4 and train["domains"] == 5  # the demo study's cadence
    rows = payload["data"]["rows"]
    assert [round(r["size_gb"], 3) for r in rows] == [0.001]
    for r in rows:
        assert r["train_tokens"] > 0 and r["peak_gb"] >= r["baseline_gb"] > 0
        assert 0 < r["reuse_s"] and r["step_s"] > 0
    md = (tmp_path / "trainer_throughput.md").read_text()
    assert "| TransformersTrainer, demo cadence |" in md and "## Data pipeline" in md
    assert (tmp_path / "trainer_throughput.png").read_bytes()[:4] == b"\x89PNG"
    assert "demo cadence / bare" in capsys.readouterr().out
