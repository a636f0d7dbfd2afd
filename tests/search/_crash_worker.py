"""``python -m tests.search._crash_worker STUDY ROOT LOG STEP_SECONDS [--cli]``: a real worker.

``lawsearch worker``'s code path (``lawsearch.cli._run.execute(worker=True)``) with
the fake trainer in place of the transformers one, so a crash test runs in seconds.
``--cli``: errors end the process as ``lawsearch worker``'s do (a line on stderr,
exit 1 or 2: ``lawsearch.cli.exit_code``) instead of a traceback.
"""

from __future__ import annotations

import sys

from lawsearch.cli import exit_code
from lawsearch.cli._run import execute
from lawsearch.config import load_study
from tests.search._fake import FakeTrainer


def main(study: str, root: str, log: str, step_seconds: float, cli: bool = False) -> int:
    cfg = load_study(study, run_root=root)
    trainer = FakeTrainer(
        eval_every=cfg.train.eval_every,
        checkpoint_every=cfg.train.checkpoint_every,
        checkpoint_dir=cfg.checkpoint_dir,
        step_seconds=step_seconds,
        log=log,
    )

    def run() -> int:
        return execute(cfg, worker=True, progress=False, trainer=trainer)

    return exit_code("worker", run) if cli else run()


if __name__ == "__main__":
    args = sys.argv[1:]
    cli = "--cli" in args
    args = [a for a in args if a != "--cli"]
    sys.exit(main(args[0], args[1], args[2], float(args[3]), cli=cli))
