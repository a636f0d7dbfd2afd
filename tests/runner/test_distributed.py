"""The torchrun channel between rank 0 and its followers, with real processes and gloo."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.cli.test_torchrun import _torchrun_2

pytestmark = [pytest.mark.slow, pytest.mark.torch]

ROOT = Path(__file__).resolve().parents[2]


def test_followers_wait_for_rank_0_longer_than_a_collectives_timeout(tmp_path: Path) -> None:
    """A worker's rank 0 waits for its peers' trials between two of its own; its
    followers wait in a receive all that time. The default group's collectives time
    out (2 s here, 30 minutes by default); the channel's must not."""
    pytest.importorskip("torch")
    driver = ROOT / "tests" / "runner" / "_channel_idle.py"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = _torchrun_2(str(driver), "5")
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("followed ")]
    assert json.loads(line.removeprefix("followed ")) == [[{"x": 1}, 3], [{"x": 2}, 5]]
    assert "rank 1 trained 2 trial(s) with rank 0" in proc.stderr
