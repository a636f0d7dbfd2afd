"""``lawsearch.runner``: a study run from Python, its result against the storage, its errors."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from lawsearch import report as reporting
from lawsearch.config import load_study
from lawsearch.runner import Progress, RunFailed, StudyError, UserError, run_study
from lawsearch.study import open_study_storage
from tests.cli.test_run import SyntheticTrainer, _write_study


class FailingTrainer(SyntheticTrainer):
    """Trains ``ok`` trials, then raises as a broken data loader would."""

    def __init__(self, eval_every: int, ok: int) -> None:
        super().__init__(eval_every)
        self.ok = ok

    def train(self, config: Any, **kwargs: Any) -> Any:
        if len(self.calls) >= self.ok:
            raise OSError("shard 3 of domain 'a' is unreadable")
        return super().train(config, **kwargs)


def test_error_kinds_carry_the_cli_exit_codes() -> None:
    assert issubclass(UserError, StudyError) and issubclass(RunFailed, StudyError)
    assert (UserError.exit_code, RunFailed.exit_code) == (2, 1)


def test_unreachable_storage_is_bad_input_and_nothing_is_written(tmp_path: Path) -> None:
    url = "postgresql://postgres@127.0.0.1:1/none"
    cfg = load_study(_write_study(tmp_path), run_root=tmp_path, storage=url)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(UserError, match=r"`study.storage`: cannot open .*127\.0\.0\.1:1"):
        run_study(cfg, trainer=SyntheticTrainer(cfg.train.eval_every), progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_progress_in_a_log_writes_one_line_per_event() -> None:
    log = io.StringIO()
    bar = Progress(total_tokens=100, full_tokens=200, file=log, lines=True)
    bar.on_start(0, 40, 0)
    bar.on_report(0, 5, 2.5, 20.0)
    bar.on_start(0, 40, 0)  # the same event again: no new line
    bar.on_start(1, 200, 40)
    bar.close()
    assert log.getvalue().splitlines() == [
        "search: screen 0->40, trial 0 | best pred - | compute 0.0% of all-full",
        "search: continue 40->200, trial 1 | best pred - | compute 10.0% of all-full",
        "search: done | best pred - | compute 10.0% of all-full",
    ]


@pytest.mark.slow
def test_a_failure_during_the_run_keeps_the_trials_and_says_how_to_resume(
    tmp_path: Path,
) -> None:
    """One failed trial never ends the search; a search left with nothing to rank does."""
    cfg = load_study(_write_study(tmp_path), run_root=tmp_path)
    with pytest.raises(RunFailed) as info:
        run_study(cfg, worker=True, trainer=FailingTrainer(cfg.train.eval_every, ok=0))
    study = optuna.load_study(study_name="tiny", storage=open_study_storage(cfg, must_exist=True))
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert states and TrialState.FAIL in states and TrialState.COMPLETE not in states
    message = str(info.value)
    assert message.startswith("RuntimeError: no trial finished; nothing to rerank")
    assert f"0 finished trial(s) of study 'tiny' are kept in {cfg.study.storage}" in message
    assert f"run `lawsearch run {cfg.source}` again to resume" in message
    assert info.value.exit_code == 1


@pytest.mark.slow
def test_run_study_result_matches_the_storage(tmp_path: Path) -> None:
    cfg = load_study(_write_study(tmp_path), run_root=tmp_path)
    trainer = SyntheticTrainer(cfg.train.eval_every)
    joined = run_study(cfg, worker=True, trainer=trainer, progress=False)
    assert joined.report_dir is None and joined.report_files == ()
    assert not cfg.report_dir.exists()  # a worker writes no report

    calls = len(trainer.calls)
    result = run_study(cfg, trainer=trainer, progress=False)  # resumes: nothing retrained
    assert len(trainer.calls) == calls
    study = optuna.load_study(study_name="tiny", storage=open_study_storage(cfg, must_exist=True))
    rep = reporting.collect(study, cfg)
    assert (result.study_name, result.storage, result.rank) == ("tiny", cfg.study.storage, 0)
    assert result.trials == len(study.get_trials(deepcopy=False))
    assert result.candidates == len(rep.lineages) == cfg.search.candidates
    assert rep.pick is not None and result.pick == rep.pick.number
    assert result.search_pick in {lin.number for lin in rep.lineages}
    assert result.compute_fraction == pytest.approx(rep.compute_fraction)
    assert 0 < result.compute_fraction < 1
    assert result.report_dir == cfg.report_dir
    assert {p.name for p in result.report_files} >= {"table.md", "summary.json"}
    assert all(p.is_file() for p in result.report_files)
    assert str(Path(cfg.study.storage).absolute()) in result.dashboard
