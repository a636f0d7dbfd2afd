"""Data for the trainer: packed domains (``DomainBlocks``), mixture weights, the mixed stream.

Each domain is packed once into memory-mapped blocks of ``seq_len + 1`` tokens
by ``lawsearch.train._pack``. The mixture is realised by
``datasets.interleave_datasets(probabilities=weights, seed=seed + cycle)``
choosing the domain of each draw (see ``MixedStream``); each domain walks its
blocks epoch by epoch in seeded permutations; when a cycle ends a new one
starts with the next seed, so a stream never runs dry. Its position
``(cycle, offset, drawn per domain)`` is the whole data state.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lawsearch._errors import did_you_mean
from lawsearch.train._sources import quiet_datasets

__all__ = ["DomainBlocks", "MixedStream", "check_weights", "feistel_permute"]


@dataclass(frozen=True)
class DomainBlocks:
    """One domain packed into blocks of ``seq_len + 1`` token ids.

    Attributes:
        name: the domain name.
        train: ``(n_train, seq_len + 1)`` token ids, memory-mapped (uint16 for a
            vocabulary below 65,536, else int32).
        held_out: ``(n_held_out, seq_len + 1)`` token ids, memory-mapped.
        documents: documents per split (``{"train": n, "held_out": n}``).
    """

    name: str
    train: NDArray[Any]
    held_out: NDArray[Any]
    documents: Mapping[str, int] | None = None

    @property
    def train_tokens(self) -> int:
        """Predicted tokens in one epoch over the train blocks."""
        return int(self.train.shape[0]) * (int(self.train.shape[1]) - 1)


def check_weights(weights: Mapping[str, float], domains: Sequence[str]) -> dict[str, float]:
    """Validate mixture weights: known domains, finite, >= 0, summing to 1 (missing = 0)."""
    if not isinstance(weights, Mapping) or not weights:
        raise ValueError(
            f"`mixture` must be a non-empty mapping domain -> weight; got {weights!r}."
        )
    for name, w in weights.items():
        if name not in domains:
            raise ValueError(
                f"`mixture` names unknown domain {name!r}; known: {list(domains)}"
                + did_you_mean(name, domains)
            )
        if isinstance(w, bool) or not isinstance(w, numbers.Real) or not math.isfinite(w) or w < 0:
            raise ValueError(f"`mixture[{name!r}]` must be a finite number >= 0; got {w!r}.")
    total = float(sum(weights.values()))
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"`mixture` weights must sum to 1 (got {total:.9g}); normalise them.")
    return {d: float(weights.get(d, 0.0)) for d in domains}


class MixedStream:
    """An endless, checkpointable stream of (domain, block) draws realising a mixture.

    Which domain each draw comes from is sampled with
    ``datasets.interleave_datasets(probabilities=weights, seed=seed + cycle,
    stopping_strategy="first_exhausted")`` over per-domain label streams whose
    lengths are proportional to the weights (about ``cycle_draws`` draws per
    cycle, whatever the weights: a tiny weight never inflates a cycle, which
    ``all_exhausted`` over the blocks themselves would, by ``1 / weight``). Each
    domain then walks its own blocks epoch by epoch, in a fresh seeded
    permutation per epoch, so every block is used once before any repeats. A
    domain of more than ``max_permutation`` blocks (1M blocks, 8 MB of indices)
    permutes with a keyed Feistel network instead (``feistel_permute``), so memory
    does not grow with the corpus.
    The state is ``(cycle, offset, drawn per domain)``.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        weights: Sequence[float],
        *,
        seed: int,
        cycle_draws: int = 4096,
        max_permutation: int = 1 << 20,
    ) -> None:
        self.sizes = [int(s) for s in sizes]
        self.weights = [float(w) for w in weights]
        self.seed = int(seed)
        self.cycle_draws = int(cycle_draws)
        self.max_permutation = int(max_permutation)
        self.active = [i for i, w in enumerate(self.weights) if w > 0]
        self.cycle = 0
        self.offset = 0
        self.drawn = [0] * len(self.sizes)
        self._order: NDArray[np.int64] | None = None
        self._perms: dict[tuple[int, int], NDArray[np.int64]] = {}

    def _build(self, cycle: int) -> NDArray[np.int64]:
        """The domain of every draw of one cycle."""
        import datasets

        total = sum(self.weights[i] for i in self.active)
        probs = [self.weights[i] / total for i in self.active]
        streams = [
            datasets.Dataset.from_dict(
                {"domain": np.full(math.ceil(p * self.cycle_draws) + 1, i, dtype=np.int64)}
            )
            for i, p in zip(self.active, probs, strict=True)
        ]
        with quiet_datasets():
            mixed = datasets.interleave_datasets(
                streams,
                probabilities=probs,
                seed=self.seed + cycle,
                stopping_strategy="first_exhausted",
            )
        table = mixed.with_format("arrow")[0 : len(mixed)]  # one Arrow take, not row by row
        return table.column("domain").to_numpy().astype(np.int64)

    def _rows(self, domain: int, start: int, n: int) -> NDArray[np.int64]:
        """Blocks of ``domain`` for its draws ``start .. start + n - 1``."""
        size = self.sizes[domain]
        draws = np.arange(start, start + n)
        out = np.empty(n, dtype=np.int64)
        for epoch in np.unique(draws // size):
            sel = draws // size == epoch
            if size > self.max_permutation:  # a keyed bijection: no O(size) array in memory
                keys = np.random.default_rng([self.seed, domain, int(epoch)]).integers(
                    0, 2**63, size=4, dtype=np.uint64
                )
                out[sel] = feistel_permute(draws[sel] % size, size, keys)
                continue
            key = (domain, int(epoch))
            if key not in self._perms:
                if len(self._perms) > 4 * len(self.sizes):
                    self._perms.clear()
                rng = np.random.default_rng([self.seed, domain, int(epoch)])
                self._perms[key] = rng.permutation(size).astype(np.int64)
            out[sel] = self._perms[key][draws[sel] % size]
        return out

    def take(self, n: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """The next ``n`` draws as (domain index, block index) arrays; advances the stream."""
        doms = []
        need = n
        while need > 0:
            if self._order is None:
                self._order = self._build(self.cycle)
            k = min(need, self._order.size - self.offset)
            doms.append(self._order[self.offset : self.offset + k])
            self.offset += k
            need -= k
            if self.offset >= self._order.size:
                self.cycle, self.offset, self._order = self.cycle + 1, 0, None
        d = np.concatenate(doms) if doms else np.zeros(0, dtype=np.int64)
        rows = np.empty(d.size, dtype=np.int64)
        for dom in np.unique(d):
            sel = d == dom
            count = int(sel.sum())
            rows[sel] = self._rows(int(dom), self.drawn[dom], count)
            self.drawn[dom] += count
        return d, rows

    def state_dict(self) -> dict[str, Any]:
        return {
            "cycle": self.cycle,
            "offset": self.offset,
            "drawn": list(self.drawn),
            "seed": self.seed,
            "weights": list(self.weights),
            "sizes": list(self.sizes),
            "cycle_draws": self.cycle_draws,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if "drawn" not in state:
            raise ValueError(
                "checkpoint data stream comes from an older lawsearch (no per-domain "
                "positions); start this trial again from step 0."
            )
        for key in ("seed", "weights", "sizes", "cycle_draws"):
            mine = getattr(self, key)
            theirs = state[key]
            if json.dumps(mine) != json.dumps(
                list(theirs) if isinstance(theirs, tuple) else theirs
            ):
                raise ValueError(
                    f"checkpoint data stream has {key}={theirs!r} but this run has {mine!r}; "
                    "resume with the same mixture, data and seed."
                )
        self.cycle, self.offset, self._order = int(state["cycle"]), int(state["offset"]), None
        self.drawn = [int(x) for x in state["drawn"]]


def _mix(x: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """splitmix64's finaliser: a fast, well-mixing hash of 64-bit integers (wrapping)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return np.asarray(x ^ (x >> np.uint64(31)), dtype=np.uint64)


def feistel_permute(
    index: NDArray[np.int64], size: int, keys: NDArray[np.uint64]
) -> NDArray[np.int64]:
    """A keyed bijection of ``[0, size)`` applied to ``index``, without a permutation array.

    A balanced Feistel network (one round per key) on the smallest even number of
    bits covering ``size``, with cycle walking: a value that lands outside
    ``[0, size)`` is permuted again until it lands inside (fewer than 4 times on
    average), which keeps the map a bijection of ``[0, size)``.
    """
    half = max(1, (int(size - 1).bit_length() + 1) // 2)
    shift, mask = np.uint64(half), np.uint64((1 << half) - 1)
    y = np.asarray(index, dtype=np.uint64).copy()
    todo = np.ones(y.shape, dtype=bool)
    while todo.any():
        v = y[todo]
        left, right = v >> shift, v & mask
        for k in keys:
            left, right = right, left ^ (_mix(right ^ np.uint64(k)) & mask)
        v = (left << shift) | right
        y[todo] = v
        todo[todo] = v >= np.uint64(size)
    return y.astype(np.int64)
