import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from benchmarks import gpu_smoke


@pytest.mark.slow
def test_tiny_smoke_plans_and_trains_two_candidates_on_cpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """The GPU smoke's whole path (layout, plan, two candidates, MFU), at CPU scale."""
    monkeypatch.setenv("LAWSEARCH_CACHE", str(tmp_path / "cache"))
    assert gpu_smoke.main(["--tiny", "--out", str(tmp_path), "--peak-tflops", "1"]) == 0
    payload = json.loads((tmp_path / "gpu_smoke.json").read_text())
    assert payload["device"] == "cpu" and payload["steps"] == 24
    assert [r["candidate"] for r in payload["runs"]] == [0, 1]
    for r in payload["runs"]:
        assert r["tokens_per_s"] > 0 and 0 < r["mfu"] < 1 and r["final_loss"] > 0
    out = capsys.readouterr().out
    assert "wall time: ~" in out  # the plan timed real steps on the configured device
    assert (tmp_path / "work" / "data" / "web").is_dir()
    assert list((tmp_path / "work" / "run" / "checkpoints").rglob("*.pt"))
