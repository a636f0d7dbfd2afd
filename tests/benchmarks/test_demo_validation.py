import json
from pathlib import Path

import pytest

from benchmarks import demo_validation


@pytest.mark.slow
@pytest.mark.torch
def test_tiny_demo_validation_writes_json_markdown_and_png(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert demo_validation.main(["--tiny", "--out", str(tmp_path)]) == 0
    r = json.loads((tmp_path / "demo_validation.json").read_text())
    assert r["tiny"] is True and r["candidates"] == 4
    assert 1 <= r["pick_true_rank"] <= r["candidates"]
    assert r["pick_regret"] >= 0
    # the search trained less than every candidate to the full budget
    assert 0 < r["compute_fraction"] < 1
    assert r["search_compute_tokens"] < r["full_compute_tokens"]
    # training is deterministic: the survivor's observed final equals its ground truth
    assert r["search_vs_truth_max_abs_diff"] < 1e-4
    ranks = sorted(c["true_rank"] for c in r["per_candidate"])
    assert ranks[0] == 1 and len(ranks) == 4
    assert {t["target"] for t in r["targets"]} == {
        "search compute <= 35% of training all fully",
        "pick in the true top 2",
    }
    md = (tmp_path / "demo_validation.md").read_text()
    assert md.startswith("# Demo validation (demo_tiny, tiny)")
    assert "| true rank of the pick |" in md
    assert (tmp_path / "demo_validation.png").read_bytes()[:4] == b"\x89PNG"
    assert "## Targets" in capsys.readouterr().out
