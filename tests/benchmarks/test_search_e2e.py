import json
from pathlib import Path

import pytest

from benchmarks import search_e2e


@pytest.mark.slow
def test_tiny_run_replays_every_method_on_the_grid(tmp_path: Path, capsys) -> None:
    assert search_e2e.main(["--tiny", "--out", str(tmp_path)]) == 0
    payload = json.loads((tmp_path / "search_e2e.json").read_text())
    rows = {r["method"]: r for r in payload["rows"]}
    assert set(rows) == set(search_e2e.METHODS)
    for r in rows.values():
        assert r["candidates"] == 6 and r["seeds"] == 2
        assert r["median_regret"] >= 0 and 0 < r["median_compute"] <= 1
    # training every candidate fully costs the most, and its pick is the best of them
    everything = rows["train everything"]
    assert all(r["median_compute"] <= everything["median_compute"] for r in rows.values())
    assert rows["lawsearch"]["median_compute"] < everything["median_compute"]
    assert (tmp_path / "search_e2e.png").read_bytes()[:4] == b"\x89PNG"
    assert "| candidates | method |" in capsys.readouterr().out


def test_an_optuna_baseline_replays_the_same_on_every_run() -> None:
    # HyperbandPruner picks a trial's bracket from a hash of the study name, and Optuna's
    # default name is a random UUID: the baseline must name its study to be reproducible
    from lawsearch.recorded.grid import load_grid

    runs = [r for r in load_grid(None, models=("demo",)) if r.block != "seeds"]
    best = min(r.final_loss for r in runs)
    got = {
        search_e2e.search_once("TPE + HyperbandPruner", runs, seed, 20, best) for seed in (3, 3, 3)
    }
    assert len(got) == 1


def test_lost_at_says_where_a_proposed_winner_was_dropped() -> None:
    def outcome(regret: float, proposed: float, reached: int) -> search_e2e.Outcome:
        return search_e2e.Outcome("m", 0, 10, "x", regret, 1.0, proposed, reached)

    got = search_e2e.lost_at(
        [
            outcome(0.10, 0.0, 6),  # a pruner stopped it in the screen
            outcome(0.10, 0.001, 48),  # the first cut dropped it
            outcome(0.02, 0.0, 96),  # a later cut
            outcome(0.0, 0.0, 240),  # picked: not lost
            outcome(0.10, 0.03, 6),  # never proposed within the target: not a cut's loss
        ],
        48,
    )
    assert got == {"in_screen": 1, "at_screen": 1, "later": 1}


def test_set_changes_lawsearch_study_keys(tmp_path: Path) -> None:
    assert search_e2e._setting("pruner.warmup_steps=24") == ("pruner.warmup_steps", 24)
    assert search_e2e._setting("search.explore_fraction = 0.5") == ("search.explore_fraction", 0.5)
    for bad in ("explore_fraction=0.5", "search.explore_fraction", "search.x=half"):
        with pytest.raises(SystemExit, match="--set"):
            search_e2e._setting(bad)
    cfg = search_e2e.study_config(
        tmp_path, seed=0, candidates=8, settings={"search.explore_fraction": 0.5}
    )
    assert cfg.search.explore_fraction == 0.5 and cfg.search.candidates == 8
