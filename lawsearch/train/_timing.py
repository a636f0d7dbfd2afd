"""Timing a few real training steps on the configured device (for ``lawsearch plan``)."""

from __future__ import annotations

import time
from typing import Any

from lawsearch.schedules import Schedule
from lawsearch.train._ddp import Dist

__all__ = ["time_steps"]


def time_steps(trainer: Any, *, steps: int = 3) -> dict[str, float]:
    """Seconds per optimizer step and per evaluation of a ``TransformersTrainer``.

    Trains a throwaway copy of the model (uniform mixture, constant LR) on the
    configured device for one warm-up step and ``steps`` timed ones, then times one
    held-out evaluation; nothing is reported or written.
    """
    import torch

    trainer.prepare()
    ts = trainer.train_spec
    if ts.threads:
        torch.set_num_threads(ts.threads)
    one = Dist()
    device = trainer._device(one)
    amp_dtype, use_scaler = trainer._autocast(device)
    weights = {d: 1.0 / len(trainer.domains) for d in trainer.domains}
    schedule = Schedule(family="constant", peak_lr=1e-4, total_steps=steps + 2)
    run = trainer._new_run(weights, schedule, ts.seed, device, use_scaler)
    run.model.train()
    model: Any = torch.compile(run.model) if ts.compile else run.model

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    trainer._step(model, run, trainer._next_batch(run, one, device), amp_dtype)  # warm-up
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer._step(model, run, trainer._next_batch(run, one, device), amp_dtype)
    sync()
    t1 = time.perf_counter()
    trainer.evaluate(run.model, device, amp_dtype, one)
    sync()
    return {"step_seconds": (t1 - t0) / steps, "eval_seconds": time.perf_counter() - t1}
