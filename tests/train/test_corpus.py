"""The demo corpus: offline, deterministic, licensed and described by its manifest."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

pytest.importorskip("tokenizers")
pytest.importorskip("licensedcode")

from lawsearch.train.corpus import (
    DEMO_DOMAINS,
    build_demo_corpus,
    load_manifest,
)

SMALL = 16_000


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory):
    return build_demo_corpus(
        tmp_path_factory.mktemp("corpus"), max_bytes_per_domain=SMALL, token_vocab_size=300
    )


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.relative_to(root).parts[0].startswith(".")
    }


def test_at_least_five_domains_with_distinct_licences_recorded(corpus) -> None:
    data = corpus.data
    assert len(DEMO_DOMAINS) >= 5
    assert set(data["domains"]) == set(DEMO_DOMAINS)
    licences = {name: entry["licence"] for name, entry in data["domains"].items()}
    assert licences["licenses"] == "CC-BY-4.0"  # licensedcode-data's data licence
    assert licences["python_stdlib"] == "PSF-2.0"
    for name, entry in data["domains"].items():
        assert entry["source"] and entry["attribution"], name
        for split in ("train", "held_out"):
            assert entry["documents"][split] >= 1
            assert entry["tokens"][split] > 0
        assert entry["bytes"]["train"] + entry["bytes"]["held_out"] <= SMALL
        assert len(entry["held_out_ids"]) == entry["documents"]["held_out"]
    for pkg in ("python", "licensedcode-data", "numpy", "torch"):
        assert pkg in data["versions"]


def test_files_match_manifest_and_split_is_disjoint(corpus) -> None:
    for name in corpus.domains:
        entry = corpus.data["domains"][name]
        ids = {}
        for split, path in corpus.paths(name).items():
            payload = path.read_bytes()
            assert hashlib.sha256(payload).hexdigest() == entry["sha256"][split]
            records = [json.loads(line) for line in payload.decode().splitlines()]
            assert len(records) == entry["documents"][split]
            assert sum(len(r["text"].encode()) for r in records) == entry["bytes"][split]
            ids[split] = [r["id"] for r in records]
        assert ids["held_out"] == entry["held_out_ids"]
        assert not set(ids["train"]) & set(ids["held_out"])
        held = entry["bytes"]["held_out"] / (entry["bytes"]["held_out"] + entry["bytes"]["train"])
        assert 0.0 < held < 0.5


def test_licence_texts_have_no_yaml_front_matter(corpus) -> None:
    text = corpus.paths("licenses")["train"].read_text()
    for line in text.splitlines():
        record = json.loads(line)
        assert not record["text"].startswith("---"), record["id"]
        assert "spdx_license_key:" not in record["text"][:200]


def test_build_is_deterministic_and_reused(tmp_path: Path) -> None:
    a = build_demo_corpus(tmp_path / "a", max_bytes_per_domain=8_000, token_vocab_size=None)
    b = build_demo_corpus(tmp_path / "b", max_bytes_per_domain=8_000, token_vocab_size=None)
    assert _tree(a.root) == _tree(b.root)
    manifest = a.root / "manifest.json"
    before = manifest.stat().st_mtime_ns
    again = build_demo_corpus(tmp_path / "a", max_bytes_per_domain=8_000, token_vocab_size=None)
    assert manifest.stat().st_mtime_ns == before  # reused, not rebuilt
    assert again.data == a.data
    assert load_manifest(manifest).data == a.data
    # other options are a different corpus: rebuilt in place
    other = build_demo_corpus(tmp_path / "a", max_bytes_per_domain=6_000, token_vocab_size=None)
    assert other.data["key"] != a.data["key"]


def test_default_location_is_the_cache_keyed_by_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAWSEARCH_CACHE", str(tmp_path))
    m = build_demo_corpus(
        domains=["python_docs"], max_bytes_per_domain=6_000, token_vocab_size=None
    )
    assert m.root == tmp_path / "corpus" / m.data["key"]
    assert m.domains == ("python_docs",)
    assert m.data_domains()["python_docs"]["train"].endswith("python_docs/train.jsonl")


def test_bad_options_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown demo domain 'python_stdlb'.*'python_stdlib'"):
        build_demo_corpus(tmp_path, domains=["python_stdlb"])
    with pytest.raises(ValueError, match="held_out_fraction"):
        build_demo_corpus(tmp_path, held_out_fraction=0.7)
    with pytest.raises(ValueError, match="max_bytes_per_domain"):
        build_demo_corpus(tmp_path, max_bytes_per_domain=10)
    with pytest.raises(ValueError, match="no corpus manifest"):
        load_manifest(tmp_path / "nowhere")


def test_unknown_domain_in_manifest_paths(corpus) -> None:
    with pytest.raises(ValueError, match=r"unknown domain 'licences'.*'licenses'"):
        corpus.paths("licences")
