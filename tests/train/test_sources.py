"""Domains from files: every format and compression packs into the same blocks; the cache keys."""

from __future__ import annotations

import bz2
import gzip
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("datasets")
pytest.importorskip("tokenizers")

from benchmarks._corpus import documents
from lawsearch.train._pack import SplitRule, pack_domain, train_sample
from lawsearch.train._sources import document_batches, file_format
from lawsearch.train._tokenizer import load_or_train_tokenizer

SEQ = 32
RULE = SplitRule(fraction=0.2, seed=0)


@pytest.fixture(scope="module")
def docs() -> list[str]:
    out = list(documents("prose", 60_000, doc_bytes=600))
    out[3] = 'line one\nline "two", with a comma\tand a tab\n\nünïcödé ✓'  # quoting and UTF-8
    return out


@pytest.fixture(scope="module")
def tokenizer(docs: list[str], tmp_path_factory: pytest.TempPathFactory) -> Any:
    return load_or_train_tokenizer([docs], vocab_size=400, cache_dir=tmp_path_factory.mktemp("tok"))


def _jsonl(docs: list[str]) -> bytes:
    return "".join(json.dumps({"text": t, "n": i}) + "\n" for i, t in enumerate(docs)).encode()


def _write(root: Path, kind: str, docs: list[str]) -> Any:
    """The same documents written as ``kind``; returns the domain's source."""
    import datasets
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq
    import zstandard

    root.mkdir(parents=True, exist_ok=True)
    table = pa.table({"n": list(range(len(docs))), "text": docs})
    if kind == "jsonl":
        (root / "d.jsonl").write_bytes(_jsonl(docs))
        return str(root / "d.jsonl")
    if kind == "jsonl.gz":
        (root / "d.jsonl.gz").write_bytes(gzip.compress(_jsonl(docs)))
        return str(root / "d.jsonl.gz")
    if kind == "jsonl.zst":
        (root / "d.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(_jsonl(docs)))
        return str(root / "d.jsonl.zst")
    if kind == "json.bz2":
        (root / "d.json.bz2").write_bytes(bz2.compress(_jsonl(docs)))
        return str(root / "d.json.bz2")
    if kind == "parquet":
        pq.write_table(table, root / "d.parquet", row_group_size=17)
        return str(root / "d.parquet")
    if kind == "arrow":
        with pa.ipc.new_stream(str(root / "d.arrow"), table.schema) as writer:
            writer.write_table(table, max_chunksize=23)
        return str(root / "d.arrow")
    if kind == "csv":
        pcsv.write_csv(table, root / "d.csv")
        return str(root / "d.csv")
    if kind == "tsv":
        pcsv.write_csv(table, root / "d.tsv", pcsv.WriteOptions(delimiter="\t"))
        return str(root / "d.tsv")
    if kind == "text":  # one document per file, read in file-name order
        for i, t in enumerate(docs):
            (root / f"doc{i:04d}.txt").write_text(t, encoding="utf-8")
        return str(root)
    if kind == "saved":
        datasets.Dataset.from_dict({"text": docs}).save_to_disk(str(root / "saved"))
        return str(root / "saved")
    if kind == "glob":  # shards in name order
        for s, part in enumerate(np.array_split(np.arange(len(docs)), 3)):
            (root / f"shard-{s}.jsonl").write_bytes(_jsonl([docs[i] for i in part]))
        (root / "README.md").write_text("not data")
        return str(root / "shard-*.jsonl")
    raise AssertionError(kind)


def _pack(source: Any, tokenizer: Any, cache: Path, **kw: Any) -> tuple[Any, str]:
    return pack_domain("d", source, tokenizer, seq_len=SEQ, cache_dir=cache, rule=RULE, **kw)


KINDS = [
    "jsonl.gz",
    "jsonl.zst",
    "json.bz2",
    "parquet",
    "arrow",
    "csv",
    "tsv",
    "text",
    "saved",
    "glob",
]


def test_every_format_and_compression_packs_into_identical_blocks(
    docs: list[str], tokenizer: Any, tmp_path: Path
) -> None:
    reference, _ = _pack(_write(tmp_path / "jsonl", "jsonl", docs), tokenizer, tmp_path / "c")
    assert reference.train.shape[1] == SEQ + 1 and reference.held_out.shape[0] > 0
    held = len(range(0, len(docs), 5))  # every 5th document, from the first
    assert reference.documents == {"train": len(docs) - held, "held_out": held}
    assert isinstance(reference.train, np.memmap)
    for kind in KINDS:
        blocks, _ = _pack(_write(tmp_path / kind, kind, docs), tokenizer, tmp_path / "c")
        np.testing.assert_array_equal(blocks.train, reference.train, err_msg=kind)
        np.testing.assert_array_equal(blocks.held_out, reference.held_out, err_msg=kind)


def test_blocks_are_documents_each_followed_by_eos(
    docs: list[str], tokenizer: Any, tmp_path: Path
) -> None:
    blocks, _ = _pack(_write(tmp_path, "jsonl", docs), tokenizer, tmp_path / "c")
    train = [t for i, t in enumerate(docs) if i % 5 != 0]
    eos = tokenizer.eos_token_id
    flat = [t for d in tokenizer(train, add_special_tokens=False)["input_ids"] for t in (*d, eos)]
    n = len(flat) // (SEQ + 1)  # fewer than 256 documents: one packing group
    np.testing.assert_array_equal(blocks.train, np.array(flat[: n * (SEQ + 1)]).reshape(n, -1))
    assert blocks.train.dtype == np.uint16  # a 400-token vocabulary


def test_cache_is_reused_and_invalidated_by_files_and_tokenizer(
    docs: list[str], tokenizer: Any, tmp_path: Path
) -> None:
    source = _write(tmp_path / "data", "glob", docs)
    cache = tmp_path / "cache"
    _, key = _pack(source, tokenizer, cache)
    meta = cache / key / "meta.json"
    stamp = meta.stat().st_mtime_ns
    t0 = time.perf_counter()
    again, same = _pack(source, tokenizer, cache)
    assert same == key and meta.stat().st_mtime_ns == stamp  # reused, not rewritten
    assert time.perf_counter() - t0 < 5
    shard = tmp_path / "data" / "shard-1.jsonl"
    shard.write_bytes(_jsonl(docs[:5]))  # a file changes
    changed, other = _pack(source, tokenizer, cache)
    assert other != key and changed.train.shape[0] < again.train.shape[0]
    (tmp_path / "data" / "shard-3.jsonl").write_bytes(_jsonl(docs[:3]))  # a file is added
    assert _pack(source, tokenizer, cache)[1] not in (key, other)
    smaller = load_or_train_tokenizer([docs], vocab_size=300, cache_dir=tmp_path / "tok")
    assert _pack(source, smaller, cache)[1] not in (key, other)


def test_held_out_is_every_kth_document_capped(docs: list[str], tmp_path: Path) -> None:
    source = _write(tmp_path, "jsonl", docs)
    rule = SplitRule(fraction=0.1, cap=3, seed=4)
    assert rule.every == 10
    routes = rule.routes(0, 100, 0)
    assert [i for i, held in enumerate(routes) if held] == [4, 14, 24]
    sample = train_sample("d", source, rule=rule, max_bytes=10**9)
    assert sample == [t for i, t in enumerate(docs) if i not in (4, 14, 24)]
    bounded = train_sample("d", source, rule=rule, max_bytes=5_000)
    assert 0 < sum(len(t.encode()) for t in bounded) <= 5_000
    assert bounded == sample[: len(bounded)]  # the first train documents, in order


def test_explicit_split_and_tiny_splits(docs: list[str], tokenizer: Any, tmp_path: Path) -> None:
    train = _write(tmp_path / "a", "jsonl", docs[:50])
    held = _write(tmp_path / "b", "parquet", docs[50:60])
    blocks, _ = _pack({"train": train, "held_out": held}, tokenizer, tmp_path / "c")
    assert blocks.documents == {"train": 50, "held_out": 10}
    (tmp_path / "tiny.txt").write_text("hi")
    with pytest.raises(ValueError, match=r"`domains.d`: the train split has fewer than"):
        _pack({"train": str(tmp_path / "tiny.txt"), "held_out": held}, tokenizer, tmp_path / "c")
    with pytest.raises(ValueError, match=r"needs exactly the keys 'train' and 'held_out'"):
        _pack({"train": train}, tokenizer, tmp_path / "c")


def test_bad_sources_name_the_field_and_the_fix(
    docs: list[str], tokenizer: Any, tmp_path: Path
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"body": docs[:10]}), tmp_path / "x.parquet")
    with pytest.raises(ValueError, match=r"`domains.d`: .*has no column 'text'.*body.*text_field"):
        _pack(str(tmp_path / "x.parquet"), tokenizer, tmp_path / "c")
    blocks, _ = _pack(str(tmp_path / "x.parquet"), tokenizer, tmp_path / "c", text_field="body")
    assert blocks.documents == {"train": 8, "held_out": 2}
    (tmp_path / "weights.bin").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ValueError, match=r"not a recognised data file.*set `format`"):
        file_format("d", tmp_path / "weights.bin")
    (tmp_path / "notes.rst").write_text("plain text is read as one document")
    assert file_format("d", tmp_path / "notes.rst") == "text"
    assert file_format("d", tmp_path / "x.parquet", "json") == "json"
    (tmp_path / "broken.jsonl").write_text('{"text": "ok"}\n{"text": \n')
    with pytest.raises(ValueError, match=r"`domains.d`: cannot read json file.*broken.jsonl"):
        list(document_batches("d", str(tmp_path / "broken.jsonl")))
    with pytest.raises(ValueError, match=r"pattern 'nope-\*.jsonl' matches no file"):
        list(document_batches("d", "nope-*.jsonl"))


def test_a_dataset_name_outside_the_local_cache_gives_the_offline_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    t0 = time.perf_counter()
    with pytest.raises(
        ValueError,
        match=r"`domains.d.dataset` = 'someone/corpus' is not in the local `datasets` cache and "
        r"lawsearch never downloads.*datasets.load_dataset\('someone/corpus'\)",
    ):
        list(document_batches("d", "someone/corpus"))
    assert time.perf_counter() - t0 < 10  # no network retries
    assert os.environ.get("HF_HUB_OFFLINE") is None  # the switch was local to the call


def test_several_tokenising_processes_pack_the_same_blocks(
    docs: list[str], tokenizer: Any, tmp_path: Path
) -> None:
    source = _write(tmp_path / "data", "glob", docs * 3)
    one, key = _pack(source, tokenizer, tmp_path / "c1")
    two, key2 = _pack(source, tokenizer, tmp_path / "c2", num_proc=2)
    assert key == key2  # the number of processes is not part of the data
    np.testing.assert_array_equal(one.train, two.train)
    np.testing.assert_array_equal(one.held_out, two.held_out)
