import json
from pathlib import Path

import pytest

from benchmarks import search_replay


@pytest.mark.slow
def test_tiny_replay_runs_every_method(shared_data: Path, tmp_path: Path, capsys) -> None:
    assert search_replay.main(["--tiny", "--out", str(tmp_path)]) == 0
    payload = json.loads((tmp_path / "search_replay.json").read_text())
    assert payload["tiny"] is True and payload["seeds"] == 1
    cells = {(r["variant"], r["method"]) for r in payload["summary"]}
    assert cells == {(v, m) for v in ("all", "dpl") for m in search_replay.METHODS}
    by = {(r["variant"], r["method"]): r for r in payload["summary"]}
    for v in ("all", "dpl"):
        none = by[(v, "none")]
        assert none["total_pct_median"] == 100.0 and none["final_regret_max"] == 0.0
        assert by[(v, "top10@5")]["total_pct_median"] < 25.0
        for m in search_replay.METHODS:
            assert 0 < by[(v, m)]["total_pct_median"] <= 100.0
            assert 0.0 <= by[(v, m)]["false_prune_rate"] <= 1.0
    for r in payload["ranking"]:
        assert -1.0 <= r["spearman_last"] <= 1.0 and -1.0 <= r["spearman_law"] <= 1.0
        assert 0.0 <= r["recall_law"] <= 1.0
    # per task: every method in each variant, the default LawPruner checked against its rivals
    per = {(r["variant"], r["method"]): r for r in payload["per_task"]}
    assert set(per) == cells
    law = per[("all", "law")]
    assert law["in_sample"] is True and len(law["total_pct"]) == 1
    assert isinstance(law["target_met"], bool)
    for rival in ("median", "percentile"):
        gap = law["total_pct"][0] - per[("all", rival)]["total_pct"][0]
        assert law["vs"][rival]["compute_margin_pct"] == pytest.approx(gap)
        if gap >= 0:  # more compute than the rival: the target is not met against it
            assert law["vs"][rival]["met"] is False
    assert law["target_met"] is all(law["vs"][r]["met"] for r in ("median", "percentile"))
    assert payload["law_options"] == {}  # the law method runs LawPruner's defaults
    assert (tmp_path / "search_replay.png").read_bytes()[:4] == b"\x89PNG"
    out = capsys.readouterr().out
    assert "## Ranking at epoch 5" in out and "## Per task, variant 'all'" in out


def test_permutations_are_shared_by_methods_and_regret_is_normalised(shared_data: Path) -> None:
    import numpy as np

    from lawsearch.recorded.taskset import taskset_tasks

    v = search_replay._variants([taskset_tasks()[0]], 30)[1]
    order = np.random.default_rng(0).permutation(30)
    none = search_replay.run_method("none", v, order, 0)
    top = search_replay.run_method("top10@5", v, order, 0)
    assert none.total == 30 * 51 and none.completed == order.tolist()
    assert top.total == 30 * 5 + 3 * 46 and len(top.completed) == 3
    assert none.final_regret == 0.0 and v.regret(v.best) == 0.0
