"""LawSampler: fallback, retrieval within bounds, learning from pruned trials, pickling."""

from __future__ import annotations

import pickle
from functools import partial

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from lawsearch.mixtures import MixtureBounds, MixtureSurrogate
from lawsearch.optuna import (
    LawPruner,
    LawSampler,
    attrs,
    mixture_from_params,
    suggest_mixture,
)
from tests.optuna._synthetic import TARGET, curve, objective

optuna.logging.set_verbosity(optuna.logging.WARNING)

# the fast surrogate a sampler refitting on every proposal would use
FAST_SURROGATE = partial(MixtureSurrogate, hyperopt="grid")
DOMAINS = ["a", "b", "c", "d"]
BEST = np.array([0.5, 0.25, 0.15, 0.1])
HIGH = 0.6


def mixture_loss(trial: optuna.Trial) -> float:
    w = suggest_mixture(trial, "mix", DOMAINS, high=HIGH)
    lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    v = np.array([w[d] for d in DOMAINS])
    return float(np.sum((v - BEST) ** 2) + 1e-3 * (np.log10(lr) + 2) ** 2)


def _weights(study: optuna.Study, bounds: MixtureBounds) -> np.ndarray:
    rows = [mixture_from_params(t.params, "mix", bounds) for t in study.trials]
    return np.array([[r[d] for d in DOMAINS] for r in rows if r is not None])


def _params(study: optuna.Study) -> list[dict[str, float]]:
    return [t.params for t in study.trials]


def test_start_up_is_a_sobol_sequence_continued_across_processes() -> None:
    """Before retrieval, mixtures come from a scrambled Sobol sequence indexed by the number
    of candidates so far: a resumed study (a new sampler, same seed) continues it instead of
    repeating its first points; the other parameters still come from the inner sampler."""
    bounds = MixtureBounds.build(DOMAINS, high=HIGH)
    storage = optuna.storages.InMemoryStorage()
    first = optuna.create_study(storage=storage, study_name="s", sampler=LawSampler(seed=3))
    first.optimize(mixture_loss, n_trials=3)
    again = optuna.load_study(storage=storage, study_name="s", sampler=LawSampler(seed=3))
    again.optimize(mixture_loss, n_trials=3)  # before 4 estimates: all start-up points
    w = _weights(again, bounds)
    assert len({tuple(np.round(row, 9)) for row in w}) == 6  # no point repeated
    # the sticks come from the Sobol sequence, so the inner TPE's first draw is the LR
    tpe = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=3))
    tpe.optimize(lambda t: t.suggest_float("lr", 1e-4, 1e-1, log=True), n_trials=1)
    plain = optuna.create_study(sampler=LawSampler(optuna.samplers.TPESampler(seed=3), seed=3))
    plain.optimize(mixture_loss, n_trials=1)
    assert plain.trials[0].params["lr"] == tpe.trials[0].params["lr"]


def test_is_deterministic_under_a_seed_and_pickles() -> None:
    sampler = LawSampler(seed=7, n_candidates=256, surrogate=FAST_SURROGATE)
    clone = pickle.loads(pickle.dumps(sampler))
    a = optuna.create_study(sampler=sampler)
    a.optimize(mixture_loss, n_trials=14)
    b = optuna.create_study(sampler=clone)
    b.optimize(mixture_loss, n_trials=14)
    assert _params(a) == _params(b)


def test_proposals_stay_in_bounds_keep_distance_and_beat_random() -> None:
    bounds = MixtureBounds.build(DOMAINS, high=HIGH)
    sampler = LawSampler(seed=0, n_candidates=512, min_distance=0.02, surrogate=FAST_SURROGATE)
    study = optuna.create_study(sampler=sampler)
    study.optimize(mixture_loss, n_trials=30)
    w = np.array(
        [list(mixture_from_params(t.params, "mix", bounds).values()) for t in study.trials]
    )
    assert bounds.contains(w).all()
    late = w[8:]
    d = np.sqrt(((late[:, None] - w[None, :]) ** 2).sum(axis=2))
    for i in range(late.shape[0]):  # each retrieved pick is away from all earlier trials
        assert d[i, : 8 + i].min() >= 0.02 - 1e-9
    random_best = []
    for seed in range(3):
        r = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
        r.optimize(mixture_loss, n_trials=30)
        random_best.append(r.best_value)
    assert study.best_value < min(random_best)


