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
