import numpy as np
import pytest

from lawsearch._fit import trend_range, trend_ratio
from lawsearch._fit._intervals import backtest_rate, unseen_lr_drop
from lawsearch.laws import PowerLaw
from lawsearch.schedules import Schedule
from tests._fit.helpers import STEPS, power_curves


def test_interval_is_deterministic_and_cached() -> None:
    _, ys = power_curves(1, seed=31)
    result = PowerLaw().fit(STEPS[:60], ys[0][:60])
    assert "extrap_rate" not in result._cache
    lo1, hi1 = result.interval(STEPS[-1:])
    assert "extrap_rate" in result._cache
    lo2, hi2 = result.interval(STEPS[-1:])
    np.testing.assert_array_equal(hi1, hi2)
    clone = PowerLaw().fit(STEPS[:60], ys[0][:60])
    lo3, hi3 = clone.interval(STEPS[-1:])
    np.testing.assert_array_equal(lo1, lo2)
    np.testing.assert_array_equal(lo1, lo3)
    np.testing.assert_array_equal(hi1, hi3)


def test_interval_widens_with_the_horizon() -> None:
    _, ys = power_curves(1, seed=32)
    result = PowerLaw().fit(STEPS[:50], ys[0][:50])
    steps = np.array([STEPS[49], STEPS[80], STEPS[-1]])
    lo, hi = result.interval(steps)
    width = np.log(hi / lo)
    assert width[0] < width[1] < width[2]
    assert backtest_rate(result) >= 0.0


def test_unseen_lr_drop_is_zero_for_constant_and_positive_for_decay() -> None:
    law = PowerLaw(time="intrinsic")
    lrs_const = np.full(20_000, 1e-3)
    lrs_cos = Schedule("cosine", peak_lr=1e-3, total_steps=20_000, warmup_steps=100).per_step()
    _, ys = power_curves(1, seed=33)
    steps = STEPS[:40]
    for lrs, expect_positive in ((lrs_const, False), (lrs_cos, True)):
        result = law.fit(steps, ys[0][:40], lrs=lrs)
        target = np.array([19_900.0])
        drop = unseen_lr_drop(result, target, result.track_for(target, None))
        assert (drop[0] > 0.5) == expect_positive
        assert unseen_lr_drop(result, steps, result.track_for(steps, None)).max() == 0.0


@pytest.mark.slow
def test_intervals_cover_near_nominal_on_curves_from_the_law() -> None:
    """200 noisy curves from the law; fit 40 % of the points; 90 % interval at the end."""
    law = PowerLaw()
    rng = np.random.default_rng(34)
    covered = []
    for k in range(200):
        theta = np.array(
            [
                rng.uniform(1.5, 3.0),
                rng.uniform(2.0, 10.0),
                rng.uniform(0.2, 0.8),
                rng.uniform(50.0, 500.0),
            ]
        )
        clean = law.predict_from(theta, STEPS, None)
        noise = rng.uniform(1e-3, 5e-3)
        y = clean * np.exp(rng.normal(0.0, noise, STEPS.size))
        n = 80
        result = law.fit(STEPS[:n], y[:n])
        if not result.ok:
            covered.append(False)
            continue
        lo, hi = result.interval(STEPS[-1:])
        covered.append(bool(lo[0] <= y[-1] <= hi[0]))
        del k
    coverage = float(np.mean(covered))
    assert 0.8 <= coverage <= 0.97, coverage


