import numpy as np
import pytest

from lawsearch._errors import FitError
from lawsearch._fit._least_squares import law_starts, linear_indices, make_problem
from lawsearch.laws import PowerLaw
from tests._fit.helpers import STEPS, AnalyticPowerLaw, NaNLaw, WrongLinearPowerLaw, power_curves


def test_a_law_that_returns_nan_fails_as_a_status() -> None:
    result = NaNLaw().fit(STEPS[:20], np.linspace(3.0, 2.0, 20))
    assert result.status == "failed"
    assert "non-positive or non-finite" in result.message
    assert np.isnan(result.params["a"])
    with pytest.raises(FitError, match="cannot predict from a failed"):
        result.predict(STEPS[-1:])


def test_linear_parameters_are_detected_numerically() -> None:
    law = PowerLaw()
    _, ys = power_curves(1)
    curve = law.make_curve(STEPS, ys[0])
    prob = make_problem(law, curve, fixed={}, prior={})
    lin = linear_indices(prob, law_starts(law, curve, prob.free_idx, prob.fixed_vec))
    assert [law.param_names[i] for i in lin] == ["E", "A"]


def test_a_wrong_linear_declaration_falls_back_to_the_plain_search() -> None:
    thetas, ys = power_curves(1, noise=1e-3)
    good = PowerLaw().fit(STEPS, ys[0])
    wrong = WrongLinearPowerLaw().fit(STEPS, ys[0])
    assert wrong.status == "ok"
    assert wrong.params["alpha"] == pytest.approx(good.params["alpha"], rel=1e-3)
    assert wrong.params["alpha"] == pytest.approx(thetas[0][2], rel=0.1)


def test_analytic_jacobian_gives_the_finite_difference_answer() -> None:
    _, ys = power_curves(1, noise=1e-3, seed=3)
    fd = PowerLaw().fit(STEPS[:60], ys[0][:60])
    an = AnalyticPowerLaw().fit(STEPS[:60], ys[0][:60])
    for name in ("E", "A", "alpha"):
        assert an.params[name] == pytest.approx(fd.params[name], rel=1e-3), name
    assert an.rss == pytest.approx(fd.rss, rel=1e-4)


def test_fit_recovers_parameters_from_a_short_prefix() -> None:
    thetas, ys = power_curves(1, noise=1e-3, seed=5)
    result = PowerLaw().fit(STEPS[:40], ys[0][:40])
    assert result.status == "ok", result.message
    final = result.predict(STEPS[-1:])[0]
    true = PowerLaw().predict_from(thetas[0], STEPS[-1:], None)[0]
    assert final == pytest.approx(true, rel=0.01)


def test_fit_is_deterministic_and_records_its_prior() -> None:
    _, ys = power_curves(1, seed=7)
    prior = {"alpha": (0.4, 0.05)}
    a = PowerLaw().fit(STEPS[:50], ys[0][:50], prior=prior)
    b = PowerLaw().fit(STEPS[:50], ys[0][:50], prior=prior)
    assert a.params == b.params
    assert a.prior == prior


def test_a_prior_pulls_a_weakly_identified_parameter() -> None:
    _, ys = power_curves(1, alpha=0.4, noise=3e-3, seed=11)
    loose = PowerLaw().fit(STEPS[:25], ys[0][:25])
    tight = PowerLaw().fit(STEPS[:25], ys[0][:25], prior={"alpha": (0.4, 1e-3)})
    assert abs(tight.params["alpha"] - 0.4) < 0.01
    assert abs(tight.params["alpha"] - 0.4) <= abs(loose.params["alpha"] - 0.4) + 1e-9


def test_fixed_value_outside_the_bounds_is_rejected() -> None:
    _, ys = power_curves(1)
    with pytest.raises(ValueError, match=r"`fixed\['alpha'\]` = 9.0 is outside the bounds"):
        PowerLaw().fit(STEPS, ys[0], fixed={"alpha": 9.0})


def test_prior_with_non_positive_sd_is_rejected() -> None:
    _, ys = power_curves(1)
    with pytest.raises(ValueError, match=r"`prior\['alpha'\]` has sd 0.0"):
        PowerLaw().fit(STEPS, ys[0], prior={"alpha": (0.4, 0.0)})
