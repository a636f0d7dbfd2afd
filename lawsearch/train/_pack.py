"""Packing a domain once: stream its documents, split, tokenise, write memory-mapped blocks.

Each domain's documents are streamed from their source (``lawsearch.train._sources``:
JSONL/JSON, Parquet, Arrow, CSV, text, compressed, sharded, ``save_to_disk``
folders, cached ``datasets`` names), split into train and held-out *documents*
(the split a mapping ``{"train": ..., "held_out": ...}`` gives, or every k-th
document held out: ``SplitRule``), tokenised, and packed into blocks of
``seq_len + 1`` tokens (inputs and shifted targets). Packing concatenates each
group of 256 consecutive documents of a split, each followed by eos, and keeps
the whole blocks of the group. The blocks are written once to
``<cache>/blocks/<key>/{train,held_out}.bin`` and read memory-mapped, where the
key is a fingerprint of the files (path, size, mtime), the tokenizer, the split
and the block width: peak memory does not grow with the corpus, and a second
``prepare`` reuses the files.

``prepare_domains`` does it for a whole ``DataSpec``: the tokenizer first (a
pretrained folder, or a BPE trained on each domain's first train documents up
to ``tokenizer_sample_bytes``), then every domain.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lawsearch.train._data import DomainBlocks
from lawsearch.train._sources import document_batches, quiet_datasets, source_fingerprint

__all__ = [
    "SplitRule",
    "pack_domain",
    "prepare_domains",
    "tokenizer_fingerprint",
    "train_sample",
]

_PACK_VERSION = "pack/2"
#: documents packed together: blocks never straddle two groups (the remainder is dropped)
_GROUP = 256


@dataclass(frozen=True)
class SplitRule:
    """How a domain without an explicit split is divided into train and held-out documents.

    Document ``i`` of the stream (0-based) is held out when ``i % every == seed % every``,
    until ``cap`` documents are held out (0: no cap). A systematic sample: exact in
    proportion, spread over every shard, and decided while streaming.
    """

    fraction: float = 0.1
    cap: int = 0
    seed: int = 0

    @property
    def every(self) -> int:
        return max(2, round(1.0 / self.fraction))

    def routes(self, start: int, n: int, held_so_far: int) -> list[bool]:
        """Held out? for documents ``start .. start + n - 1``."""
        every, offset = self.every, self.seed % self.every
        out = []
        for i in range(start, start + n):
            held = i % every == offset and (self.cap <= 0 or held_so_far < self.cap)
            held_so_far += held
            out.append(held)
        return out

    def key(self) -> dict[str, Any]:
        return {"every": self.every, "cap": self.cap, "offset": self.seed % self.every}


def _is_split(spec: Any) -> bool:
    return isinstance(spec, Mapping)


def _check_split(domain: str, spec: Mapping[str, Any]) -> None:
    unknown = set(spec) - {"train", "held_out"}
    if unknown or "train" not in spec or "held_out" not in spec:
        raise ValueError(
            f"`domains.{domain}` as a mapping needs exactly the keys 'train' and "
            f"'held_out'; got {sorted(spec)}."
        )


def _split_streams(
    domain: str, spec: Any, rule: SplitRule, text_field: str, forced: str
) -> Iterator[tuple[str, list[str]]]:
    """``(split, texts)`` batches of a domain in stream order, split by ``rule`` or the mapping."""
    if _is_split(spec):
        _check_split(domain, spec)
        for split in ("train", "held_out"):
            for texts in document_batches(
                domain, spec[split], text_field=text_field, forced=forced, batch_size=_GROUP
            ):
                yield split, texts
        return
    start = held = 0
    for texts in document_batches(
        domain, spec, text_field=text_field, forced=forced, batch_size=_GROUP
    ):
        routes = rule.routes(start, len(texts), held)
        start += len(texts)
        held += sum(routes)
        train = [t for t, r in zip(texts, routes, strict=True) if not r]
        out = [t for t, r in zip(texts, routes, strict=True) if r]
        if train:
            yield "train", train
        if out:
            yield "held_out", out


def train_sample(
    domain: str,
    spec: Any,
    *,
    rule: SplitRule,
    text_field: str = "text",
    forced: str = "auto",
    max_bytes: int,
) -> list[str]:
    """The domain's first train documents, up to ``max_bytes`` of UTF-8 (for a BPE).

    A domain smaller than the bound gives all its train documents, in order.
    """
    out: list[str] = []
    total = 0
    for split, texts in _split_streams(domain, spec, rule, text_field, forced):
        if split != "train":
            continue
        for t in texts:
            size = len(t.encode("utf-8"))
            if total + size > max_bytes and out:
                return out
            out.append(t)
            total += size
    return out


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash of the tokenizer's full definition (vocabulary, merges, normaliser, specials)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        text = backend.to_str()
    else:  # a slow (Python) tokenizer: its vocabulary and special tokens
        text = json.dumps(
            {"vocab": tokenizer.get_vocab(), "special": tokenizer.special_tokens_map},
            sort_keys=True,
        )
    return hashlib.sha256(f"{text}|eos={tokenizer.eos_token_id}".encode()).hexdigest()


class _Packer:
    """Writes one split's blocks to a file: groups of documents, each followed by eos."""

    def __init__(self, path: Path, width: int, dtype: Any, eos: int) -> None:
        self.path, self.width, self.dtype, self.eos = path, width, np.dtype(dtype), eos
        self.fh = open(path, "wb")  # closed by close()
        self.pending: list[Sequence[int]] = []
        self.rows = 0
        self.documents = 0
        self.tokens = 0

    def add(self, docs: Sequence[Sequence[int]]) -> None:
        for doc in docs:
            self.pending.append(doc)
            if len(self.pending) == _GROUP:
                self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        eos = (self.eos,)
        flat = np.fromiter(
            itertools.chain.from_iterable(itertools.chain(d, eos) for d in self.pending),
            dtype=np.int64,
        )
        n = flat.size // self.width
        self.fh.write(flat[: n * self.width].astype(self.dtype).tobytes())
        self.rows += n
        self.documents += len(self.pending)
        self.tokens += flat.size
        self.pending = []

    def close(self) -> dict[str, int]:
        self._flush()
        self.fh.close()
        return {"rows": self.rows, "documents": self.documents, "tokens": self.tokens}


