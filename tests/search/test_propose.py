"""Law-proposed schedules in a real search: proposed once, trained as stored, never twice.

The fake trainer's curves come from a Multi-Power Law with each trial's own LR
schedule (the constants fitted on the recorded demo runs, ``test_schedule_opt``),
and the mixture ``x`` shifts the asymptote, so a schedule-aware law fitted on the
screen can propose a schedule for the best mixture. Every study is a journal file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from lawsearch.config import load_study
from lawsearch.laws import LRTrack, MultiPowerLaw
from lawsearch.optuna import _attrs, suggest_schedule
from lawsearch.optuna import _compat as compat
from lawsearch.schedules import Schedule
from lawsearch.search import RetrievalRerank
from lawsearch.search._propose import ScheduleProposer, proposal_decision
from lawsearch.study import plan_rungs
from tests.cli.test_run import _write_study
from tests.search._fake import FakeTrainer
from tests.test_schedule_opt import TRUE  # the demo runs' Multi-Power Law constants

optuna.logging.set_verbosity(optuna.logging.WARNING)

T, SHORT = 240, 60
_LAW = MultiPowerLaw()


def _curve(trained: list[dict[str, Any]]) -> Any:
    def curve(config: Mapping[str, Any], step: int) -> float:
        trained.append(dict(config["schedule"]))
        lrs = Schedule.from_dict(config["schedule"]).per_step()
        x = float(config["x"]) if "x" in config else float(config["mixture"]["a"])
        theta = dict(TRUE, L0=TRUE["L0"] + (x - 0.3) ** 2)
        values = np.array([theta[n] for n in _LAW.param_names])
        track = LRTrack(np.append(lrs, lrs[-1]))
        return float(_LAW.predict_from(values, np.array([float(step)]), track)[0])

    return curve


def _config(trial: optuna.Trial) -> dict[str, Any]:
    schedule = suggest_schedule(
        trial,
        total_steps=T,
        families=("cosine", "wsd"),
        peak_lr=3e-3,
        warmup=0.02,
        decay_fraction=0.2,
        final_lr_fraction=0.1,
    )
    return {"x": trial.suggest_float("x", 0.0, 1.0), "schedule": schedule.to_dict()}


def _search(
    propose: ScheduleProposer | None,
    *,
    trained: list[dict[str, Any]] | None = None,
    law: str = "multipower",
    budgets: tuple[int, ...] = (SHORT, T),
    eval_every: int = 4,
    fail: Any = None,
) -> RetrievalRerank:
    curve = _curve([] if trained is None else trained)
    return RetrievalRerank(
        budgets=budgets,
        n_candidates=4,
        trainer=FakeTrainer(eval_every=eval_every, curve=curve, fail=fail),
        config=_config,
        eta=2.0,
        law=law,
        promotion="sync",
        propose=propose,
    )


def _study(path: Path, direction: str = "minimize") -> optuna.Study:
    return optuna.create_study(
        study_name="propose",
        storage=JournalStorage(JournalFileBackend(str(path))),
        sampler=optuna.samplers.RandomSampler(seed=1),
        direction=direction,
        load_if_exists=True,
    )


def _proposals(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [
        t
        for t in study.get_trials()
        if _attrs.PROPOSED_FROM in t.user_attrs and _attrs.PARENT not in t.user_attrs
    ]


def test_a_proposal_is_made_once_trains_its_schedule_and_is_not_made_again_on_resume(
    tmp_path: Path,
) -> None:
    trained: list[dict[str, Any]] = []
    search = _search(ScheduleProposer(1, final_lr_ratio=0.1, min_gain=0.0), trained=trained)
    journal = tmp_path / "journal.log"
    study = _study(journal)
    result = search.run(study)

    decision = proposal_decision(study)
    assert decision is not None and decision["proposed"] == 1, decision
    (prop,) = _proposals(study)
    a = prop.user_attrs
    source = study.trials[a[_attrs.PROPOSED_FROM]]
    assert source.user_attrs[_attrs.RUNG] == 0 and _attrs.PROPOSED_FROM not in source.user_attrs
    assert prop.params == source.params  # the source's mixture
    schedule = Schedule.from_dict(a[_attrs.PROPOSED_SCHEDULE])
    assert schedule.family == "piecewise" and a[_attrs.SCHEDULE] == a[_attrs.PROPOSED_SCHEDULE]
    assert schedule.peak_lr == pytest.approx(3e-3) and schedule.total_steps == T
    assert schedule.final_lr == pytest.approx(3e-4)
    assert np.all(np.diff(schedule.per_step()[schedule.warmup_steps :]) <= 1e-15)
    assert isinstance(a[_attrs.PROPOSED_FINAL], float)
    assert a[_attrs.PROPOSED_FINAL] < decision["candidates"][0]["best_hand_predicted"]
    # the trainer trained the stored schedule (the one the law extrapolated with)
    assert a[_attrs.PROPOSED_SCHEDULE] in trained
    assert prop.state == TrialState.COMPLETE and a[_attrs.ROOT] == prop.number
    # it screened with the candidates and counted in the cut: 5 screened, 2 kept
    cut = compat.storage(study).get_study_system_attrs(compat.study_id(study))[_attrs.cut_key(0, 2)]
    assert cut["screened"] == 5
    assert prop.number in {c["trial"] for c in cut["candidates"]}
    # a continuation (if it was kept) trains the same schedule
    for t in study.get_trials():
        if t.user_attrs.get(_attrs.ROOT) == prop.number:
            assert t.user_attrs[_attrs.SCHEDULE] == a[_attrs.PROPOSED_SCHEDULE]
    assert prop.number in {row["root"] for row in result.table}

    # the report shows the lineage with the schedule it trained, and where it came from
    rows = [r for r in _report_table(study, tmp_path).splitlines() if "law-proposed" in r]
    assert len(rows) == 1 and f"piecewise lr=0.003 (law-proposed for #{source.number}'s" in rows[0]

    # resume: a fresh process on the same journal proposes nothing more and trains nothing
    n_before, calls = len(study.trials), len(trained)
    again = _study(journal)
    _search(ScheduleProposer(1, final_lr_ratio=0.1, min_gain=0.0), trained=trained).run(again)
    assert len(again.trials) == n_before and len(trained) == calls
    assert len(_proposals(again)) == 1
    assert proposal_decision(again) == decision


def test_two_workers_that_propose_at_once_train_the_proposal_once(tmp_path: Path) -> None:
    journal = tmp_path / "journal.log"
    study = _study(journal)
    _search(None, budgets=(SHORT,)).run(study)  # the screen alone: 4 candidates at SHORT
    search = _search(ScheduleProposer(1, final_lr_ratio=0.1, min_gain=0.0))
    proposer = search.proposer
    assert proposer is not None
    trials = study.get_trials()
    # two workers read the same finished screen and each decide (deterministic: the same)
    (first,), _ = proposer._decide(search, study, trials)
    (second,), _ = proposer._decide(search, study, trials)
    assert first.user_attrs == second.user_attrs
    study.add_trial(first)
    study.add_trial(second)
    search.run(_study(journal))
    props = _proposals(study)
    assert [t.state for t in props] == [TrialState.COMPLETE, TrialState.FAIL]
    assert props[1].user_attrs[_attrs.DUPLICATE_OF] == props[0].number
    assert proposal_decision(study) is None  # this run saw the proposals: no second decision


def test_a_failed_proposal_is_retried_with_the_same_schedule(tmp_path: Path) -> None:
    failed: list[int] = []

    def fail(config: Mapping[str, Any], step: int) -> BaseException | None:
        if config["schedule"]["family"] == "piecewise" and step == 30 and not failed:
            failed.append(step)
            return RuntimeError("worker lost")
        return None

    study = _study(tmp_path / "journal.log")
    _search(ScheduleProposer(1, final_lr_ratio=0.1, min_gain=0.0), fail=fail).run(study)
    assert failed == [30]
    first, retry = _proposals(study)[:2]
    assert first.state == TrialState.FAIL and retry.user_attrs[_attrs.RETRY_OF] == first.number
    assert retry.state == TrialState.COMPLETE
    spec = first.user_attrs[_attrs.PROPOSED_SCHEDULE]
    assert retry.user_attrs[_attrs.PROPOSED_SCHEDULE] == retry.user_attrs[_attrs.SCHEDULE] == spec
    x = retry.params["x"]
    expected = _curve([])({"x": x, "schedule": spec}, SHORT)
    assert retry.intermediate_values[SHORT] == pytest.approx(expected, rel=1e-12)
    assert len(_proposals(study)) == 2  # the proposal and its retry: no second proposal


def _kept(study: optuna.Study) -> list[tuple[Any, ...]]:
    return [
        (t.number, t.state.name, t.user_attrs.get(_attrs.RUNG), t.user_attrs.get(_attrs.ROOT))
        for t in study.get_trials()
    ]


@pytest.mark.parametrize(
    ("law", "eval_every", "why"),
    [
        # 3 reports in the screen: too few for the joint fit of the Multi-Power Law
        ("multipower", 20, "no screened trial has a usable schedule-aware joint fit"),
        ("power", 4, "the law 'power' ignores the LR schedule"),
    ],
)
def test_a_failed_or_unusable_fit_proposes_nothing_and_never_changes_the_cut(
    tmp_path: Path, law: str, eval_every: int, why: str
) -> None:
    with_proposer = _study(tmp_path / "with.log")
    proposer = ScheduleProposer(1, final_lr_ratio=0.1)
    _search(proposer, law=law, eval_every=eval_every).run(with_proposer)
    decision = proposal_decision(with_proposer)
    assert decision is not None and decision["proposed"] == 0
    assert decision["why"].startswith("nothing proposed: ") and why in decision["why"]
    assert _proposals(with_proposer) == []
    without = _study(tmp_path / "without.log")
    _search(None, law=law, eval_every=eval_every).run(without)
    assert _kept(with_proposer) == _kept(without)  # the same trials, kept and cut alike


def test_a_maximised_study_gets_no_proposal(tmp_path: Path) -> None:
    study = _study(tmp_path / "journal.log", direction="maximize")
    _search(ScheduleProposer(1, final_lr_ratio=0.1), law="power").run(study)
    decision = proposal_decision(study)
    assert decision is not None and "maximises" in decision["why"]


@pytest.mark.parametrize(
    ("search", "law", "message"),
    [
        ("propose_schedules = -1", "momentum", r"`search.propose_schedules` must be in \[0, "),
        ("propose_schedules = 7", "momentum", r"`search.propose_schedules` must be in \[0, "),
        ('propose_schedules = "one"', "momentum", r"`search.propose_schedules` must be an integer"),
        ("propose_schedules = 1", "power", r"needs a schedule-aware law.*'power'"),
    ],
)
def test_the_study_file_key_is_validated(
    tmp_path: Path, search: str, law: str, message: str
) -> None:
    path = _write_study(
        tmp_path,
        search=f"candidates = 6\nsurvivors = 2\nrungs = [1.0]\n{search}",
        law=f'name = "{law}"',
    )
    with pytest.raises(ValueError, match=message):
        load_study(path)


def test_the_plan_counts_the_proposals(tmp_path: Path) -> None:
    rungs = "candidates = 6\nsurvivors = 2\nrungs = [1.0]"
    off = load_study(_write_study(tmp_path, search=rungs, law='name = "momentum"'))
    assert off.search.propose_schedules == 0
    on = load_study(
        _write_study(tmp_path, search=rungs + "\npropose_schedules = 2", law='name = "momentum"')
    )
    plan_off, plan_on = plan_rungs(off), plan_rungs(on)
    assert plan_on[0].trials == plan_off[0].trials + 2 == 8
    assert plan_on[0].tokens == plan_off[0].tokens * 8 // 6
    assert plan_on[1].trials >= plan_off[1].trials


def _report_table(study: optuna.Study, tmp_path: Path) -> str:
    """``table.md`` of ``lawsearch report`` for the study (tokens: 64 per step)."""
    from lawsearch.report import collect, write_report

    budgets = f"short_tokens = {SHORT * 64}\nfull_tokens = {T * 64}"
    search = "candidates = 4\nsurvivors = 1\nrungs = [1.0]\npropose_schedules = 1"
    cfg = load_study(
        _write_study(tmp_path, budgets=budgets, search=search, law='name = "multipower"')
    )
    write_report(collect(study, cfg), tmp_path / "report", html=False)
    return (tmp_path / "report" / "table.md").read_text()


def test_the_study_wiring_trains_the_proposal_and_records_its_lr(tmp_path: Path) -> None:
    """``build_search`` (``lawsearch run``): the proposer from the study file, the stored
    schedule replacing the suggested one in the trainer's config and the trial's attrs."""
    from lawsearch.study import build_sampler, build_search

    cfg = load_study(
        _write_study(
            tmp_path,
            budgets=f"short_tokens = {SHORT * 64}\nfull_tokens = {T * 64}",
            search="candidates = 4\nsurvivors = 1\nrungs = [1.0]\npropose_schedules = 1",
            law='name = "multipower"',
            search_space='schedules = ["cosine", "wsd"]\npeak_lr = 3e-3',
            pruner="enabled = false",
        )
    )
    trained: list[dict[str, Any]] = []
    search = build_search(cfg, trainer=FakeTrainer(eval_every=4, curve=_curve(trained)))
    assert search.proposer is not None and search.proposer.count == 1
    assert search.proposer.final_lr_ratio == cfg.search_space.final_lr_ratio
    # the fake's law gains < 0.1% over WSD, and these 3-domain screens leave intervals
    # of 2-3x: lift both thresholds to see the wiring train a proposal
    search.proposer.min_gain = 0.0
    search.extrapolator.max_interval_ratio = 10.0
    study = optuna.create_study(
        study_name=cfg.name,
        storage=JournalStorage(JournalFileBackend(str(tmp_path / "journal.log"))),
        sampler=build_sampler(cfg),
    )
    search.run(study)
    assert (proposal_decision(study) or {}).get("proposed") == 1, proposal_decision(study)
    (prop,) = _proposals(study)
    spec = prop.user_attrs[_attrs.PROPOSED_SCHEDULE]
    assert spec["family"] == "piecewise" and spec in trained
    assert prop.user_attrs[_attrs.SCHEDULE] == spec
    assert prop.user_attrs[_attrs.LR] == pytest.approx(spec["peak_lr"])
