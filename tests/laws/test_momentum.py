from typing import ClassVar

import numpy as np
import pytest

from lawsearch.laws import LRTrack, MomentumLaw, get_law
from lawsearch.schedules import Schedule, annealing_momentum, intrinsic_time
from tests.laws.conformance import LawConformance

COSINE = Schedule("cosine", peak_lr=3e-4, total_steps=8000, warmup_steps=300, final_lr=3e-5)


class TestMomentumConformance(LawConformance):
    law = MomentumLaw()
    models_annealing = True
    truth: ClassVar[dict[str, float]] = {"L0": 2.8, "A": 0.6, "alpha": 0.5, "S0": 0.1, "C": 0.4}
    lrs = COSINE.per_step()
    steps = np.arange(400.0, 8000.0, 64.0)
    # S0 trades against alpha and A (all three shape the early curve)
    rtol: ClassVar[dict[str, float]] = {"S0": 0.5, "A": 0.25, "alpha": 0.25}


def test_formula_against_a_plain_loop() -> None:
    law = MomentumLaw(decay=0.99)
    lr = Schedule("multistep", peak_lr=3e-4, total_steps=3000, milestones=(1000, 2000)).per_step()
    steps = np.array([500.0, 1000.0, 1001.0, 1500.0, 2999.0])
    theta = np.array([2.8, 0.6, 0.5, 0.1, 0.4])
    m, s2, expected = 0.0, [0.0], []
    for i in range(lr.size):
        m = 0.99 * m + (max(lr[i - 1] - lr[i], 0.0) if i else 0.0)
        s2.append(s2[-1] + m)
    s1 = intrinsic_time(lr)
    for t in steps.astype(int):
        expected.append(2.8 + 0.6 * (s1[t] + 0.1) ** -0.5 - 0.4 * s2[t])
    np.testing.assert_allclose(law.predict_from(theta, steps, LRTrack(lr)), expected, rtol=1e-12)


def test_warmup_does_not_enter_the_annealing_area() -> None:
    lr = Schedule("constant", peak_lr=3e-4, total_steps=2000, warmup_steps=500).per_step()
    _, s2 = MomentumLaw().features(np.array([100.0, 1999.0]), LRTrack(lr))
    np.testing.assert_array_equal(s2, 0.0)
    # whereas the raw momentum of the schedule counts warmup as a negative drop
    assert annealing_momentum(lr)[1999] < 0


def test_options_are_validated() -> None:
    assert get_law("momentum", decay=0.99) == MomentumLaw(decay=0.99)
    with pytest.raises(ValueError, match=r"`decay` must be in \(0, 1\)"):
        MomentumLaw(decay=1.0)


def test_analytic_jacobian_matches_finite_differences() -> None:
    from scipy.optimize._numdiff import approx_derivative

    law = MomentumLaw()
    theta = np.array([2.8, 0.6, 0.5, 0.1, 0.4])
    feats = law.features(np.arange(300.0, 8000.0, 128.0), LRTrack(COSINE.per_step()))
    numeric = approx_derivative(lambda th: law.evaluate(th, feats), theta, method="3-point")
    np.testing.assert_allclose(law.jacobian(theta, feats), numeric, rtol=1e-6, atol=1e-9)


def test_pooled_runs_share_everything_but_the_amplitude() -> None:
    """Two schedules of one model: the WSD run's decay is past its prefix, but the
    cosine run's decay pins the shared ``L0`` and ``C`` that predict it."""
    from lawsearch.laws import shared_params

    law = MomentumLaw()
    assert shared_params(law) == ("L0", "alpha", "S0", "C")
    wsd = Schedule(
        "wsd", peak_lr=3e-4, total_steps=8000, warmup_steps=300, final_lr=3e-5
    ).per_step()
    steps = np.arange(400.0, 8000.0, 64.0)
    rng = np.random.default_rng(5)
    curves, finals = [], []
    for lrs, amp, n in ((COSINE.per_step(), 0.6, 70), (wsd, 0.65, 50)):
        theta = np.array([2.8, amp, 0.5, 0.1, 0.4])
        y = law.predict_from(theta, steps, LRTrack(lrs)) * np.exp(rng.normal(0, 5e-4, steps.size))
        curves.append({"steps": steps[:n], "losses": y[:n], "lrs": lrs})
        finals.append(y[-1])
    assert steps[49] < 0.8 * 8000  # the WSD prefix ends before its decay
    results = law.fit_pooled(curves, shared=shared_params(law))
    assert results[0].params["L0"] == results[1].params["L0"]
    assert results[0].params["A"] != results[1].params["A"]
    pred = results[1].predict(steps[-1:])[0]
    assert abs(pred / finals[1] - 1) < 0.005
