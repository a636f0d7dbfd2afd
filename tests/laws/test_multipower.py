from typing import ClassVar

import numpy as np
import pytest

from lawsearch.laws import LRTrack, MultiPowerLaw, get_law
from lawsearch.schedules import Schedule
from tests.laws.conformance import LawConformance

# A WSD run whose long decay passes through many LR levels, so that the
# build-up parameters (C, beta, gamma) leave a mark on the curve.
WSD = Schedule(
    "wsd", peak_lr=3e-4, total_steps=8000, warmup_steps=300, final_lr=3e-5, decay_fraction=0.5
)


def brute_force(theta: np.ndarray, steps: np.ndarray, lr: np.ndarray) -> np.ndarray:
    """The MPL formula summed step by step (LR in units of ``lr_unit`` = 1e-3)."""
    l0, a, alpha, s_w, b, c, beta, gamma = theta
    s1 = np.concatenate([[0.0], np.cumsum(lr)])
    out = []
    for t in steps.astype(int):
        ld = 0.0
        for k in range(1, t + 1):
            drop = lr[k - 1] - lr[k]
            if drop > 0:
                x = (lr[k] / 1e-3) ** (-gamma) * (s1[t] - s1[k])
                ld += drop * (1.0 - (c * x + 1.0) ** (-beta))
        out.append(l0 + a * (s1[t] + s_w) ** (-alpha) - b * ld)
    return np.array(out)


class TestMultiPowerConformance(LawConformance):
    law = MultiPowerLaw()
    models_annealing = True
    truth: ClassVar[dict[str, float]] = {
        "L0": 2.8,
        "A": 0.6,
        "alpha": 0.5,
        "S_W": 0.1,
        "B": 500.0,
        "C": 0.5,
        "beta": 0.6,
        "gamma": 0.6,
    }
    lrs = WSD.per_step()
    steps = np.arange(400.0, 8000.0, 64.0)
    noise = 2e-4  # about the noise of the recorded 100M curves
    rtol: ClassVar[dict[str, float]] = {"S_W": 0.5, "alpha": 0.2, "A": 0.2}
    # One curve pins down the loss drop LD(t) but not how it splits into
    # B, C, beta and gamma: with C*x small, G ~ beta*C*x and only B*beta*C
    # matters (fits land there within the noise). The drop itself is checked
    # in test_recovers_the_loss_drop instead.
    unchecked = ("B", "C", "beta", "gamma")


def _loss_drop(law: MultiPowerLaw, params: dict, steps: np.ndarray, lr: np.ndarray) -> np.ndarray:
    theta = np.array([params[n] for n in law.param_names])
    no_drop = theta.copy()
    no_drop[law.param_names.index("B")] = 0.0
    track = LRTrack(lr)
    return law.predict_from(no_drop, steps, track) - law.predict_from(theta, steps, track)


def test_recovers_the_loss_drop() -> None:
    case = TestMultiPowerConformance()
    law = case.law
    result = law.fit(case.steps, case.noisy_losses(), lrs=case.lrs)
    assert result.ok, result.message
    late = case.steps[case.steps >= 4500]
    true_ld = _loss_drop(law, case.truth, late, case.lrs)
    fit_ld = _loss_drop(law, result.params, late, case.lrs)
    # LD reaches ~0.1 by the end; recovered to a few percent of its size
    np.testing.assert_allclose(fit_ld, true_ld, atol=0.05 * true_ld.max())


@pytest.mark.parametrize(
    "schedule",
    [
        Schedule("cosine", peak_lr=3e-4, total_steps=3000, warmup_steps=200, final_lr=3e-5),
        Schedule("multistep", peak_lr=3e-4, total_steps=3000, milestones=(1000, 2000), gamma=0.3),
        Schedule("wsd", peak_lr=3e-4, total_steps=3000, final_lr=1e-5, decay_shape="1-sqrt"),
    ],
    ids=["cosine", "multistep", "wsd-1-sqrt"],
)
def test_block_compression_matches_the_step_by_step_sum(schedule: Schedule) -> None:
    theta = np.array([2.8, 0.6, 0.5, 0.05, 500.0, 0.5, 0.6, 0.6])
    lr = schedule.per_step()
    steps = np.arange(250.0, 3000.0, 97.0)
    exact = brute_force(theta, steps, lr)
    fast = MultiPowerLaw().predict_from(theta, steps, LRTrack(lr))
    # exact for piecewise-constant schedules, second order for smooth decays
    tol = 1e-12 if schedule.family == "multistep" else 1e-4
    np.testing.assert_allclose(fast, exact, rtol=tol)
    single = MultiPowerLaw().predict_from(theta, steps[-1:], LRTrack(lr))
    np.testing.assert_allclose(single, exact[-1:], rtol=tol)


def test_lr_increases_are_ignored() -> None:
    """Warmup does not enter LD: a run with warmup differs only through S1."""
    theta = np.array([2.8, 0.6, 0.5, 0.0, 500.0, 0.5, 0.6, 0.6])
    warm = Schedule("constant", peak_lr=3e-4, total_steps=2000, warmup_steps=500).per_step()
    feats = MultiPowerLaw().features(np.array([1000.0, 1999.0]), LRTrack(warm))
    assert feats.row.size == 0
    pred = MultiPowerLaw().predict_from(theta, np.array([1999.0]), LRTrack(warm))
    s1 = warm[:1999].sum()
    assert pred[0] == pytest.approx(2.8 + 0.6 * s1**-0.5, rel=1e-12)


