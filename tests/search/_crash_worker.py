"""``python -m tests.search._crash_worker STUDY ROOT LOG STEP_SECONDS``: a real worker process.

``lawsearch worker``'s code path (``lawsearch.cli._run.execute(worker=True)``) with
the fake trainer in place of the transformers one, so a crash test runs in seconds.
"""

from __future__ import annotations

import sys

from lawsearch.cli._run import execute
from lawsearch.config import load_study
from tests.search._fake import FakeTrainer


def main(study: str, root: str, log: str, step_seconds: float) -> int:
    cfg = load_study(study, run_root=root)
    trainer = FakeTrainer(
        eval_every=cfg.train.eval_every,
        checkpoint_every=cfg.train.checkpoint_every,
        checkpoint_dir=cfg.checkpoint_dir,
        step_seconds=step_seconds,
        log=log,
    )
    return execute(cfg, worker=True, progress=False, trainer=trainer)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])))
