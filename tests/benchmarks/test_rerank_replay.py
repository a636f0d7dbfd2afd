import json
from pathlib import Path

import pytest

from benchmarks import rerank_replay


@pytest.mark.slow
def test_tiny_run_compares_rerank_with_baselines(shared_data: Path, tmp_path: Path, capsys) -> None:
    assert rerank_replay.main(["--tiny", "--out", str(tmp_path)]) == 0
    payload = json.loads((tmp_path / "rerank_replay.json").read_text())
    assert payload["tiny"] is True and len(payload["results"]) == 2
    for r in payload["results"]:
        m = r["methods"]
        assert {"RetrievalRerank", "short-budget loss", "train all to the end"} <= set(m)
        assert m["train all to the end"]["true_rank"] == 1
        assert m["train all to the end"]["compute_pct"] == 100.0
        rr = m["RetrievalRerank"]
        assert 1 <= rr["true_rank"] <= r["candidates"] and rr["regret"] >= 0
        assert m["short-budget loss"]["compute_pct"] < rr["compute_pct"] < 100.0
    assert "70M final loss" in payload["results"][1]["methods"]
    assert (tmp_path / "rerank_replay.png").read_bytes()[:4] == b"\x89PNG"
    assert "| family | size |" in capsys.readouterr().out