def _encoder(tokenizer: Any) -> Any:
    """``texts -> list of token-id lists`` without special tokens (the fast path when there)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and hasattr(backend, "encode_batch_fast"):
        return lambda texts: [e.ids for e in backend.encode_batch_fast(texts, False)]
    return lambda texts: tokenizer(texts, add_special_tokens=False)["input_ids"]


_WORKER_TOKENIZER: Any = None


def _init_worker(definition: str) -> None:
    """A tokenisation process: one tokenizer thread each (the processes are the parallelism)."""
    global _WORKER_TOKENIZER
    os.environ["RAYON_NUM_THREADS"] = "1"
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    from tokenizers import Tokenizer

    _WORKER_TOKENIZER = Tokenizer.from_str(definition)


def _encode_in_worker(texts: list[str]) -> list[list[int]]:
    return [e.ids for e in _WORKER_TOKENIZER.encode_batch_fast(texts, False)]


def _tokenized(
    batches: Iterator[tuple[str, list[str]]], tokenizer: Any, num_proc: int
) -> Iterator[tuple[str, list[list[int]]]]:
    """Tokenise ``(split, texts)`` batches in order, in ``num_proc`` processes when > 1.

    At most ``2 * num_proc`` batches are in flight, so memory stays bounded.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if num_proc <= 1 or backend is None:
        encode = _encoder(tokenizer)
        for split, texts in batches:
            yield split, encode(texts)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(
        num_proc,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(backend.to_str(),),
    ) as pool:
        window: deque[tuple[str, Any]] = deque()
        for split, texts in batches:
            window.append((split, pool.submit(_encode_in_worker, texts)))
            if len(window) >= 2 * num_proc:
                split_done, future = window.popleft()
                yield split_done, future.result()
        while window:
            split_done, future = window.popleft()
            yield split_done, future.result()


