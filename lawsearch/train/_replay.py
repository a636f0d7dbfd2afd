"""``ReplayTrainer``: play recorded learning curves as if training, and count the compute.

Every search strategy can then be compared on real curves in seconds: the
"training" of a configuration is its recorded curve, reported point by point
up to the step budget, and resuming a checkpoint continues the same curve
without paying again for the steps already played.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from lawsearch._picklable import PicklableLock
from lawsearch.train._protocol import ReportFn, TrainResult

__all__ = ["ReplayCurve", "ReplayTrainer"]

_TOKEN_PREFIX = "replay:"
#: tokens per optimizer step of the mixinglaws runs (4096 sequence × 256 batch)
MIXINGLAWS_TOKENS_PER_STEP = 4096 * 256


@dataclass(frozen=True)
class ReplayCurve:
    """One recorded run: ``values[i]`` was measured at optimizer step ``steps[i]``.

    Attributes:
        steps: strictly increasing positive ints.
        values: the reported objective (NaN allowed: a diverged run).
        extras: name → per-point array of the same length, reported alongside.
    """

    steps: NDArray[np.int64]
    values: NDArray[np.float64]
    extras: Mapping[str, NDArray[np.float64]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.steps.ndim != 1 or self.steps.shape != self.values.shape or self.steps.size == 0:
            raise ValueError(
                f"`steps` and `values` must be non-empty 1-D arrays of one length; got "
                f"{self.steps.shape} and {self.values.shape}."
            )
        if self.steps[0] < 1 or np.any(np.diff(self.steps) <= 0):
            raise ValueError("`steps` must be positive and strictly increasing.")
        for name, arr in self.extras.items():
            if arr.shape != self.steps.shape:
                raise ValueError(
                    f"extra {name!r} has shape {arr.shape}; expected {self.steps.shape}."
                )

    @classmethod
    def of(
        cls,
        steps: ArrayLike,
        values: ArrayLike,
        extras: Mapping[str, ArrayLike] | None = None,
    ) -> ReplayCurve:
        s = np.asarray(steps)
        if s.size and not np.all(s == np.round(s)):
            raise ValueError("`steps` must be whole optimizer steps.")
        return cls(
            steps=s.astype(np.int64),
            values=np.asarray(values, dtype=float),
            extras={k: np.asarray(v, dtype=float) for k, v in (extras or {}).items()},
        )

    @property
    def last_step(self) -> int:
        return int(self.steps[-1])


class ReplayTrainer(PicklableLock):
    """A :class:`~lawsearch.train.Trainer` that replays recorded curves.

    ``train(config, budget_steps=b, resume_from=ckpt, report=fn)`` looks up the
    curve of ``config[config_key]``, reports every recorded point with
    ``resume step < step <= b`` and returns a :class:`TrainResult` whose
    ``checkpoint`` is a token ``replay:[key, step]`` for continuation.

    Compute: a call that trains from step ``s0`` (0, or the checkpoint's step)
    to step ``s1`` (the budget, the end of the curve, or where ``report``
    stopped it) costs ``(s1 - s0) * compute_per_step``. The running total is
    :attr:`compute_used` (thread-safe); :attr:`compute_by_key` splits it.

    Args:
        curves: key → :class:`ReplayCurve` (or a ``(steps, values)`` pair).
        config_key: the ``config`` entry that names the curve.
        compute_per_step: compute of one optimizer step (e.g. tokens per step).
        compute_unit: the unit of ``compute_per_step``.
        step_seconds: wall seconds one optimizer step takes: before reporting a
            point the replay sleeps ``(step - previous step) * step_seconds``, so
            several workers replaying at once spend their time as training would
            (waiting, not computing) and what differs between them is coordination.
            0 (the default) replays at once.
    """

    def __init__(
        self,
        curves: Mapping[Any, ReplayCurve | tuple[ArrayLike, ArrayLike]],
        *,
        config_key: str = "config_id",
        compute_per_step: float = 1.0,
        compute_unit: str = "steps",
        step_seconds: float = 0.0,
    ) -> None:
        if not curves:
            raise ValueError("`curves` is empty; pass at least one recorded curve.")
        if not compute_per_step > 0:
            raise ValueError(f"`compute_per_step` must be > 0; got {compute_per_step!r}.")
        if not (math.isfinite(step_seconds) and step_seconds >= 0):
            raise ValueError(f"`step_seconds` must be >= 0; got {step_seconds!r}.")
        self.curves: dict[Hashable, ReplayCurve] = {
            k: c if isinstance(c, ReplayCurve) else ReplayCurve.of(*c) for k, c in curves.items()
        }
        self.config_key = config_key
        self.compute_per_step = float(compute_per_step)
        self.compute_unit = compute_unit
        self.step_seconds = float(step_seconds)
        self._lock = threading.Lock()
        self._by_key: dict[Hashable, float] = {}

    # ------------------------------------------------------------ accounting
    @property
    def compute_used(self) -> float:
        """Compute consumed by every ``train`` call of this object so far."""
        with self._lock:
            return float(sum(self._by_key.values()))

    @property
    def compute_by_key(self) -> dict[Hashable, float]:
        with self._lock:
            return dict(self._by_key)

    def reset_compute(self) -> None:
        with self._lock:
            self._by_key.clear()

    def full_compute(self, keys: list[Hashable] | None = None) -> float:
        """Compute of training ``keys`` (default: every curve) to their last step."""
        chosen = self.curves if keys is None else {k: self.curves[k] for k in keys}
        return float(sum(c.last_step for c in chosen.values())) * self.compute_per_step

    # --------------------------------------------------------------- tokens
    @staticmethod
    def checkpoint_token(key: Hashable, step: int) -> str:
        return _TOKEN_PREFIX + json.dumps([key, int(step)])

    @staticmethod
    def parse_checkpoint(token: str) -> tuple[Hashable, int]:
        """``(key, step)`` of a token made by :meth:`checkpoint_token`."""
        try:
            if not token.startswith(_TOKEN_PREFIX):
                raise ValueError
            key, step = json.loads(token[len(_TOKEN_PREFIX) :])
            return (tuple(key) if isinstance(key, list) else key), int(step)
        except (ValueError, TypeError, json.JSONDecodeError):
            raise ValueError(
                f"`resume_from` {token!r} is not a replay checkpoint; pass the `checkpoint` "
                "of a TrainResult returned by ReplayTrainer.train."
            ) from None

    # ---------------------------------------------------------------- train
    def key_of(self, config: Mapping[str, Any]) -> Hashable:
        try:
            key = config[self.config_key]
        except KeyError:
            raise ValueError(
                f"`config` has no {self.config_key!r} entry naming the recorded curve; "
                f"got keys {sorted(config)}."
            ) from None
        if key not in self.curves:
            raise ValueError(f"`config[{self.config_key!r}]` = {key!r} has no recorded curve.")
        return key

    def train(
        self,
        config: Mapping[str, Any],
        *,
        budget_steps: int,
        resume_from: str | None = None,
        report: ReportFn,
    ) -> TrainResult:
        """Replay ``config``'s curve from ``resume_from`` (or the start) to ``budget_steps``."""
        key = self.key_of(config)
        if int(budget_steps) != budget_steps or budget_steps < 1:
            raise ValueError(f"`budget_steps` must be a positive integer; got {budget_steps!r}.")
        start = 0
        if resume_from is not None:
            ck_key, start = self.parse_checkpoint(resume_from)
            if ck_key != key:
                raise ValueError(
                    f"`resume_from` is a checkpoint of {ck_key!r}, not of {key!r}; "
                    "resume a run from its own checkpoint."
                )
        curve = self.curves[key]
        end = min(int(budget_steps), curve.last_step)
        reached = start
        stopped = False
        steps: list[int] = []
        values: list[float] = []
        try:
            lo = int(np.searchsorted(curve.steps, start, side="right"))
            hi = int(np.searchsorted(curve.steps, end, side="right"))
            for i in range(lo, hi):
                step = int(curve.steps[i])
                value = float(curve.values[i])
                if self.step_seconds:
                    time.sleep((step - reached) * self.step_seconds)
                reached = step
                steps.append(step)
                values.append(value)
                extras = {k: float(v[i]) for k, v in curve.extras.items()}
                if report(step, value, extras):
                    stopped = True
                    break
            else:
                if self.step_seconds and end > reached:
                    time.sleep((end - reached) * self.step_seconds)
                reached = max(reached, end)
        finally:
            spent = max(reached - start, 0) * self.compute_per_step
            with self._lock:
                self._by_key[key] = self._by_key.get(key, 0.0) + spent
        final_value = values[-1] if values else math.nan
        return TrainResult(
            final_step=reached,
            final_value=final_value,
            steps=tuple(steps),
            values=tuple(values),
            checkpoint=self.checkpoint_token(key, reached),
            compute=spent,
            compute_unit=self.compute_unit,
            stopped=stopped,
            exhausted=reached >= curve.last_step,
        )

    # ------------------------------------------------------------ recorded data
    @classmethod
    def from_taskset(cls, task: str, *, dpl_filter: bool = False) -> ReplayTrainer:
        """TaskSet validation curves: key ``config_id``, step = epoch 1..51, compute in epochs."""
        from lawsearch.recorded.taskset import load_taskset

        data = load_taskset(task)
        if dpl_filter:
            data = data.dpl_filtered()
        curves = {
            int(cid): ReplayCurve(steps=data.epochs, values=data.values[i])
            for i, cid in enumerate(data.config_ids)
        }
        return cls(curves, config_key="config_id", compute_unit="epochs")

    @classmethod
    def from_lr_schedules(cls, *, model_params: int | None = None) -> ReplayTrainer:
        """LR-schedule runs: key ``run_id``, reports the loss with ``lr`` as an extra."""
        from lawsearch.recorded.lr_schedules import load_lr_schedule_runs

        curves = {}
        for run in load_lr_schedule_runs():
            if model_params is not None and run.model_params != model_params:
                continue
            keep = run.steps >= 1
            curves[run.run_id] = ReplayCurve.of(
                run.steps[keep], run.losses[keep], {"lr": run.lrs[keep]}
            )
        if not curves:
            raise ValueError(f"`model_params` {model_params!r} matches no recorded run.")
        return cls(curves, config_key="run_id")

    @classmethod
    def from_mixinglaws(
        cls, family: str, model_size: str, *, include_excluded: bool = False
    ) -> ReplayTrainer:
        """mixinglaws runs of one family and size: key ``run_id``, compute in tokens.

        The reported value is the Pile loss (valid-weighted over the recorded
        Pile subsets); per-subset losses are extras ``loss:<subset>``.
        Checkpoints with a missing subset loss are skipped.
        """
        from lawsearch.recorded.mixtures import load_mixinglaws, pile_valid_weights

        weights = pile_valid_weights()
        curves = {}
        for run in load_mixinglaws(family):
            if run.model_size != model_size or (run.excluded and not include_excluded):
                continue
            overall = run.overall(weights)
            ok = np.isfinite(overall)
            if not ok.any():
                continue
            extras = {f"loss:{k}": v[ok] for k, v in run.losses.items()}
            curves[run.run_id] = ReplayCurve.of(run.steps[ok], overall[ok], extras)
        if not curves:
            raise ValueError(
                f"no mixinglaws runs for `family` {family!r} at `model_size` {model_size!r}."
            )
        return cls(
            curves,
            config_key="run_id",
            compute_per_step=float(MIXINGLAWS_TOKENS_PER_STEP),
            compute_unit="tokens",
        )
