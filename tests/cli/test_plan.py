"""``lawsearch plan``: the GPU study's data layout, its CPU twin end to end, refusals with fixes."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("datasets")

from benchmarks._corpus import write_layout
from lawsearch.cli import main

STUDIES = Path(__file__).resolve().parents[2] / "studies"
DOMAINS = ("web", "code", "books", "papers", "wiki")


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding both studies and a generated ``data/<domain>/*.parquet`` corpus."""
    root = tmp_path_factory.mktemp("layout")
    write_layout(root, DOMAINS, 300_000, shards=2)
    for name in ("llama_mixture_gpu.toml", "llama_mixture_cpu.toml"):
        shutil.copy(STUDIES / name, root / name)
    return root


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAWSEARCH_CACHE", str(tmp_path_factory.getbasetemp() / "plan-cache"))


@pytest.mark.slow
def test_cpu_twin_plans_then_runs(
    layout: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study = str(layout / "llama_mixture_cpu.toml")
    assert main(["plan", study, "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"short\s+16\s+4\.1 k\s+4", out)
    for d in DOMAINS:
        assert re.search(rf"^{d}\s+\d", out, flags=re.MULTILINE), d
    assert "6·N·D =" in out and "checkpoints: 5 x" in out
    assert re.search(r"wall time: ~\d+ s on one process \([\d.]+ ms per step", out)
    assert not (tmp_path / "runs").exists()  # plan writes nothing of the study
    assert main(["run", study, "--root", str(tmp_path), "--quiet"]) == 0
    assert "| rank | trial | reached" in capsys.readouterr().out
    assert list((tmp_path / "runs" / "llama_mixture_cpu" / "checkpoints").rglob("*.pt"))


def test_gpu_study_reads_its_layout_and_asks_for_more_data(
    layout: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The shipped GPU study parses, reads its parquet shards, and wants >= 0.5B tokens."""
    study = str(layout / "llama_mixture_gpu.toml")
    assert main(["plan", study, "--root", str(tmp_path), "--no-timing"]) == 2
    err = capsys.readouterr().err
    assert re.search(
        r"lawsearch plan: error: `domains.web.low` = 0.05 needs 100,000,000 tokens of 'web'.*"
        r"add data to 'web'",
        err,
    ), err
    # the same study with budgets this corpus can supply (6 and 12 steps, an eval per step)
    scaled = layout / "scaled_gpu.toml"
    text = (layout / "llama_mixture_gpu.toml").read_text()
    for old, new in (
        ("short_tokens = 200_000_000", "short_tokens = 393_216"),
        ("full_tokens = 2_000_000_000", "full_tokens = 786_432"),
        ("eval_every = 100", "eval_every = 1"),
    ):
        assert old in text
        text = text.replace(old, new)
    scaled.write_text(text)
    assert main(["plan", str(scaled), "--root", str(tmp_path), "--no-timing"]) == 0
    out = capsys.readouterr().out
    assert "wall time: not timed (--no-timing)" in out
    assert re.search(r"model: 75\.5 M parameters without embeddings", out), out


def test_the_original_infeasible_gpu_study_is_refused_with_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's case: ~1 MB built-in domains, a 2B-token budget, max_epochs = 4."""
    study = tmp_path / "s.toml"
    study.write_text(
        '[study]\nname = "gpu_builtin"\n'
        f'[corpus]\nmax_bytes_per_domain = 8000\ncache_dir = "{tmp_path / "cache"}"\n'
        "[tokenizer]\nvocab_size = 300\n"
        '[domains.docs]\nbuiltin = "python_docs"\n[domains.licenses]\nbuiltin = "licenses"\n'
        "[search_space]\nmax_epochs = 4.0\n"
        "[budgets]\nshort_tokens = 200_000_000\nfull_tokens = 2_000_000_000\n"
        "[train]\nbatch_size = 64\nseq_len = 64\neval_every = 100\n"
    )
    assert main(["plan", str(study), "--root", str(tmp_path), "--no-timing"]) == 2
    err = capsys.readouterr().err
    assert re.search(
        r"`search_space.max_epochs` = 4: the domains can supply at most [\d,]+ of the "
        r"2,000,000,000 tokens.*raise `search_space.max_epochs` to >= [\d.]+, or lower "
        r"`budgets.full_tokens` to <= [\d,]+, or add data",
        err,
    ), err
    assert main(["run", str(study), "--root", str(tmp_path)]) == 2  # run checks first
    assert "can supply at most" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("[objective]\nmulti = true\n", r"`objective.multi` = true is not supported yet"),
        ('[objective]\ndomain = "web2"\n', r"`objective.domain` = 'web2'.*'web'"),
        (
            "[objective]\nweights = { web = 0.5, code = 0.4 }\n",
            r"`objective.weights` must sum to 1 \(got 0.9\)",
        ),
    ],
)
def test_bad_objectives_exit_2(
    layout: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str, message: str
) -> None:
    text = (layout / "llama_mixture_cpu.toml").read_text().replace("[objective]\n", extra)
    study = layout / f"bad_{abs(hash(extra))}.toml"
    study.write_text(text)
    assert main(["plan", str(study), "--root", str(tmp_path)]) == 2
    assert re.search(message, capsys.readouterr().err)