def pack_domain(
    name: str,
    spec: Any,
    tokenizer: Any,
    *,
    seq_len: int,
    cache_dir: Path,
    rule: SplitRule,
    text_field: str = "text",
    forced: str = "auto",
    num_proc: int = 1,
) -> tuple[DomainBlocks, str]:
    """Tokenise a domain once into memory-mapped packed blocks; ``(blocks, cache key)``.

    Reuses ``<cache_dir>/<key>/`` when it exists (see the module docstring).
    """
    width = seq_len + 1
    vocab = len(tokenizer)
    dtype = "uint16" if vocab <= np.iinfo(np.uint16).max + 1 else "int32"
    if _is_split(spec):
        _check_split(name, spec)
        source = {s: source_fingerprint(name, spec[s], forced) for s in ("train", "held_out")}
        split_key: Any = "explicit"
    else:
        source = {"all": source_fingerprint(name, spec, forced)}
        split_key = rule.key()
    key = hashlib.sha256(
        json.dumps(
            {
                "version": _PACK_VERSION,
                "source": source,
                "split": split_key,
                "text_field": text_field,
                "format": forced,
                "tokenizer": tokenizer_fingerprint(tokenizer),
                "width": width,
                "dtype": dtype,
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()[:32]
    folder = cache_dir / key
    if not (folder / "meta.json").is_file():
        _write_blocks(
            name, spec, tokenizer, folder, width, dtype, rule, text_field, forced, num_proc
        )
    meta = json.loads((folder / "meta.json").read_text())
    # every document ends with one eos token: no other token means no text at all
    if all(int(meta[s]["tokens"]) <= int(meta[s]["documents"]) for s in ("train", "held_out")):
        raise ValueError(
            f"`domains.{name}` has no text: its source holds no non-empty document; add "
            f"documents, point `text_field` at the field that holds the text, or remove "
            f"[domains.{name}]."
        )
    arrays = []
    for split in ("train", "held_out"):
        rows = int(meta[split]["rows"])
        if rows == 0:
            raise ValueError(
                f"`domains.{name}`: the {split} split has fewer than seq_len + 1 = {width} "
                "tokens; add text or lower `seq_len`."
            )
        arrays.append(
            np.memmap(folder / f"{split}.bin", dtype=dtype, mode="r", shape=(rows, width))
        )
    documents = {s: int(meta[s]["documents"]) for s in ("train", "held_out")}
    return DomainBlocks(name=name, train=arrays[0], held_out=arrays[1], documents=documents), key


def _write_blocks(
    name: str,
    spec: Any,
    tokenizer: Any,
    folder: Path,
    width: int,
    dtype: str,
    rule: SplitRule,
    text_field: str,
    forced: str,
    num_proc: int,
) -> None:
    """Stream, tokenise and pack a domain into ``folder`` (atomically: a temp folder renamed)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    eos = int(tokenizer.eos_token_id)
    packers = {s: _Packer(tmp / f"{s}.bin", width, dtype, eos) for s in ("train", "held_out")}
    try:
        with quiet_datasets():
            batches = _split_streams(name, spec, rule, text_field, forced)
            for split, ids in _tokenized(batches, tokenizer, num_proc):
                packers[split].add(ids)
        meta = {s: p.close() for s, p in packers.items()}
        meta["width"], meta["dtype"] = width, dtype  # type: ignore[assignment]
        (tmp / "meta.json").write_text(json.dumps(meta, sort_keys=True))
        try:
            os.replace(tmp, folder)
        except OSError:  # another process packed the same key first: keep theirs
            if not (folder / "meta.json").is_file():
                raise
    finally:
        for p in packers.values():
            if not p.fh.closed:
                p.fh.close()
        shutil.rmtree(tmp, ignore_errors=True)


def prepare_domains(data: Any, model: Any) -> tuple[Any, list[DomainBlocks], str]:
    """``(tokenizer, blocks per domain, data key)`` of a ``DataSpec`` for a ``ModelSpec``.

    The data key identifies the tokenizer and every domain's blocks (checkpoints
    and run ids depend on it).
    """
    from lawsearch.train._tokenizer import load_or_train_tokenizer, load_pretrained_tokenizer

    cache = data.resolved_cache_dir()
    rule = SplitRule(fraction=data.held_out_fraction, cap=data.held_out_size, seed=data.seed)
    if data.tokenizer_path:
        tokenizer = load_pretrained_tokenizer(data.tokenizer_path)
    else:
        samples = [
            train_sample(
                name,
                spec,
                rule=rule,
                text_field=data.text_field_of(name),
                forced=data.format_of(name),
                max_bytes=data.tokenizer_sample_bytes,
            )
            for name, spec in data.domains.items()
        ]
        tokenizer = load_or_train_tokenizer(
            samples,
            vocab_size=model.vocab_size,
            min_frequency=data.min_frequency,
            cache_dir=cache / "tokenizers",
        )
    if not model.config and len(tokenizer) > model.vocab_size:
        raise ValueError(
            f"the tokenizer has {len(tokenizer)} tokens > the model's vocab_size "
            f"{model.vocab_size}; raise `tokenizer.vocab_size` (the model's vocabulary) to "
            f">= {len(tokenizer)}."
        )
    blocks, keys = [], []
    for name, spec in data.domains.items():
        packed, key = pack_domain(
            name,
            spec,
            tokenizer,
            seq_len=model.seq_len,
            cache_dir=cache / "blocks",
            rule=rule,
            text_field=data.text_field_of(name),
            forced=data.format_of(name),
            num_proc=data.num_proc,
        )
        blocks.append(packed)
        keys.append(key)
    key_src = json.dumps({"tokenizer": tokenizer_fingerprint(tokenizer), "blocks": keys})
    return tokenizer, blocks, hashlib.sha256(key_src.encode()).hexdigest()[:24]
