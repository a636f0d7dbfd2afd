"""Loaders for ``mixtures/regmix/`` (final losses) and ``mixtures/mixinglaws/`` (curves)."""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from lawsearch.recorded import shared_data_dir

__all__ = [
    "MIXINGLAWS_FAMILIES",
    "MixtureRun",
    "RegMixRuns",
    "load_mixinglaws",
    "load_regmix",
    "pile_valid_weights",
]

#: family name -> file in ``mixtures/mixinglaws/``
MIXINGLAWS_FAMILIES = {
    "2mix": "pile_2mix.csv",
    "3mix": "pile_3mix.csv",
    "5mix": "pile_5mix.csv",
    "rpj": "redpajama_7mix.csv",
}
_W_PREFIX = "train_the_pile_"
_L_PREFIX = "metric/the_pile_"
_L_SUFFIX = "_val_loss"


@dataclass(frozen=True)
class RegMixRuns:
    """RegMix runs: mixture weights over 17 Pile domains → final loss on 13 subsets.

    Attributes:
        scale: ``"1M"`` or ``"60M"``.
        run_ids: ``(n,)`` e.g. ``train_17``, ``test_217``.
        split: ``(n,)`` ``"train"`` or ``"test"``.
        domains: the 17 training domains (short names, e.g. ``pile_cc``).
        weights: ``(n, 17)`` sampling proportions, as recorded (sums 0.996–1.003).
        targets: the 13 validation subsets (short names).
        losses: ``(n, 13)`` final validation loss per subset.
    """

    scale: str
    run_ids: tuple[str, ...]
    split: NDArray[np.str_]
    domains: tuple[str, ...]
    weights: NDArray[np.float64]
    targets: tuple[str, ...]
    losses: NDArray[np.float64]

    def loss(self, target: str = "pile_cc") -> NDArray[np.float64]:
        """The ``(n,)`` final loss on one validation subset."""
        if target not in self.targets:
            raise ValueError(f"`target` {target!r} is not recorded; choose one of {self.targets}.")
        return self.losses[:, self.targets.index(target)]

    def subset(self, split: str) -> RegMixRuns:
        """Only the runs of ``split`` (``"train"`` or ``"test"``)."""
        m = self.split == split
        if not m.any():
            raise ValueError(
                f"`split` {split!r} has no runs at {self.scale}; use 'train' or 'test'."
            )
        return RegMixRuns(
            scale=self.scale,
            run_ids=tuple(np.asarray(self.run_ids)[m]),
            split=self.split[m],
            domains=self.domains,
            weights=self.weights[m],
            targets=self.targets,
            losses=self.losses[m],
        )


@lru_cache(maxsize=2)
def load_regmix(scale: str = "1M") -> RegMixRuns:
    """All RegMix runs at ``scale`` (``"1M"``: 512 train + 256 test; ``"60M"``: 256 test)."""
    if scale not in ("1M", "60M"):
        raise ValueError(f"`scale` must be '1M' or '60M'; got {scale!r}.")
    path = shared_data_dir("mixtures/regmix") / f"runs_{scale}.csv"
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    header = list(rows[0])
    wcols = [c for c in header if c.startswith(_W_PREFIX)]
    lcols = [c for c in header if c.startswith(_L_PREFIX)]
    return RegMixRuns(
        scale=scale,
        run_ids=tuple(r["run_id"] for r in rows),
        split=np.array([r["split"] for r in rows]),
        domains=tuple(c[len(_W_PREFIX) :] for c in wcols),
        weights=np.array([[float(r[c]) for c in wcols] for r in rows]),
        targets=tuple(c[len(_L_PREFIX) : -len(_L_SUFFIX)] for c in lcols),
        losses=np.array([[float(r[c]) for c in lcols] for r in rows]),
    )


@dataclass(frozen=True)
class MixtureRun:
    """One mixinglaws run: a mixture trained at one model size, evaluated at checkpoints.

    Attributes:
        run_id: ``<family>_<size>_<index>``, e.g. ``5mix_160M_12``.
        family: ``2mix``, ``3mix``, ``5mix`` or ``rpj``.
        model_size: ``70M``, ``160M``, ``305M``, ``410M`` or ``1B``.
        run_index: the same index is the same mixture at every size.
        excluded: the source's loaders skip it (index > 900: special target runs).
        domains: training domains, in the order of ``weights``.
        weights: ``(K,)`` training proportions.
        steps: ``(m,)`` checkpoint steps, increasing (≈1.05M tokens per step).
        losses: validation subset → ``(m,)`` loss at each step (NaN where not recorded).
    """

    run_id: str
    family: str
    model_size: str
    run_index: int
    excluded: bool
    domains: tuple[str, ...]
    weights: NDArray[np.float64]
    steps: NDArray[np.int64]
    losses: dict[str, NDArray[np.float64]]

    def overall(self, valid_weights: dict[str, float] | None = None) -> NDArray[np.float64]:
        """The ``(m,)`` loss averaged over validation subsets.

        With ``valid_weights`` (e.g. :func:`pile_valid_weights`), the weighted mean over
        the subsets it names, renormalised over those recorded; otherwise the plain mean.
        NaN at a step where any used subset is missing.
        """
        names = [n for n in self.losses if valid_weights is None or n in valid_weights]
        if not names:
            raise ValueError(f"`valid_weights` names none of {sorted(self.losses)}.")
        w = np.array([1.0 if valid_weights is None else valid_weights[n] for n in names])
        stack = np.stack([self.losses[n] for n in names])
        return (w @ stack) / w.sum()


@lru_cache(maxsize=1)
def pile_valid_weights() -> dict[str, float]:
    """Each Pile subset's share of the Pile validation set (sums to 1)."""
    path = shared_data_dir("mixtures/mixinglaws") / "pile_valid_weights.csv"
    with open(path) as fh:
        return {r["pile_subset"]: float(r["valid_weight"]) for r in csv.DictReader(fh)}


@lru_cache(maxsize=4)
def load_mixinglaws(family: str) -> tuple[MixtureRun, ...]:
    """All runs of one family, ordered by (model size, run index)."""
    if family not in MIXINGLAWS_FAMILIES:
        raise ValueError(f"`family` must be one of {sorted(MIXINGLAWS_FAMILIES)}; got {family!r}.")
    path = shared_data_dir("mixtures/mixinglaws") / MIXINGLAWS_FAMILIES[family]
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    header = list(rows[0])
    wcols = [c for c in header if c.startswith("w_")]
    lcols = [c for c in header if c.startswith("loss_")]
    grouped: dict[str, list[dict[str, str]]] = defaultdict(list)
    for r in rows:
        grouped[r["run_id"]].append(r)
    runs = []
    for rid, rs in grouped.items():
        rs.sort(key=lambda r: int(r["step"]))
        first = rs[0]
        runs.append(
            MixtureRun(
                run_id=rid,
                family=family,
                model_size=first["model_size"],
                run_index=int(first["run_index"]),
                excluded=first["excluded_by_source_filter"] == "True",
                domains=tuple(c[2:] for c in wcols),
                weights=np.array([float(first[c]) for c in wcols]),
                steps=np.array([int(r["step"]) for r in rs], dtype=np.int64),
                losses={
                    c[5:]: np.array([float(r[c]) if r[c] != "" else np.nan for r in rs])
                    for c in lcols
                },
            )
        )
    return tuple(sorted(runs, key=lambda r: (_size_key(r.model_size), r.run_index)))


def _size_key(size: str) -> float:
    return float(size[:-1]) * (1e9 if size.endswith("B") else 1e6)
