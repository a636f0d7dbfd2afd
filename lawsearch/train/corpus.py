"""The embedded demo corpus: five text domains that install with the project's own deps.

``build_demo_corpus()`` writes each domain as JSONL documents (``{"id", "text"}``
per line) split into ``train.jsonl`` and ``held_out.jsonl``, plus a
``manifest.json`` that records, per domain, where the text came from, its
licence and attribution, its size in bytes (and tokens, under the demo
tokenizer), and the ids of the held-out documents.

Everything is deterministic: source files are listed in sorted order, each
document's place in the corpus is the SHA-256 of ``domain/id`` (so a byte cap
takes a spread sample, not the alphabetically first files), and the JSON is
written with sorted keys. Two machines with the same Python and package
versions (recorded in the manifest) produce byte-identical files.

Domains (``DEMO_DOMAINS``):

============== ================================================== ======================
name           text                                               licence
============== ================================================== ======================
python_stdlib  Python standard-library source (``*.py``, no tests) PSF-2.0
python_docs    Python reference topics (``pydoc_data.topics``)    PSF-2.0
licenses       licence texts of ``licensedcode-data`` (ScanCode)   CC-BY-4.0
numpy_docs     NumPy docstrings (numpydoc reStructuredText)       BSD-3-Clause
cpp_headers    PyTorch C++ headers (``torch/include/c10``, ATen)  BSD-3-Clause
============== ================================================== ======================
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import json
import os
import platform
import sysconfig
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from lawsearch._errors import did_you_mean

__all__ = [
    "DEMO_DOMAINS",
    "CorpusManifest",
    "build_demo_corpus",
    "default_cache_dir",
    "load_manifest",
]

FORMAT = "lawsearch-demo-corpus/1"
MANIFEST = "manifest.json"
Document = tuple[str, str]
LazyDocument = tuple[str, Callable[[], str]]  # id, and how to read its text


@dataclass(frozen=True)
class _Source:
    name: str
    description: str
    licence: str
    attribution: str
    packages: tuple[str, ...]
    documents: Callable[[], Iterator[LazyDocument]]


# ---- sources --------------------------------------------------------------------------

_SKIP_DIRS = frozenset(
    {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__", "_bundled"}
)


def _read(path: Path) -> str:
    return path.read_bytes().decode("utf-8", errors="replace").replace("\r\n", "\n")


def _walk(root: Path, suffixes: tuple[str, ...]) -> Iterator[Path]:
    """Files under ``root`` with one of ``suffixes``, sorted, skipping test/vendor dirs."""
    found: list[Path] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in _SKIP_DIRS and not d.startswith("config-")]
        found.extend(Path(folder) / f for f in files if f.endswith(suffixes))
    yield from sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _stdlib_source() -> Iterator[LazyDocument]:
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in _walk(root, (".py",)):
        yield path.relative_to(root).as_posix(), partial(_read, path)


def _python_docs() -> Iterator[LazyDocument]:
    from pydoc_data.topics import topics

    for key in sorted(topics):
        yield key, partial(str.replace, topics[key], "\r\n", "\n")


def _licenses() -> Iterator[LazyDocument]:
    root = _package_dir("licensedcode") / "data" / "licenses"
    for path in sorted(root.glob("*.LICENSE")):
        yield path.stem, partial(_license_text, path)


def _license_text(path: Path) -> str:
    text = _read(path)
    if text.startswith("---\n"):  # strip the YAML front matter (metadata, not text)
        end = text.find("\n---\n", 4)
        text = text[end + 5 :] if end >= 0 else ""
    text = text.strip("\n")
    return text + "\n" if text.strip() else ""


def _numpy_docs() -> Iterator[LazyDocument]:
    root = _package_dir("numpy")
    for path in _walk(root, (".py",)):
        yield path.relative_to(root).as_posix(), partial(_module_docstrings, path)


def _module_docstrings(path: Path) -> str:
    try:
        tree = ast.parse(_read(path))
    except SyntaxError:
        return ""
    parts = [f"{name}\n{'=' * len(name)}\n\n{doc}\n" for name, doc in _docstrings(tree, "")]
    return "\n".join(parts)


def _docstrings(node: ast.AST, prefix: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, ast.Module):
        doc = ast.get_docstring(node, clean=True)
        if doc:
            yield prefix or "module", doc
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            qualname = f"{prefix}.{child.name}" if prefix else child.name
            doc = ast.get_docstring(child, clean=True)
            if doc:
                yield qualname, doc
            if isinstance(child, ast.ClassDef):
                yield from _docstrings(child, qualname)


def _cpp_headers() -> Iterator[LazyDocument]:
    root = _package_dir("torch") / "include"
    for sub in ("c10", "ATen"):
        for path in _walk(root / sub, (".h", ".hpp", ".cuh")):
            rel = path.relative_to(root).as_posix()
            if rel.startswith("ATen/ops/"):  # thousands of near-identical generated files
                continue
            yield rel, partial(_read, path)


def _package_dir(module: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            f"the demo corpus needs the `{module}` package; install the [train] extra "
            "(pip install 'lawsearch[train]')."
        )
    return Path(next(iter(spec.submodule_search_locations)))


_SOURCES: dict[str, _Source] = {
    s.name: s
    for s in (
        _Source(
            "python_stdlib",
            "Python standard-library source code (*.py; test suites excluded)",
            "PSF-2.0",
            "Copyright (c) 2001 Python Software Foundation; All Rights Reserved.",
            ("python",),
            _stdlib_source,
        ),
        _Source(
            "python_docs",
            "Python language reference topics shipped with pydoc (pydoc_data.topics)",
            "PSF-2.0",
            "Python documentation, Copyright (c) 2001 Python Software Foundation.",
            ("python",),
            _python_docs,
        ),
        _Source(
            "licenses",
            "Licence texts of the ScanCode LicenseDB (licensedcode-data, YAML front matter "
            "removed)",
            "CC-BY-4.0",
            "Copyright (c) nexB Inc. and others. All rights reserved. ScanCode is a trademark "
            "of nexB Inc. SPDX-License-Identifier: CC-BY-4.0. "
            "See https://github.com/nexB/scancode-toolkit.",
            ("licensedcode-data",),
            _licenses,
        ),
        _Source(
            "numpy_docs",
            "NumPy docstrings (numpydoc reStructuredText), one document per module",
            "BSD-3-Clause",
            "Copyright (c) 2005-2025, NumPy Developers.",
            ("numpy",),
            _numpy_docs,
        ),
        _Source(
            "cpp_headers",
            "PyTorch C++ headers under torch/include/c10 and torch/include/ATen "
            "(generated ATen/ops excluded)",
            "BSD-3-Clause",
            "Copyright (c) 2016- Facebook, Inc. and the PyTorch contributors.",
            ("torch",),
            _cpp_headers,
        ),
    )
}

DEMO_DOMAINS: tuple[str, ...] = tuple(_SOURCES)


# ---- manifest -------------------------------------------------------------------------


@dataclass(frozen=True)
class CorpusManifest:
    """A built corpus: its folder and the parsed ``manifest.json``.

    Attributes:
        root: the corpus folder (``manifest.json`` and one sub-folder per domain).
        data: the manifest as plain JSON values.
    """

    root: Path
    data: Mapping[str, Any]

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(self.data["domains"])

    def paths(self, domain: str) -> dict[str, Path]:
        """``{"train": Path, "held_out": Path}`` of one domain's JSONL files."""
        if domain not in self.data["domains"]:
            raise ValueError(
                f"unknown domain {domain!r}; the corpus has {list(self.domains)}"
                + did_you_mean(domain, self.domains)
            )
        files = self.data["domains"][domain]["files"]
        return {split: self.root / rel for split, rel in files.items()}

    def data_domains(self, names: Mapping[str, str] | None = None) -> dict[str, dict[str, str]]:
        """Domains as ``{"train": path, "held_out": path}``, ready for ``DataSpec.domains``.

        Args:
            names: study name -> demo domain (e.g. ``{"code": "python_stdlib"}``);
                default: every domain under its own name.
        """
        pairs = names.items() if names is not None else ((d, d) for d in self.domains)
        return {name: {k: str(v) for k, v in self.paths(src).items()} for name, src in pairs}


