"""TaskSet loader against the facts in learning_curves/taskset/MANIFEST.md."""

from __future__ import annotations

import numpy as np
import pytest

from lawsearch.recorded import SharedDataMissing
from lawsearch.recorded.taskset import HYPERPARAMETERS, load_taskset, taskset_tasks

pytestmark = pytest.mark.shared_data

TASK = "FixedTextRNNClassification_imdb_patch128_LSTM128_avg_bs64"


def test_tasks_listed(shared_data) -> None:
    tasks = taskset_tasks()
    assert len(tasks) == 9 and TASK in tasks


def test_manifest_facts(shared_data) -> None:
    t = load_taskset(TASK)
    assert t.values.shape == (1000, 51) and t.hyperparameters.shape == (1000, len(HYPERPARAMETERS))
    np.testing.assert_array_equal(t.epochs, np.arange(1, 52))
    np.testing.assert_array_equal(t.config_ids, np.arange(1000))
    assert int(t.nonfinite.sum()) == 84 and int(t.dpl_excluded.sum()) == 248
    final = np.where(np.isfinite(t.values[:, -1]), t.values[:, -1], np.inf)
    assert int(np.argmin(final)) == 811 and abs(final[811] - 0.1399) < 1e-4
    assert np.all(np.isfinite(t.values[:, 0]))  # NaN is always a tail
    assert bool(np.isnan(t.values).any(axis=1).sum() == 84)
    kept = t.dpl_filtered()
    assert kept.n_configs == 752 and not kept.nonfinite.any()
    # same configs in every task
    other = load_taskset(taskset_tasks()[1])
    np.testing.assert_array_equal(other.hyperparameters, t.hyperparameters)


def test_errors(shared_data) -> None:
    with pytest.raises(SharedDataMissing, match="`task` 'nope' not found"):
        load_taskset("nope")
    with pytest.raises(ValueError, match="`mask` must have shape"):
        load_taskset(TASK).select(np.ones(3, dtype=bool))
