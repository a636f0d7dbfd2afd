import json
from pathlib import Path

import pytest

from benchmarks import workers


class _Owner:
    def __init__(self, probe: workers.Probe) -> None:
        self.probe = probe

    def outer(self) -> int:
        self.probe.count()
        return self.inner() + 1

    def inner(self) -> int:
        self.probe.count()
        self.probe.count()
        return 1


def test_probe_counts_round_trips_inclusively_per_call() -> None:
    probe = workers.Probe()
    probe.wrap(_Owner, "outer", "outer")
    probe.wrap(_Owner, "inner", "inner")
    try:
        owner = _Owner(probe)
        assert owner.outer() == 2
        probe.count()  # made outside any wrapped call
    finally:
        probe.uninstall()
    assert [n for _, n in probe.calls["outer"]] == [3]  # its own and its inner call's
    assert [n for _, n in probe.calls["inner"]] == [2]
    assert probe.total == 4 and probe.untagged == 1
    assert _Owner.outer.__name__ == "outer"  # restored


def test_rung_steps_are_the_first_report_of_each_rung() -> None:
    from lawsearch.optuna import LawPruner

    pruner = LawPruner(target_step=240, min_points=1, rung_factor=2.0)
    steps = [3, 6, 9, 12, 15, 18, 21, 24, 27]
    got = [s for i, s in enumerate(steps) if workers._is_rung_step(pruner, steps[: i + 1])]
    # rung_of(step) = 1 + floor(log2(step)): steps 2-3, 4-7, 8-15 and 16-31 share a rung
    assert got == [3, 6, 9, 18]
    assert [pruner.rung_of(s) for s in got] == [2, 3, 4, 5]


@pytest.mark.slow
def test_tiny_run_on_the_journal(tmp_path: Path, capsys) -> None:
    assert workers.main(["--tiny", "--storages", "journal", "--out", str(tmp_path)]) == 0
    payload = json.loads((tmp_path / "workers.json").read_text())
    assert payload["tiny"] is True and payload["latency"] == []
    rows = payload["throughput"]
    assert [(r["storage"], r["workers"]) for r in rows] == [("journal", 1), ("journal", 2)]
    for r in rows:
        assert r["screened"] == 4 and r["trials"] >= 4  # every candidate, plus continuations
        assert r["screen_trials_per_min"] > 0 and 0 < r["training_share"] <= 1
        # the screens' own steps: part of all steps trained (continuations add theirs)
        assert 0 < r["screen_steps"] <= r["steps_trained"] and r["screen_steps_per_min"] > 0
    calls = {r["call"]: r for r in payload["round_trips"]}
    assert calls["report"]["round_trips_mean"] >= 1  # a report appends to the journal
    assert (
        calls["all, per finished trial"]["round_trips_mean"] > calls["report"]["round_trips_mean"]
    )
    assert (tmp_path / "workers.png").read_bytes()[:4] == b"\x89PNG"
    assert "| storage | workers |" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.postgres
def test_tiny_run_on_postgresql_drops_its_database(postgres_url: str, tmp_path: Path) -> None:
    import sqlalchemy

    server = postgres_url.rsplit("/", 1)[0]
    args = ["--tiny", "--storages", "postgresql", "--postgres", server, "--out", str(tmp_path)]
    assert workers.main(args) == 0
    payload = json.loads((tmp_path / "workers.json").read_text())
    assert payload["postgres_skipped"] is None
    assert {r["workers"] for r in payload["throughput"]} == {1, 2}
    (lat,) = payload["latency"]
    assert lat["trials"] == 40 and lat["prune_calls"] > 0 and lat["sample_relative_calls"] == 1
    # every pruner call is either a rung decision (a fit) or a report between rungs
    assert lat["prune_rung_calls"] + lat["prune_between_calls"] == lat["prune_calls"]
    calls = {r["call"]: r for r in payload["round_trips"]}
    assert calls["tell"]["round_trips_mean"] >= 1 and calls["should_prune"]["calls"] > 0
    engine = sqlalchemy.create_engine(postgres_url)
    with engine.connect() as c:
        left = c.execute(
            sqlalchemy.text("SELECT datname FROM pg_database WHERE datname LIKE :p"),
            {"p": workers.DATABASE + "%"},
        ).all()
    engine.dispose()
    assert left == []
