"""``lawsearch run | worker | report`` end to end on journal files in tmp_path."""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import optuna
import pytest
from optuna.trial import TrialState

from lawsearch.cli import main
from lawsearch.cli._run import execute
from lawsearch.config import load_study
from lawsearch.storage import recover_orphans
from lawsearch.study import open_study_storage
from lawsearch.train import TrainResult

P = "lawsearch:"


class SyntheticTrainer:
    """Loss = E(mixture, lr) + A (t + 10)^-0.5: the mixture nearest TARGET and lr 3e-3 win."""

    TARGET: ClassVar[dict[str, float]] = {"a": 0.5, "b": 0.3, "c": 0.2}
    compute_unit = "steps"

    def __init__(self, eval_every: int) -> None:
        self.eval_every = eval_every
        self.calls: list[tuple[int, int]] = []

    def loss(self, config: Mapping[str, Any], step: int) -> float:
        w = config["mixture"]
        lr = float(config["schedule"]["peak_lr"])
        e = 2.0 + 4.0 * sum((w[d] - v) ** 2 for d, v in self.TARGET.items())
        e += 0.3 * math.log(lr / 3e-3) ** 2
        return e + 3.0 * (step + 10.0) ** -0.5

    def train(
        self,
        config: Mapping[str, Any],
        *,
        budget_steps: int,
        resume_from: str | None = None,
        report: Any,
    ) -> TrainResult:
        start = int(resume_from.split(":")[1]) if resume_from else 0
        self.calls.append((start, budget_steps))
        steps, values = [], []
        step = start
        stopped = False
        while step < budget_steps:
            step = min(step + self.eval_every, budget_steps)
            v = self.loss(config, step)
            steps.append(step)
            values.append(v)
            if report(step, v, {"lr": float(config["schedule"]["peak_lr"])}):
                stopped = True
                break
        return TrainResult(
            final_step=step,
            final_value=values[-1] if values else math.nan,
            steps=tuple(steps),
            values=tuple(values),
            checkpoint=f"synthetic:{step}",
            compute=float(step - start),
            compute_unit="steps",
            stopped=stopped,
        )


def _write_study(tmp_path: Path, **changes: str) -> Path:
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.txt").write_text(f"domain {name}\n")
    sections = {
        "study": 'name = "tiny"\nseed = 3',
        "domains.a": 'paths = ["a.txt"]',
        "domains.b": 'paths = ["b.txt"]',
        "domains.c": 'paths = ["c.txt"]',
        "search_space": 'schedules = ["cosine"]\npeak_lr = [1e-3, 1e-2]',
        "budgets": "short_tokens = 2560\nfull_tokens = 12800",  # 40 and 200 steps
        "law": 'name = "power"',
        "pruner": "quantile = 0.2\nkeep_fraction = 0.5\nmin_trials = 2",
        "search": "candidates = 6\nsurvivors = 2\nrungs = [1.0]",
        "train": "batch_size = 4\nseq_len = 16\neval_every = 5",
    }
    sections.update(changes)
    path = tmp_path / "tiny.toml"
    path.write_text("\n".join(f"[{k}]\n{v}\n" for k, v in sections.items()))
    return path


# ---- bad study files: exit 2, clear message, nothing written ----------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"search": "candidates = 6\nsurvivers = 2"}, r"`search.survivers`.*'survivors'"),
        (
            {
                "domains.a": 'paths = ["a.txt"]\nlow = 0.9',
                "domains.b": 'paths = ["b.txt"]\nlow = 0.3',
            },
            r"`domains.\*.low`: the lower bounds sum to 1.2 > 1",
        ),
        ({"domains.c": 'paths = ["missing.jsonl"]'}, r"`domains.c.paths\[0\]` = 'missing.jsonl'"),
        (
            {"train": "batch_size = 4\nseq_len = 16\neval_every = 10"},
            r"`budgets.short_tokens` = 2,560 gives 40 steps.*needs at least 5 points",
        ),
        ({"study": 'name = "tiny"\nstorage = "sqlite:///tiny.db"'}, r"SQLite cannot host parallel"),
        (
            {"study": 'name = "tiny"\nstorage = "postgresql://postgres@127.0.0.1:1/none"'},
            r"`study.storage`: cannot open .*Connection refused",
        ),
    ],
)
@pytest.mark.parametrize("command", ["run", "worker", "report"])
def test_bad_study_exits_2_and_writes_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
    change: dict[str, str],
    message: str,
) -> None:
    study = _write_study(tmp_path, **change)
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main([command, str(study)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"lawsearch {command}: error: ")
    assert "Traceback" not in err
    import re

    assert re.search(message, err), err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert not (tmp_path / "runs").exists()


def test_report_without_a_run_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    study = _write_study(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["report", str(study)]) == 2
    assert "no study storage at" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


# ---- the search end to end on a synthetic trainer ----------------------------------------


def _load(study: Path, root: Path) -> tuple[Any, optuna.Study]:
    cfg = load_study(study, run_root=root)
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(cfg.study.storage)
    )
    return cfg, optuna.load_study(study_name=cfg.name, storage=storage)


