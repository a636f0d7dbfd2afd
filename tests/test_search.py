"""RetrievalRerank: the flow, its compute, and continuation without loss or duplicates."""

from __future__ import annotations

import math
import multiprocessing as mp
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from optuna.trial import TrialState

from lawsearch.optuna import attrs
from lawsearch.search import RetrievalRerank, SearchResult
from lawsearch.train._replay import ReplayCurve, ReplayTrainer

N = 9
BUDGETS = (6, 18, 54)


def _curves(n: int = N) -> dict[int, ReplayCurve]:
    """Power-law curves; config 0 has the best final but ranks only 4th at the short budget."""
    steps = np.arange(1, BUDGETS[-1] + 1)
    out = {}
    for i in range(n):
        e = 2.0 + 0.25 * i
        a = 2.5 if i == 0 else 1.0
        out[i] = ReplayCurve.of(steps, e + a * steps**-0.6)
    return out


def _search(trainer: ReplayTrainer | None = None, n: int = N, **options) -> RetrievalRerank:
    options.setdefault("eta", 3.0)
    return RetrievalRerank(
        budgets=BUDGETS,
        n_candidates=n,
        trainer=trainer or ReplayTrainer(_curves()),
        config=lambda t: {"config_id": t.suggest_int("config_id", 0, N - 1)},
        **options,
    )


def _study(storage=None, name: str = "s", n: int = N) -> optuna.Study:
    study = optuna.create_study(
        storage=storage, study_name=name, sampler=optuna.samplers.RandomSampler(seed=0)
    )
    for i in range(n):  # the retrieved candidates: each config once
        study.enqueue_trial({"config_id": i})
    return study


def _check_invariants(study: optuna.Study, search: RetrievalRerank) -> Counter:
    budgets = search.budgets
    trials = study.get_trials()
    assert not [t for t in trials if t.state in (TrialState.WAITING, TrialState.RUNNING)]
    trained = Counter(
        (t.user_attrs[attrs.PARENT], t.user_attrs[attrs.RUNG])
        for t in trials
        if attrs.PARENT in t.user_attrs and t.state == TrialState.COMPLETE
    )
    assert trained and max(trained.values()) == 1, trained  # no duplicated continuation
    assert search.eligible(study) == []  # no lost continuation
    for t in trials:
        if attrs.PARENT in t.user_attrs and t.state == TrialState.COMPLETE:
            parent = trials[t.user_attrs[attrs.PARENT]]
            assert t.user_attrs[attrs.RESUME_STEP] == budgets[t.user_attrs[attrs.RUNG] - 1]
            assert t.user_attrs[attrs.CHECKPOINT] == parent.user_attrs[attrs.CHECKPOINT_OUT]
            assert t.params == parent.params
            # the continuation carries the parent's curve and extends it
            assert max(t.intermediate_values) == budgets[t.user_attrs[attrs.RUNG]]
            assert set(parent.intermediate_values) < set(t.intermediate_values)
    return trained


def test_flow_picks_the_best_and_counts_compute_once() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trainer = ReplayTrainer(_curves())
    search = _search(trainer)
    study = _study()
    res = search.run(study)
    assert isinstance(res, SearchResult)
    trained = _check_invariants(study, search)
    # 9 candidates -> 3 continue to 12 -> 1 continues to 36
    assert sorted(Counter(r for _, r in trained.elements()).items()) == [(1, 3), (2, 1)]
    assert res.best_params == {"config_id": 0} and res.best_budget == 54
    assert res.table[0]["rank"] == 1 and len(res.table) == N
    expected = 9 * 6 + 3 * (18 - 6) + 1 * (54 - 18)
    assert res.compute_steps == trainer.compute_used == expected
    assert res.full_compute_steps == N * 54
    assert res.compute_fraction < 0.3
    short = [t for t in study.trials if t.user_attrs.get(attrs.RUNG) == 0]
    assert all(t.user_attrs[attrs.FIT_STATUS] == "ok" for t in short)
    assert all(
        t.user_attrs[attrs.PREDICTED_LO]
        <= t.user_attrs[attrs.PREDICTED_FINAL]
        < t.user_attrs[attrs.OBSERVED]
        for t in short
    )
    # the objective value is the full-budget estimate; the short-budget loss is an attr
    assert all(t.value == t.user_attrs[attrs.PREDICTED_FINAL] for t in short)
    assert all(t.user_attrs[attrs.OBSERVED] == t.intermediate_values[6] for t in short)
    assert "| rank | candidate |" in res.to_markdown()
    # a value nothing predicted is not shown again as a "predicted final"
    by_number = {t.number: t for t in study.trials}
    for row in res.table:
        a = by_number[row["trial"]].user_attrs
        pred = a[attrs.PREDICTED_FINAL] if a[attrs.RANKED_BY] == "law" else None
        assert row["predicted_final"] == pred and (row["predicted_lo"] is None) == (pred is None)
    assert res.predicted_final is None  # the pick was trained to the full budget: observed
    assert res.to_markdown().splitlines()[2].endswith(f"| {res.best_value:.4g} | – |")


