from pathlib import Path

import numpy as np
import pytest

from lawsearch.recorded import SharedDataMissing, shared_data_dir
from lawsearch.recorded.lr_schedules import load_lr_schedule_runs


def test_missing_folder_names_the_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAWSEARCH_SHARED_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(SharedDataMissing, match="LAWSEARCH_SHARED_DATA"):
        shared_data_dir("lr_schedules")


def test_lr_schedule_runs_match_the_manifest(shared_data: Path) -> None:
    runs = {r.run_id: r for r in load_lr_schedule_runs()}
    assert len(runs) == 18
    # sanity facts from lr_schedules/MANIFEST.md
    assert runs["100M_wsd_20000_24000"].losses[-1] == pytest.approx(2.9514)
    assert runs["25M_constant_72000"].losses[-1] == pytest.approx(3.2573)
    for run in runs.values():
        assert np.all(np.diff(run.steps) > 0)
        assert run.lr_per_step.size == run.total_steps
        # the per-step LR agrees with the logged LR at every logged step
        idx = run.steps.astype(int)
        np.testing.assert_allclose(run.lr_per_step[idx], run.lrs, rtol=1e-12)
