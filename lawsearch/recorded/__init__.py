"""Recorded experiments (../shared/data): one resolver, one loader module per folder.

The data are read in place and never copied into the project. The folder is
``$LAWSEARCH_SHARED_DATA`` if set, else ``../shared/data`` relative to the
current directory, else relative to the source checkout.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["SharedDataMissing", "shared_data_dir"]

ENV_VAR = "LAWSEARCH_SHARED_DATA"


class SharedDataMissing(FileNotFoundError):
    """The recorded-data folder (or a file in it) is not on this machine."""


def shared_data_dir(subpath: str = "") -> Path:
    """The shared data folder (or ``subpath`` inside it).

    Raises:
        SharedDataMissing: with the places searched and how to point at the data.
    """
    candidates: list[Path] = []
    env = os.environ.get(ENV_VAR)
    if env:
        candidates.append(Path(env))
    else:
        candidates.append(Path.cwd().parent / "shared" / "data")
        candidates.append(Path(__file__).resolve().parents[3] / "shared" / "data")
    for base in candidates:
        target = base / subpath
        if base.is_dir() and target.exists():
            return target
    tried = ", ".join(str(c / subpath) for c in candidates)
    raise SharedDataMissing(
        f"recorded data {subpath or 'folder'!r} not found (looked in: {tried}); set "
        f"{ENV_VAR} to the folder that holds lr_schedules/, learning_curves/ and mixtures/."
    )
