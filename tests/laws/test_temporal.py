"""TemporalLaw takes a 2-D loss matrix, so the conformance properties are written out here."""

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lawsearch.laws import get_law
from lawsearch.laws._temporal import TemporalLaw

P = 48
TRUTH = {
    "A0": 3.0,
    "k0": 0.1,
    "A1": 0.05,
    "k1": 0.15,
    "E": 1.8,
    "B": 4.0,
    "beta": 0.35,
    "n0": 200.0,
}
STEPS = np.round(np.geomspace(200.0, 20_000.0, 14))


def clean(steps: np.ndarray = STEPS, p: int = P) -> np.ndarray:
    law = TemporalLaw(positions=tuple(range(1, p + 1)))
    theta = np.array([TRUTH[n] for n in law.param_names])
    return law.predict_from(theta, steps, None)


def noisy(seed: int = 0, noise: float = 1e-3) -> np.ndarray:
    y = clean()
    return y * np.exp(np.random.default_rng(seed).normal(0.0, noise, y.shape))


@pytest.fixture(scope="module")
def fitted() -> tuple[TemporalLaw, object]:
    law = TemporalLaw()
    return law, law.fit(STEPS, noisy())


def test_recovers_known_parameters(fitted) -> None:
    _, result = fitted
    assert result.status == "ok", result.message
    for name, value in TRUTH.items():
        tol = 0.3 if name == "n0" else 0.1
        assert result.params[name] == pytest.approx(value, rel=tol), name


def test_predict_returns_the_matrix_and_matches_the_data(fitted) -> None:
    _, result = fitted
    pred = result.predict(STEPS)
    assert pred.shape == (STEPS.size, P)
    assert np.max(np.abs(np.log(pred / clean()))) < 6e-3
    assert result.law.positions == tuple(float(i) for i in range(1, P + 1))


def test_mean_prediction_extrapolates_the_overall_loss() -> None:
    n = 7  # half the evaluations, the last at ~2.7k of 20k steps
    result = TemporalLaw().fit(STEPS[:n], noisy()[:n])
    mean = TemporalLaw.predict_mean(result, STEPS[-1:])
    assert mean.shape == (1,)
    assert mean[0] == pytest.approx(clean()[-1].mean(), rel=0.02)
    lo, hi = TemporalLaw.interval_mean(result, STEPS[-1:])
    assert lo[0] <= mean[0] <= hi[0]
    as_result = TemporalLaw.mean_result(result)
    np.testing.assert_allclose(as_result.predict(STEPS[-1:]), mean)
    np.testing.assert_allclose(result.law.overall_result(result).predict(STEPS[-1:]), mean)
    assert as_result.curve is not None and as_result.curve.losses.shape == (n,)


def test_does_not_mutate_inputs() -> None:
    steps, y = STEPS.copy(), noisy()
    y_copy = y.copy()
    w = np.linspace(1.0, 2.0, P)
    w_copy = w.copy()
    TemporalLaw().fit(steps, y, weights=w)
    np.testing.assert_array_equal(steps, STEPS)
    np.testing.assert_array_equal(y, y_copy)
    np.testing.assert_array_equal(w, w_copy)


def test_pickles_and_is_deterministic(fitted) -> None:
    law, result = fitted
    clone = pickle.loads(pickle.dumps(result))
    assert clone.params == result.params
    np.testing.assert_allclose(clone.predict(STEPS), result.predict(STEPS))
    assert pickle.loads(pickle.dumps(law)) == law
    again = TemporalLaw().fit(STEPS, noisy())
    assert again.params == result.params
    lo_a, hi_a = result.interval(STEPS[-1:])
    lo_b, hi_b = again.interval(STEPS[-1:])
    np.testing.assert_array_equal(lo_a, lo_b)
    np.testing.assert_array_equal(hi_a, hi_b)
    assert lo_a.shape == (1, P)


def test_interval_contains_prediction(fitted) -> None:
    _, result = fitted
    lo, hi = result.interval(STEPS)
    pred = result.predict(STEPS)
    assert np.all(lo <= pred) and np.all(pred <= hi)


