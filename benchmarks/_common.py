"""Helpers every benchmark shares: arguments, output folder, atomic JSON/Markdown, tables.

A benchmark is a module ``python -m benchmarks.<name> [--tiny] [--out DIR]`` that
prints a Markdown table and writes ``<name>.json``, ``<name>.md`` and a PNG into
``--out`` (default ``benchmarks/results/<name>/``, gitignored)::

    parser = benchmark_parser("extrapolation", __doc__)
    args = parser.parse_args(argv)
    out = output_dir(args.out, "extrapolation")
    write_json(out / "extrapolation.json", payload)
    write_text(out / "extrapolation.md", markdown_table(headers, rows))
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "RESULTS_DIR",
    "benchmark_parser",
    "environment",
    "fmt",
    "json_safe",
    "markdown_table",
    "output_dir",
    "save_figure",
    "timer",
    "write_json",
    "write_text",
]

#: default parent of every benchmark's output folder
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def benchmark_parser(name: str, description: str | None = None) -> argparse.ArgumentParser:
    """An argument parser with the flags every benchmark takes: ``--tiny`` and ``--out``."""
    parser = argparse.ArgumentParser(
        prog=f"python -m benchmarks.{name}",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--tiny", action="store_true", help="a seconds-long run on a tiny input (for CI)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"output folder (default: {RESULTS_DIR.name}/{name}/ next to this script)",
    )
    return parser


def output_dir(out: str | os.PathLike[str] | None, name: str) -> Path:
    """The output folder (``out`` or ``benchmarks/results/<name>``), created if needed."""
    path = Path(out) if out is not None else RESULTS_DIR / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def json_safe(value: Any) -> Any:
    """``value`` with numpy scalars/arrays, tuples and paths turned into plain JSON types.

    Non-finite floats become ``None`` so the file is strict JSON.
    """
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return [json_safe(v) for v in value.tolist()]
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating | float):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, Path):
        return str(value)
    return value


def _atomic_write(path: Path, data: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike[str], payload: Any) -> Path:
    """Write ``payload`` as strict, indented JSON (temp file + rename)."""
    target = Path(path)
    _atomic_write(target, json.dumps(json_safe(payload), indent=2, allow_nan=False) + "\n")
    return target


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (e.g. a Markdown report) atomically."""
    target = Path(path)
    _atomic_write(target, text if text.endswith("\n") else text + "\n")
    return target


def save_figure(fig: Any, path: str | os.PathLike[str], *, dpi: int = 120) -> Path:
    """Save a matplotlib figure atomically and close it."""
    import matplotlib.pyplot as plt

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.", suffix=target.suffix)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        plt.close(fig)
    return target


def fmt(value: Any, spec: str = ".3g", *, missing: str = "–") -> str:
    """Format a number for a table cell; ``None``/NaN become ``missing``."""
    if value is None:
        return missing
    if isinstance(value, bool | str):
        return str(value)
    try:
        f = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(f):
        return missing
    return format(f, spec)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub Markdown table; cells are ``str()``-ed, pipes escaped."""

    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|")

    lines = [
        "| " + " | ".join(cell(h) for h in headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"table row has {len(row)} cells; expected {len(headers)}: {row!r}")
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines)


@contextmanager
def timer() -> Iterator[list[float]]:
    """``with timer() as t: ...`` then ``t[0]`` holds the elapsed wall seconds."""
    box = [0.0]
    start = time.perf_counter()
    try:
        yield box
    finally:
        box[0] = time.perf_counter() - start


def environment() -> dict[str, Any]:
    """What the numbers were measured on (recorded in every JSON)."""
    return {
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