def test_user_objective_with_trial_report_and_threads() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    curves = _curves()
    ran: list[tuple[int, int, str | None]] = []

    def objective(trial: optuna.Trial, budget_steps: int, resume_from: str | None) -> str:
        cid = trial.suggest_int("config_id", 0, N - 1)
        start = int(resume_from.split("@")[1]) if resume_from else 0
        c = curves[cid]
        for s, v in zip(c.steps, c.values, strict=True):
            if start < s <= budget_steps:
                trial.report(float(v), int(s))
        ran.append((cid, budget_steps, resume_from))
        return f"ckpt-{cid}@{budget_steps}"

    search = RetrievalRerank(budgets=BUDGETS, n_candidates=N, objective=objective, eta=3.0)
    study = _study()
    res = search.run(study, n_workers=2)
    _check_invariants(study, search)
    assert res.best_params == {"config_id": 0}
    resumed = [r for r in ran if r[2] is not None]
    assert len(resumed) == 4 and len(ran) == 13
    assert all(r[2] == f"ckpt-{r[0]}@{BUDGETS[BUDGETS.index(r[1]) - 1]}" for r in resumed)


def test_duplicate_continuation_is_not_trained_twice() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trainer = ReplayTrainer(_curves(3))
    search = RetrievalRerank(
        budgets=(6, 54),
        n_candidates=3,
        trainer=trainer,
        config=lambda t: {"config_id": t.suggest_int("config_id", 0, 2)},
        eta=3.0,
    )
    study = _study(n=3)
    original = search._promote
    calls = {"n": 0}

    def racing_promote(s: optuna.Study) -> bool:
        # two workers checked at the same time: both add the same continuation
        eligible = search.eligible(s)
        added = original(s)
        if eligible and calls["n"] == 0:
            calls["n"] += 1
            for node in eligible:
                parent = s.trials[node.number]
                s.add_trial(
                    optuna.trial.create_trial(
                        state=TrialState.WAITING,
                        params=parent.params,
                        distributions=parent.distributions,
                        user_attrs={
                            attrs.PARENT: node.number,
                            attrs.RUNG: 1,
                            attrs.RESUME_STEP: 6,
                            attrs.CHECKPOINT: node.checkpoint,
                        },
                    )
                )
        return added

    search._promote = racing_promote  # type: ignore[method-assign]
    search.run(study)
    dups = [t for t in study.trials if "lawsearch:duplicate_of" in t.user_attrs]
    assert len(dups) == 1 and dups[0].state == TrialState.FAIL
    assert not dups[0].intermediate_values or max(dups[0].intermediate_values) == 6
    _check_invariants(study, search)
    assert trainer.compute_used == 3 * 6 + (54 - 6)


def test_bad_options() -> None:
    t = ReplayTrainer(_curves(2))
    with pytest.raises(ValueError, match="`budgets` must be positive and strictly increasing"):
        RetrievalRerank(budgets=(10, 5), n_candidates=2, trainer=t, config=dict)
    with pytest.raises(ValueError, match="exactly one of `objective` or `trainer`"):
        RetrievalRerank(budgets=(1, 5), n_candidates=2)
    with pytest.raises(ValueError, match="`config`"):
        RetrievalRerank(budgets=(1, 5), n_candidates=2, trainer=t)
    with pytest.raises(ValueError, match="`eta` must be > 1"):
        RetrievalRerank(budgets=(1, 5), n_candidates=2, trainer=t, config=dict, eta=1.0)