@pytest.mark.slow
def test_run_resume_and_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study_file = _write_study(tmp_path)
    cfg = load_study(study_file, run_root=tmp_path)
    trainer = SyntheticTrainer(cfg.train.eval_every)
    assert execute(cfg, trainer=trainer, progress=True) == 0
    out = capsys.readouterr()
    assert re.search(r"\| rank \| trial \| reached +\| ranked by", out.out)
    # the venv's executable by its full path, the journal by its absolute path: any shell
    assert f"optuna-dashboard {Path(cfg.study.storage).absolute()}" in out.out
    assert "search" in out.err  # the tqdm bar
    _, study = _load(study_file, tmp_path)
    trials = study.get_trials(deepcopy=False)
    states = {t.state for t in trials}
    assert {TrialState.COMPLETE, TrialState.PRUNED} <= states
    assert TrialState.RUNNING not in states
    roots = [t for t in trials if f"{P}parent" not in t.user_attrs]
    assert len(roots) == cfg.search.candidates
    predicted = [t for t in trials if f"{P}predicted_final" in t.user_attrs]
    assert predicted and all(
        isinstance(t.user_attrs[f"{P}predicted_final"], float) for t in predicted
    )
    continued = [t for t in trials if f"{P}parent" in t.user_attrs]
    assert continued and all(t.user_attrs[f"{P}resume_step"] > 0 for t in continued)
    assert max(max(t.intermediate_values) for t in continued) == cfg.full_steps
    report = cfg.report_dir
    for name in ("table.md", "table.csv", "summary.json", "curves.png"):
        assert (report / name).stat().st_size > 0
    summary = json.loads((report / "summary.json").read_text())
    assert summary["compute_fraction"] < 0.7
    # the pick is near the synthetic optimum
    best = summary["lineages"][0]
    assert best["observed"] is not None

    # re-running resumes: no candidate is trained again
    n_calls = len(trainer.calls)
    n_trials = len(trials)
    assert execute(cfg, trainer=trainer, progress=False) == 0
    capsys.readouterr()
    assert len(trainer.calls) == n_calls
    assert len(study.get_trials(deepcopy=False)) == n_trials

    # the report is rebuilt from storage alone
    (report / "table.md").unlink()
    assert main(["report", str(study_file), "--root", str(tmp_path)]) == 0
    assert (report / "table.md").read_text().startswith("# tiny")
    assert re.search(r"\| rank \| trial \| reached +\| ranked by", capsys.readouterr().out)


def test_interrupted_trial_of_a_dead_process_is_retried(tmp_path: Path) -> None:
    study_file = _write_study(tmp_path)
    cfg = load_study(study_file, run_root=tmp_path)
    # a process asked for a continuation of candidate 0, trained to step 45 and died
    study = optuna.create_study(study_name="tiny", storage=open_study_storage(cfg))
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    trial.set_user_attr(f"{P}parent", 0)
    trial.set_user_attr(f"{P}resume_step", 40)
    trial.set_user_attr(f"{P}checkpoint", "synthetic:40")
    trial.report(1.1, 40)
    trial.report(1.0, 45)
    assert recover_orphans(study, alone=False) == []  # another worker may own it
    assert recover_orphans(study, alone=True) == [trial.number]
    trials = study.get_trials(deepcopy=False)
    assert trials[0].state == TrialState.FAIL
    retry = trials[1]
    assert retry.state == TrialState.WAITING
    assert retry.user_attrs[f"{P}retry_of"] == trial.number
    assert retry.user_attrs[f"{P}checkpoint"] == "synthetic:40"
    assert retry.params == trials[0].params
    assert retry.intermediate_values == {40: 1.1}  # the parent's curve, up to the checkpoint


