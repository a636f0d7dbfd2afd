"""LawPruner decisions on synthetic studies with known winners, and its attrs."""

from __future__ import annotations

import math
import pickle

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from lawsearch.laws import LAWS, PowerLaw, get_law, shared_params
from lawsearch.optuna import LawPruner, attrs, set_schedule
from lawsearch.schedules import Schedule
from tests.optuna._synthetic import STEPS, TARGET, curve, level_objective, objective

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _pruner(**kw: object) -> LawPruner:
    """A pruner that decides on the law from its first rung (the mechanics under test)."""
    opts: dict[str, object] = {
        "target_step": TARGET,
        "warmup_steps": 16,
        "min_points": None,
        "min_trials": 2,
        "keep_fraction": 0.5,
        "quantile": 0.1,
        "trend_cap": None,
        "min_improvement": 0.0,
    }
    opts.update(kw)
    return LawPruner(**opts)  # type: ignore[arg-type]


def _study(pruner: LawPruner, levels: list[float], **kw: object) -> optuna.Study:
    study = optuna.create_study(pruner=pruner, **kw)  # type: ignore[arg-type]
    for lv in levels:
        study.enqueue_trial({"level": lv})
    study.optimize(level_objective, n_trials=len(levels))
    return study


def test_clear_loser_is_pruned_and_leaders_are_not() -> None:
    study = _study(_pruner(), [1.0, 1.05, 1.02, 3.0, 0.98])
    states = [t.state for t in study.trials]
    assert states[:3] == [TrialState.COMPLETE] * 3
    assert states[3] == TrialState.PRUNED  # the clear loser
    assert states[4] == TrialState.COMPLETE  # the new best is never cut
    loser = study.trials[3]
    # pruned early, and its extrapolation says why
    assert max(loser.intermediate_values) < TARGET / 2
    assert loser.user_attrs[attrs.PREDICTED_LO] > 1.05
    assert loser.user_attrs[attrs.FIT_STATUS] in ("ok", "degenerate")


def test_prediction_extrapolates_to_the_target() -> None:
    study = _study(_pruner(), [1.0, 1.05, 1.1, 3.0])
    truth = 3.0 + 4.0 * (TARGET + 5.0) ** -0.5
    ua = study.trials[3].user_attrs
    assert ua[attrs.PREDICTED_LO] <= ua[attrs.PREDICTED_FINAL] <= ua[attrs.PREDICTED_HI]
    assert ua[attrs.PREDICTED_FINAL] == pytest.approx(truth, rel=0.05)


def test_diverging_curve_is_pruned_and_marked() -> None:
    def values(trial: optuna.Trial) -> np.ndarray:
        ys = curve(1.0, seed=trial.number)
        if trial.number == 1:
            ys[4:] = np.nan
        return ys

    study = optuna.create_study(pruner=_pruner(min_trials=1))
    study.optimize(objective(values), n_trials=2)
    diverged = study.trials[1]
    assert diverged.state == TrialState.PRUNED
    assert diverged.user_attrs[attrs.DIVERGED] == 1.0
    assert diverged.user_attrs[attrs.FIT_STATUS] == "diverged"
    assert max(diverged.intermediate_values) == 40  # pruned at the first NaN


def test_failed_fit_never_prunes() -> None:
    # a schedule-aware law cannot fit a trial that stored no schedule: it must run on
    law = PowerLaw(time="intrinsic")
    schedule = Schedule(family="cosine", peak_lr=1e-3, total_steps=TARGET, warmup_steps=8)

    def values(trial: optuna.Trial) -> np.ndarray:
        level = trial.suggest_float("level", 0.5, 5.0)
        if trial.number != 3:
            set_schedule(trial, schedule)
        return curve(level, seed=trial.number)

    study = optuna.create_study(pruner=_pruner(law=law))
    for lv in (1.0, 1.05, 1.1, 3.0, 3.0):
        study.enqueue_trial({"level": lv})
    study.optimize(objective(values), n_trials=5)
    no_schedule, with_schedule = study.trials[3], study.trials[4]
    assert no_schedule.state == TrialState.COMPLETE
    assert no_schedule.user_attrs[attrs.FIT_STATUS] == "failed"
    assert attrs.PREDICTED_FINAL not in no_schedule.user_attrs
    assert with_schedule.state == TrialState.PRUNED


