import itertools
import json
import math
from pathlib import Path

import numpy as np

from benchmarks import median_ceiling, search_replay

EPOCHS = search_replay.EPOCHS


def _variant(values: np.ndarray) -> search_replay.Variant:
    finals = values[:, -1][np.isfinite(values[:, -1])]
    best = float(finals.min())
    return search_replay.Variant(
        "t", "all", values, np.zeros((values.shape[0], 0)), best, float(finals.max() - best)
    )


def test_tiny_run_reports_median_and_hindsight_policies(
    shared_data: Path, tmp_path: Path, capsys
) -> None:
    assert median_ceiling.main(["--tiny", "--out", str(tmp_path)]) == 0
    payload = json.loads((tmp_path / "median_ceiling.json").read_text())
    assert payload["tiny"] is True and payload["seeds"] == 1 and payload["max_cuts"] == 2
    assert len(payload["per_task"]) == len(payload["tasks"]) == 1
    for row in payload["per_task"]:
        assert row["variant"] == "all" and row["good_configs"] >= 1
        assert len(row["orders"]) == 1
        for o in row["orders"]:
            one, two = o["cut1"], o["cut2"]
            assert one is not None and two is not None
            # ≤ 2 cuts includes the 1-cut policies; no policy costs more than no pruning
            assert two["total_pct"] <= one["total_pct"] <= row["no_cut_pct"] <= 100.0
            for p in (one, two):
                assert 0.0 < p["to_05_pct"] <= p["total_pct"]
                if o["median_to_05_pct"] is not None:
                    assert p["to_05_pct"] <= o["median_to_05_pct"]
                assert p["met"] == (p["total_pct"] < o["median_total_pct"])
                assert len(p["epochs"]) == len(p["thresholds"])
                assert list(p["epochs"]) == sorted(set(p["epochs"]))
        for family in (1, 2):
            assert row[f"feasible_cut{family}"] == all(
                o[f"cut{family}"]["met"] for o in row["orders"]
            )
    assert (tmp_path / "median_ceiling.png").read_bytes()[:4] == b"\x89PNG"
    md = (tmp_path / "median_ceiling.md").read_text()
    assert "feasible on" in md and "feasible on" in capsys.readouterr().out


def test_replay_policy_counts_compute_and_regret_by_hand() -> None:
    # 4 flat curves (final = value everywhere): config 2 is the best, config 3 diverges
    # at epoch 4. Cut at epoch 2 keeping values ≤ 2.0.
    values = np.tile(np.array([[3.0], [2.0], [1.0], [2.5]]), (1, EPOCHS))
    values[3, 3:] = np.nan
    v = _variant(values)  # best 1.0, scale 2.0 (max finite final 3.0)
    order = np.array([0, 1, 3, 2])
    r = median_ceiling.replay_policy(v, order, [(2, 2.0)])
    # config 0: cut at 2; config 1: to 51 (regret (2-1)/2 = 0.5); config 3: cut at 2;
    # config 2: to 51 (regret 0)
    assert r.total == 2 + 51 + 2 + 51
    assert r.completed == [1, 2]
    assert r.trace_compute == [53.0, 106.0]
    assert r.trace_regret == [0.5, 0.0]
    assert r.compute_to(0.05) == 100.0 * 106 / (4 * EPOCHS)
    # with no cut the diverged config stops at its first NaN epoch (4) and is "completed"
    # only if it reaches epoch 51; it is not
    r = median_ceiling.replay_policy(v, order, [])
    assert r.total == 51 + 51 + 4 + 51 and r.completed == [0, 1, 2]


def _brute_force(
    v: search_replay.Variant, order: np.ndarray, rival_to: float | None, epochs: range
) -> dict[int, tuple[float, float]]:
    """Least (total, time) per family over every threshold that changes who passes."""
    best: dict[int, tuple[float, float]] = {}
    for cuts in (1, 2):
        for es in itertools.combinations(epochs, cuts):
            levels = [[*np.unique(v.values[:, e - 1][np.isfinite(v.values[:, e - 1])]), math.inf]
                      for e in es]  # fmt: skip
            for ts in itertools.product(*levels):
                r = median_ceiling.replay_policy(v, order, list(zip(es, ts, strict=True)))
                to = r.compute_to(median_ceiling.LEVEL)
                if to is None or (rival_to is not None and to > rival_to):
                    continue
                key = (100.0 * r.total / r.full, to)
                for family in range(cuts, 3):
                    if family not in best or key < best[family]:
                        best[family] = key
    return best


def test_good_config_thresholds_match_a_brute_force_search() -> None:
    # the curves move only over epochs 1-3, so a cut later than epoch 4 passes the same
    # configs as one at epoch 3 and costs more: brute force over epochs 1..4 is exhaustive
    rng = np.random.default_rng(0)
    for trial in range(4):
        n = 12
        start = rng.uniform(0.5, 2.0, (n, 1))
        drift = rng.normal(0.0, 0.4, (n, 2)).cumsum(axis=1)
        values = np.hstack([start, start + drift])
        values = np.hstack([values, np.repeat(values[:, -1:], EPOCHS - 3, axis=1)])
        values[0, 2:] = np.nan  # one diverged curve
        v = _variant(values)
        order = rng.permutation(n)
        for rival_to in (None, 40.0, 60.0):
            got, good = median_ceiling.best_policies(v, order, rival_to)
            assert good >= 1
            want = _brute_force(v, order, rival_to, range(1, 5))
            for family in (1, 2):
                p = got[family]
                if family not in want:
                    assert p is None
                    continue
                assert p is not None, (trial, rival_to, family)
                assert (p["total_pct"], p["to_05_pct"]) == want[family], (trial, rival_to)
