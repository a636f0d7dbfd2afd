"""A generated text corpus for benchmarks and tests: deterministic, cheap, any size and format.

Each domain has its own pool of pseudo-words and sentences (seeded by the domain's
name), and each document strings together sentences drawn from that pool, so
domains differ in vocabulary and a tokenizer has something to learn. A
gigabyte takes seconds to write: documents are joined from pre-built sentences,
never word by word.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

__all__ = ["documents", "write_domain", "write_layout"]

_LETTERS = np.array(list("etaoinshrdlcumwfgypbvkjxqz"))


def _pool(domain: str, n_words: int = 3000, n_sentences: int = 20000) -> list[str]:
    rng = np.random.default_rng(zlib.crc32(domain.encode()))
    lengths = rng.integers(2, 10, size=n_words)
    words = ["".join(rng.choice(_LETTERS, size=k, p=None)) for k in lengths]
    zipf = 1.0 / np.arange(1, n_words + 1)
    zipf /= zipf.sum()
    sentences = []
    for k in rng.integers(5, 20, size=n_sentences):
        ids = rng.choice(n_words, size=k, p=zipf)
        sentences.append(" ".join(words[i] for i in ids).capitalize() + ".")
    return sentences


def documents(domain: str, total_bytes: int, *, doc_bytes: int = 2000) -> Iterator[str]:
    """Documents of ``domain`` until about ``total_bytes`` of text (deterministic)."""
    pool = _pool(domain)
    rng = np.random.default_rng(zlib.crc32(f"{domain}/docs".encode()))
    mean = float(np.mean([len(s) + 1 for s in pool[:1000]]))
    per_doc = max(1, round(doc_bytes / mean))
    written = 0
    while written < total_bytes:
        picks = rng.integers(0, len(pool), size=(256, per_doc))
        for row in picks:
            text = " ".join(pool[i] for i in row)
            written += len(text) + 1
            yield text
            if written >= total_bytes:
                return


def write_domain(
    folder: Path, domain: str, total_bytes: int, *, shards: int = 1, fmt: str = "jsonl"
) -> list[Path]:
    """Write ``domain`` as ``shards`` files of ``fmt`` (``jsonl`` or ``parquet``) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    docs = list(documents(domain, total_bytes)) if fmt == "parquet" else None
    paths = [folder / f"part-{i:05d}.{fmt}" for i in range(shards)]
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        assert docs is not None
        for i, path in enumerate(paths):
            pq.write_table(pa.table({"text": docs[i::shards]}), path)
        return paths
    if fmt != "jsonl":
        raise ValueError(f"`fmt` must be 'jsonl' or 'parquet'; got {fmt!r}.")
    handles = [open(p, "w", encoding="utf-8") for p in paths]  # closed below
    try:
        for i, text in enumerate(documents(domain, total_bytes)):
            handles[i % shards].write(json.dumps({"text": text}) + "\n")
    finally:
        for h in handles:
            h.close()
    return paths


def write_layout(
    root: Path, domains: Sequence[str], bytes_per_domain: int, *, shards: int = 2
) -> dict[str, list[Path]]:
    """``root/data/<domain>/part-*.parquet`` for each domain: the GPU study's layout."""
    return {
        d: write_domain(root / "data" / d, d, bytes_per_domain, shards=shards, fmt="parquet")
        for d in domains
    }
