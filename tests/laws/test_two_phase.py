from typing import ClassVar

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lawsearch.laws import PowerLaw
from lawsearch.laws._two_phase import TwoPhaseLaw
from lawsearch.schedules import Schedule
from tests.laws.conformance import LawConformance

STEPS = np.unique(np.round(np.geomspace(20.0, 50_000.0, 150)))


class TestTwoPhaseSteps(LawConformance):
    law = TwoPhaseLaw()
    truth: ClassVar[dict[str, float]] = {
        "E": 2.0,
        "A": 8.0,
        "alpha": 0.5,
        "t0": 200.0,
        "tc": 1000.0,
    }
    steps = STEPS
    rtol: ClassVar[dict[str, float]] = {"t0": 0.5, "A": 0.5, "tc": 0.25}


class TestTwoPhaseIntrinsic(LawConformance):
    law = TwoPhaseLaw(time="intrinsic")
    truth: ClassVar[dict[str, float]] = {"E": 2.5, "A": 1.0, "alpha": 0.6, "t0": 0.5, "tc": 1.5}
    lrs = Schedule("cosine", peak_lr=1e-3, total_steps=20_000, warmup_steps=100).per_step()
    steps = np.arange(100.0, 20_000.0, 100.0)
    rtol: ClassVar[dict[str, float]] = {"t0": 0.5, "A": 0.5, "tc": 0.25}


def exp_then_power(steps: np.ndarray, seed: int = 0, noise: float = 1e-3) -> np.ndarray:
    theta = np.array([2.0, 8.0, 0.5, 200.0, 1000.0])
    clean = TwoPhaseLaw().predict_from(theta, steps, None)
    return clean * np.exp(np.random.default_rng(seed).normal(0.0, noise, steps.size))


def test_curve_and_slope_are_continuous_at_the_transition() -> None:
    law = TwoPhaseLaw()
    theta = np.array([2.0, 8.0, 0.5, 200.0, 1000.0])
    eps = 1e-4
    t = np.array([1000.0 - 2 * eps, 1000.0 - eps, 1000.0, 1000.0 + eps])
    y = law.evaluate(theta, t)
    left, right = (y[1] - y[0]) / eps, (y[3] - y[2]) / eps
    assert y[1] == pytest.approx(y[2], rel=1e-8)
    assert left == pytest.approx(right, rel=1e-3)


def test_early_phase_is_exponential_and_late_phase_a_power_law() -> None:
    law = TwoPhaseLaw()
    theta = np.array([2.0, 8.0, 0.5, 200.0, 1000.0])
    early = np.array([100.0, 300.0, 500.0, 700.0])
    log_excess = np.log(law.evaluate(theta, early) - 2.0)
    assert np.allclose(np.diff(log_excess, 2), 0.0, atol=1e-10)  # straight in t
    late = np.array([2000.0, 4000.0, 8000.0]) - 200.0
    log_late = np.log(law.evaluate(theta, late) - 2.0)
    slopes = np.diff(log_late) / np.diff(np.log(late + 200.0))
    assert np.allclose(slopes, -0.5)


def test_jacobian_matches_finite_differences() -> None:
    law = TwoPhaseLaw()
    theta = np.array([2.0, 8.0, 0.5, 200.0, 1000.0])
    t = STEPS
    jac = law.jacobian(theta, t)
    assert jac is not None
    for k in range(theta.size):
        h = np.zeros_like(theta)
        h[k] = 1e-6 * max(abs(theta[k]), 1.0)
        num = (law.evaluate(theta + h, t) - law.evaluate(theta - h, t)) / (2 * h[k])
        np.testing.assert_allclose(jac[:, k], num, rtol=1e-5, atol=1e-9 * np.abs(num).max())


def test_finds_the_transition_and_beats_a_power_law_from_a_prefix() -> None:
    steps = np.arange(20.0, 20_000.0, 40.0)
    y = exp_then_power(steps)
    n = steps.size // 5  # 20 % prefix: the exponential phase and some power-law phase
    two = TwoPhaseLaw().fit(steps[:n], y[:n])
    power = PowerLaw().fit(steps[:n], y[:n])
    assert two.ok
    assert two.params["tc"] == pytest.approx(1000.0, rel=0.25)
    err_two = abs(two.predict(steps[-1:])[0] / y[-1] - 1.0)
    err_power = abs(power.predict(steps[-1:])[0] / y[-1] - 1.0)
    assert err_two < 0.01
    assert err_two < err_power


def test_pure_power_law_is_nested() -> None:
    steps = np.arange(200.0, 20_000.0, 100.0)
    clean = PowerLaw().predict_from(np.array([2.0, 5.0, 0.4, 0.0]), steps, None)
    y = clean * np.exp(np.random.default_rng(3).normal(0.0, 1e-3, steps.size))
    result = TwoPhaseLaw().fit(steps[:60], y[:60])
    assert result.ok
    assert "no exponential phase detected" in result.message
    assert result.params["tc"] == 0.0 and "tc" not in result.free
    future = result.predict(steps[-1:])[0]
    assert future == pytest.approx(clean[-1], rel=0.01)


def test_zero_offset_and_transition_evaluate_without_warnings() -> None:
    y = TwoPhaseLaw().evaluate(np.array([2.0, 1.0, 0.5, 0.0, 0.0]), np.array([0.0, 1.0, 4.0]))
    assert np.isnan(y[0])  # (t + t0) ** -alpha is undefined at 0
    np.testing.assert_allclose(y[1:], [3.0, 2.5])


def test_fixed_transition_is_kept() -> None:
    steps = np.arange(20.0, 8000.0, 40.0)
    result = TwoPhaseLaw().fit(steps, exp_then_power(steps), fixed={"tc": 900.0})
    assert result.params["tc"] == 900.0
    assert "tc" not in result.free


def test_unknown_time_option() -> None:
    with pytest.raises(ValueError, match="`time` must be one of"):
        TwoPhaseLaw(time="tokens")


@settings(max_examples=25, deadline=None)
@given(
    alpha=st.floats(0.1, 2.0),
    t0=st.floats(1.0, 1e4),
    tc=st.floats(0.0, 1e4),
)
def test_loss_decreases_and_stays_above_the_floor(alpha: float, t0: float, tc: float) -> None:
    theta = np.array([1.5, 3.0, alpha, t0, tc])
    y = TwoPhaseLaw().evaluate(theta, np.linspace(0.0, 3e4, 400))
    assert np.all(np.isfinite(y))
    assert np.all(y > 1.5)
    assert np.all(np.diff(y) <= 1e-12)


@pytest.mark.slow
def test_pooled_fit_finds_a_shared_transition_or_drops_it() -> None:
    steps = np.arange(20.0, 8000.0, 40.0)
    law = TwoPhaseLaw()
    two = [{"steps": steps, "losses": exp_then_power(steps, seed=s)} for s in range(2)]
    results = law.fit_pooled(two, shared=("alpha", "tc"))
    assert all(r.ok for r in results)
    assert results[0].params["tc"] == results[1].params["tc"] == pytest.approx(1000.0, rel=0.25)
    clean = PowerLaw().predict_from(np.array([2.0, 5.0, 0.4, 0.0]), steps + 200.0, None)
    rng = np.random.default_rng(5)
    pure = [{"steps": steps + 200.0, "losses": clean * np.exp(rng.normal(0, 1e-3, steps.size))}]
    results = law.fit_pooled(pure * 2, shared=("alpha", "tc"))
    assert all("no exponential phase detected" in r.message for r in results)
