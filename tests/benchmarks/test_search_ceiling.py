import itertools
import json
import math
from pathlib import Path

import optuna
import pytest

from benchmarks import search_ceiling, search_e2e


@pytest.fixture(scope="module")
def runs() -> list:
    from lawsearch.recorded.grid import load_grid

    return [r for r in load_grid(None, models=("demo",)) if r.block != "seeds"]


@pytest.fixture(scope="module")
def grid(runs: list) -> search_ceiling.Grid:
    return search_ceiling.load(runs)


def test_tiny_run_writes_both_tables(tmp_path: Path, capsys) -> None:
    assert search_ceiling.main(["--tiny", "--out", str(tmp_path)]) == 0
    payload = json.loads((tmp_path / "search_ceiling.json").read_text())
    (row,) = payload["proposals"]
    assert row["candidates"] == 6 and len(row["floors"]) == 6
    assert payload["grid_winners"] == 3 and payload["held_out_seeds"] == [3, 4, 5]
    assert payload["more_seeds"] == [6, 7, 8]
    study = payload["study_cuts"]
    assert [r["sampler"] for r in study] == [*search_ceiling.SAMPLERS, "random"]
    assert study[-1]["rule"] == "keep 1 at 48"  # search_e2e's top-k short
    for r in study:  # a pick within the target needs candidates that contain a winner
        assert 0 <= r["within_more"] <= r["contains_more"] <= 1
    for r in payload["fixed_rules"]:
        assert 0 < r["compute"] <= r["cap"]
    assert (tmp_path / "search_ceiling.png").read_bytes()[:4] == b"\x89PNG"
    assert "fixed rule chosen in-sample" in capsys.readouterr().out


def test_top_k_short_is_the_rule_that_keeps_a_tenth_at_the_screen(runs: list, grid) -> None:
    # the rule family replays search_e2e's RegMix-style baseline exactly, pick and compute
    n, seed = 20, 5
    best = min(r.final_loss for r in runs)
    outcome = search_e2e.search_once("random + top-k short", runs, seed, n, best)
    rule = search_ceiling.Rule(search_e2e.SCREEN_STEPS, n // 10)
    proposals = search_ceiling.proposals(runs, seed, n)
    assert grid.run_ids[rule.pick(grid, proposals)] == outcome.pick
    assert rule.cost(n) == outcome.steps


@pytest.mark.parametrize("seed", range(4))
def test_no_rule_that_keeps_a_winner_is_cheaper_than_the_hindsight_floor(
    runs: list, grid, seed: int
) -> None:
    n = 30
    proposals = search_ceiling.proposals(runs, seed, n)
    floor = search_ceiling.hindsight_floor(grid, proposals)
    picked_a_winner = [
        r.cost(n) for r in search_ceiling.rules(n) if grid.winners[r.pick(grid, proposals)]
    ]
    if not any(grid.winners[p] for p in proposals):
        assert floor == math.inf and not picked_a_winner
    else:
        assert floor <= n * search_e2e.FULL_STEPS
        assert all(floor <= cost for cost in picked_a_winner)


def test_uniform_containment_is_exact() -> None:
    configs, winners = range(7), {0, 3}
    for n in range(1, 8):
        draws = list(itertools.combinations(configs, n))
        share = sum(bool(winners & set(d)) for d in draws) / len(draws)
        assert search_ceiling.uniform_contains(7, 2, n) == pytest.approx(share)


def test_sobol_proposals_are_what_lawsearch_trains_with_explore_fraction_one(
    runs: list, grid, tmp_path: Path
) -> None:
    # LawSampler with explore_fraction = 1 proposes the same whatever the losses: the
    # ceiling's candidates are the ones the whole search (search_e2e) trains
    from lawsearch.study import build_pruner, build_sampler, build_search, open_study_storage

    n, seed = 8, 2
    cfg = search_e2e.study_config(
        tmp_path, seed=seed, candidates=n, settings={"search.explore_fraction": 1.0}
    )
    replay = search_e2e.GridReplay(runs)
    study = optuna.create_study(
        study_name=cfg.name,
        storage=open_study_storage(cfg),
        sampler=build_sampler(cfg),
        pruner=build_pruner(cfg),
    )
    build_search(cfg, trainer=replay).run(study)
    got = {grid.run_ids[i] for i in search_ceiling.proposals(runs, seed, n, "sobol")}
    assert got == set(replay.reached)
    assert got != {grid.run_ids[i] for i in search_ceiling.proposals(runs, seed, n)}
    with pytest.raises(ValueError, match="`sampler` must be one of"):
        search_ceiling.proposals(runs, seed, n, "tpe")


def test_study_rule_keeps_what_the_study_config_keeps(tmp_path: Path) -> None:
    from lawsearch.search import sync_keep

    for n, survivors in ((40, 5), (60, 5), (20, 3), (10, 1)):
        cfg = search_e2e.study_config(
            tmp_path,
            seed=0,
            candidates=n,
            settings={
                "budgets.short_tokens": 24 * 1024,
                "search.survivors": survivors,
                "search.rungs": [0.2, 1.0],
            },
        )
        assert cfg.budget_steps == (24, 48, 240)
        rule = search_ceiling.study_rule(n, 24, 48, survivors)
        assert rule.k0 == sync_keep(n, cfg.eta)
        assert rule.k1 == sync_keep(rule.k0, cfg.eta)
