"""``lawsearch run`` under torchrun whose rank 0 runs out of memory (tests/cli/test_torchrun.py).

There is no GPU here: rank 0's trainer is the real ``TransformersTrainer`` except
that a backward pass over more than 2 sequences from step 4 on raises a genuine
``torch.OutOfMemoryError`` (as a device with too little memory would); rank 1
trains normally and is inside the step's gradient all-reduce when rank 0 fails.
Usage: ``python -m torch.distributed.run ... tests/cli/_ddp_oom.py STUDY.toml``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import torch

from lawsearch import RunFailed, load_study
from lawsearch.runner import run_study
from lawsearch.runner._plan import plan_run
from lawsearch.train._transformers import TransformersTrainer


class RankZeroSmallMemory(TransformersTrainer):
    def _backward(self, model: Any, run: Any, x: Any, amp_dtype: Any, passes: int) -> Any:
        if os.environ.get("RANK") == "0" and x.shape[0] > 2 and run.step >= 4:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super()._backward(model, run, x, amp_dtype, passes)


def main() -> int:
    cfg = load_study(sys.argv[1])
    base, _ = plan_run(cfg)
    trainer = RankZeroSmallMemory(model=base.model_spec, data=base.data_spec, train=base.train_spec)
    try:
        run_study(cfg, trainer=trainer, progress=False)
    except RunFailed as exc:  # as the CLI does: the message, exit 1
        print(f"lawsearch: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
