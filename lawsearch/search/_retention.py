"""Checkpoint retention: delete the checkpoint files no continuation or retry can still use.

A trial records the files it wrote in its attrs (``lawsearch:checkpoint`` where it
resumed from, ``lawsearch:last_checkpoint`` while it trains, ``lawsearch:checkpoint_out``
at its budget). Each lineage writes into one folder of ``step-<N>.*`` files.

While the study runs (``unused_checkpoints(trials)``):

* kept: every file a WAITING or RUNNING trial records (its resume point, its last
  checkpoint, where a retry resumes, and its output, recorded just before it is
  told COMPLETE), and the output of every COMPLETE trial (a promotion continues
  from it);
* deleted: every other recorded file (superseded intermediate checkpoints, the
  outputs of PRUNED and failed trials no retry waits for), and the older
  ``step-<N>`` files of the same folders (never a file newer than every recorded
  one: a running trial may be writing it).

When every lineage is ranked (``final=True``) only the pick's output is kept.
Only files under ``root`` are ever touched; tokens that are not files are ignored.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from optuna.trial import FrozenTrial, TrialState

from lawsearch.optuna import _attrs

__all__ = ["checkpoint_disk_usage", "delete_unused_checkpoints", "unused_checkpoints"]

_STEP = re.compile(r"^step-(\d+)\.")
_REFS = (_attrs.CHECKPOINT, _attrs.LAST_CHECKPOINT, _attrs.CHECKPOINT_OUT)


def _step(path: Path) -> int | None:
    m = _STEP.match(path.name)
    return int(m.group(1)) if m else None


def _files(trial: FrozenTrial, keys: Iterable[str], root: Path) -> set[Path]:
    out = set()
    for key in keys:
        value = trial.user_attrs.get(key)
        if not isinstance(value, str):
            continue
        p = Path(value).absolute()
        if p.is_relative_to(root):
            out.add(p)
    return out


def unused_checkpoints(
    trials: Sequence[FrozenTrial],
    root: str | os.PathLike[str],
    *,
    pick: int | None = None,
    final: bool = False,
) -> set[Path]:
    """The checkpoint files under ``root`` that no continuation or retry can use.

    Args:
        trials: the study's trials.
        root: the study's checkpoint folder.
        pick: the pick's trial number (its output is always kept).
        final: every lineage is ranked: keep only the pick's output.
    """
    base = Path(root).absolute()
    keep: set[Path] = set()
    seen: set[Path] = set()
    for t in trials:
        seen |= _files(t, _REFS, base)
        if t.number == pick:
            keep |= _files(t, (_attrs.CHECKPOINT_OUT,), base)
        if final:
            continue
        if t.state in (TrialState.WAITING, TrialState.RUNNING):
            # its output too: it is recorded a moment before the trial is told COMPLETE
            keep |= _files(t, _REFS, base)
        elif t.state == TrialState.COMPLETE:
            keep |= _files(t, (_attrs.CHECKPOINT_OUT,), base)
    drop = seen - keep
    # older files of the same folders (superseded, never recorded as the last one)
    newest: dict[Path, int] = {}
    for p in seen:
        s = _step(p)
        if s is not None:
            newest[p.parent] = max(newest.get(p.parent, -1), s)
    for folder, top in newest.items():
        with contextlib.suppress(OSError):
            for p in folder.iterdir():
                s = _step(p)
                if s is not None and s <= top and p not in keep:
                    drop.add(p)
    return {p for p in drop if p.is_file()}


def delete_unused_checkpoints(
    trials: Sequence[FrozenTrial],
    root: str | os.PathLike[str],
    *,
    pick: int | None = None,
    final: bool = False,
) -> int:
    """Delete ``unused_checkpoints(...)``; the bytes freed (files a peer deleted are skipped)."""
    freed = 0
    for p in unused_checkpoints(trials, root, pick=pick, final=final):
        with contextlib.suppress(FileNotFoundError):
            size = p.stat().st_size
            p.unlink()
            freed += size
    return freed


def checkpoint_disk_usage(root: str | os.PathLike[str]) -> tuple[int, int]:
    """``(files, bytes)`` of the checkpoint files under ``root`` (temporary files included)."""
    n = size = 0
    base = Path(root)
    if not base.is_dir():
        return 0, 0
    for dirpath, _, names in os.walk(base):
        for name in names:
            with contextlib.suppress(OSError):
                size += (Path(dirpath) / name).stat().st_size
                n += 1
    return n, size