def test_learns_from_pruned_trials_predictions() -> None:
    """Pruned trials feed the surrogate through lawsearch:predicted_final."""

    def values(trial: optuna.Trial) -> np.ndarray:
        w = suggest_mixture(trial, "mix", DOMAINS, high=HIGH)
        level = 1.0 + 10.0 * float(np.sum((np.array([w[d] for d in DOMAINS]) - BEST) ** 2))
        return curve(level, seed=trial.number)

    pruner = LawPruner(target_step=TARGET, warmup_steps=16, min_points=None, min_trials=2)
    sampler = LawSampler(
        optuna.samplers.RandomSampler(seed=1), min_history=6, seed=1, surrogate=FAST_SURROGATE
    )
    study = optuna.create_study(sampler=sampler, pruner=pruner)
    study.optimize(objective(values), n_trials=14)
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned and all(attrs.PREDICTED_FINAL in t.user_attrs for t in pruned)
    _, y, sd = sampler.history(study, sampler.space(study))
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert y.size == len(finished)  # pruned trials are in the surrogate's data
    assert np.all(sd > 0)


def test_thread_safe_with_n_jobs_2() -> None:
    sampler = LawSampler(seed=0, n_candidates=256, min_history=4, surrogate=FAST_SURROGATE)
    study = optuna.create_study(sampler=sampler)
    study.optimize(mixture_loss, n_trials=16, n_jobs=2)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    mixtures = {tuple(round(v, 9) for v in t.params.values()) for t in study.trials}
    assert len(mixtures) == len(study.trials)  # no two workers got the same point