def load_manifest(path: str | os.PathLike[str]) -> CorpusManifest:
    """Read a corpus folder (or its ``manifest.json``)."""
    p = Path(path)
    file = p / MANIFEST if p.is_dir() else p
    if not file.is_file():
        raise ValueError(f"no corpus manifest at {str(file)!r}; build it with build_demo_corpus().")
    data = json.loads(file.read_text(encoding="utf-8"))
    if data.get("format") != FORMAT:
        raise ValueError(
            f"{str(file)!r} is not a {FORMAT} manifest (format={data.get('format')!r})."
        )
    return CorpusManifest(root=file.parent, data=data)


def default_cache_dir() -> Path:
    """``$LAWSEARCH_CACHE/corpus``, else ``~/.cache/lawsearch/corpus``."""
    base = os.environ.get("LAWSEARCH_CACHE") or Path.home() / ".cache" / "lawsearch"
    return Path(base) / "corpus"


# ---- builder --------------------------------------------------------------------------


def build_demo_corpus(
    out_dir: str | os.PathLike[str] | None = None,
    *,
    domains: Sequence[str] = DEMO_DOMAINS,
    max_bytes_per_domain: int = 1_000_000,
    max_document_bytes: int = 32_768,
    held_out_fraction: float = 0.1,
    token_vocab_size: int | None = 4096,
    tokenizer_cache_dir: str | os.PathLike[str] | None = None,
) -> CorpusManifest:
    """Build (or reuse) the demo corpus and return its manifest.

    Args:
        out_dir: the corpus folder; default ``default_cache_dir()/<options hash>``.
            A folder whose manifest matches these options and package versions is
            reused as is.
        domains: which of ``DEMO_DOMAINS`` to build.
        max_bytes_per_domain: UTF-8 bytes kept per domain (train + held out).
        max_document_bytes: longer documents are cut at a line boundary.
        held_out_fraction: fraction of each domain's bytes (whole documents) held out.
        token_vocab_size: vocab of the byte-level BPE (trained on the train splits and
            cached) used to count tokens in the manifest; ``None`` skips counting.
        tokenizer_cache_dir: where that tokenizer is cached (default ``<corpus>/.tokenizers``).
            Pass the trainer's ``<DataSpec cache>/tokenizers`` to share it with a study
            that trains on every built domain with the same vocab size.

    Returns:
        The ``CorpusManifest``.
    """
    names = _check_options(domains, max_bytes_per_domain, max_document_bytes, held_out_fraction)
    versions = _versions(names)
    options = {
        "domains": list(names),
        "max_bytes_per_domain": int(max_bytes_per_domain),
        "max_document_bytes": int(max_document_bytes),
        "held_out_fraction": float(held_out_fraction),
        "token_vocab_size": token_vocab_size,
    }
    key = _hash(
        json.dumps({"format": FORMAT, "options": options, "versions": versions}, sort_keys=True)
    )[:16]
    root = Path(out_dir) if out_dir is not None else default_cache_dir() / key
    existing = root / MANIFEST
    if existing.is_file():
        try:
            manifest = load_manifest(root)
        except (ValueError, json.JSONDecodeError):
            manifest = None
        if manifest is not None and manifest.data.get("key") == key:
            return manifest
    root.mkdir(parents=True, exist_ok=True)

    entries: dict[str, Any] = {}
    for name in names:
        entries[name] = _build_domain(
            _SOURCES[name], root, max_bytes_per_domain, max_document_bytes, held_out_fraction
        )
    data = {
        "format": FORMAT,
        "key": key,
        "builder": "lawsearch.train.corpus.build_demo_corpus",
        "options": options,
        "versions": versions,
        "domains": entries,
    }
    if token_vocab_size is not None:
        tok_cache = Path(tokenizer_cache_dir) if tokenizer_cache_dir else root / ".tokenizers"
        _count_tokens(root, data, token_vocab_size, tok_cache)
    _write_atomic(root / MANIFEST, json.dumps(data, indent=2, sort_keys=True) + "\n")
    return CorpusManifest(root=root, data=data)