@pytest.mark.slow
def test_rerun_retries_a_candidate_left_running(tmp_path: Path) -> None:
    study_file = _write_study(tmp_path)
    cfg = load_study(study_file, run_root=tmp_path)
    study = optuna.create_study(study_name="tiny", storage=open_study_storage(cfg))
    orphan = study.ask()  # a candidate whose process died before it reported
    trainer = SyntheticTrainer(cfg.train.eval_every)
    assert execute(cfg, trainer=trainer, progress=False, out=io.StringIO()) == 0
    trials = study.get_trials(deepcopy=False)
    assert trials[orphan.number].state == TrialState.FAIL
    # the retry is the orphan's lineage, not a new candidate: the orphan is no surplus
    assert f"{P}surplus" not in trials[orphan.number].user_attrs
    retried = [
        t
        for t in trials
        if t.user_attrs.get(f"{P}retry_of") == orphan.number and f"{P}parent" not in t.user_attrs
    ]
    assert len(retried) == 1 and retried[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert retried[0].user_attrs[f"{P}root"] == orphan.number
    lineages = [
        t for t in trials if not {f"{P}parent", f"{P}surplus", f"{P}retry_of"} & set(t.user_attrs)
    ]
    assert len(lineages) == cfg.search.candidates
    ranked = {t.user_attrs[f"{P}root"] for t in trials if t.state == TrialState.COMPLETE}
    ranked |= {t.user_attrs[f"{P}root"] for t in trials if t.state == TrialState.PRUNED}
    assert ranked == {t.number for t in lineages}
    assert all(t.state != TrialState.RUNNING for t in trials)


@pytest.mark.slow
@pytest.mark.torch
def test_lawsearch_run_trains_a_tiny_llama_study(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real thing, small: demo corpus, BPE, a 1-layer Llama, through `lawsearch run`."""
    study = tmp_path / "tiny_llama.toml"
    study.write_text(
        '[study]\nname = "tiny_llama"\n'
        "[model]\nhidden_size = 16\nintermediate_size = 32\nnum_layers = 1\nnum_heads = 2\n"
        "[tokenizer]\nvocab_size = 300\n"
        f'[corpus]\nmax_bytes_per_domain = 16000\ncache_dir = "{tmp_path / "cache"}"\n'
        '[domains.docs]\nbuiltin = "python_docs"\n'
        '[domains.licenses]\nbuiltin = "licenses"\n'
        '[search_space]\nschedules = ["cosine"]\npeak_lr = [1e-5, 3e-2]\n'
        "[budgets]\nshort_tokens = 1536\nfull_tokens = 4608\n"  # 12 and 36 steps
        "[pruner]\nmin_trials = 2\n"
        "[search]\ncandidates = 5\nsurvivors = 1\n"
        '[train]\nbatch_size = 4\nseq_len = 32\neval_every = 1\neval_tokens = 256\ndevice = "cpu"\n'
        "threads = 1\n"
    )
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(study), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"\| rank \| trial \| reached +\| ranked by", out)
    assert f"optuna-dashboard {tmp_path}/runs/tiny_llama/journal.log" in out
    cfg, st = _load(study, tmp_path)
    trials = st.get_trials(deepcopy=False)
    states = {t.state for t in trials}
    assert {TrialState.COMPLETE, TrialState.PRUNED} <= states, states
    for t in trials:
        if t.state == TrialState.COMPLETE or f"{P}predicted_final" in t.user_attrs:
            assert isinstance(t.user_attrs[f"{P}predicted_final"], float)
        elif t.state == TrialState.PRUNED:  # cut on its last value before the law could fit
            last = t.intermediate_values[max(t.intermediate_values)]
            rungs = [v for k, v in t.user_attrs.items() if k.startswith(f"{P}rung:")]
            assert last in rungs and len(t.intermediate_values) < 3, t.user_attrs
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
            assert t.user_attrs[f"{P}tokens_per_step"] == 128.0
    assert any(
        max(t.intermediate_values) == cfg.full_steps for t in trials if t.intermediate_values
    )
    assert (cfg.report_dir / "curves.png").is_file()
    assert list((cfg.checkpoint_dir).rglob("*.pt"))


def test_worker_storage_flag_replaces_the_study_files_storage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    study = _write_study(tmp_path)
    monkeypatch.chdir(tmp_path)
    url = "postgresql://postgres@127.0.0.1:1/none"
    assert main(["worker", str(study), "--storage", url]) == 2
    err = capsys.readouterr().err
    assert "`study.storage`: cannot open 'postgresql://postgres@127.0.0.1:1/none'" in err
    assert not (tmp_path / "runs").exists()
    assert load_study(study, storage=url).study.storage == url