# --- two processes on one storage -----------------------------------------------------


def _worker(url: str, name: str, promotion: str) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = _storage(url)
    study = optuna.load_study(
        study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler()
    )
    _search(promotion=promotion).work(study)


def _storage(url: str):
    if url.startswith("journal:"):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        return JournalStorage(JournalFileBackend(url[len("journal:") :]))
    return optuna.storages.RDBStorage(url)


def _two_processes(url: str, name: str, storage=None, promotion: str = "async") -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = _study(storage if storage is not None else _storage(url), name)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(url, name, promotion)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=600)
    assert [p.exitcode for p in procs] == [0, 0]
    search = _search()
    _check_invariants(study, search)
    res = search.result(study)
    assert res.best_params == {"config_id": 0}
    assert res.compute_steps == 9 * 6 + 3 * 12 + 36
    by_proc = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(by_proc) == 13


@pytest.mark.slow
@pytest.mark.parametrize("promotion", ["async", "sync"])
def test_two_processes_on_a_journal_file(tmp_path: Path, promotion: str) -> None:
    _two_processes(f"journal:{tmp_path / 'journal.log'}", "journal", promotion=promotion)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("promotion", ["async", "sync"])
def test_two_processes_on_postgresql(postgres_url: str, promotion: str) -> None:
    name = f"rerank-{np.random.default_rng().integers(1 << 30)}"
    storage = optuna.storages.RDBStorage(postgres_url)
    try:
        _two_processes(postgres_url, name, storage, promotion=promotion)
    finally:
        optuna.delete_study(study_name=name, storage=storage)
        # close the pool here, not at garbage collection in some later test
        storage.remove_session()
        storage.engine.dispose()


def test_values_are_plain_and_finite_or_none() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = _study()
    _search().run(study)

    def plain(v: object) -> bool:  # JSON without NaN: what every storage and the dashboard read
        if isinstance(v, dict):
            return all(isinstance(k, str) and plain(x) for k, x in v.items())
        if isinstance(v, list):
            return all(plain(x) for x in v)
        return v is None or type(v) in (int, str, bool) or (type(v) is float and math.isfinite(v))

    for t in study.trials:
        for k, v in t.user_attrs.items():
            if k.startswith("lawsearch:"):
                assert plain(v), (k, v)
        # the decision record is machine-facing: a system attr, JSON like the rest
        assert t.state != TrialState.COMPLETE or isinstance(t.system_attrs[attrs.DECISION], dict)
        assert all(plain(v) for k, v in t.system_attrs.items() if k.startswith("lawsearch:"))
    system = study._storage.get_study_system_attrs(study._study_id)
    cuts = [v for k, v in system.items() if k.startswith(attrs.CUT_PREFIX)]
    assert cuts and all(plain(v) for v in cuts)


def test_with_law_sampler_and_suggest_mixture() -> None:
    """Candidates retrieved by LawSampler over a mixture; a user objective reports the curve."""
    from lawsearch.optuna import LawSampler, suggest_mixture

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    domains = ("code", "web", "books")
    ideal = np.array([0.2, 0.5, 0.3])

    def objective(trial: optuna.Trial, budget_steps: int, resume_from: str | None) -> str:
        w = np.array(list(suggest_mixture(trial, "mix", domains).values()))
        start = int(resume_from) if resume_from else 0
        e = 2.0 + float(((w - ideal) ** 2).sum())
        for s in range(start + 1, budget_steps + 1):
            trial.report(e + 1.5 * s**-0.6, s)
        return str(budget_steps)

    study = optuna.create_study(sampler=LawSampler(seed=0, min_history=4, n_candidates=256))
    search = RetrievalRerank(budgets=BUDGETS, n_candidates=N, objective=objective, eta=3.0)
    res = search.run(study)
    _check_invariants(study, search)
    best = np.array([res.best_params[k] for k in sorted(res.best_params)])
    assert best.size == len(domains) - 1  # the stick-breaking coordinates
    assert res.best_budget == BUDGETS[-1]
    screen = {
        t.number: t.user_attrs[attrs.PREDICTED_FINAL]
        for t in study.trials
        if t.user_attrs.get(attrs.RUNG) == 0
    }
    assert res.predicted_final is None  # observed at the full budget, nothing predicted it
    # the pick was a short-budget leader
    assert screen[res.table[0]["root"]] <= sorted(screen.values())[2]


