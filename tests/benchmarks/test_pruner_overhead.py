import json
from pathlib import Path

from benchmarks import pruner_overhead


def test_tiny_run_times_every_pruner(tmp_path: Path, capsys) -> None:
    assert pruner_overhead.main(["--tiny", "--out", str(tmp_path)]) == 0
    payload = json.loads((tmp_path / "pruner_overhead.json").read_text())
    assert payload["tiny"] is True
    cells = {(r["pruner"], r["trials"]) for r in payload["rows"]}
    assert cells == {
        (p, n) for p in ("LawPruner", "MedianPruner", "PercentilePruner") for n in (10, 100)
    }
    for r in payload["rows"]:
        assert r["reports"] > 0 and r["ms_per_decision"] > 0
    assert (tmp_path / "pruner_overhead.png").read_bytes()[:4] == b"\x89PNG"
    assert "| pruner | trials in study |" in capsys.readouterr().out
