import json
from pathlib import Path

from benchmarks import mixture_surrogate


def test_tiny_run_writes_outputs_and_meets_the_64_run_target(
    shared_data: Path, tmp_path: Path, capsys
) -> None:
    assert mixture_surrogate.main(["--tiny", "--out", str(tmp_path)]) == 0
    payload = json.loads((tmp_path / "mixture_surrogate.json").read_text())
    assert payload["tiny"] is True and payload["sizes"] == [32, 64]
    cells = {(s["n_train"], s["kind"]): s for s in payload["summary"]}
    assert set(cells) == {(n, k) for n in (32, 64) for k in ("gp", "ridge", "linear")}
    assert cells[(64, "gp")]["spearman_1m"] >= 0.92
    assert cells[(64, "gp")]["spearman_1m"] > cells[(64, "linear")]["spearman_1m"]
    assert {s["kind"] for s in payload["summary_60m"]} == {"gp", "ridge", "linear"}
    assert (tmp_path / "mixture_surrogate.png").read_bytes()[:4] == b"\x89PNG"
    out = capsys.readouterr().out
    assert "| train runs | model |" in out and "64 runs: Spearman" in out
