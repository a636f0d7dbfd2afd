import numpy as np
import pytest

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