def test_calibrate_interval_covers_new_runs_like_the_calibration_runs() -> None:
    """Errors from known constants: calibrated on 200 runs, the intervals cover
    about 90 % of 5000 fresh runs, and need both constants."""
    from lawsearch._fit._intervals import calibrate_interval

    rng = np.random.default_rng(35)

    def runs(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        base_var = rng.uniform(1e-6, 4e-6, n)
        drop = np.where(rng.random(n) < 0.5, 0.0, rng.uniform(0.3, 0.9, n))
        sd = np.sqrt(2.0**2 * base_var + (0.02 * drop) ** 2)
        return base_var, drop, rng.normal(0.0, sd)

    scale, drop_sd = calibrate_interval(*runs(200), level=0.9)
    assert 1.0 < scale < 4.0 and 0.01 < drop_sd < 0.04
    base_var, drop, error = runs(5000)
    half = 1.6448536 * np.sqrt(scale**2 * base_var + (drop_sd * drop) ** 2)
    assert 0.86 <= float(np.mean(np.abs(error) <= half)) <= 0.95
    # a larger level never gives narrower intervals
    s99, d99 = calibrate_interval(base_var[:200], drop[:200], error[:200], level=0.99)
    s90, d90 = calibrate_interval(base_var[:200], drop[:200], error[:200], level=0.9)
    assert s99 >= s90 or d99 >= d90


def test_calibrate_interval_rejects_mismatched_or_empty_input() -> None:
    from lawsearch._fit._intervals import calibrate_interval

    with pytest.raises(ValueError, match="one value per run"):
        calibrate_interval([1e-6, 1e-6], [0.0], [0.01, 0.02])
    with pytest.raises(ValueError, match="no run with finite"):
        calibrate_interval([np.nan], [0.0], [0.01])
    with pytest.raises(ValueError, match="level"):
        calibrate_interval([1e-6], [0.0], [0.01], level=1.5)


def test_interval_constants_widen_it_and_default_to_the_plain_interval() -> None:
    from lawsearch._fit._intervals import interval_terms, predictive_interval

    law = PowerLaw(time="intrinsic")
    lrs = Schedule("cosine", peak_lr=1e-3, total_steps=20_000, warmup_steps=100).per_step()
    _, ys = power_curves(1, seed=36)
    result = law.fit(STEPS[:40], ys[0][:40], lrs=lrs)
    t = np.array([19_900.0])
    track = result.track_for(t, None)
    lo, hi = result.interval(t)
    lo0, hi0 = predictive_interval(result, t, track, 0.9)
    np.testing.assert_allclose([lo0[0], hi0[0]], [lo[0], hi[0]])
    lo2, hi2 = predictive_interval(result, t, track, 0.9, scale=3.0, lr_drop_sd=0.1)
    assert lo2[0] < lo[0] and hi2[0] > hi[0]
    terms = interval_terms(result, t, track)
    assert terms.drop[0] > 0.5
    # with no base variance the half width is the drop term alone
    z = 1.6448536
    _, hi3 = predictive_interval(result, t, track, 0.9, scale=0.0, lr_drop_sd=0.05)
    assert np.log(hi3[0]) - terms.center[0] == pytest.approx(z * 0.05 * terms.drop[0], rel=1e-6)


def test_a_parameter_the_data_do_not_identify_is_left_out_of_the_delta_method() -> None:
    from dataclasses import replace

    from lawsearch._fit._intervals import _parameter_variance

    _, ys = power_curves(1, seed=37)
    law = PowerLaw()
    result = law.fit(STEPS[:60], ys[0][:60])
    feats = law.features(STEPS[-1:], None)
    center = np.log(law.evaluate(result.theta, feats))
    i = result.free.index("t0")
    cov = np.array(result.covariance, copy=True)
    huge = cov.copy()
    huge[i, :] = huge[:, i] = 0.0
    huge[i, i] = (1e3 * result.params["t0"]) ** 2  # sd 1000x the value: not identified
    dropped = cov.copy()
    dropped[i, :] = dropped[:, i] = 0.0
    v_huge = _parameter_variance(replace(result, covariance=huge), feats, center)
    v_dropped = _parameter_variance(replace(result, covariance=dropped), feats, center)
    v_full = _parameter_variance(result, feats, center)
    np.testing.assert_allclose(v_huge, v_dropped, rtol=1e-6)
    assert np.all(np.isfinite(v_full)) and v_huge[0] < 1.0


def test_trend_range_is_where_the_trend_ratio_reaches_its_bound() -> None:
    _, ys = power_curves(1, seed=33)
    steps, losses = STEPS[:40], ys[0][:40]
    target = float(STEPS[-1])
    low, high = trend_range(steps, losses, target, 2.0)
    assert low < losses[-1] < high
    assert trend_ratio(steps, losses, target, low) == pytest.approx(2.0)
    assert trend_ratio(steps, losses, target, high) == pytest.approx(-2.0)
    # nothing beyond the curve, or a flat curve: only the last value
    assert trend_range(steps, losses, float(steps[-1]), 2.0) == (losses[-1], losses[-1])
    flat = np.full(40, 1.5)
    assert trend_range(steps, flat, target, 2.0) == (1.5, 1.5)
