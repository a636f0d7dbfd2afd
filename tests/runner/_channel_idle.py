"""Under torchrun: rank 0 idles longer than the default group's timeout between two trials.

As a ``lawsearch worker`` does while its peers train (tests/runner/test_distributed.py).
The default gloo group gets a 2-second timeout; rank 1 follows with a trainer that
records the calls it is sent, and prints them.
Usage: ``python -m torch.distributed.run --nproc_per_node=2 tests/runner/_channel_idle.py IDLE_S``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import torch.distributed as dist

from lawsearch.runner._distributed import Channel, LeaderTrainer, follow
from lawsearch.train._protocol import never_stop


class Recorder:
    """Trains nothing: records each call."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, Any], int]] = []

    def train(
        self, config: Mapping[str, Any], *, budget_steps: int, resume_from: Any = None, report: Any
    ) -> None:
        self.calls.append((dict(config), budget_steps))


def main(idle: float) -> int:
    dist.init_process_group("gloo", timeout=timedelta(seconds=2))
    channel = Channel("cpu")
    trainer = Recorder()
    if channel.is_main:
        leader = LeaderTrainer(trainer, channel)
        leader.train({"x": 1}, budget_steps=3, report=never_stop)
        time.sleep(idle)  # waiting for the peers' trials
        leader.train({"x": 2}, budget_steps=5, report=never_stop)
        leader.close()
    else:
        follow(trainer, channel)
        print("followed", json.dumps(trainer.calls), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(float(sys.argv[1])))
