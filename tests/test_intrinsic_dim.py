import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lawsearch.intrinsic_dim import exponent_prior, levina_bickel, levina_bickel_pointwise
from lawsearch.laws import PowerLaw


def gaussian_blob(d: int, n: int = 1500, ambient: int = 50, seed: int = 0) -> np.ndarray:
    """A d-dimensional Gaussian linearly embedded (orthonormal columns) in R^ambient."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(ambient, d)))[0]
    return rng.normal(size=(n, d)) @ basis.T + 3.0


def swiss_roll(n: int = 1500, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    u = rng.uniform(1.5 * np.pi, 4.5 * np.pi, n)
    h = rng.uniform(0.0, 21.0, n)
    return np.c_[u * np.cos(u), h, u * np.sin(u)]


def sphere(d: int, n: int = 1500, seed: int = 0) -> np.ndarray:
    """Uniform points on the d-sphere S^d in R^(d+1)."""
    z = np.random.default_rng(seed).normal(size=(n, d + 1))
    return z / np.linalg.norm(z, axis=1, keepdims=True)


@pytest.mark.parametrize("d", [2, 5, 8])
def test_gaussian_blobs_in_50d(d: int) -> None:
    assert levina_bickel(gaussian_blob(d)) == pytest.approx(d, rel=0.12)


def test_swiss_roll_is_two_dimensional() -> None:
    assert levina_bickel(swiss_roll()) == pytest.approx(2.0, rel=0.1)


@pytest.mark.parametrize("d", [2, 3, 5])
def test_spheres(d: int) -> None:
    assert levina_bickel(sphere(d)) == pytest.approx(d, rel=0.12)


def test_cosine_metric_sees_directions_only() -> None:
    # Rescaling every point leaves directions (and the cosine estimate) unchanged,
    # while a radial spread adds one dimension for the Euclidean metric.
    x = sphere(3)
    scales = np.random.default_rng(1).uniform(1.0, 5.0, size=(x.shape[0], 1))
    assert levina_bickel(x * scales, metric="cosine") == pytest.approx(3.0, rel=0.12)
    assert levina_bickel(x * scales) == pytest.approx(4.0, rel=0.15)


def test_estimate_grows_with_dimension() -> None:
    estimates = [levina_bickel(gaussian_blob(d, n=800)) for d in (2, 4, 8)]
    assert estimates == sorted(estimates)


def test_pointwise_estimates_center_on_dimension() -> None:
    per_point = levina_bickel_pointwise(sphere(2))
    assert per_point.shape == (1500,)
    assert np.median(per_point) == pytest.approx(2.0, rel=0.15)


def test_does_not_mutate_and_ignores_duplicates() -> None:
    x = swiss_roll(n=600)
    copy = x.copy()
    a = levina_bickel(x)
    np.testing.assert_array_equal(x, copy)
    assert levina_bickel(np.vstack([x, x[:50]])) == pytest.approx(a)


@settings(max_examples=20, deadline=None)
@given(
    scale=st.floats(1e-3, 1e3),
    shift=st.floats(-100.0, 100.0),
    seed=st.integers(0, 2**16),
)
def test_invariant_to_similarity_transforms(scale: float, shift: float, seed: int) -> None:
    x = gaussian_blob(3, n=300, ambient=6, seed=seed)
    rot = np.linalg.qr(np.random.default_rng(seed + 1).normal(size=(6, 6)))[0]
    assert levina_bickel(scale * x @ rot + shift) == pytest.approx(levina_bickel(x), rel=1e-6)


def test_bad_inputs_name_the_field() -> None:
    x = sphere(2, n=100)
    with pytest.raises(ValueError, match="`X` must be 2-D"):
        levina_bickel(x[:, 0])
    y = x.copy()
    y[7, 1] = np.nan
    with pytest.raises(ValueError, match="row 7, column 1"):
        levina_bickel(y)
    with pytest.raises(ValueError, match="`k1` must be >= 3"):
        levina_bickel(x, k1=2)
    with pytest.raises(ValueError, match="`k2` must be >= `k1`"):
        levina_bickel(x, k1=10, k2=5)
    with pytest.raises(ValueError, match="distinct points"):
        levina_bickel(x[:15], k2=20)
    with pytest.raises(ValueError, match="`metric` must be one of"):
        levina_bickel(x, metric="manhattan")
    z = x.copy()
    z[4] = 0.0
    with pytest.raises(ValueError, match="row 4 is all zeros"):
        levina_bickel(z, metric="cosine")


def test_exponent_prior_shrinks_with_dimension() -> None:
    means = [exponent_prior(d)[0] for d in (2, 8, 32, 128)]
    assert means == sorted(means, reverse=True)
    mean, sd = exponent_prior(8.0)
    assert mean == pytest.approx(2.0 / 10.0)
    assert sd == pytest.approx(mean)  # weak: sd equal to the mean by default
    assert exponent_prior(8.0, rel_sd=0.5)[1] == pytest.approx(0.1)


def test_exponent_prior_bad_inputs() -> None:
    with pytest.raises(ValueError, match="`d` must be a finite number > 0"):
        exponent_prior(0.0)
    with pytest.raises(ValueError, match="`law_param` must name"):
        exponent_prior(4.0, law_param="E")


def test_prior_is_usable_in_a_fit_and_pulls_a_short_fit() -> None:
    # A very short prefix barely constrains alpha; the prior pulls it to 2/(2+d).
    d = 6.0
    steps = np.arange(10.0, 200.0, 10.0)
    truth = 2.0 + 3.0 * (steps + 20.0) ** -0.25
    rng = np.random.default_rng(0)
    losses = truth * np.exp(rng.normal(0.0, 0.003, steps.size))
    free = PowerLaw().fit(steps, losses)
    tight = PowerLaw().fit(steps, losses, prior={"alpha": exponent_prior(d, rel_sd=0.05)})
    assert tight.ok
    target = exponent_prior(d)[0]
    assert abs(tight.params["alpha"] - target) < abs(free.params["alpha"] - target)
    assert tight.params["alpha"] == pytest.approx(target, rel=0.2)
