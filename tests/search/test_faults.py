"""The failure policy in one process: errors, divergence, retries from the last checkpoint."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from lawsearch.optuna import _attrs
from lawsearch.search import RetrievalRerank
from lawsearch.search._faults import DivergenceCheck, requeue
from tests.search._fake import FakeTrainer, loss

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _config(trial: optuna.Trial) -> dict[str, Any]:
    return {"x": trial.suggest_float("x", 0.0, 1.0)}


def _search(trainer: FakeTrainer, **kw: Any) -> RetrievalRerank:
    return RetrievalRerank(
        budgets=(20, 60),
        n_candidates=4,
        trainer=trainer,
        config=_config,
        eta=2.0,
        promotion="sync",
        **kw,
    )


def _study(seed: int = 1) -> optuna.Study:
    return optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))


def _fail_once(at_step: int, exc: BaseException, *, min_start: int = 0) -> Any:
    done = [False]

    def fail(config: Mapping[str, Any], step: int) -> BaseException | None:
        if not done[0] and step == at_step:
            done[0] = True
            return exc
        return None

    return fail


def _lineages_ranked(study: optuna.Study, search: RetrievalRerank) -> None:
    result = search.result(study)
    roots = [row["root"] for row in result.table]
    assert len(roots) == len(set(roots)) == search.n_candidates


def test_a_raising_trial_fails_is_retried_from_its_last_checkpoint_and_the_search_goes_on(
    tmp_path: Path,
) -> None:
    trainer = FakeTrainer(
        eval_every=5,
        checkpoint_every=5,
        checkpoint_dir=tmp_path,
        fail=_fail_once(13, RuntimeError("CUDA out of memory")),
    )
    search = _search(trainer)
    study = _study()
    search.run(study)  # the error does not end the search
    trials = study.get_trials()
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 1
    bad = failed[0]
    assert bad.user_attrs[_attrs.ERROR] == "RuntimeError: CUDA out of memory"
    assert bad.user_attrs[_attrs.LAST_CHECKPOINT_STEP] == 10
    (retry,) = [t for t in trials if t.user_attrs.get(_attrs.RETRY_OF) == bad.number]
    assert retry.state == TrialState.COMPLETE
    assert retry.params == bad.params
    assert retry.user_attrs[_attrs.ROOT] == bad.user_attrs[_attrs.ROOT]
    assert retry.user_attrs[_attrs.RESUME_STEP] == 10
    assert retry.user_attrs[_attrs.CHECKPOINT] == bad.user_attrs[_attrs.LAST_CHECKPOINT]
    # the curve is carried over: the failed try's reports up to its checkpoint, then the retry's
    assert sorted(retry.intermediate_values) == [5, 10, 15, 20]
    assert retry.intermediate_values[5] == bad.intermediate_values[5]
    assert (10, 20) in trainer.calls  # trained from the checkpoint, not from 0
    _lineages_ranked(study, search)


def test_max_retries_zero_keeps_the_failure_and_still_finishes() -> None:
    trainer = FakeTrainer(eval_every=5, fail=_fail_once(7, ValueError("bad batch")))
    search = _search(trainer, max_retries=0)
    study = _study()
    result = search.run(study)
    trials = study.get_trials()
    assert [t.user_attrs[_attrs.ERROR] for t in trials if t.state == TrialState.FAIL] == [
        "ValueError: bad batch"
    ]
    assert not any(_attrs.RETRY_OF in t.user_attrs for t in trials)
    assert len(result.table) == search.n_candidates - 1  # the lineage is lost, nothing else


def test_a_continuation_that_crashes_keeps_its_parents_curve(tmp_path: Path) -> None:
    # the first call that trains past step 20 is a continuation (budgets 20 -> 60)
    trainer = FakeTrainer(
        eval_every=5,
        checkpoint_every=10,
        checkpoint_dir=tmp_path,
        fail=_fail_once(37, OSError("disk hiccup")),
    )
    search = _search(trainer)
    study = _study(seed=2)
    search.run(study)
    trials = study.get_trials()
    (bad,) = [t for t in trials if t.state == TrialState.FAIL]
    assert _attrs.PARENT in bad.user_attrs and bad.user_attrs[_attrs.LAST_CHECKPOINT_STEP] == 30
    (retry,) = [t for t in trials if t.user_attrs.get(_attrs.RETRY_OF) == bad.number]
    parent = trials[bad.user_attrs[_attrs.PARENT]]
    assert retry.user_attrs[_attrs.PARENT] == parent.number
    assert retry.user_attrs[_attrs.RESUME_STEP] == 30
    assert sorted(retry.intermediate_values) == list(range(5, 65, 5))
    for step, value in parent.intermediate_values.items():
        assert retry.intermediate_values[step] == value
    assert retry.state == TrialState.COMPLETE
    # one (parent, rung) promoted once: no second continuation of the parent
    cont = [t for t in trials if t.user_attrs.get(_attrs.PARENT) == parent.number]
    assert [t.state for t in cont].count(TrialState.COMPLETE) == 1
    _lineages_ranked(study, search)


@pytest.mark.parametrize("bad", [math.nan, math.inf, 100.0])
def test_a_diverged_trial_ends_as_diverged_and_the_study_continues(bad: float) -> None:
    def curve(config: Mapping[str, Any], step: int) -> float:
        if config["x"] > 0.5 and step >= 10:
            return bad
        return loss(config, step)

    trainer = FakeTrainer(eval_every=5, curve=curve)
    search = _search(trainer)
    study = _study(seed=3)
    result = search.run(study)
    trials = study.get_trials()
    diverged = [t for t in trials if t.user_attrs.get(_attrs.DIVERGED) == 1.0]
    assert diverged, "seed 3 proposes at least one x > 0.5"
    for t in diverged:
        assert t.state == TrialState.FAIL
        assert t.user_attrs[_attrs.FIT_STATUS] == "diverged"
        assert max(t.intermediate_values) == 10  # stopped at the first bad report
        assert not any(u.user_attrs.get(_attrs.RETRY_OF) == t.number for u in trials)
    assert len(result.table) == search.n_candidates - len(diverged)


def test_divergence_check() -> None:
    check = DivergenceCheck()
    assert not check(5, 4.0) and not check(10, 5.9)
    assert check(15, 6.1) and "exploded" in str(check.why)
    assert DivergenceCheck(4.0)(5, math.nan)
    assert not DivergenceCheck(4.0, minimize=False)(5, 100.0)


def test_requeue_counts_retries_and_stops_at_the_limit() -> None:
    study = _study()
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    trial.set_user_attr(_attrs.RUNG, 0)
    study.tell(trial, state=TrialState.FAIL)
    first = requeue(study, study.trials[0], max_retries=2)
    assert first == 1
    again = study.trials[1]
    assert again.user_attrs[_attrs.RETRIES] == 1 and again.user_attrs[_attrs.ROOT] == 0
    t = study.ask()
    assert t.number == 1
    study.tell(t, state=TrialState.FAIL)
    assert requeue(study, study.trials[1], max_retries=2) == 2
    t = study.ask()
    study.tell(t, state=TrialState.FAIL)
    assert requeue(study, study.trials[2], max_retries=2) is None


# ---- checkpoint retention ----------------------------------------------------------------


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("step-*") if p.is_file()}


@pytest.mark.parametrize("keep", ["needed", "all"])
def test_retention_keeps_only_what_a_continuation_retry_or_the_pick_can_use(
    tmp_path: Path, keep: str
) -> None:
    trainer = FakeTrainer(eval_every=5, checkpoint_every=5, checkpoint_dir=tmp_path)
    deleted: list[set[Path]] = []
    search = _search(trainer, checkpoint_dir=str(tmp_path), keep_checkpoints=keep)
    study = _study()
    original = search._retain

    def spy(study: optuna.Study, **kw: Any) -> None:
        before = _files(tmp_path)
        original(study, **kw)
        deleted.append(before - _files(tmp_path))

    search._retain = spy  # type: ignore[method-assign]
    result = search.run(study)
    trials = study.get_trials()
    pick = trials[result.best_trial].user_attrs[_attrs.CHECKPOINT_OUT]
    if keep == "all":
        # 4 candidates x 4 files (5..20), 2 continuations x 8 files (25..60)
        assert len(_files(tmp_path)) == 4 * 4 + 2 * 8
        return
    assert _files(tmp_path) == {Path(pick)}
    assert any(deleted[:-1]), "files are deleted while the study runs, not only at the end"


def test_retention_never_deletes_a_resume_point_or_a_file_being_written(tmp_path: Path) -> None:
    from lawsearch.search._retention import unused_checkpoints

    folder = tmp_path / "run"
    folder.mkdir()
    paths = {s: folder / f"step-{s:08d}.json" for s in (10, 20, 30, 40, 50)}
    for p in paths.values():
        p.write_text("{}")
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    done = optuna.trial.create_trial(
        params={"x": 0.5},
        distributions=dist,
        value=1.0,
        user_attrs={_attrs.CHECKPOINT_OUT: str(paths[20]), _attrs.LAST_CHECKPOINT: str(paths[10])},
    )
    running = optuna.trial.create_trial(
        state=TrialState.RUNNING,
        params={"x": 0.5},
        distributions=dist,
        user_attrs={_attrs.CHECKPOINT: str(paths[20]), _attrs.LAST_CHECKPOINT: str(paths[30])},
    )
    done.number, running.number = 0, 1
    finishing = optuna.trial.create_trial(
        state=TrialState.RUNNING,
        params={"x": 0.5},
        distributions=dist,
        user_attrs={_attrs.CHECKPOINT_OUT: str(paths[50]), _attrs.LAST_CHECKPOINT: str(paths[40])},
    )
    finishing.number = 2
    # a trial's output is recorded a moment before it is told COMPLETE: never deleted then
    assert unused_checkpoints([done, running, finishing], tmp_path) == {paths[10]}
    unused = unused_checkpoints([done, running], tmp_path)
    # 10 is superseded; 20 (an output, a resume point) and 30 (a retry's) stay; 40 and 50
    # are newer than anything recorded: maybe being written, never touched
    assert unused == {paths[10]}
    assert unused_checkpoints([done, running], tmp_path, final=True, pick=0) == {
        paths[10],
        paths[30],
    }


def test_optunas_retry_callback_keeps_the_crashed_candidate() -> None:
    """The issue's reproduction: Optuna re-enqueues a failed candidate; 4 of 4 are ranked."""
    import warnings

    study = _study()
    crashed = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    crashed.set_user_attr(_attrs.RUNG, 0)
    crashed.set_user_attr(_attrs.ROOT, crashed.number)
    study.tell(crashed, state=TrialState.FAIL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)(study, study.trials[0])
    search = _search(FakeTrainer(eval_every=5))
    result = search.run(study)
    trials = study.get_trials()
    assert not any(_attrs.SURPLUS in t.user_attrs for t in trials)
    assert trials[1].system_attrs["failed_trial"] == 0 and trials[1].state == TrialState.COMPLETE
    assert sorted(row["root"] for row in result.table) == sorted(
        {0} | {t.number for t in trials if t.number > 1 and _attrs.PARENT not in t.user_attrs}
    )
    assert len(result.table) == search.n_candidates
