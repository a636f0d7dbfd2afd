import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import grid_surrogate


def test_expected_best_of_random_matches_enumeration() -> None:
    values = [3.0, 1.0, 4.0, 1.5, 9.0, 2.6]
    for k in (1, 2, 4, 6):
        subsets = list(itertools.combinations(values, k))
        exact = np.mean([min(s) for s in subsets])
        assert grid_surrogate.expected_best_of_random(values, k) == pytest.approx(exact)
        capped = np.mean([min(2.0, *s) for s in subsets])
        assert grid_surrogate.expected_best_of_random(values, k, 2.0) == pytest.approx(capped)


@pytest.mark.slow
def test_tiny_run_scores_the_surrogate_and_proposes_fresh_grid_configs(
    tmp_path: Path, capsys
) -> None:
    try:
        grid_surrogate.grid_configs()
    except Exception as exc:  # the grid ships with a source checkout
        pytest.skip(str(exc))
    assert grid_surrogate.main(["--tiny", "--out", str(tmp_path)]) == 0
    payload = json.loads((tmp_path / "grid_surrogate.json").read_text())
    assert payload["grid_configs"] == 72 and payload["splits"] == 2
    for rec in payload["records"]:
        proposed, observed = rec["proposed"], rec["observed"]
        assert len(set(proposed)) == payload["proposals"] == 3
        assert not set(proposed) & set(observed) and len(observed) == 32
        assert -1 <= rec["spearman"]["LawSampler retrieval"] <= 1
    rows = {r["method"]: r for r in payload["summary"]}
    assert set(rows) == set(grid_surrogate.METHODS)
    assert all(r["mean_regret"] >= 0 for r in rows.values())
    # the joint surrogate ranks the held-out configs better than peak LR alone
    assert rows["LawSampler retrieval"]["spearman_mean"] > rows["LR only"]["spearman_mean"]
    assert (tmp_path / "grid_surrogate.png").read_bytes()[:4] == b"\x89PNG"
    assert "held-out configs **of the same grid**" in capsys.readouterr().out