def test_position_weights_change_the_fit_and_zero_weights_ignore_columns() -> None:
    y = noisy()
    y_bad = y.copy()
    y_bad[:, -8:] *= 1.3  # corrupt the last positions
    w = np.ones(P)
    w[-8:] = 0.0
    plain = TemporalLaw().fit(STEPS, y)
    masked = TemporalLaw().fit(STEPS, y_bad, weights=w)
    assert masked.ok
    for name in ("E", "beta", "A0"):
        assert masked.params[name] == pytest.approx(plain.params[name], rel=0.05), name
    assert masked.curve is not None
    np.testing.assert_array_equal(masked.curve.losses, y_bad)  # the data, not a transform


def test_nan_error_names_row_and_column() -> None:
    y = noisy()
    y[3, 17] = np.nan
    with pytest.raises(ValueError, match=r"NaN at row 3 \(step \d+\), column 17"):
        TemporalLaw().fit(STEPS, y)


def test_non_positive_loss_names_row_and_column() -> None:
    y = noisy()
    y[2, 5] = 0.0
    with pytest.raises(ValueError, match=r"must be > 0.*row 2 .*column 5"):
        TemporalLaw().fit(STEPS, y)


def test_too_few_evaluations_and_positions() -> None:
    with pytest.raises(ValueError, match="needs at least 5 evaluations"):
        TemporalLaw().fit(STEPS[:4], noisy()[:4])
    with pytest.raises(ValueError, match="needs at least 4 to fit the hyperbola"):
        TemporalLaw().fit(STEPS, noisy()[:, :3])


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match=r"shape \(n_evals, n_positions\) = \(14, P\)"):
        TemporalLaw().fit(STEPS, noisy()[:, 0])
    with pytest.raises(ValueError, match="one row per step"):
        TemporalLaw().fit(STEPS[:-1], noisy())
    with pytest.raises(ValueError, match="`positions` has 5 entries"):
        TemporalLaw(positions=(1, 2, 3, 4, 5)).fit(STEPS, noisy())
    with pytest.raises(ValueError, match="one weight per position"):
        TemporalLaw().fit(STEPS, noisy(), weights=np.ones(P + 1))
    with pytest.raises(ValueError, match="`steps` must increase strictly"):
        steps = STEPS.copy()
        steps[2] = steps[1]
        TemporalLaw().fit(steps, noisy())


def test_unfitted_law_asks_for_positions() -> None:
    with pytest.raises(ValueError, match="needs `positions`"):
        TemporalLaw().predict_from(np.ones(8), STEPS, None)


def test_registered_and_mean_result_rejects_other_laws(fitted) -> None:
    assert isinstance(get_law("temporal"), TemporalLaw)
    from lawsearch.laws import PowerLaw

    other = PowerLaw().fit(STEPS, noisy().mean(axis=1))
    with pytest.raises(ValueError, match=r"must come from TemporalLaw\.fit"):
        TemporalLaw.mean_result(other)


@settings(max_examples=25, deadline=None)
@given(
    k0=st.floats(-0.5, 1.0),
    k1=st.floats(-0.5, 1.0),
    beta=st.floats(0.05, 1.5),
    n0=st.floats(0.0, 1e4),
)
def test_loss_falls_along_the_context(k0: float, k1: float, beta: float, n0: float) -> None:
    law = TemporalLaw(positions=tuple(range(1, 33)))
    theta = np.array([2.0, k0, 0.1, k1, 1.5, 3.0, beta, n0])
    y = law.predict_from(theta, np.geomspace(10.0, 1e6, 9), None)
    assert np.all(np.isfinite(y)) and np.all(y > 1.5)
    assert np.all(np.diff(y, axis=1) < 0)  # later positions have more context


@pytest.mark.slow
def test_pooled_fit_shares_exponents_across_runs() -> None:
    law = TemporalLaw()
    y = noisy()
    curves = [
        {"steps": STEPS, "losses": y},
        {
            "steps": STEPS,
            "losses": y * 1.02 * np.exp(np.random.default_rng(1).normal(0, 1e-3, y.shape)),
        },
    ]
    results = law.fit_pooled(curves, shared=("k0", "k1", "beta", "n0", "A1"))
    assert [r.ok for r in results] == [True, True]
    assert results[0].params["beta"] == results[1].params["beta"]
    assert results[1].params["E"] > results[0].params["E"]
    assert results[0].predict(STEPS[-1:]).shape == (1, P)
