"""Data for the trainer: domains as ``datasets`` datasets, packed blocks, the mixed stream.

Each domain is loaded from local files (JSONL/JSON with a text field, or plain
text files, one document per file) or from a ``datasets`` dataset the user
already has on disk, split into train and held-out *documents* (a fixed split,
or the one a corpus manifest gives), tokenised and packed into blocks of
``seq_len + 1`` tokens (inputs and shifted targets).

The mixture is realised by ``datasets.interleave_datasets(probabilities=weights,
seed=seed + cycle)`` choosing the domain of each draw (see ``MixedStream``); each
domain walks its blocks epoch by epoch in seeded permutations; when a cycle ends
a new one starts with the next seed, so a stream never runs dry. Its position
``(cycle, offset, drawn per domain)`` is the whole data state.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lawsearch._errors import did_you_mean

__all__ = ["DomainBlocks", "MixedStream", "check_weights", "load_domain_texts", "pack_domain"]

_JSON_SUFFIXES = (".jsonl", ".json")
_DATA_VERSION = "pack/1"


@contextmanager
def _quiet_datasets() -> Any:
    """Silence ``datasets`` progress bars inside the block (core code does not print)."""
    import datasets

    was_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()


def _looks_like_path(spec: str) -> bool:
    return spec.startswith(("/", ".", "~")) or Path(spec).suffix != "" or os.sep in spec[:1]


def _expand(domain: str, paths: Sequence[str]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_dir():
            files.extend(
                sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
            )
        elif p.is_file():
            files.append(p)
        else:
            raise ValueError(
                f"`domains.{domain}`: corpus path {str(raw)!r} does not exist; "
                "give an existing file or folder (or build the demo corpus)."
            )
    if not files:
        raise ValueError(f"`domains.{domain}`: no files under {list(paths)!r}.")
    return files


def _load_files(domain: str, files: list[Path], text_field: str, cache_dir: Path) -> Any:
    import datasets

    json_files = [str(f) for f in files if f.suffix in _JSON_SUFFIXES]
    text_files = [str(f) for f in files if f.suffix not in _JSON_SUFFIXES]
    parts = []
    with _quiet_datasets():
        if json_files:
            ds = datasets.load_dataset(
                "json", data_files=json_files, split="train", cache_dir=str(cache_dir)
            )
            if text_field not in ds.column_names:
                raise ValueError(
                    f"`domains.{domain}`: JSON records have no field {text_field!r} "
                    f"(fields: {ds.column_names}); set `text_field`."
                )
            parts.append(
                ds.select_columns([text_field]).rename_column(text_field, "text")
                if text_field != "text"
                else ds.select_columns(["text"])
            )
        if text_files:
            parts.append(
                datasets.load_dataset(
                    "text",
                    data_files=text_files,
                    split="train",
                    sample_by="document",
                    cache_dir=str(cache_dir),
                ).select_columns(["text"])
            )
    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)


def _load_source(domain: str, spec: Any, text_field: str, cache_dir: Path) -> Any:
    import datasets

    if (
        isinstance(spec, str)
        and not Path(spec).expanduser().exists()
        and not _looks_like_path(spec)
    ):
        try:
            with _quiet_datasets():
                ds = datasets.load_dataset(spec, split="train")
        except Exception as exc:
            raise ValueError(
                f"`domains.{domain}`: {spec!r} is neither a local path nor a dataset in the "
                f"local `datasets` cache ({type(exc).__name__}: {exc})."
            ) from None
        return _text_column(domain, ds, text_field, spec)
    paths = [spec] if isinstance(spec, str | os.PathLike) else list(spec)
    saved_markers = ("state.json", "dataset_dict.json")
    if len(paths) == 1 and any((Path(paths[0]).expanduser() / m).is_file() for m in saved_markers):
        saved = datasets.load_from_disk(str(Path(paths[0]).expanduser()))  # save_to_disk()
        if isinstance(saved, datasets.DatasetDict):
            saved = saved["train"]
        return _text_column(domain, saved, text_field, str(paths[0]))
    files = _expand(domain, [str(p) for p in paths])
    return _load_files(domain, files, text_field, cache_dir)


def _text_column(domain: str, ds: Any, text_field: str, where: str) -> Any:
    if text_field not in ds.column_names:
        raise ValueError(
            f"`domains.{domain}`: dataset {where!r} has no column {text_field!r}; "
            f"columns: {ds.column_names}; set `text_field`."
        )
    ds = ds.select_columns([text_field])
    return ds.rename_column(text_field, "text") if text_field != "text" else ds


def load_domain_texts(
    domain: str,
    spec: Any,
    *,
    text_field: str,
    held_out_fraction: float,
    held_out_size: int | None,
    seed: int,
    cache_dir: Path,
) -> tuple[Any, Any]:
    """The (train, held-out) document datasets of one domain, each with a ``text`` column.

    ``spec`` is a path, a list of paths, a ``datasets`` name, or a mapping
    ``{"train": ..., "held_out": ...}`` giving the split explicitly.
    """
    if isinstance(spec, Mapping):
        unknown = set(spec) - {"train", "held_out"}
        if unknown or "train" not in spec or "held_out" not in spec:
            raise ValueError(
                f"`domains.{domain}` as a mapping needs exactly the keys 'train' and "
                f"'held_out'; got {sorted(spec)}."
            )
        train = _load_source(domain, spec["train"], text_field, cache_dir)
        held = _load_source(domain, spec["held_out"], text_field, cache_dir)
        return train, held
    docs = _load_source(domain, spec, text_field, cache_dir)
    n = len(docs)
    test_size: int = held_out_size if held_out_size else max(1, round(held_out_fraction * n))
    if n < 2 or test_size >= n:
        raise ValueError(
            f"`domains.{domain}` has {n} document(s), too few to hold out {test_size}; "
            "add documents or give an explicit {'train': ..., 'held_out': ...} split."
        )
    split = docs.train_test_split(test_size=test_size, seed=seed, shuffle=True)
    return split["train"], split["test"]


@dataclass(frozen=True)
class DomainBlocks:
    """One domain packed into blocks of ``seq_len + 1`` token ids.

    Attributes:
        name: the domain name.
        train: ``(n_train, seq_len + 1)`` int32 (memory-mapped when cached on disk).
        held_out: ``(n_held_out, seq_len + 1)`` int32.
    """

    name: str
    train: NDArray[np.int32]
    held_out: NDArray[np.int32]

    @property
    def train_tokens(self) -> int:
        """Predicted tokens in one epoch over the train blocks."""
        return int(self.train.shape[0]) * (int(self.train.shape[1]) - 1)


def _blocks_of(ds: Any, width: int) -> NDArray[np.int32]:
    """The ``input_ids`` column as a 2-D array, zero-copy from Arrow when possible."""
    table = ds.data.table if hasattr(ds.data, "table") else ds.data
    column = table.column("input_ids").combine_chunks()
    flat = column.values.to_numpy(zero_copy_only=False)
    return np.asarray(flat, dtype=np.int32).reshape(-1, width)


def pack_domain(
    name: str,
    train_docs: Any,
    held_docs: Any,
    tokenizer: Any,
    *,
    seq_len: int,
    cache_dir: Path,
    key: str,
) -> DomainBlocks:
    """Tokenise documents (each followed by eos) and pack them into ``seq_len + 1`` blocks."""
    from datasets import Features, Sequence, Value

    width = seq_len + 1
    eos = int(tokenizer.eos_token_id)
    features = Features({"input_ids": Sequence(Value("int32"), length=width)})

    def pack(batch: dict[str, list[str]]) -> dict[str, list[list[int]]]:
        ids = tokenizer(batch["text"], add_special_tokens=False)["input_ids"]
        flat = np.fromiter((t for doc in ids for t in (*doc, eos)), dtype=np.int32)
        n = flat.size // width
        return {"input_ids": flat[: n * width].reshape(n, width).tolist()}

    out = []
    for split, docs in (("train", train_docs), ("held_out", held_docs)):
        fingerprint = hashlib.sha256(
            f"{_DATA_VERSION}|{key}|{name}|{split}|{docs._fingerprint}|{width}".encode()
        ).hexdigest()[:32]
        cache_file = cache_dir / "packed" / f"{fingerprint}.arrow"
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        with _quiet_datasets():
            packed = docs.map(
                pack,
                batched=True,
                batch_size=256,
                remove_columns=docs.column_names,
                features=features,
                new_fingerprint=fingerprint,
                cache_file_name=str(cache_file),
                load_from_cache_file=True,
            )
        blocks = _blocks_of(packed, width)
        if blocks.shape[0] == 0:
            raise ValueError(
                f"`domains.{name}`: the {split} split has fewer than seq_len + 1 = {width} "
                "tokens; add text or lower `seq_len`."
            )
        out.append(blocks)
    return DomainBlocks(name=name, train=out[0], held_out=out[1])


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
        raise ValueError(f"`mixture` weights must sum to 1 (got {total:.6g}); normalise them.")
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
    permutation per epoch, so every block is used once before any repeats.
    The state is ``(cycle, offset, drawn per domain)``.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        weights: Sequence[float],
        *,
        seed: int,
        cycle_draws: int = 4096,
    ) -> None:
        self.sizes = [int(s) for s in sizes]
        self.weights = [float(w) for w in weights]
        self.seed = int(seed)
        self.cycle_draws = int(cycle_draws)
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
        with _quiet_datasets():
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
            key = (domain, int(epoch))
            if key not in self._perms:
                if len(self._perms) > 4 * len(self.sizes):
                    self._perms.clear()
                rng = np.random.default_rng([self.seed, domain, int(epoch)])
                self._perms[key] = rng.permutation(size).astype(np.int64)
            sel = draws // size == epoch
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