def test_default_surrogate_is_the_mixture_surrogate() -> None:
    sampler = LawSampler(seed=0, n_candidates=128, min_history=4)
    assert isinstance(sampler._surrogate(), MixtureSurrogate)
    study = optuna.create_study(sampler=sampler)
    study.optimize(mixture_loss, n_trials=6)
    bounds = MixtureBounds.build(DOMAINS, high=HIGH)
    w = np.array(
        [list(mixture_from_params(t.params, "mix", bounds).values()) for t in study.trials]
    )
    assert bounds.contains(w).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_candidates": 0}, r"`n_candidates` must be >= 1; got 0"),
        ({"min_history": 1}, r"`min_history` must be >= 2"),
        ({"kappa": -1.0}, r"`kappa` must be >= 0"),
        ({"local_fraction": 2.0}, r"`local_fraction` must be in \[0, 1\]"),
        ({"explore_fraction": -0.1}, r"`explore_fraction` must be in \[0, 1\]"),
    ],
)
def test_bad_options_raise(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        LawSampler(**kwargs)  # type: ignore[arg-type]


def test_learns_only_from_full_budget_estimates() -> None:
    """A short-budget loss never enters the surrogate: a trial the search ranked by its last
    value is left out, a law-ranked one enters with its interval, a pruned one with its
    prediction (the case where a short-budget 2.36 once outranked a better full 2.66)."""
    sampler = LawSampler(seed=0)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    dist = {"mix:stick0": optuna.distributions.FloatDistribution(0, 1)}
    suggest = optuna.trial.create_trial

    def add(state: TrialState, value: float | None, user_attrs: dict[str, object]) -> None:
        study.add_trial(
            suggest(
                state=state,
                value=value,
                params={"mix:stick0": 0.3},
                distributions=dist,
                user_attrs=user_attrs,
            )
        )

    study.enqueue_trial({"mix:stick0": 0.3})
    trial = study.ask()
    suggest_mixture(trial, "mix", ["a", "b"])
    study.tell(trial, 3.0)  # a plain objective: its value is a full-budget value
    add(TrialState.COMPLETE, 2.36, {attrs.RANKED_BY: "last value", attrs.ROOT: 10})
    add(
        TrialState.COMPLETE,
        2.66,
        {
            attrs.RANKED_BY: "law",
            attrs.ROOT: 11,
            attrs.PREDICTED_LO: 2.5,
            attrs.PREDICTED_HI: 2.9,
            attrs.INTERVAL_LEVEL: 0.8,
        },
    )
    add(
        TrialState.PRUNED,
        None,
        {attrs.PREDICTED_FINAL: 2.7, attrs.PREDICTED_LO: 2.6, attrs.PREDICTED_HI: 2.8},
    )
    _, y, sd = sampler.history(study, sampler.space(study))
    assert sorted(y.tolist()) == [2.66, 2.7, 3.0]  # 2.36 (a short-budget loss) left out
    z = 1.2815515655446004  # the 80% interval's own quantile
    law = sd[list(y).index(2.66)]
    assert law == pytest.approx(0.4 / (2 * z))


def test_joint_proposals_respect_mixture_and_schedule_bounds() -> None:
    """Retrieval proposes the schedule too: every trial's family, peak LR, warmup and decay
    fraction stay in the ranges suggest_schedule was given, and the mixture in its bounds."""
    from lawsearch.optuna import suggest_schedule

    bounds = MixtureBounds.build(DOMAINS, high=HIGH)

    def loss(trial: optuna.Trial) -> float:
        w = suggest_mixture(trial, "mix", DOMAINS, high=HIGH)
        s = suggest_schedule(
            trial,
            total_steps=100,
            families=("cosine", "wsd"),
            peak_lr=(1e-3, 1e-1),
            warmup=(0.0, 0.1),
            decay_fraction=(0.1, 0.3),
        )
        v = np.array([w[d] for d in DOMAINS])
        bonus = 0.05 if s.family == "wsd" else 0.0
        return float(np.sum((v - BEST) ** 2) + (np.log10(s.peak_lr) + 2) ** 2 - bonus)

    sampler = LawSampler(seed=0, n_candidates=256, surrogate=FAST_SURROGATE)
    study = optuna.create_study(sampler=sampler)
    study.optimize(loss, n_trials=20)
    w = _weights(study, bounds)
    assert bounds.contains(w).all()
    for t in study.trials:
        assert t.params["schedule:family"] in ("cosine", "wsd")
        assert 1e-3 <= t.params["schedule:peak_lr"] <= 1e-1
        assert 0.0 <= t.params["schedule:warmup_fraction"] <= 0.1
        if t.params["schedule:family"] == "wsd":
            assert 0.1 <= t.params["schedule:decay_fraction"] <= 0.3
    late = [t.params["schedule:peak_lr"] for t in study.trials[10:]]
    early = [t.params["schedule:peak_lr"] for t in study.trials[:4]]
    # retrieval learns the peak LR (best at 1e-2): later proposals sit closer to it
    assert np.median(np.abs(np.log10(late) + 2)) < np.median(np.abs(np.log10(early) + 2))


def test_surrogate_sees_at_most_max_history_lineages_best_first() -> None:
    sizes: list[int] = []

    class Counting(MixtureSurrogate):
        def fit(self, weights, losses, **kwargs):  # type: ignore[no-untyped-def]
            sizes.append(len(losses))
            return super().fit(weights, losses, **kwargs)

    sampler = LawSampler(
        seed=0,
        n_candidates=128,
        min_history=4,
        max_history=8,
        surrogate=partial(Counting, hyperopt="grid"),
    )
    study = optuna.create_study(sampler=sampler)
    study.optimize(mixture_loss, n_trials=14)
    assert sizes and max(sizes) == 8  # 9+ lineages, 8 fitted
    y = np.array([5.0, 1.0, 4.0, 0.5, 3.0, 2.0, 9.0, 8.0, 7.0, 6.0])
    rows = sampler.training_rows(y)
    assert rows.size == 8 and {1, 3, 5, 4} <= set(rows.tolist())  # the 4 best, then a spread
    assert sampler.training_rows(y[:8]).tolist() == list(range(8))


def test_diversity_distance_matches_the_full_matrix() -> None:
    from lawsearch.optuna._sampler import _nearest

    rng = np.random.default_rng(0)
    a, b = rng.random((50, 3)), rng.random((2500, 3))
    full = np.sqrt(((a[:, None] - b[None]) ** 2).sum(axis=2)).min(axis=1)
    np.testing.assert_allclose(_nearest(a, b), full)
    np.testing.assert_allclose(_nearest(b[:7], b), 0.0, atol=1e-12)  # a point tried: distance 0


def test_history_reuses_finished_trials_rows_and_sees_new_ones() -> None:
    """Rows of finished trials are read once per process; a trial that finishes later,
    a new sampler (another process) and another study all give the same history as
    reading every trial afresh."""
    sampler = LawSampler(seed=0)
    study, add = _stick_study()
    add(0.2, TrialState.COMPLETE, 2.5)
    add(0.9, TrialState.FAIL, None, **{attrs.DIVERGED: 1.0})
    first = sampler.history(study, sampler.space(study))
    cache = next(iter(sampler._rows.values()))
    assert len(cache) == 3  # every finished trial's row, kept
    add(0.7, TrialState.COMPLETE, 2.8, **{attrs.ROOT: 40, attrs.RUNG: 0})
    add(0.7, TrialState.PRUNED, None, **{attrs.ROOT: 40, attrs.RUNG: 1, attrs.PREDICTED_FINAL: 2.6})
    study._thread_local.cached_all_trials = None  # as each ask() does
    again = sampler.history(study, sampler.space(study))
    fresh = LawSampler(seed=0).history(study, sampler.space(study))
    assert first[1].size == 3 and again[1].size == 4
    for got, want in zip(again, fresh, strict=True):
        np.testing.assert_array_equal(got, want)
    assert 2.6 in again[1].tolist() and 2.8 not in again[1].tolist()  # the deeper rung counts
    other, add_other = _stick_study()
    add_other(0.4, TrialState.COMPLETE, 1.5)
    assert sorted(sampler.history(other, sampler.space(other))[1].tolist()) == [1.5, 3.0]
    assert len(sampler._rows) == 1  # rows of one study at a time
    assert pickle.loads(pickle.dumps(sampler)).history(study, sampler.space(study))[1].size == 4


def test_max_history_below_min_history_is_refused() -> None:
    with pytest.raises(ValueError, match=r"`max_history` must be >= `min_history` \(4\); got 3"):
        LawSampler(max_history=3)


def _stick_study() -> tuple[optuna.Study, object]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    dist = {"mix:stick0": optuna.distributions.FloatDistribution(0, 1)}
    study.enqueue_trial({"mix:stick0": 0.5})
    trial = study.ask()
    suggest_mixture(trial, "mix", ["a", "b"])
    study.tell(trial, 3.0)

    def add(stick: float, state: TrialState, value: float | None, **user: object) -> None:
        study.add_trial(
            optuna.trial.create_trial(
                state=state,
                value=value,
                params={"mix:stick0": stick},
                distributions=dist,
                user_attrs=user,
            )
        )

    return study, add


def test_a_diverged_lineage_counts_as_worse_than_the_worst_estimate() -> None:
    """A diverged trial has no estimate, but its region is where the search should not go:
    it enters the history just above the worst estimate, and a lineage that diverged at a
    later rung loses the estimate its earlier rung had."""
    sampler = LawSampler(seed=0)
    study, add = _stick_study()
    add(0.2, TrialState.COMPLETE, 2.5)
    add(0.9, TrialState.FAIL, None, **{attrs.DIVERGED: 1.0})
    add(0.7, TrialState.COMPLETE, 2.8, **{attrs.ROOT: 40, attrs.RUNG: 0})
    add(0.7, TrialState.FAIL, None, **{attrs.ROOT: 40, attrs.RUNG: 1, attrs.DIVERGED: 1.0})
    _, y, sd = sampler.history(study, sampler.space(study))
    assert sorted(y[:2].tolist()) == [2.5, 3.0]  # 2.8's lineage diverged later: void
    assert y.size == 4 and np.all(y[2:] > 3.0)
    assert np.all(np.isfinite(sd)) and np.all(sd > 0)


def test_a_law_proposed_schedule_is_not_credited_to_its_sources_parameters() -> None:
    """A law-proposed candidate stores its source's parameters but trains another schedule:
    neither its estimate nor its divergence, nor those of its continuations, enter the
    history under the source's point."""
    sampler = LawSampler(seed=0)
    study, add = _stick_study()
    spec = {"family": "piecewise"}
    add(0.2, TrialState.COMPLETE, 2.5)
    add(0.2, TrialState.COMPLETE, 2.1, **{attrs.PROPOSED_SCHEDULE: spec, attrs.ROOT: 30})
    add(
        0.2,
        TrialState.COMPLETE,
        2.0,
        **{attrs.PROPOSED_SCHEDULE: spec, attrs.ROOT: 30, attrs.RUNG: 1},
    )
    add(0.6, TrialState.FAIL, None, **{attrs.PROPOSED_SCHEDULE: spec, attrs.DIVERGED: 1.0})
    x, y, _ = sampler.history(study, sampler.space(study))
    assert sorted(y.tolist()) == [2.5, 3.0] and x.shape[0] == 2


def test_explore_fraction_interleaves_sobol_points_with_retrieval() -> None:
    """At explore_fraction=0.5 every other candidate after start-up is the Sobol sequence's
    next point (the one a start-up proposal with that index would take)."""
    sampler = LawSampler(seed=1, n_candidates=128, explore_fraction=0.5, surrogate=FAST_SURROGATE)
    assert [sampler._explores(i) for i in range(6)] == [False, True] * 3
    assert not any(LawSampler(seed=1)._explores(i) for i in range(50))
    assert all(LawSampler(seed=1, explore_fraction=1.0)._explores(i) for i in range(50))
    study = optuna.create_study(sampler=sampler)
    study.optimize(mixture_loss, n_trials=10)
    joint = sampler.space(study)
    sobol = optuna.create_study(sampler=LawSampler(seed=1, min_history=512))
    sobol.optimize(mixture_loss, n_trials=10)
    ours = [joint.from_params(t.params) for t in study.trials]
    start = [joint.from_params(t.params) for t in sobol.trials]
    same = [bool(np.allclose(a, b)) for a, b in zip(ours, start, strict=True)]
    assert same[:4] == [True] * 4  # start-up: min_history=4
    assert same[4:] == [False, True] * 3  # retrieval, then a Sobol point, in turn


def test_proposals_at_the_edge_of_a_range_are_inside_its_distribution() -> None:
    """A unit point on the edge of the cube maps to values Optuna accepts: exp(log(3e-3))
    rounds to 0.0029999999999999996 < 3e-3, and Optuna replaced such a proposal with the
    inner sampler's own draw."""
    from lawsearch.optuna._space import JointSpace, ScheduleSpec

    spec = ScheduleSpec(
        families=("cosine", "wsd", "linear"),
        ranges={
            "peak_lr": (3e-3, 3e-2),
            "warmup_fraction": (0.0, 0.1),
            "decay_fraction": (0.1, 0.5),
        },
    )
    joint = JointSpace({"mix": MixtureBounds.build(DOMAINS, high=HIGH)}, {"schedule": spec})
    dists = joint.distributions()
    for edge in (0.0, 1.0):
        params = joint.to_params(np.full(joint.dim, edge))
        for name, value in params.items():
            dist = dists[name]
            assert dist._contains(dist.to_internal_repr(value)), (name, value)
        assert params["schedule:peak_lr"] == pytest.approx(3e-3 if edge == 0.0 else 3e-2)
