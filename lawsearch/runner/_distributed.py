"""A study under ``torchrun``: rank 0 drives the study, the other ranks follow.

One study worker may span several processes (one per GPU) that train each trial
data-parallel. Rank 0 checks the study and prepares its data first; the other
ranks then read the data rank 0 cached (``rank_0_first``). Only rank 0 talks to
the Optuna storage: it asks for trials, extrapolates, promotes and reports.
Before each ``Trainer.train`` call it sends the call (trainer config, budget,
checkpoint to resume) to the other ranks over a gloo group, and all ranks then
train that trial together (``TransformersTrainer``
shards the batch, all-reduces gradients and evaluation, and syncs rank 0's
decision to stop). When the search is done, rank 0 sends ``None``, every rank
shuts the process groups down (``Channel.close``) and the followers return.

If a trial fails on rank 0 (an out-of-memory error, a data error), the other ranks
are inside a collective of the failed step and cannot start another trial: rank 0
records the failure and the trial's retry (``StopWorker``; an out-of-memory error
retries at half the micro-batch, from the last checkpoint), sends nothing more and
exits 1; ``torchrun`` then ends the other ranks, and restarts the whole job when it
was started with ``--max-restarts N``, so the retry runs at once. If a trial fails
on another rank, that rank exits, ``torchrun`` ends rank 0 in its collective, and
the trial is retried from its last checkpoint like a dead worker's (at the same
micro-batch: rank 0 never saw the error).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from lawsearch.train._protocol import ReportFn, never_stop

__all__ = ["CHANNEL_TIMEOUT", "Channel", "LeaderTrainer", "follow", "rank_0_first", "world_size"]

#: how long a follower waits for rank 0's next call (the whole search may pass between)
CHANNEL_TIMEOUT = timedelta(days=365)


def world_size() -> int:
    """The number of processes ``torchrun`` launched (1 outside torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


class Channel:
    """Broadcast small Python objects from rank 0 over a gloo group (any device)."""

    def __init__(self, device: str) -> None:
        import torch
        import torch.distributed as dist

        from lawsearch.train._ddp import setup_distributed

        cuda = device != "cpu" and torch.cuda.is_available()
        self.dist = setup_distributed("cuda" if cuda else "cpu")
        # A group of its own, gloo (object broadcasts never touch nccl or the GPU), with
        # no practical timeout: a follower waits in `recv` while rank 0 is not training,
        # and a worker waits for its peers' trials (a rung's cut, their continuations),
        # which can take hours; on the default group a receive fails after its timeout
        # (30 minutes) and ends the job.
        self._group = dist.new_group(backend="gloo", timeout=CHANNEL_TIMEOUT)

    @property
    def is_main(self) -> bool:
        return self.dist.is_main

    def send(self, obj: Any) -> None:
        """Rank 0: deliver ``obj`` to every other rank."""
        import torch.distributed as dist

        dist.broadcast_object_list([obj], src=0, group=self._group)

    def recv(self) -> Any:
        """Other ranks: the next object rank 0 sent."""
        import torch.distributed as dist

        box: list[Any] = [None]
        dist.broadcast_object_list(box, src=0, group=self._group)
        return box[0]

    def close(self) -> None:
        """Every rank, after the last broadcast: wait for the others, then shut the groups down.

        Left to the interpreter's exit, a gloo group is torn down while a peer may
        still be talking to it, and the process can abort ("terminate called without
        an active exception", SIGABRT: 1 run in about 10 of the torchrun test on 2
        CPU cores), which fails the whole torchrun job after the study finished.
        Not called after an error: the other ranks may be dead or mid-collective.
        """
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier(group=self._group)
            dist.destroy_process_group()


def rank_0_first(channel: Channel, plan: Callable[[], Any], prepare: Callable[[], Any]) -> Any:
    """Rank 0: ``plan()`` (check the study, prepare its data); then the others: ``prepare()``.

    Preparing the data trains the tokenizer and tokenises and packs every domain
    into the on-disk cache. Every rank at once would do that work once per GPU of
    the node, all ranks competing for its cores; after rank 0 the others read it
    from the cache. The other ranks skip rank 0's checks of the run folder and the
    stored study: rank 0 starts writing both as soon as it is done. If ``plan``
    raises (bad input), the others stop with one line pointing at rank 0's message.
    Returns what ``plan`` or ``prepare`` returned.
    """
    from lawsearch._errors import UserError

    if channel.is_main:
        try:
            out = plan()
        except BaseException:
            channel.send(False)
            raise
        channel.send(True)
        return out
    if not channel.recv():
        raise UserError(
            f"rank 0 refused the study (its message above); rank {channel.dist.rank} stops too."
        )
    return prepare()


class LeaderTrainer:
    """Rank 0's trainer: announces each ``train`` call to the followers, then trains.

    Every other attribute is the wrapped trainer's.
    """

    def __init__(self, inner: Any, channel: Channel) -> None:
        self._inner = inner
        self._channel = channel

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def train(
        self,
        config: Mapping[str, Any],
        *,
        budget_steps: int,
        resume_from: str | None = None,
        report: ReportFn,
        on_checkpoint: Any = None,
    ) -> Any:
        call = {"config": dict(config), "budget_steps": budget_steps, "resume_from": resume_from}
        self._channel.send(call)
        from lawsearch.train._protocol import takes_on_checkpoint

        keep = on_checkpoint is not None and takes_on_checkpoint(self._inner)
        extra = {"on_checkpoint": on_checkpoint} if keep else {}
        try:
            return self._inner.train(
                config, budget_steps=budget_steps, resume_from=resume_from, report=report, **extra
            )
        except Exception as exc:
            from lawsearch.search._faults import StopWorker, error_text

            world = self._channel.dist.world
            raise StopWorker(
                f"a trial failed on rank 0 of {world} data-parallel processes "
                f"({error_text(exc)}); the other ranks are inside a collective of its last "
                "step and cannot train another trial, so this torchrun job stops. The trial "
                "is failed and queued for a retry from its last checkpoint (after an "
                "out-of-memory error, at half the micro-batch): start the job again, or start "
                "torchrun with `--max-restarts N` to restart it by itself."
            ) from exc

    def close(self) -> None:
        """Release the followers and leave the job (call once, after the search finished
        normally)."""
        self._channel.send(None)
        self._channel.close()


def follow(trainer: Any, channel: Channel, *, log: Any = None) -> int:
    """Other ranks: train every call rank 0 announces until it sends ``None``.

    Args:
        trainer: this rank's trainer (the same study, so the same data and model).
        channel: the channel rank 0 announces on.
        log: where to write one closing line (default stderr).

    Returns:
        The number of trials trained.
    """
    n = 0
    while (call := channel.recv()) is not None:
        trainer.train(
            call["config"],
            budget_steps=call["budget_steps"],
            resume_from=call["resume_from"],
            report=never_stop,  # only rank 0's report decides; the trainer syncs it
        )
        n += 1
    channel.close()
    print(
        f"lawsearch: rank {channel.dist.rank} trained {n} trial(s) with rank 0",
        file=log or sys.stderr,
    )
    return n