def test_a_decrease_below_the_running_sums_resolution_is_not_a_zero_mass_block() -> None:
    """A large drop then one of 3e-20 (a piecewise schedule's knots can differ by that):
    the tiny one used to be a block of zero drop mass, 0 / 0 and a NaN prediction."""
    theta = np.array([2.8, 0.6, 0.5, 0.0, 500.0, 0.5, 0.6, 0.6])
    lr = np.full(241, 3e-3)
    lr[100:] = 1e-4
    lr[150:] = 1e-4 - 3e-20
    assert lr[149] > lr[150]
    with np.errstate(all="raise"):
        pred = MultiPowerLaw().predict_from(theta, np.arange(1.0, 241.0), LRTrack(lr))
    lr[150:] = 1e-4
    same = MultiPowerLaw().predict_from(theta, np.arange(1.0, 241.0), LRTrack(lr))
    np.testing.assert_allclose(pred, same, rtol=1e-12)


def test_registry_and_option_validation() -> None:
    assert isinstance(get_law("multipower"), MultiPowerLaw)
    with pytest.raises(ValueError, match="`max_blocks` must be a positive integer"):
        MultiPowerLaw(max_blocks=0)
    with pytest.raises(ValueError, match="`lr_unit` must be a positive number"):
        MultiPowerLaw(lr_unit=-1.0)
    with pytest.raises(ValueError, match="needs `lrs`"):
        MultiPowerLaw().fit(np.arange(1.0, 20.0), np.linspace(3, 2, 19))


def test_analytic_jacobian_matches_finite_differences() -> None:
    from scipy.optimize._numdiff import approx_derivative

    law = MultiPowerLaw()
    theta = np.array([2.8, 0.6, 0.5, 0.05, 500.0, 0.5, 0.6, 0.6])
    feats = law.features(np.arange(300.0, 8000.0, 128.0), LRTrack(WSD.per_step()))
    numeric = approx_derivative(lambda th: law.evaluate(th, feats), theta, method="3-point")
    np.testing.assert_allclose(law.jacobian(theta, feats), numeric, rtol=1e-5, atol=1e-9)


# ---- on the recorded curves (../shared/data/lr_schedules) ----------------------------------


def _runs(shared_data: object) -> dict:
    from lawsearch.recorded.lr_schedules import load_lr_schedule_runs

    return {r.run_id: r for r in load_lr_schedule_runs()}


def test_fits_a_whole_real_cosine_curve_and_orders_the_schedules(shared_data: object) -> None:
    runs = _runs(shared_data)
    cos = runs["100M_cosine_24000"]
    result = MultiPowerLaw().fit(cos.steps, cos.losses, lrs=cos.lr_per_step)
    assert result.ok, result.message
    # measured: 0.13% worst in-sample error
    assert np.max(np.abs(result.predict(cos.steps) / cos.losses - 1)) < 0.005
    # the same parameters, run under the other schedules, order the finals as the data do
    # (measured: wsd 2.941, wsd-linear 2.946, cosine 2.979, constant 2.997; true 2.951,
    # 2.954, 2.979, 3.035)
    finals = {
        name: result.predict(r.steps[-1:], lrs=r.lr_per_step)[0]
        for name, r in (
            ("wsd", runs["100M_wsd_20000_24000"]),
            ("cosine", cos),
            ("constant", runs["100M_constant_24000"]),
        )
    }
    assert finals["wsd"] < finals["cosine"] < finals["constant"]


def test_a_40_percent_prefix_predicts_the_final_loss(shared_data: object) -> None:
    run = _runs(shared_data)["100M_cosine_72000"]
    n = int(0.4 * run.steps.size)
    law = MultiPowerLaw()
    exact = law.fit(run.steps[:n], run.losses[:n], lrs=run.lr_per_step)
    assert exact.ok, exact.message
    final = exact.predict(run.steps[-1:])[0]
    assert abs(final / run.losses[-1] - 1) < 0.02  # measured: -0.47%
    # the same fit from the LR at logged steps only, the future given at logged steps
    logged = law.fit(run.steps[:n], run.losses[:n], lrs=run.lrs[:n])
    assert logged.ok, logged.message
    piecewise = logged.predict(run.steps[n:], lrs=run.lrs[n:])[-1]
    assert piecewise == pytest.approx(final, rel=1e-3)  # measured: 3e-7


def test_a_constant_lr_run_reports_the_annealing_parameters_as_unidentified() -> None:
    lr = Schedule("constant", peak_lr=3e-4, total_steps=6000, warmup_steps=300).per_step()
    steps = np.arange(400.0, 6000.0, 64.0)
    theta = np.array([2.8, 0.6, 0.5, 0.1, 500.0, 0.5, 0.6, 0.6])
    y = MultiPowerLaw().predict_from(theta, steps, LRTrack(lr))
    result = MultiPowerLaw().fit(steps, y, lrs=lr)
    assert result.status == "degenerate"
    for name in ("C", "beta", "gamma"):
        assert name in result.message
    assert np.max(np.abs(result.predict(steps) / y - 1)) < 1e-4
