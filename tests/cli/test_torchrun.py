"""`lawsearch run` under torchrun: rank 0 drives the study, rank 1 trains every trial with it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

pytestmark = [pytest.mark.slow, pytest.mark.torch]


def test_run_under_torchrun_trains_every_trial_on_both_ranks(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    study = tmp_path / "ddp.toml"
    study.write_text(
        '[study]\nname = "ddp"\n'
        "[model]\nhidden_size = 16\nintermediate_size = 32\nnum_layers = 1\nnum_heads = 2\n"
        "[tokenizer]\nvocab_size = 300\n"
        f'[corpus]\nmax_bytes_per_domain = 16000\ncache_dir = "{tmp_path / "cache"}"\n'
        '[domains.docs]\nbuiltin = "python_docs"\n'
        '[domains.licenses]\nbuiltin = "licenses"\n'
        '[search_space]\nschedules = ["cosine"]\npeak_lr = [1e-3, 3e-2]\n'
        "[budgets]\nshort_tokens = 1536\nfull_tokens = 4608\n"  # 12 and 36 steps
        "[pruner]\nenabled = false\n"
        "[search]\ncandidates = 3\nsurvivors = 1\n"
        '[train]\nbatch_size = 4\nseq_len = 32\neval_every = 2\neval_tokens = 256\ndevice = "cpu"\n'
        "threads = 1\n"
    )
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "lawsearch.cli",
        "run",
        str(study),
        "--quiet",
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.count("| rank | trial | reached ") == 1  # only rank 0 prints the table
    followed = re.search(r"rank 1 trained (\d+) trial\(s\) with rank 0", proc.stderr)
    assert followed, proc.stderr[-4000:]
    st = optuna.load_study(
        study_name="ddp",
        storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(tmp_path / "runs/ddp/journal.log"))
        ),
    )
    trained = [t for t in st.trials if t.state == TrialState.COMPLETE]
    assert len(trained) == 3 + 1  # 3 screened, 1 continued to the full budget
    assert int(followed.group(1)) == len(trained)
    assert max(max(t.intermediate_values) for t in trained) == 36
