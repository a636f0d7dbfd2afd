"""Held-out evaluation of a model on the packed domains: the numbers every report carries."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lawsearch.train._data import DomainBlocks
from lawsearch.train._ddp import Dist

__all__ = ["autocast_ctx", "embedding_dimensions", "held_out_loss"]


def autocast_ctx(device: Any, dtype: Any) -> Any:
    """``torch.autocast`` to ``dtype`` on ``device``'s type, or a no-op for full precision."""
    import torch

    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def held_out_loss(
    model: Any,
    domains: Sequence[DomainBlocks],
    *,
    n_blocks: int,
    batch_size: int,
    targets: Sequence[str],
    weights: Mapping[str, float] | None = None,
    device: Any,
    autocast: Any,
    dist: Dist,
) -> dict[str, Any]:
    """Cross-entropy on the first ``n_blocks`` held-out blocks of each domain.

    Returns ``mean`` (the ``weights``-weighted mean when given, else the mean over the
    ``targets`` domains, all when empty), ``by_domain``
    and ``per_position`` (entry ``i``: the loss of predicting token ``i + 1`` from
    ``i + 1`` tokens of context, averaged over all domains' blocks). Under DDP
    each rank evaluates a share of the blocks and the sums are all-reduced.
    """
    import torch
    import torch.nn.functional as F

    length = domains[0].held_out.shape[1] - 1
    sums = torch.zeros(len(domains), length, dtype=torch.float64, device=device)
    counts = torch.zeros(len(domains), dtype=torch.float64, device=device)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for d, blocks in enumerate(domains):
            held = blocks.held_out[:n_blocks][dist.rank :: dist.world]
            for start in range(0, held.shape[0], batch_size):
                chunk = torch.from_numpy(np.array(held[start : start + batch_size])).to(
                    device, torch.long
                )
                with autocast_ctx(device, autocast):
                    logits = model(input_ids=chunk[:, :-1]).logits
                ce = F.cross_entropy(logits.float().transpose(1, 2), chunk[:, 1:], reduction="none")
                sums[d] += ce.sum(0).double()
                counts[d] += ce.shape[0]
    model.train(was_training)
    dist.all_reduce_sum(sums)
    dist.all_reduce_sum(counts)
    per_domain = (sums.sum(1) / (counts * length)).cpu().numpy()
    per_position = (sums.sum(0) / counts.sum()).cpu().numpy()
    names = [b.name for b in domains]
    if weights:
        mean = float(sum(w * per_domain[names.index(d)] for d, w in weights.items()))
    else:
        chosen = tuple(targets) or tuple(names)
        mean = float(np.mean([per_domain[names.index(t)] for t in chosen]))
    return {
        "mean": mean,
        "by_domain": {n: float(v) for n, v in zip(names, per_domain, strict=True)},
        "per_position": [float(v) for v in per_position],
    }


def embedding_dimensions(
    model: Any,
    domains: Sequence[DomainBlocks],
    *,
    max_tokens: int = 1024,
    k1: int = 10,
    k2: int = 20,
    metric: str = "euclidean",
) -> dict[str, float]:
    """Levina–Bickel intrinsic dimension of each domain's final-layer token embeddings.

    Up to ``max_tokens`` held-out positions per domain are embedded by the last
    layer (after the final norm) and passed to ``lawsearch.intrinsic_dim``.
    """
    import torch

    from lawsearch.intrinsic_dim import levina_bickel

    model.eval()
    out: dict[str, float] = {}
    with torch.no_grad():
        for blocks in domains:
            seq_len = blocks.held_out.shape[1] - 1
            held = blocks.held_out[: max(1, -(-max_tokens // seq_len))]
            x = torch.from_numpy(np.array(held[:, :-1])).long()
            hidden = model(input_ids=x, output_hidden_states=True).hidden_states[-1]
            points = hidden.reshape(-1, hidden.shape[-1])[:max_tokens].double().numpy()
            out[blocks.name] = float(levina_bickel(points, k1=k1, k2=k2, metric=metric))
    return out