def _check_options(
    domains: Sequence[str], max_bytes: int, max_doc: int, held_out_fraction: float
) -> tuple[str, ...]:
    if isinstance(domains, str):
        domains = (domains,)
    names = tuple(domains)
    if not names:
        raise ValueError(f"`domains` must name at least one of {list(DEMO_DOMAINS)}; got none.")
    for name in names:
        if name not in _SOURCES:
            raise ValueError(
                f"`domains`: unknown demo domain {name!r}; choose from {list(DEMO_DOMAINS)}"
                + did_you_mean(name, DEMO_DOMAINS)
            )
    if len(set(names)) != len(names):
        raise ValueError(f"`domains` lists a domain twice: {list(names)}.")
    if max_bytes < 4096:
        raise ValueError(f"`max_bytes_per_domain` must be >= 4096; got {max_bytes!r}.")
    if max_doc < 256:
        raise ValueError(f"`max_document_bytes` must be >= 256; got {max_doc!r}.")
    if not 0.0 < held_out_fraction < 0.5:
        raise ValueError(f"`held_out_fraction` must be in (0, 0.5); got {held_out_fraction!r}.")
    return names


def _versions(names: Sequence[str]) -> dict[str, str]:
    out = {"lawsearch.train.corpus": FORMAT}
    for name in names:
        for pkg in _SOURCES[name].packages:
            if pkg == "python":
                out[pkg] = f"{platform.python_implementation()} {platform.python_version()}"
            else:
                out[pkg] = importlib.metadata.version(pkg)
    return out


