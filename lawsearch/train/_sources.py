"""Where a domain's documents come from: local files of any common format, saved datasets, names.

A *source* is a path (file, folder or glob pattern), a list of them, a folder
written by ``Dataset.save_to_disk``, or the name of a ``datasets`` dataset
already in the local cache (read offline: nothing is ever downloaded).

Files are read through ``datasets`` in streaming mode, so a source of any size
is read in bounded memory. The format comes from the suffix, after a
compression suffix (``.gz``, ``.zst``/``.zstd``, ``.bz2``, ``.xz``) is stripped:

=============================== =========================================
suffix                          read as
=============================== =========================================
``.jsonl`` ``.json`` ``.ndjson`` JSON records (the ``text_field`` column)
``.parquet`` ``.pq``             Parquet (the ``text_field`` column)
``.arrow``                      Arrow IPC stream (``save_to_disk`` shards)
``.csv`` / ``.tsv``             CSV / tab-separated (the ``text_field`` column)
anything else                   plain text, one document per file, if its
                                first bytes are UTF-8 text; else an error
=============================== =========================================

``format`` (``DataSpec.formats``) overrides the suffix for a whole domain.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "FORMATS",
    "SourceError",
    "document_batches",
    "file_format",
    "is_dataset_name",
    "resolve_files",
    "source_fingerprint",
]

#: the formats a domain may force with ``format = ...`` ("auto": by suffix)
FORMATS = ("auto", "json", "parquet", "arrow", "csv", "tsv", "text")
_BY_SUFFIX = {
    ".jsonl": "json",
    ".json": "json",
    ".ndjson": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".arrow": "arrow",
    ".csv": "csv",
    ".tsv": "tsv",
}
_COMPRESSION = (".gz", ".zst", ".zstd", ".bz2", ".xz")
#: binary formats people keep next to their data; never read as text
_BINARY = (".zip", ".tar", ".7z", ".npy", ".npz", ".pt", ".bin", ".pkl", ".h5", ".feather")
_SAVED_MARKERS = ("state.json", "dataset_dict.json")
_GLOB_CHARS = frozenset("*?[")


class SourceError(ValueError):
    """A source that cannot be read as configured (the message names the field and the fix)."""


@contextmanager
def quiet_datasets() -> Iterator[None]:
    """Silence ``datasets`` progress bars inside the block (core code does not print)."""
    import datasets

    was_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()


@contextmanager
def offline() -> Iterator[None]:
    """Hub access off inside the block: a dataset name resolves from the local cache only."""
    import datasets.config as dconfig
    import huggingface_hub.constants as hconst

    saved = (dconfig.HF_HUB_OFFLINE, hconst.HF_HUB_OFFLINE)
    dconfig.HF_HUB_OFFLINE = hconst.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        dconfig.HF_HUB_OFFLINE, hconst.HF_HUB_OFFLINE = saved


def is_dataset_name(spec: Any) -> bool:
    """A string that is no existing path and does not look like one: a ``datasets`` name."""
    if not isinstance(spec, str) or Path(spec).expanduser().exists():
        return False
    looks_like_path = (
        spec.startswith(("/", ".", "~"))
        or Path(spec).suffix != ""
        or any(c in spec for c in _GLOB_CHARS)
    )
    return not looks_like_path


def _saved_folder(spec: Any) -> Path | None:
    paths = [spec] if isinstance(spec, str | os.PathLike) else list(spec)
    if len(paths) != 1:
        return None
    p = Path(paths[0]).expanduser()
    return p if any((p / m).is_file() for m in _SAVED_MARKERS) else None


def resolve_files(domain: str, paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Files of a domain: each path a file, a folder (all files under it) or a glob pattern."""
    files: list[Path] = []
    for raw in paths:
        text = os.path.expanduser(str(raw))
        if any(c in text for c in _GLOB_CHARS):
            matched = sorted(Path(m) for m in glob.glob(text, recursive=True))
            found = [m for m in matched if m.is_file()]
            if not found:
                raise ValueError(
                    f"`domains.{domain}`: the pattern {str(raw)!r} matches no file; fix the "
                    "pattern (relative paths are read from the study file's folder)."
                )
            files.extend(found)
            continue
        p = Path(text)
        if p.is_dir():
            files.extend(
                sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
            )
        elif p.is_file():
            files.append(p)
        else:
            raise ValueError(
                f"`domains.{domain}`: corpus path {str(raw)!r} does not exist; "
                "give an existing file, folder or glob pattern (or build the demo corpus)."
            )
    if not files:
        raise ValueError(f"`domains.{domain}`: no files under {[str(p) for p in paths]!r}.")
    return files


