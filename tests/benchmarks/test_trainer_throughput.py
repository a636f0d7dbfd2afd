import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from benchmarks import trainer_throughput


@pytest.mark.slow
def test_tiny_benchmark_measures_both_loops_side_by_side(tmp_path: Path, capsys) -> None:
    assert trainer_throughput.main(["--tiny", "--out", str(tmp_path), "--repeats", "2"]) == 0
    payload = json.loads((tmp_path / "trainer_throughput.json").read_text())
    assert payload["tiny"] is True and payload["repeats"] == 2
    assert len(payload["bare_tokens_per_s"]) == len(payload["trainer_tokens_per_s"]) == 2
    assert all(v > 0 for v in payload["bare_tokens_per_s"] + payload["trainer_tokens_per_s"])
    assert payload["ratio"] == pytest.approx(payload["trainer_median"] / payload["bare_median"])
    assert payload["met"] == (payload["ratio"] >= payload["target"] == 0.9)
    md = (tmp_path / "trainer_throughput.md").read_text()
    assert "| TransformersTrainer |" in md and "## Verdict" in md
    assert (tmp_path / "trainer_throughput.png").read_bytes()[:4] == b"\x89PNG"
    assert "trainer / bare" in capsys.readouterr().out
