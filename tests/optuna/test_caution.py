"""LawPruner's defaults and its knob for caution: what it maps to, and that it only keeps more."""

from __future__ import annotations

import itertools
import math
from statistics import NormalDist

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from lawsearch.optuna import LawPruner, attrs
from lawsearch.optuna._caution import WRITTEN_QUANTILE, at_quantile, caution_settings
from tests.optuna._synthetic import STEPS, TARGET, curve, level_objective

optuna.logging.set_verbosity(optuna.logging.WARNING)

CAUTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)


def test_caution_maps_monotonically_to_keep_fraction_and_quantile() -> None:
    levels = [caution_settings(c) for c in np.linspace(0.0, 1.0, 11)]
    keeps = [s.keep_fraction for s in levels]
    quantiles = [s.quantile for s in levels]
    assert keeps == sorted(keeps) and len(set(keeps)) == len(keeps)
    assert quantiles == sorted(quantiles, reverse=True) and len(set(quantiles)) == len(quantiles)
    # the ends: the measured best (point score, keep 30%) and the former cautious default
    assert (keeps[0], quantiles[0]) == (pytest.approx(0.3), pytest.approx(0.5))
    assert (keeps[-1], quantiles[-1]) == (pytest.approx(0.6), pytest.approx(0.1))
    pruner = LawPruner(target_step=TARGET, caution=0.5)
    assert (pruner.keep_fraction, pruner.quantile) == (pytest.approx(0.45), pytest.approx(0.3))
    # an explicit setting overrides its part only
    mixed = LawPruner(target_step=TARGET, caution=1.0, keep_fraction=0.2)
    assert (mixed.keep_fraction, mixed.quantile) == (0.2, pytest.approx(0.1))


def test_interval_at_another_quantile_is_gaussian_in_log_loss() -> None:
    mean, sd = 2.0, 0.1
    z = NormalDist().inv_cdf(WRITTEN_QUANTILE)
    lo, hi = mean * math.exp(z * sd), mean * math.exp(-z * sd)
    assert at_quantile(mean, lo, hi, WRITTEN_QUANTILE) == (lo, hi)
    assert at_quantile(mean, lo, hi, 0.5) == (mean, mean)
    q = 0.3
    got = at_quantile(mean, lo, hi, q)
    zq = NormalDist().inv_cdf(q)
    assert got == pytest.approx((mean * math.exp(zq * sd), mean * math.exp(-zq * sd)))
    assert lo < got[0] < mean < got[1] < hi


def test_defaults_are_the_measured_settings_and_decide_at_doubling_steps() -> None:
    pruner = LawPruner(target_step=51)
    assert pruner.caution == 0.0 and pruner.sync_interval == 0.0
    assert (pruner.keep_fraction, pruner.quantile) == (pytest.approx(0.3), 0.5)
    assert (pruner.trend_cap, pruner.min_improvement, pruner.min_points) == (1.0, -0.001, 2)
    # TaskSet's 51 epochs: decisions at epochs 2 (last value), 4, 8, 16 and 32
    study = optuna.create_study(pruner=pruner)
    for i in range(6):
        trial = study.ask()
        for step in range(1, 52):
            trial.report(1.0 + 1.0 / step + 0.01 * i, step)
            trial.should_prune()
        study.tell(trial, 1.0 + 1.0 / 51 + 0.01 * i)
    scored = {k for k in study.trials[-1].user_attrs if k.startswith(attrs.RUNG_PREFIX)}
    assert scored == {attrs.rung_key(pruner.rung_of(s)) for s in (2, 4, 8, 16, 32)}
    firsts = [s for s in range(2, 52) if pruner.rung_of(s) > pruner.rung_of(s - 1)]
    assert firsts == [2, 4, 8, 16, 32]
    assert study.trials[-1].user_attrs[attrs.rung_key(pruner.rung_of(2))] == 1.5 + 0.05


def _background(study: optuna.Study, levels: list[float]) -> None:
    """Trials trained to the end, decided at every rung (their scores fill the rung table)."""
    for i, lv in enumerate(levels):
        trial = study.ask()
        ys = curve(lv, seed=100 + i)
        for step, y in zip(STEPS, ys, strict=True):
            trial.report(float(y), int(step))
            trial.should_prune()
        study.tell(trial, float(ys[-1]))


def _pruned_at(study: optuna.Study, caution: float, level: float, seed: int) -> set[int]:
    """Steps at which a probe curve would be pruned, by a fresh pruner on the same study."""
    study.pruner = LawPruner(target_step=TARGET, caution=caution)
    trial = study.ask()
    cut = set()
    for step, y in zip(STEPS, curve(level, seed=seed, noise=0.01), strict=True):
        trial.report(float(y), int(step))
        if trial.should_prune():
            cut.add(int(step))
    # a failed trial is never read back as a competitor: the state stays the same
    study.tell(trial, state=TrialState.FAIL)
    return cut


def test_higher_caution_prunes_a_subset_of_what_lower_caution_prunes() -> None:
    study = optuna.create_study(pruner=LawPruner(target_step=TARGET))
    _background(study, list(np.linspace(1.0, 2.0, 12)))
    probes = [(float(lv), i) for i, lv in enumerate(np.linspace(1.05, 1.9, 10))]
    cuts = {c: {(p, s) for p in probes for s in _pruned_at(study, c, *p)} for c in CAUTIONS}
    for lower, higher in itertools.pairwise(CAUTIONS):
        assert cuts[higher] <= cuts[lower], (lower, higher, cuts[higher] - cuts[lower])
    assert cuts[0.0] and len(cuts[1.0]) < len(cuts[0.0])  # the knob does something


def _replay(pruner: LawPruner, clock: list[float], tick: float) -> list[tuple[str, float]]:
    """A study under a fake clock that moves ``tick`` seconds per decision."""

    def now() -> float:
        clock[0] += tick
        return clock[0]

    mp = pytest.MonkeyPatch()
    mp.setattr("lawsearch.optuna._pruner.time.monotonic", now)
    try:
        study = optuna.create_study(pruner=pruner)
        for lv in np.random.default_rng(3).uniform(1.0, 2.0, size=14):
            study.enqueue_trial({"level": float(lv)})
        study.optimize(level_objective, n_trials=14)
    finally:
        mp.undo()
    return [(t.state.name, t.user_attrs.get(attrs.PREDICTED_FINAL, math.nan)) for t in study.trials]


def test_default_decisions_do_not_depend_on_timing() -> None:
    slow = _replay(LawPruner(target_step=TARGET), [0.0], 10.0)
    fast = _replay(LawPruner(target_step=TARGET), [0.0], 1e-6)
    assert repr(slow) == repr(fast)  # the same states and the same predictions
    assert any(state == "PRUNED" for state, _ in slow)
    # with a positive interval a fast process reads the others' trials (and the pool) late
    late = _replay(LawPruner(target_step=TARGET, sync_interval=1.0), [0.0], 1e-6)
    assert repr(late) != repr(slow)