def _strip_compression(path: Path) -> tuple[str, str | None]:
    """(the data suffix, the compression suffix or None)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSION:
        return (suffixes[-2] if len(suffixes) > 1 else ""), suffixes[-1]
    return (suffixes[-1] if suffixes else ""), None


def file_format(domain: str, path: Path, forced: str = "auto") -> str:
    """The ``datasets`` builder that reads ``path`` (see the module docstring)."""
    if forced != "auto":
        return "csv" if forced == "tsv" else forced
    suffix, compression = _strip_compression(path)
    if suffix in _BY_SUFFIX:
        return "csv" if suffix == ".tsv" else _BY_SUFFIX[suffix]
    if suffix in _BINARY or (compression is None and not _looks_like_text(path)):
        raise ValueError(
            f"`domains.{domain}`: {str(path)!r} is not a recognised data file (suffix "
            f"{suffix or 'none'!r}, not UTF-8 text); convert it to JSONL, Parquet, Arrow, CSV "
            "or text, or set `format` for the domain (one of "
            f"{', '.join(f for f in FORMATS if f != 'auto')})."
        )
    return "text"


def _looks_like_text(path: Path, probe: int = 8192) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(probe)
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3  # a multi-byte character cut by the probe
    return True


def source_fingerprint(domain: str, spec: Any, forced: str = "auto") -> str:
    """A cheap identity of a source's content: path, size and mtime of each file.

    A dataset name is identified by its name and the fingerprint ``datasets``
    gives its cached copy. Changing, adding or removing a file changes it.
    """
    if is_dataset_name(spec):
        ds = _load_named(domain, str(spec))
        return hashlib.sha256(f"name|{spec}|{ds._fingerprint}".encode()).hexdigest()
    saved = _saved_folder(spec)
    files = (
        sorted(f for f in saved.rglob("*") if f.is_file())
        if saved is not None
        else resolve_files(domain, [spec] if isinstance(spec, str | os.PathLike) else list(spec))
    )
    stats = []
    for f in files:
        st = f.stat()
        stats.append([str(f.resolve()), st.st_size, st.st_mtime_ns])
    payload = json.dumps({"files": stats, "saved": saved is not None, "format": forced})
    return hashlib.sha256(payload.encode()).hexdigest()


def _load_named(domain: str, name: str) -> Any:
    import datasets

    try:
        with quiet_datasets(), offline():
            ds = datasets.load_dataset(name, split="train")
    except Exception as exc:  # datasets raises many types for "not in the cache"
        raise ValueError(
            f"`domains.{domain}.dataset` = {name!r} is not in the local `datasets` cache and "
            f"lawsearch never downloads ({type(exc).__name__}: {str(exc)[:200]}). Fix: on a "
            f"machine with network run `datasets.load_dataset({name!r})` once (it fills "
            "~/.cache/huggingface), or `save_to_disk` it and give the folder as `paths`."
        ) from None
    return ds


def _text_of(domain: str, batch: dict[str, list[Any]], text_field: str, where: str) -> list[str]:
    if text_field not in batch:
        raise SourceError(
            f"`domains.{domain}`: {where} has no column {text_field!r} (columns: "
            f"{sorted(batch)}); set `text_field` to the column that holds the text."
        )
    return ["" if t is None else str(t) for t in batch[text_field]]


def document_batches(
    domain: str,
    spec: Any,
    *,
    text_field: str = "text",
    forced: str = "auto",
    batch_size: int = 256,
) -> Iterator[list[str]]:
    """Stream a source's documents as lists of at most ``batch_size`` texts, in order.

    Memory stays bounded whatever the size of the source: files are read in
    streaming mode, saved datasets and cached names are memory-mapped Arrow.
    """
    import datasets

    if is_dataset_name(spec):
        ds = _load_named(domain, str(spec))
        for batch in ds.iter(batch_size=batch_size):
            yield _text_of(domain, batch, text_field, f"dataset {spec!r}")
        return
    saved = _saved_folder(spec)
    if saved is not None:
        loaded = datasets.load_from_disk(str(saved))
        if isinstance(loaded, datasets.DatasetDict):
            loaded = loaded["train"]
        for batch in loaded.iter(batch_size=batch_size):
            yield _text_of(domain, batch, text_field, f"saved dataset {str(saved)!r}")
        return
    files = resolve_files(domain, [spec] if isinstance(spec, str | os.PathLike) else list(spec))
    # an empty file holds no document (and makes `datasets`' JSON reader raise StopIteration)
    files = [f for f in files if f.stat().st_size > 0]
    for fmt, group in _groups(domain, files, forced):
        yield from _stream_files(domain, fmt, group, text_field, forced, batch_size)


def _groups(domain: str, files: list[Path], forced: str) -> list[tuple[str, list[Path]]]:
    """Consecutive files of one format, in file order (one ``datasets`` stream each)."""
    out: list[tuple[str, list[Path]]] = []
    for f in files:
        fmt = file_format(domain, f, forced)
        if out and out[-1][0] == fmt:
            out[-1][1].append(f)
        else:
            out.append((fmt, [f]))
    return out


def _stream_files(
    domain: str, fmt: str, files: list[Path], text_field: str, forced: str, batch_size: int
) -> Iterator[list[str]]:
    import datasets

    options: dict[str, Any] = {}
    if fmt == "text":
        options["sample_by"] = "document"
    if fmt == "csv" and (forced == "tsv" or all(_strip_compression(f)[0] == ".tsv" for f in files)):
        options["sep"] = "\t"
    where = f"{fmt} file(s) starting with {str(files[0])!r}"
    with quiet_datasets(), offline():
        stream = datasets.load_dataset(
            fmt, data_files=[str(f) for f in files], split="train", streaming=True, **options
        )
        try:
            for batch in stream.iter(batch_size=batch_size):
                yield _text_of(domain, batch, "text" if fmt == "text" else text_field, where)
        except SourceError:
            raise
        except Exception as exc:  # a parser error: name the domain, the files and the fix
            raise ValueError(
                f"`domains.{domain}`: cannot read {where} as {fmt} ({type(exc).__name__}: "
                f"{str(exc)[:200]}); fix the file or set `format` for the domain."
            ) from None
