"""Distributed data parallel through ``torchrun``: process group set-up from env vars."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

__all__ = ["Dist", "setup_distributed"]


@dataclass(frozen=True)
class Dist:
    """Where this process sits: ``rank`` of ``world`` (``world == 1``: no DDP)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_reduce_sum(self, tensor: Any) -> Any:
        """Sum ``tensor`` over ranks in place (a no-op on one process)."""
        if self.world > 1:
            import torch.distributed as dist

            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()


def setup_distributed(device_type: str) -> Dist:
    """Join the ``torchrun`` process group named by ``RANK``/``WORLD_SIZE`` (if any).

    Uses nccl on CUDA and gloo on CPU. An already initialised group is reused. On
    CUDA each process first makes GPU ``LOCAL_RANK`` its current device.
    """
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    if device_type == "cuda":
        _use_gpu(local_rank)
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT")
        if attempt is None or "MASTER_ADDR" not in os.environ:
            dist.init_process_group(backend=backend, rank=rank, world_size=world)
        else:
            # torchrun restarting a job (``--max-restarts``) keeps its store, and the
            # process group's keys are not per attempt: a rank of the new attempt can
            # read the address a dead rank published and fail to connect. One prefix
            # per attempt keeps each attempt's keys apart.
            store, _, _ = next(dist.rendezvous("env://", rank=rank, world_size=world))
            scoped = dist.PrefixStore(f"lawsearch/attempt_{attempt}/", store)
            dist.init_process_group(backend=backend, store=scoped, rank=rank, world_size=world)
    return Dist(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local_rank)


def _use_gpu(local_rank: int) -> None:
    """Make GPU ``local_rank`` this process's current device.

    Without it every rank's current device is GPU 0: each call that takes the
    current device (capability checks, RNG state, NCCL's barrier) opens a context
    there, one per rank, and NCCL has to guess each rank's GPU.
    """
    import torch

    n = torch.cuda.device_count()
    if local_rank >= n:
        raise ValueError(
            f"torchrun started local rank {local_rank}, but this machine has {n} GPU(s): "
            f"start at most {n} processes per node (`--nproc_per_node {n}`)."
        )
    torch.cuda.set_device(local_rank)
