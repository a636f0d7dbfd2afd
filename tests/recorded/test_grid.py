"""The grid loader on a small grid recorded in the test (the real trainer, from step 0)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lawsearch.recorded import SharedDataMissing
from lawsearch.recorded.grid import grid_dir, load_grid

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def tiny_grid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    from benchmarks import record_grid

    out = tmp_path_factory.mktemp("grid")
    assert record_grid.main(["--tiny", "--jobs", "1", "--out", str(out)]) == 0
    return out


def test_loads_every_run_from_step_0_with_its_exact_schedule(tiny_grid: Path) -> None:
    runs = load_grid(tiny_grid, positions=True)
    assert [r.run_id for r in runs] == ["core000", "core001", "core002", "core003", "seeds004"]
    for run in runs:
        assert run.steps[0] == 0 and np.all(np.diff(run.steps) > 0)
        assert run.steps[-1] == run.full_steps
        assert run.tokens[0] == 0
        # at step 0 a fresh model sits near log(vocab): nothing trained yet
        assert run.losses[0] == pytest.approx(np.log(300), rel=0.02)
        assert run.losses[-1] < run.losses[0]
        assert sum(run.mixture.values()) == pytest.approx(1.0)
        assert set(run.domain_losses) == set(run.mixture)
        mean = np.mean([run.domain_losses[d] for d in run.mixture], axis=0)
        np.testing.assert_allclose(mean, run.losses, rtol=1e-5)
        assert run.lr_per_step.size == run.full_steps
        assert run.positions is not None and run.positions.shape[0] == run.steps.size


def test_seed_repeats_share_a_config_and_blocks_filter(tiny_grid: Path) -> None:
    runs = {r.run_id: r for r in load_grid(tiny_grid)}
    assert runs["seeds004"].config_key() == runs["core000"].config_key()
    assert runs["seeds004"].seed != runs["core000"].seed
    assert runs["seeds004"].losses[-1] != runs["core000"].losses[-1]
    assert [r.run_id for r in load_grid(tiny_grid, blocks=("seeds",))] == ["seeds004"]


def test_missing_grid_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAWSEARCH_GRID_DATA", str(tmp_path))
    with pytest.raises(SharedDataMissing, match="LAWSEARCH_GRID_DATA"):
        grid_dir()
