"""A fake trainer for the fault tests: a synthetic curve per config, real checkpoint files.

``FakeTrainer`` reports ``loss(config, step)`` every ``eval_every`` steps, sleeps
``step_seconds`` per step (so a worker can be killed mid-trial), writes a small
checkpoint file atomically every ``checkpoint_every`` steps and at the end
(``lawsearch.train._checkpoint.atomic_write``) and calls ``on_checkpoint`` after
each rename, and appends one line per trained step to ``log`` (the honest
compute count across processes, killed ones included).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lawsearch.train import TrainResult
from lawsearch.train._checkpoint import atomic_write

TARGET = {"a": 0.5, "b": 0.3, "c": 0.2}


def loss(config: Mapping[str, Any], step: int) -> float:
    """The mixture nearest TARGET and lr 3e-3 win; a power-law decay in steps."""
    if "mixture" in config:
        w = config["mixture"]
        lr = float(config["schedule"]["peak_lr"])
        e = 2.0 + 4.0 * sum((w.get(d, 0.0) - v) ** 2 for d, v in TARGET.items())
        e += 0.3 * math.log(lr / 3e-3) ** 2
    else:
        e = 2.0 + (float(config["x"]) - 0.3) ** 2
    return e + 3.0 * (step + 10.0) ** -0.5


def key_of(config: Mapping[str, Any]) -> str:
    return json.dumps(config, sort_keys=True, default=str)


class FakeTrainer:
    """See the module docstring. ``fail(config, step) -> exception | None`` injects errors."""

    compute_unit = "steps"

    def __init__(
        self,
        *,
        eval_every: int = 5,
        checkpoint_every: int = 0,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        step_seconds: float = 0.0,
        log: str | os.PathLike[str] | None = None,
        fail: Callable[[Mapping[str, Any], int], BaseException | None] | None = None,
        curve: Callable[[Mapping[str, Any], int], float] = loss,
    ) -> None:
        self.eval_every = eval_every
        self.checkpoint_every = checkpoint_every
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.step_seconds = step_seconds
        self.log = Path(log) if log else None
        self.fail = fail
        self.curve = curve
        self.calls: list[tuple[int, int]] = []

    def _checkpoint(self, config: Mapping[str, Any], step: int) -> str:
        if self.checkpoint_dir is None:
            return f"fake:{step}"
        name = hashlib.sha1(key_of(config).encode()).hexdigest()[:12]
        path = self.checkpoint_dir / name / f"step-{step:08d}.json"
        body = json.dumps({"key": key_of(config), "step": step}).encode()
        atomic_write(path, lambda fh: fh.write(body))
        return str(path)

    @staticmethod
    def step_of(checkpoint: str) -> int:
        if checkpoint.startswith("fake:"):
            return int(checkpoint.split(":")[1])
        return int(json.loads(Path(checkpoint).read_text())["step"])

    def _log(self, step: int) -> None:
        if self.log is not None:  # one line per trained step, written as it is trained
            with open(self.log, "a") as fh:
                fh.write(f"{os.getpid()} {step}\n")

    def train(
        self,
        config: Mapping[str, Any],
        *,
        budget_steps: int,
        resume_from: str | None = None,
        report: Any,
        on_checkpoint: Any = None,
    ) -> TrainResult:
        start = self.step_of(resume_from) if resume_from else 0
        self.calls.append((start, budget_steps))
        steps: list[int] = []
        values: list[float] = []
        step, stopped = start, False
        while step < budget_steps:
            step += 1
            if self.step_seconds:
                time.sleep(self.step_seconds)
            self._log(step)
            exc = self.fail(config, step) if self.fail is not None else None
            if exc is not None:
                raise exc
            if step % self.eval_every == 0 or step == budget_steps:
                v = self.curve(config, step)
                steps.append(step)
                values.append(v)
                if report(step, v, {}):
                    stopped = True
                    break
            if self.checkpoint_every and step % self.checkpoint_every == 0 and step < budget_steps:
                ck = self._checkpoint(config, step)
                if on_checkpoint is not None:
                    on_checkpoint(step, ck)
        return TrainResult(
            final_step=step,
            final_value=values[-1] if values else math.nan,
            steps=tuple(steps),
            values=tuple(values),
            checkpoint=self._checkpoint(config, step),
            compute=float(step - start),
            stopped=stopped,
        )