def _hash(text: str | bytes) -> str:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()


def _truncate(text: str, max_bytes: int) -> str:
    raw = text.encode("utf-8")
    if len(raw) <= max_bytes:
        return text
    cut = raw[:max_bytes].decode("utf-8", errors="ignore")
    nl = cut.rfind("\n")
    return cut[: nl + 1] if nl > 0 else cut


def _build_domain(
    source: _Source, root: Path, max_bytes: int, max_doc: int, held_out_fraction: float
) -> dict[str, Any]:
    docs = sorted(source.documents(), key=lambda d: _hash(f"{source.name}/{d[0]}"))
    chosen: list[Document] = []
    total = 0
    max_doc = min(max_doc, max(256, max_bytes // 8))  # at least ~8 documents per domain
    for doc_id, read in docs:
        room = min(max_doc, max_bytes - total)
        if room < 256:
            break
        text = _truncate(read(), room)
        if not text.strip():
            continue
        chosen.append((doc_id, text))
        total += len(text.encode("utf-8"))
    if len(chosen) < 2:
        raise ValueError(
            f"demo domain {source.name!r} yielded {len(chosen)} document(s); need at least 2 "
            "to hold one out. Is the source package installed completely?"
        )
    held: list[Document] = []
    held_bytes = 0
    while held_bytes < held_out_fraction * total and len(held) < len(chosen) - 1:
        doc = chosen[len(held)]
        held.append(doc)
        held_bytes += len(doc[1].encode("utf-8"))
    train = chosen[len(held) :]

    folder = root / source.name
    folder.mkdir(parents=True, exist_ok=True)
    entry: dict[str, Any] = {
        "source": source.description,
        "licence": source.licence,
        "attribution": source.attribution,
        "files": {},
        "documents": {},
        "bytes": {},
        "sha256": {},
        "held_out_ids": [doc_id for doc_id, _ in held],
    }
    for split, split_docs in (("train", train), ("held_out", held)):
        payload = "".join(
            json.dumps({"id": i, "text": t}, ensure_ascii=False, sort_keys=True) + "\n"
            for i, t in split_docs
        ).encode("utf-8")
        rel = f"{source.name}/{split}.jsonl"
        _write_atomic(root / rel, payload)
        entry["files"][split] = rel
        entry["documents"][split] = len(split_docs)
        entry["bytes"][split] = sum(len(t.encode("utf-8")) for _, t in split_docs)
        entry["sha256"][split] = _hash(payload)
    return entry


def _count_tokens(root: Path, data: dict[str, Any], vocab_size: int, cache: Path) -> None:
    """Add per-domain token counts under the demo tokenizer (trained on all train splits)."""
    from lawsearch.train._tokenizer import load_or_train_tokenizer

    domains = data["domains"]
    train_files = [root / domains[d]["files"]["train"] for d in sorted(domains)]
    tok = load_or_train_tokenizer(
        train_files, vocab_size=vocab_size, min_frequency=2, cache_dir=cache
    )
    for entry in domains.values():
        counts: dict[str, Any] = {"tokenizer": f"byte-level BPE, vocab {vocab_size}"}
        for split, rel in entry["files"].items():
            with open(root / rel, encoding="utf-8") as fh:
                texts = [json.loads(line)["text"] for line in fh]
            counts[split] = int(sum(len(ids) for ids in tok(texts)["input_ids"]))
        entry["tokens"] = counts


def _write_atomic(path: Path, payload: str | bytes) -> None:
    data = payload.encode("utf-8") if isinstance(payload, str) else payload
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