def test_no_pruning_before_min_trials() -> None:
    study = _study(_pruner(min_trials=3), [1.0, 3.0, 4.0])
    assert all(t.state == TrialState.COMPLETE for t in study.trials)


def test_maximize_prunes_the_low_scorer() -> None:
    # accuracy-like curves: 10 - loss, so the best has the highest value
    def values(trial: optuna.Trial) -> np.ndarray:
        level = trial.suggest_float("level", 0.5, 5.0)
        return 10.0 - curve(level, seed=trial.number)

    study = optuna.create_study(direction="maximize", pruner=_pruner())
    for lv in (1.0, 1.05, 1.1, 5.0):
        study.enqueue_trial({"level": lv})
    study.optimize(objective(values), n_trials=4)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3 + [TrialState.PRUNED]


def test_decides_only_at_rung_steps() -> None:
    pruner = _pruner(warmup_steps=16, rung_factor=2.0)
    assert [pruner.rung_of(s) for s in (8, 16, 24, 32, 63, 64, 128)] == [0, 1, 1, 2, 2, 3, 4]
    study = _study(pruner, [1.0, 1.05, 1.1, 3.0])
    loser = study.trials[3]
    assert max(loser.intermediate_values) in (16, 32, 64, 128)
    assert loser.user_attrs[attrs.PREDICTED_AT_STEP] == max(loser.intermediate_values)


def test_pruner_pickles_and_decides_the_same() -> None:
    pruner = pickle.loads(pickle.dumps(_pruner()))
    study = _study(pruner, [1.0, 1.05, 1.1, 3.0])
    assert study.trials[3].state == TrialState.PRUNED


def test_n_jobs_2_runs_clean() -> None:
    rng = np.random.default_rng(0)
    study = optuna.create_study(pruner=_pruner(full_fit_every=3))
    for lv in rng.uniform(1.0, 3.0, size=10):
        study.enqueue_trial({"level": float(lv)})
    study.optimize(level_objective, n_trials=10, n_jobs=2)
    states = [t.state for t in study.trials]
    assert TrialState.FAIL not in states
    assert states.count(TrialState.PRUNED) >= 1
    best = min(study.trials, key=lambda t: t.params["level"])
    assert best.state == TrialState.COMPLETE
    for t in study.trials:
        for key in (attrs.PREDICTED_FINAL, attrs.PREDICTED_LO, attrs.PREDICTED_HI):
            assert type(t.user_attrs[key]) is float and math.isfinite(t.user_attrs[key])