def test_study_pruner_stops_a_trainer_trial() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trainer = ReplayTrainer(_curves())
    study = optuna.create_study(
        sampler=optuna.samplers.RandomSampler(seed=0),
        pruner=optuna.pruners.ThresholdPruner(upper=3.3, n_warmup_steps=3),
    )
    for i in range(N):
        study.enqueue_trial({"config_id": i})
    search = RetrievalRerank(
        budgets=BUDGETS,
        n_candidates=N,
        trainer=trainer,
        config=lambda t: {"config_id": t.suggest_int("config_id", 0, N - 1)},
        prune=True,
    )
    res = search.run(study)
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    # at step 3 configs 4..8 are above 3.3 (config 0, 3.29, survives and wins)
    assert sorted(t.params["config_id"] for t in pruned) == [4, 5, 6, 7, 8]
    assert all(max(t.intermediate_values) == 3 for t in pruned)
    assert not [
        t for t in study.trials if t.user_attrs.get(attrs.PARENT) in {p.number for p in pruned}
    ]
    assert res.best_params == {"config_id": 0}


def test_an_uninformative_extrapolation_ranks_by_the_last_value() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # no interval is narrow enough: never trust the law
    search = _search(max_interval_ratio=1.0 + 1e-12)
    study = _study()
    search.run(study)
    short = [t for t in study.trials if t.user_attrs.get(attrs.RUNG) == 0]
    for t in short:
        assert t.user_attrs[attrs.FIT_STATUS].startswith("unreliable")
        assert t.user_attrs[attrs.PREDICTED_FINAL] == pytest.approx(t.user_attrs[attrs.OBSERVED])
        assert t.user_attrs[attrs.PREDICTED_LO] is None  # no interval, not a zero-width one
    with pytest.raises(ValueError, match="`max_interval_ratio` must be > 1"):
        RetrievalRerank(
            budgets=BUDGETS, n_candidates=2, objective=lambda *a: None, max_interval_ratio=1.0
        )


def test_an_extrapolation_far_beyond_the_curves_trend_ranks_by_the_last_value() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # a ratio no decreasing curve's prediction stays under: every short fit is distrusted
    search = _search(max_trend_ratio=1e-9)
    study = _study()
    search.run(study)
    short = [t for t in study.trials if t.user_attrs.get(attrs.RUNG) == 0]
    for t in short:
        assert "max_trend_ratio" in t.user_attrs[attrs.FIT_STATUS]
        assert t.user_attrs[attrs.PREDICTED_FINAL] == pytest.approx(t.user_attrs[attrs.OBSERVED])
        assert t.user_attrs[attrs.PREDICTED_LO] is None
    # the default keeps these power-law extrapolations (ratio < 1: see below)
    study = _study(name="default")
    _search().run(study)
    short = [t for t in study.trials if t.user_attrs.get(attrs.RUNG) == 0]
    assert all(not t.user_attrs[attrs.FIT_STATUS].startswith("unreliable") for t in short)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="`max_trend_ratio` must be > 0"):
            RetrievalRerank(
                budgets=BUDGETS, n_candidates=2, objective=lambda *a: None, max_trend_ratio=bad
            )


@settings(max_examples=60, deadline=None)
@given(
    e=st.floats(0.5, 5.0),
    a=st.floats(0.1, 10.0),
    alpha=st.floats(0.05, 2.0),
    t=st.integers(4, 500).map(lambda x: 2 * x),
    horizon=st.floats(1.1, 100.0),
)
def test_trend_ratio_of_a_power_law_continuation_is_below_one(
    e: float, a: float, alpha: float, t: int, horizon: float
) -> None:
    """A power law drops less per log-time unit as it goes: its true final has ratio in (0, 1)."""
    from lawsearch._fit import trend_ratio

    steps = np.arange(1.0, t + 1.0)
    target = t * horizon
    ratio = trend_ratio(steps, e + a * steps**-alpha, target, e + a * target**-alpha)
    assert ratio is not None and 0.0 < ratio < 1.0


