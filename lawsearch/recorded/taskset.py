"""Loader for ``learning_curves/taskset/``: 1000 Adam configs × 51 epochs per TaskSet task."""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from lawsearch.recorded import SharedDataMissing, shared_data_dir

__all__ = ["HYPERPARAMETERS", "TaskSetTask", "load_taskset", "taskset_tasks"]

#: Adam hyperparameter columns, in file order.
HYPERPARAMETERS = (
    "learning_rate",
    "beta1",
    "beta2",
    "epsilon",
    "l1",
    "l2",
    "linear_decay",
    "exponential_decay",
)
_COLUMNS = (
    "config_id",
    *HYPERPARAMETERS,
    "epoch",
    "value",
    "train_loss",
    "test_loss",
    "nonfinite",
    "dpl_excluded",
)


@dataclass(frozen=True)
class TaskSetTask:
    """One TaskSet task: every config's validation curve (lower is better).

    Attributes:
        name: the task (file stem).
        config_ids: ``(n,)`` ints, the same configuration in every task.
        hyperparameters: ``(n, 8)`` Adam hyperparameters, columns as ``HYPERPARAMETERS``.
        epochs: ``(51,)`` the budget index 1..51.
        values: ``(n, 51)`` validation loss; NaN after divergence.
        train_loss: ``(n, 51)``.
        test_loss: ``(n, 51)``.
        nonfinite: ``(n,)`` True when the validation curve has NaN.
        dpl_excluded: ``(n,)`` True when DPL's loader drops the curve.
    """

    name: str
    config_ids: NDArray[np.int64]
    hyperparameters: NDArray[np.float64]
    epochs: NDArray[np.int64]
    values: NDArray[np.float64]
    train_loss: NDArray[np.float64]
    test_loss: NDArray[np.float64]
    nonfinite: NDArray[np.bool_]
    dpl_excluded: NDArray[np.bool_]

    @property
    def n_configs(self) -> int:
        return int(self.config_ids.size)

    def select(self, mask: NDArray[np.bool_]) -> TaskSetTask:
        """The task restricted to the configs where ``mask`` is True."""
        m = np.asarray(mask, dtype=bool)
        if m.shape != self.config_ids.shape:
            raise ValueError(f"`mask` must have shape {self.config_ids.shape}; got {m.shape}.")
        return TaskSetTask(
            name=self.name,
            config_ids=self.config_ids[m],
            hyperparameters=self.hyperparameters[m],
            epochs=self.epochs,
            values=self.values[m],
            train_loss=self.train_loss[m],
            test_loss=self.test_loss[m],
            nonfinite=self.nonfinite[m],
            dpl_excluded=self.dpl_excluded[m],
        )

    def dpl_filtered(self) -> TaskSetTask:
        """Only the curves DPL keeps (``dpl_excluded == 0``)."""
        return self.select(~self.dpl_excluded)


def taskset_tasks() -> tuple[str, ...]:
    """The task names present in the shared data, sorted."""
    folder = shared_data_dir("learning_curves/taskset")
    return tuple(sorted(p.name[: -len(".csv.gz")] for p in folder.glob("*.csv.gz")))


@lru_cache(maxsize=16)
def load_taskset(task: str) -> TaskSetTask:
    """Load one task (cached).

    Raises:
        SharedDataMissing: if the task's file is not in the shared data.
    """
    folder = shared_data_dir("learning_curves/taskset")
    path = folder / f"{task}.csv.gz"
    if not path.is_file():
        raise SharedDataMissing(
            f"`task` {task!r} not found in {folder}; choose one of {taskset_tasks()}."
        )
    with gzip.open(path, "rt") as fh:
        header = fh.readline().strip().split(",")
        if tuple(header) != _COLUMNS:
            raise ValueError(f"unexpected columns in {path}: {header}")
        table = np.loadtxt(fh, delimiter=",", dtype=float, ndmin=2)
    cid = table[:, 0].astype(np.int64)
    epoch = table[:, 9].astype(np.int64)
    order = np.lexsort((epoch, cid))
    table, cid, epoch = table[order], cid[order], epoch[order]
    ids = np.unique(cid)
    epochs = np.unique(epoch)
    n, m = ids.size, epochs.size
    if table.shape[0] != n * m:
        raise ValueError(f"{path}: expected {n}×{m} rows, got {table.shape[0]}")

    def grid(col: int) -> NDArray[np.float64]:
        return np.ascontiguousarray(table[:, col].reshape(n, m))

    first = table.reshape(n, m, -1)[:, 0, :]
    return TaskSetTask(
        name=task,
        config_ids=ids,
        hyperparameters=np.ascontiguousarray(first[:, 1:9]),
        epochs=epochs,
        values=grid(10),
        train_loss=grid(11),
        test_loss=grid(12),
        nonfinite=first[:, 13] > 0,
        dpl_excluded=first[:, 14] > 0,
    )
