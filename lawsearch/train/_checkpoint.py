"""Checkpoints written atomically (temp file + ``os.replace``) with every RNG state."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = [
    "FORMAT",
    "atomic_write",
    "capture_rng",
    "check_checkpoint",
    "load_checkpoint",
    "restore_rng",
    "save_checkpoint",
]

#: the ``format`` entry of every checkpoint lawsearch writes
FORMAT = "lawsearch-checkpoint/1"


def capture_rng() -> dict[str, Any]:
    """The torch (CPU and this process's GPU), numpy and Python RNG states."""
    import torch

    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),  # noqa: NPY002 (the legacy global RNG is state too)
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        # this process's GPU only: `get_rng_state_all` opened a context on every GPU of
        # the machine, from every data-parallel rank that resumed
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if isinstance(cuda, list | tuple):  # a checkpoint written before 2026-12-07: every GPU
            i = torch.cuda.current_device()
            cuda = (cuda[i] if i < len(cuda) else cuda[0]) if cuda else None
        if cuda is not None:
            torch.cuda.set_rng_state(cuda)


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(fh)`` on a temporary file next to ``path``, then rename it to ``path``.

    A reader (or a retry after the process was killed mid-write) sees the old
    file or the whole new one, never a part: the data are flushed to disk before
    ``os.replace`` swaps the name in one step. A process killed while writing
    leaves only a ``.<name>.<pid>.tmp`` file, which is never read.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    finally:
        if tmp.exists():
            tmp.unlink()
    return p


def save_checkpoint(path: Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` to ``path`` atomically: a reader sees the old file or the new one."""
    import torch

    return atomic_write(path, lambda fh: torch.save(payload, fh))


def load_checkpoint(path: str | os.PathLike[str], *, mmap: bool = False) -> dict[str, Any]:
    """Read a checkpoint; a missing, truncated or foreign file is a ``ValueError`` with the fix.

    Args:
        path: the checkpoint file.
        mmap: map the tensors instead of reading them (cheap: to check a checkpoint).
    """
    import pickle
    import zipfile

    import torch

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"`resume_from`: no checkpoint at {str(p)!r}.")
    # RNG states hold numpy arrays and Python tuples, so the full unpickler is needed;
    # checkpoints are only ever read from the study's own checkpoint folder.
    try:
        payload = torch.load(p, map_location="cpu", weights_only=False, mmap=mmap)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"`resume_from`: the checkpoint {str(p)!r} is truncated or corrupted ({reason[:160]}); "
            "delete it (and the trials that resume from it, or the whole run folder to start "
            "over), or restore it from a backup."
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"`resume_from`: {str(p)!r} is not a lawsearch checkpoint.")
    return payload


def check_checkpoint(
    payload: dict[str, Any], expected: dict[str, Any], path: str | os.PathLike[str]
) -> None:
    """Raise a ``ValueError`` naming the first entry of ``expected`` the checkpoint differs in.

    Args:
        payload: a loaded checkpoint.
        expected: entry -> the value this run would write (``model_spec``, ``data_key``, ...).
        path: the checkpoint file, for the message.
    """
    import json

    for name, mine in expected.items():
        theirs = payload.get(name)
        if json.dumps(theirs, sort_keys=True) != json.dumps(mine, sort_keys=True):
            raise ValueError(
                f"`resume_from`: the checkpoint {str(path)!r} was written with another {name} "
                f"({_diff(theirs, mine)}); resume with the configuration that wrote it (restore "
                "the study file's [model]/[tokenizer]/[domains]), or give the changed study a new "
                "`study.name`."
            )


def _diff(theirs: Any, mine: Any) -> str:
    if isinstance(theirs, dict) and isinstance(mine, dict):
        # the entries both sides have first: they say what changed
        keys = sorted(
            (k for k in set(theirs) | set(mine) if theirs.get(k) != mine.get(k)),
            key=lambda k: (k not in theirs or k not in mine, k),
        )
        return ", ".join(f"{k}: {theirs.get(k)!r} there, {mine.get(k)!r} now" for k in keys[:4])
    return f"{theirs!r} there, {mine!r} now"
