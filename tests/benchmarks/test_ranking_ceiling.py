import json
from pathlib import Path

import numpy as np

from benchmarks import ranking_ceiling, search_replay


def test_tiny_run_reports_ceiling_correctors_and_bound(
    shared_data: Path, tmp_path: Path, capsys
) -> None:
    assert ranking_ceiling.main(["--tiny", "--out", str(tmp_path)]) == 0
    payload = json.loads((tmp_path / "ranking_ceiling.json").read_text())
    assert payload["tiny"] is True and payload["seeds"] == 1 and payload["max_cuts"] == 1
    for variant in ("all", "dpl"):
        ceiling = {r["epoch"]: r for r in payload["noise_ceiling"] if r["variant"] == variant}
        assert set(ceiling) == set(ranking_ceiling.LAST_EPOCHS)
        for r in ceiling.values():
            assert -1.0 <= r["spearman"] <= 1.0 and 0.0 <= r["recall"] <= 1.0
        # the curve carries more of the final's ranking late than early
        assert ceiling[50]["spearman"] >= ceiling[5]["spearman"]
        methods = {
            (r["fraction"], r["method"]) for r in payload["learned"] if r["variant"] == variant
        }
        assert methods == {
            (f, m)
            for f in ranking_ceiling.FRACTIONS
            for m in ("last value", *ranking_ceiling.CORRECTORS)
        }
    for r in payload["learned"]:
        assert -1.0 <= r["spearman"] <= 1.0 and 0.0 <= r["recall"] <= 1.0
    for r in payload["false_prune_bound"]:
        cut = r["cut1"]
        assert 0.0 <= cut["compute_pct"] <= r["no_cut_pct"] <= 100.0
        assert cut["false_prune_rate"] <= ranking_ceiling.MAX_FALSE_PRUNE
        assert len(cut["epochs"]) <= 1
    assert (tmp_path / "ranking_ceiling.png").read_bytes()[:4] == b"\x89PNG"
    assert "## 3. Cost of false-prune" in capsys.readouterr().out


def test_rank_metrics_match_search_replay_at_epoch_5(shared_data: Path) -> None:
    from lawsearch.recorded.taskset import taskset_tasks

    v = search_replay._variants([taskset_tasks()[0]], 150)[0]
    got = search_replay.ranking_at_short(v, 0, with_law=False)
    rho, recall = ranking_ceiling.rank_metrics(v.values[:, 4], v.values[:, -1])
    assert (rho, recall) == (got["spearman_last"], got["recall_last"])


def test_hindsight_bound_is_exact_on_a_hand_made_task() -> None:
    # 20 configs, one true winner (top 5 % = 1 config, none may be given up): the winner
    # is 3rd at epoch 1, 1st from epoch 2 on, so the cheapest single cut is at epoch 2
    # keeping only it: 20·2 + 1·49 epochs.
    n = ranking_ceiling.EPOCHS
    values = np.tile(np.linspace(1.0, 2.0, 20)[:, None], (1, n))
    values[0, 0] = 1.15
    best = float(values[:, -1].min())
    v = search_replay.Variant("t", "all", values, np.zeros((20, 0)), best, 1.0)
    bound = ranking_ceiling.hindsight_bound(v, max_cuts=2)
    assert bound["top"] == 1 and bound["give_up"] == 0
    assert bound["cut1"]["epochs"] == [2]
    assert bound["cut1"]["compute_pct"] == 100.0 * (20 * 2 + 49) / (20 * n)
    assert bound["cut2"]["compute_pct"] <= bound["cut1"]["compute_pct"]
    assert bound["cut1"]["false_prune_rate"] == 0.0