def test_trend_ratio_is_undefined_without_a_trend_or_a_horizon() -> None:
    from lawsearch._fit import trend_ratio

    steps = np.arange(1.0, 11.0)
    assert trend_ratio(steps, np.full(10, 2.0), 100.0, 1.0) is None  # flat: no trend
    assert trend_ratio(steps, 3.0 - 0.1 * steps, 10.0, 1.0) is None  # target not beyond
    assert trend_ratio(steps[:1], np.ones(1), 100.0, 1.0) is None  # one point
    # a prediction 6x the trend: the demo's misidentified-annealing case
    losses = 5.0 - np.log2(steps)
    trend = (losses[4] - losses[-1]) * np.log2(40.0 / 10.0)
    assert trend_ratio(steps, losses, 40.0, losses[-1] - 6.0 * trend) == pytest.approx(6.0)


def _momentum_curve(schedule_spec: dict, steps: np.ndarray) -> np.ndarray:
    """Loss of the annealing law L0 + A (S1 + 1)^-alpha - C S2 under a schedule.

    The annealing bonus stays below the reducible loss, so the curve stays above
    L0 as real curves do (a fit predicting below its L0 falls back: ``_fit._raw``).
    """
    from lawsearch.schedules import Schedule, annealing_momentum, intrinsic_time

    lrs = Schedule.from_dict(schedule_spec).lr(np.arange(int(steps[-1]) + 1))
    s1, s2 = intrinsic_time(lrs), annealing_momentum(lrs)
    idx = steps.astype(int)
    return 2.0 + 3.0 * (s1[idx] + 1.0) ** -0.5 - 0.005 * s2[idx]