def test_pooled_fits_share_the_exponent() -> None:
    pruner = _pruner(min_pool=2, full_fit_every=1000, min_trials=100)
    study = _study(pruner, [1.0, 1.2, 1.4, 1.6])
    last = study.trials[-1]
    pred = pruner.predict(study, last)
    assert pred is not None and pred.pooled
    assert pred.fit is not None and "alpha" not in pred.fit.free
    assert pred.fit.params["alpha"] == pytest.approx(0.5, rel=0.3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"target_step": 0}, r"`target_step` must be a positive integer; got 0"),
        ({"target_step": 10, "quantile": 0.7}, r"`quantile` must be in \(0, 0\.5\]"),
        ({"target_step": 10, "caution": 1.5}, r"`caution` must be in \[0, 1\]"),
        ({"target_step": 10, "caution": -0.1}, r"`caution` must be in \[0, 1\]"),
        ({"target_step": 10, "rung_factor": 1.0}, r"`rung_factor` must be > 1"),
        ({"target_step": 10, "keep_fraction": 0.0}, r"`keep_fraction` must be in \(0, 1\]"),
        ({"target_step": 10, "shared": ("beta",)}, r"`shared` names \['beta'\]"),
        ({"target_step": 10, "law": "nope"}, r"unknown law .nope."),
        ({"target_step": 10, "min_improvement": 1.0}, r"`min_improvement` must be in \(-1, 1\)"),
        ({"target_step": 10, "law_weight": 1.5}, r"`law_weight` must be in \[0, 1\]"),
        ({"target_step": 10, "trend_cap": -1.0}, r"`trend_cap` must be >= 0"),
        ({"target_step": 10, "max_trend_ratio": 0.0}, r"`max_trend_ratio` must be > 0"),
    ],
)
def test_bad_options_raise(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        LawPruner(**kwargs)  # type: ignore[arg-type]


def test_pooled_exponents_decide_from_a_shorter_prefix() -> None:
    # rungs at 16, 32, 64: at step 32 a trial has 4 reports, enough for the 2 free
    # parameters of a pooled fit but not for a 4-parameter fit of its own
    levels = [1.0, 1.05, 1.02, 3.0]
    pooled = _study(_pruner(min_trials=3), levels).trials[3]
    alone = _study(_pruner(min_trials=3, shared=()), levels).trials[3]
    assert pooled.state == alone.state == TrialState.PRUNED
    assert max(pooled.intermediate_values) == 32
    assert max(alone.intermediate_values) == 64


def test_min_improvement_prunes_trials_that_can_at_best_tie() -> None:
    ties = [1.0, 1.0, 1.0, 1.0]  # a plateau: the last trial can only tie the leaders
    kept = _study(_pruner(min_trials=3), ties).trials[3]
    cut = _study(_pruner(min_trials=3, min_improvement=0.05), ties).trials[3]
    assert kept.state == TrialState.COMPLETE
    assert cut.state == TrialState.PRUNED


def test_negative_min_improvement_keeps_near_ties() -> None:
    # noiseless curves scored by their last value: the last trial is ~0.8 % worse
    def run(pruner: LawPruner) -> TrialState:
        def values(trial: optuna.Trial) -> np.ndarray:
            return curve(trial.suggest_float("level", 0.5, 5.0), noise=0.0)

        study = optuna.create_study(pruner=pruner)
        for lv in (1.0, 1.0, 1.0, 1.01):
            study.enqueue_trial({"level": lv})
        study.optimize(objective(values), n_trials=4)
        return study.trials[3].state

    opts = {"min_trials": 3, "quantile": None, "keep_fraction": 0.25, "law_weight": 0.0}
    opts["min_points"] = 1  # every trial scored at every rung (no fallback to finals)
    assert run(_pruner(**opts)) == TrialState.PRUNED
    assert run(_pruner(min_improvement=-0.02, **opts)) == TrialState.COMPLETE


def test_law_weight_zero_scores_the_last_value() -> None:
    study = _study(_pruner(law_weight=0.0), [1.0, 1.05, 1.1, 3.0])
    loser = study.trials[3]
    last = loser.intermediate_values[max(loser.intermediate_values)]
    assert loser.user_attrs[attrs.PREDICTED_FINAL] == pytest.approx(last)


def test_trend_cap_bounds_the_promised_drop() -> None:
    # the curve falls and then sits on a plateau: the law would still promise a drop
    def values(trial: optuna.Trial) -> np.ndarray:
        ys = curve(1.0, alpha=1.5, seed=trial.number)
        ys[STEPS >= 40] = ys[STEPS == 40][0]
        return ys

    study = optuna.create_study(pruner=_pruner(trend_cap=1.0, min_trials=10))
    study.optimize(objective(values), n_trials=3)
    for t in study.trials:
        at = int(t.user_attrs[attrs.PREDICTED_AT_STEP])
        vals = t.intermediate_values
        ref = vals[max(s for s in vals if s <= math.ceil(at / 2))]
        last = vals[at]
        assert t.user_attrs[attrs.PREDICTED_FINAL] >= last - max(ref - last, 0.0) - 1e-12
        assert t.user_attrs[attrs.PREDICTED_FINAL] <= last + 1e-12  # laws only flatten
        assert t.user_attrs[attrs.PREDICTED_FINAL] == pytest.approx(last)  # flat 2nd half


def test_max_trend_ratio_keeps_the_score_within_the_trend_continued_to_the_target() -> None:
    def values(trial: optuna.Trial) -> np.ndarray:
        return curve(trial.suggest_float("level", 0.5, 5.0), seed=trial.number)

    def run(**kw: object) -> list[optuna.trial.FrozenTrial]:
        study = optuna.create_study(pruner=_pruner(min_trials=10, **kw))
        for lv in (1.0, 1.05, 1.1):
            study.enqueue_trial({"level": lv})
        study.optimize(objective(values), n_trials=3)
        return study.trials

    for k in (0.05, 3.0):
        for t in run(max_trend_ratio=k):
            at = int(t.user_attrs[attrs.PREDICTED_AT_STEP])
            vals = t.intermediate_values
            ref, last = vals[max(s for s in vals if s <= math.ceil(at / 2))], vals[at]
            room = k * abs(ref - last) * math.log2(TARGET / at)
            for key in (attrs.PREDICTED_FINAL, attrs.PREDICTED_LO, attrs.PREDICTED_HI):
                assert last - room - 1e-12 <= t.user_attrs[key] <= last + room + 1e-12
    # a tight ratio binds (the law extrapolates further than 0.05 x the trend) ...
    tight = run(max_trend_ratio=0.05)[0].user_attrs[attrs.PREDICTED_FINAL]
    free = run(max_trend_ratio=None)[0].user_attrs[attrs.PREDICTED_FINAL]
    assert free < tight
    # ... and the default leaves these power-law extrapolations alone (their ratio is < 1)
    assert run()[0].user_attrs[attrs.PREDICTED_FINAL] == pytest.approx(free)


@pytest.mark.parametrize("name", sorted(LAWS))
def test_shared_parameters_default_to_the_laws_own(name: str) -> None:
    # one definition of what is shared: the search, `lawsearch fit` and the pruner
    law = get_law(name)
    pruner = LawPruner(target_step=TARGET, law=law, min_points=None)
    assert pruner.shared == shared_params(law)
    assert pruner.min_points == law.min_points(len(shared_params(law)))


def test_closed_form_fit_matches_the_general_fitter() -> None:
    from lawsearch._fit import fit_affine

    law = PowerLaw()
    steps = STEPS[:6].astype(float)
    ys = curve(1.0, seed=3)[:6]
    fixed = {"alpha": 0.5, "t0": 5.0}
    fast = fit_affine(law, steps, ys, fixed=fixed)
    slow = law.fit(steps, ys, fixed=fixed)
    assert fast is not None and fast.ok
    target = np.array([float(TARGET)])
    assert fast.predict(target)[0] == pytest.approx(slow.predict(target)[0], rel=2e-3)
    # a rising curve pins the amplitude at its bound with large residuals: not a fit
    assert fit_affine(law, steps, ys[::-1] * np.linspace(1, 1.5, 6), fixed=fixed) is None


def test_below_the_law_minimum_the_last_value_decides() -> None:
    # min_points=1: at step 8 (one report) no law can be fitted; the last value ranks it
    pruner = _pruner(warmup_steps=8, min_points=1, min_trials=3, quantile=None)
    study = _study(pruner, [1.0, 1.05, 1.02, 3.0])
    loser = study.trials[3]
    assert loser.state == TrialState.PRUNED
    assert max(loser.intermediate_values) == 8
    assert loser.user_attrs[attrs.rung_key(pruner.rung_of(8))] == loser.intermediate_values[8]
    assert attrs.PREDICTED_FINAL not in loser.user_attrs  # a last value is not a prediction
    # the default waits for enough points to fit the law
    late = _study(_pruner(warmup_steps=8, min_trials=3, quantile=None), [1.0, 1.05, 1.02, 3.0])
    assert max(late.trials[3].intermediate_values) > 8


@pytest.mark.parametrize(("last_step", "pruned"), [(TARGET // 4, False), (TARGET, True)])
def test_a_completed_trial_counts_by_its_value_only_when_that_is_a_full_budget_loss(
    last_step: int, pruned: bool
) -> None:
    # RetrievalRerank's screened candidates complete at a short budget with that budget's
    # full-budget *estimate* as their value; an estimate far below every curve must not
    # be the bar an early rung's score is held to (the e2e replay pruned a rank-4 config
    # at step 6 that way). A value reported up to the target is a real final and counts.
    pruner = _pruner(min_trials=3)
    study = optuna.create_study(pruner=pruner)
    dist = {"level": optuna.distributions.FloatDistribution(0.5, 5.0)}
    for seed in range(3):
        ys = curve(1.0, seed=seed)
        reported = {int(s): float(y) for s, y in zip(STEPS, ys, strict=True) if s <= last_step}
        study.add_trial(
            optuna.trial.create_trial(
                params={"level": 1.0},
                distributions=dist,
                value=0.5,
                intermediate_values=reported,
                state=TrialState.COMPLETE,
            )
        )
    study.enqueue_trial({"level": 1.0})
    study.optimize(level_objective, n_trials=1)
    assert (study.trials[-1].state == TrialState.PRUNED) is pruned
