import json
from pathlib import Path

import pytest

from benchmarks import reconnect


@pytest.mark.postgres
def test_tiny_run_times_each_call_on_each_storage(
    tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    server = postgres_url.rsplit("/", 1)[0]
    assert reconnect.main(["--tiny", "--out", str(tmp_path), "--postgres", server]) == 0
    payload = json.loads((tmp_path / "reconnect.json").read_text())
    cells = {(r["call"], r["storage"]) for r in payload["rows"]}
    calls = ("get_trial", "create_new_trial", "set_trial_state_values")
    storages = (
        "optuna RDBStorage",
        "ReconnectingRDBStorage",
        "ReconnectingRDBStorage, no pre-ping",
    )
    assert cells == {(c, s) for c in calls for s in storages}
    assert all(r["calls"] == 20 and 0 < r["p50_ms"] <= r["p99_ms"] for r in payload["rows"])
    assert "| call | storage |" in capsys.readouterr().out