def test_schedule_aware_law_extrapolates_with_the_trials_schedule() -> None:
    """A momentum-law search reads each trial's schedule and predicts its annealed final."""
    from lawsearch.optuna import suggest_schedule

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    budgets = (120, 400)

    def objective(trial: optuna.Trial, budget: int, resume_from: str | None) -> str:
        sched = suggest_schedule(
            trial, total_steps=budgets[-1], families=("cosine",), peak_lr=(0.05, 0.2), warmup=0.0
        )
        start = int(trial.user_attrs.get(attrs.RESUME_STEP, 0)) if resume_from else 0
        steps = np.arange(start + 10, budget + 1, 10, dtype=float)
        for s, v in zip(steps, _momentum_curve(sched.to_dict(), steps), strict=True):
            trial.report(float(v), int(s))
        return f"ckpt-{trial.number}"

    search = RetrievalRerank(
        budgets=budgets,
        n_candidates=6,
        objective=objective,
        law="momentum",
        eta=3.0,
        max_interval_ratio=100.0,  # the point prediction is what is checked here
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    res = search.run(study)
    short = [t for t in study.trials if t.user_attrs.get(attrs.RUNG) == 0]
    assert len(short) == 6
    for t in short:
        spec = t.user_attrs[attrs.SCHEDULE]
        truth = float(_momentum_curve(spec, np.array([float(budgets[-1])]))[0])
        assert t.user_attrs[attrs.FIT_STATUS] in ("ok", "degenerate"), t.user_attrs
        assert t.user_attrs[attrs.PREDICTED_FINAL] == pytest.approx(truth, rel=0.01)
    assert res.best_value == pytest.approx(
        min(t.user_attrs[attrs.PREDICTED_FINAL] for t in short), rel=0.01
    )


def test_schedule_aware_law_without_a_schedule_ranks_by_the_last_value() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    search = _search(law="momentum")
    study = _study()
    search.run(study)
    for t in (t for t in study.trials if t.user_attrs.get(attrs.RUNG) == 0):
        assert "needs the LR schedule" in t.user_attrs[attrs.FIT_STATUS]
        assert t.user_attrs[attrs.PREDICTED_FINAL] == pytest.approx(t.user_attrs[attrs.OBSERVED])


def test_sync_promotion_cuts_each_rung_once_it_has_finished() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    search = _search(promotion="sync")
    study = _study()
    res = search.run(study)
    _check_invariants(study, search)
    continuations = [t for t in study.trials if attrs.PARENT in t.user_attrs]
    # 9 -> 3 -> 1, each cut made only after every trial of the rung finished
    assert Counter(t.user_attrs[attrs.RUNG] for t in continuations) == {1: 3, 2: 1}
    assert min(t.number for t in continuations) == N
    assert res.compute_steps == N * 6 + 3 * 12 + 1 * 36
    with pytest.raises(ValueError, match="`promotion` must be one of"):
        RetrievalRerank(budgets=BUDGETS, n_candidates=2, objective=lambda *a: None, promotion="snc")


def test_sync_promotion_with_two_workers_loses_and_duplicates_nothing() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    search = _search(promotion="sync")
    study = _study()
    res = search.run(study, n_workers=2)
    trained = _check_invariants(study, search)
    assert Counter(rung for _, rung in trained) == {1: 3, 2: 1}
    assert res.best_budget == BUDGETS[-1]


def test_sync_promotion_continues_one_even_when_floor_gives_none() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    search = _search(n=4, promotion="sync")
    study = _study(n=4)
    res = search.run(study)
    assert res.best_budget == BUDGETS[-1]  # 4 -> 1 -> 1 (floor(1 / 3) = 0 would stop)


def test_a_rung_with_some_trials_unextrapolated_ranks_all_by_observed_loss() -> None:
    """A full-budget prediction is never compared with another trial's short-budget loss."""
    from lawsearch.optuna import _records as records

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    steps = np.arange(1, BUDGETS[-1] + 1)
    curves = {}
    for i in range(N):
        if i < 5:  # falling curves: the law extrapolates them to ~2.3 at the full budget
            curves[i] = ReplayCurve.of(steps, 2.0 + 0.05 * i + 3.0 * steps**-0.6)
        else:  # flat at 2.6 after a non-positive first loss: no extrapolation at all
            curves[i] = ReplayCurve.of(steps, np.where(steps == 1, 0.0, 2.6 + 0.01 * i))
    search = _search(ReplayTrainer(curves), promotion="sync")
    study = _study()
    search.run(study)
    screened = {t.number: t for t in study.trials if t.user_attrs.get(attrs.RUNG) == 0}
    assert all(math.isfinite(screened[i].user_attrs[attrs.PREDICTED_LO]) for i in range(5))
    assert all(screened[i].user_attrs[attrs.PREDICTED_LO] is None for i in range(5, N))
    kept = sorted(
        t.user_attrs[attrs.PARENT] for t in study.trials if t.user_attrs.get(attrs.RUNG) == 1
    )
    assert kept == [5, 6, 7]  # lowest observed at 6 steps (2.65..2.67 < 3.0..3.2), not predictions
    cut = next(c for c in records.read_cuts(study) if c["rung"] == 0)
    assert {c["ranked_by"] for c in cut["candidates"]} == {records.LAST_VALUE}
    assert all("no usable extrapolation" in c["why"] for c in cut["candidates"])


def test_sync_promotion_cuts_a_rung_once_even_when_a_refit_would_rank_it_otherwise(
    tmp_path: Path,
) -> None:
    """Once the kept trials' continuations finish, their longer curves join the rung's
    pooled refit and can re-rank it; the rung was cut already, so nothing more continues.
    (Schedule-aware curves from tests/search/test_propose.py: before the fix all 4 of
    4 candidates reached the full budget with eta 2, and the cut's record was rewritten.)"""
    from lawsearch.optuna import _records as records
    from tests.search.test_propose import _search as schedule_search
    from tests.search.test_propose import _study as schedule_study

    study = schedule_study(tmp_path / "journal.log")
    schedule_search(None).run(study)
    continued = [t for t in study.trials if attrs.PARENT in t.user_attrs]
    assert len(continued) == 2  # sync_keep(4, eta=2)
    (cut,) = records.read_cuts(study)
    kept = {c["trial"] for c in cut["candidates"][: cut["keep"]]}
    assert {t.user_attrs[attrs.PARENT] for t in continued} == kept


def _lr_curve(peak: float | None, whole: bool = False) -> dict[str, Any]:
    return {"lrs": None if peak is None else np.full(10, peak), "whole": whole}


def test_joint_refit_groups_curves_by_peak_lr() -> None:
    from lawsearch.search._extrapolate import RungExtrapolator

    ext = RungExtrapolator(target=100, law="momentum", pool_lr_ratio=1.5)
    peaks = [1e-2, 1e-3, 1.4e-2, 1.2e-3, 2e-3]
    # sorted by peak: 1e-3, 1.2e-3 | 2e-3 | 1e-2, 1.4e-2 (a group spans at most 1.5x its
    # first); the lone 2e-3 joins the group nearer in log peak LR (1.2e-3: 1.7x, not 5x)
    assert ext._lr_groups([_lr_curve(p) for p in peaks]) == [[1, 3, 4], [0, 2]]
    peaks = [1e-2, 1e-3, 1.4e-2, 1.2e-3, 7e-3]
    assert ext._lr_groups([_lr_curve(p) for p in peaks]) == [[1, 3], [4, 0, 2]]
    # a whole curve (a lineage that reached the full budget) is not a curve to fit
    lone = [_lr_curve(1e-3), _lr_curve(1.1e-3, whole=True), _lr_curve(3e-3), _lr_curve(3e-3)]
    assert ext._lr_groups(lone) == [[0, 1, 2, 3]]
    assert ext._lr_groups([_lr_curve(1e-3), _lr_curve(3e-3)]) == [[0, 1]]
    unpooled = RungExtrapolator(target=100, law="momentum", pool_lr_ratio=None)
    assert unpooled._lr_groups([_lr_curve(p) for p in peaks]) == [[0, 1, 2, 3, 4]]
    # a law without a schedule (no lrs) pools every curve
    assert ext._lr_groups([_lr_curve(None), _lr_curve(None)]) == [[0, 1]]
    with pytest.raises(ValueError, match="pool_lr_ratio"):
        RungExtrapolator(target=100, law="momentum", pool_lr_ratio=0.9)


def test_rank_by_loss_cuts_by_the_observed_loss_and_says_so() -> None:
    """``rank="loss"``: successive halving by the last value; config 0, which the law
    picks (best final), trails config 1 at 18 steps and is cut there."""
    from lawsearch.optuna import _records as records

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    picks = {}
    for rank in ("law", "loss"):
        search = _search(promotion="sync", rank=rank)
        study = _study(name=rank)
        res = search.run(study)
        _check_invariants(study, search)
        picks[rank] = _config_of(study, res.best_trial)
        if rank == "loss":
            kept = {
                rung: sorted(
                    t.user_attrs[attrs.ROOT]
                    for t in study.trials
                    if t.user_attrs.get(attrs.RUNG) == rung
                )
                for rung in (1, 2)
            }
            # lowest observed at 6 steps: configs 1, 2, 0; at 18 steps: config 1
            assert kept == {1: [0, 1, 2], 2: [1]}
            for cut in records.read_cuts(study):
                assert {c["ranked_by"] for c in cut["candidates"]} == {records.LAST_VALUE}
                assert all("rank = 'loss'" in c["why"] for c in cut["candidates"])
            # every screened trial is still extrapolated (the sampler learns from it)
            screened = [t for t in study.trials if t.user_attrs.get(attrs.RUNG) == 0]
            assert all(math.isfinite(t.user_attrs[attrs.PREDICTED_LO]) for t in screened)
    assert picks == {"law": 0, "loss": 1}
    with pytest.raises(ValueError, match="`rank` must be one of"):
        RetrievalRerank(budgets=BUDGETS, n_candidates=2, objective=lambda *a: None, rank="lose")


def _config_of(study: optuna.Study, number: int) -> int:
    """The candidate (config) a trial continues."""
    trial = next(t for t in study.trials if t.number == number)
    return int(trial.params["config_id"])
