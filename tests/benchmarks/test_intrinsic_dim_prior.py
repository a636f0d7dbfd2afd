import json
from pathlib import Path

import pytest

from benchmarks import intrinsic_dim_prior


@pytest.mark.slow
def test_tiny_benchmark_writes_json_markdown_and_png(tmp_path: Path, capsys) -> None:
    assert intrinsic_dim_prior.main(["--tiny", "--out", str(tmp_path)]) == 0
    payload = json.loads((tmp_path / "intrinsic_dim_prior.json").read_text())
    assert payload["tiny"] is True and payload["prefixes"] == [0.2]
    synthetic = payload["synthetic"]
    assert len(synthetic) == 2
    for row in synthetic:
        # the prior comes from the Levina-Bickel estimate, which is near the true d
        assert row["d_hat"] == pytest.approx(row["d"], rel=0.2)
        assert row["prior_mean"] == pytest.approx(2.0 / (2.0 + row["d_hat"]))
        assert 0.0 <= row["error_plain"] < 0.1 and 0.0 <= row["error_prior"] < 0.1
    fits = {(r["data"], r["fit"]) for r in payload["summary"]}
    assert ("synthetic (d known)", "no prior") in fits
    assert ("synthetic (d known)", "prior from d_hat") in fits
    if payload["recorded_status"] == "ok":
        assert ("lr_schedules (intrinsic time)", "prior, assumed d=16") in fits
    else:
        assert payload["recorded_status"].startswith("skipped")
    assert payload["verdict"]
    md = (tmp_path / "intrinsic_dim_prior.md").read_text()
    assert md.startswith("# Intrinsic-dimension exponent prior")
    assert "| data | prefix | fit | mean error |" in md
    assert (tmp_path / "intrinsic_dim_prior.png").read_bytes()[:4] == b"\x89PNG"
    assert "## Verdict" in capsys.readouterr().out
