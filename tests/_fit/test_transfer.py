import numpy as np
import pytest

from lawsearch._fit import fit_transfer, transfer_prior
from lawsearch.laws import PowerLaw
from lawsearch.laws._two_phase import TwoPhaseLaw
from tests._fit.helpers import STEPS, power_curves


@pytest.fixture(scope="module")
def references() -> list:
    _, ys = power_curves(3, alpha=0.4, noise=1e-3, seed=21)
    return [PowerLaw().fit(STEPS, y) for y in ys]


def test_fixed_transfer_equals_a_fit_with_those_parameters_fixed(references: list) -> None:
    _, ys = power_curves(1, seed=22)
    ref = references[0]
    new = fit_transfer(PowerLaw(), STEPS[:30], ys[0][:30], reference=ref, mode="fixed")
    fixed = {"alpha": ref.params["alpha"], "t0": ref.params["t0"]}
    direct = PowerLaw().fit(STEPS[:30], ys[0][:30], fixed=fixed)
    assert new.params == direct.params
    assert new.free == ("E", "A")


def test_default_free_parameters_are_the_linear_ones(references: list) -> None:
    fixed, prior = transfer_prior(references[0], mode="fixed")
    assert set(fixed) == {"alpha", "t0"}
    assert prior == {}


def test_prior_mode_combines_errors_and_spread_of_the_references(references: list) -> None:
    fixed, prior = transfer_prior(references, free=("E", "A"), inflate=1.0)
    assert fixed == {}
    alphas = np.array([r.params["alpha"] for r in references])
    mean, sd = prior["alpha"]
    assert mean == pytest.approx(alphas.mean())
    assert sd >= alphas.std(ddof=1)
    _, wider = transfer_prior(references, free=("E", "A"), inflate=3.0)
    assert wider["alpha"][1] == pytest.approx(3.0 * sd)


def test_prior_transfer_improves_a_short_prefix(references: list) -> None:
    thetas, ys = power_curves(6, alpha=0.4, noise=3e-3, seed=23)
    law = PowerLaw()
    err_t, err_i = [], []
    for theta, y in zip(thetas, ys, strict=True):
        true = law.predict_from(theta, STEPS[-1:], None)[0]
        t = fit_transfer(law, STEPS[:20], y[:20], reference=references, free=("E", "A", "t0"))
        i = law.fit(STEPS[:20], y[:20])
        err_t.append(abs(t.predict(STEPS[-1:])[0] / true - 1))
        err_i.append(abs(i.predict(STEPS[-1:])[0] / true - 1))
    assert np.mean(err_t) < 0.5 * np.mean(err_i)


def test_bad_transfer_options_are_rejected(references: list) -> None:
    with pytest.raises(ValueError, match="`mode` must be one of"):
        transfer_prior(references, mode="fix")
    with pytest.raises(ValueError, match="`inflate` must be >= 1"):
        transfer_prior(references, inflate=0.5)
    with pytest.raises(ValueError, match="`free` names unknown parameter 'L0'"):
        transfer_prior(references, free=("L0", "A"))
    with pytest.raises(ValueError, match="`reference` is empty"):
        transfer_prior([])
    with pytest.raises(ValueError, match="cannot inform a TwoPhaseLaw"):
        fit_transfer(TwoPhaseLaw(), STEPS[:30], np.linspace(3, 2, 30), reference=references)
