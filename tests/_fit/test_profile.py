"""Fast fits for many short curves: the grid profile, the closed-form fit and their interval."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from lawsearch._fit import (
    affine_design,
    delta_interval,
    fit_affine,
    fit_profiled,
    fit_with_pool,
    profile_axes,
    profile_shared,
)
from lawsearch.laws import (
    Curve,
    EnsembleLaw,
    Law,
    LRTrack,
    Param,
    PowerLaw,
    TwoPhaseLaw,
    shared_params,
)

STEPS = np.arange(1.0, 201.0)


@dataclass(frozen=True)
class PurePowerLaw(Law):
    """``E + A t^-alpha``: one nonlinear parameter, so a 1-D profile."""

    name = "pure_power"

    def params(self) -> tuple[Param, ...]:
        return (
            Param("E", 0.0, 1e4, "asymptote"),
            Param("A", 1e-10, 1e10, "amplitude"),
            Param("alpha", 1e-3, 4.0, "exponent"),
        )

    def features(self, steps: np.ndarray, track: LRTrack | None) -> Any:
        return steps

    def evaluate(self, theta: np.ndarray, feats: Any) -> np.ndarray:
        e, a, alpha = theta
        return e + a * np.power(feats, -alpha)

    def initial_guesses(self, curve: Curve) -> list[np.ndarray]:
        return [np.array([0.5 * float(curve.losses.min()), 1.0, 0.5])]


def _curves(
    law: Law, shared: dict[str, float], n: int, *, noise: float, seed: int
) -> list[dict[str, np.ndarray]]:
    """``n`` curves of ``law`` sharing ``shared``, each with its own ``E`` and ``A``."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        own = {"E": 2.0 + 0.5 * rng.random(), "A": 3.0 + 3.0 * rng.random()}
        theta = np.array([{**own, **shared}[p] for p in law.param_names])
        clean = law.predict_from(theta, STEPS, None)
        out.append({"steps": STEPS, "losses": clean * np.exp(rng.normal(0.0, noise, STEPS.size))})
    return out


def test_profile_recovers_a_shared_exponent() -> None:
    law = PurePowerLaw()
    curves = _curves(law, {"alpha": 0.45}, 6, noise=1e-3, seed=1)
    got = profile_shared(law, curves, ("alpha",), horizon=1000)
    assert got is not None
    mu, sd = got["alpha"]
    assert mu == pytest.approx(0.45, rel=0.02)
    assert 0 < sd < 0.1 and abs(mu - 0.45) <= 2 * sd


def test_profile_recovers_two_shared_parameters_of_the_power_law() -> None:
    # long curves with a small offset: alpha and t0 are identified by the data
    curves = _curves(PowerLaw(), {"alpha": 0.5, "t0": 5.0}, 6, noise=1e-3, seed=0)
    got = profile_shared(PowerLaw(), curves, ("alpha", "t0"), horizon=1000)
    assert got is not None
    for name, truth in (("alpha", 0.5), ("t0", 5.0)):
        mu, sd = got[name]
        assert abs(mu - truth) <= 2 * sd
        assert mu == pytest.approx(truth, rel=0.1)


def test_profile_declines_what_it_cannot_do() -> None:
    curves = _curves(PowerLaw(), {"alpha": 0.5, "t0": 5.0}, 3, noise=1e-3, seed=2)
    # t0 left free: the power law is not affine in it
    assert profile_shared(PowerLaw(), curves, ("alpha",), horizon=1000) is None
    # nothing shared, or more than a 2-D grid
    assert profile_shared(PowerLaw(), curves, (), horizon=1000) is None
    assert profile_shared(TwoPhaseLaw(), curves, ("alpha", "t0", "tc"), horizon=1000) is None
    # a curve with no more points than affine parameters
    short = [{"steps": STEPS[:2], "losses": curves[0]["losses"][:2]}]
    assert profile_shared(PowerLaw(), short, ("alpha", "t0"), horizon=1000) is None


def test_profile_axes_stay_within_bounds_and_the_horizon() -> None:
    law = PowerLaw()
    alpha, t0 = profile_axes(law, ("alpha", "t0"), horizon=400)
    lo, hi = law.bounds
    assert alpha.min() >= lo[2] and alpha.max() <= hi[2]
    assert t0[0] == 0.0 and t0.max() == pytest.approx(400.0)
    assert np.all(np.diff(alpha) > 0) and np.all(np.diff(t0) > 0)


def test_affine_fit_equals_the_general_fit_on_a_clean_curve() -> None:
    law = PowerLaw()
    fixed = {"alpha": 0.6, "t0": 20.0}
    y = law.predict_from(np.array([2.2, 4.0, 0.6, 20.0]), STEPS[:40], None)
    fast = fit_affine(law, STEPS[:40], y, fixed=fixed)
    slow = law.fit(STEPS[:40], y, fixed=fixed)
    assert fast is not None and fast.ok and slow.ok
    assert fast.free == slow.free == ("E", "A")
    for name in law.param_names:
        assert fast.params[name] == pytest.approx(slow.params[name], rel=1e-6)
    assert fast.params["E"] == pytest.approx(2.2, rel=1e-9)


def test_affine_fit_returns_none_for_a_law_not_affine_in_the_free_parameters() -> None:
    law = PowerLaw()
    y = law.predict_from(np.array([2.2, 4.0, 0.6, 20.0]), STEPS[:40], None)
    assert fit_affine(law, STEPS[:40], y, fixed={"E": 2.2, "A": 4.0}) is None
    assert fit_affine(law, STEPS[:40], y, fixed={"alpha": 0.6}) is None
    feats = law.features(STEPS[:40], None)
    assert affine_design(law, feats, {"alpha": 0.6}, [0, 1, 3]) is None
    # an ensemble is bilinear in its weights and amplitudes (and rejects all-zero weights)
    ensemble = EnsembleLaw()
    shared = {n: 1.0 for n in shared_params(ensemble)}
    assert fit_affine(ensemble, STEPS[:40], y, fixed=shared) is None
    base, x = affine_design(law, feats, {"alpha": 0.6, "t0": 20.0}, [0, 1]) or (None, None)
    assert x is not None and x.shape == (40, 2)
    np.testing.assert_allclose(base + x @ np.array([2.2, 4.0]), y, rtol=1e-12)


def test_fit_with_pool_fixes_the_pool_values_or_fits_everything() -> None:
    law = PowerLaw()
    curve = _curves(law, {"alpha": 0.5, "t0": 5.0}, 1, noise=1e-3, seed=3)[0]
    pool = {"alpha": (0.5, 0.02), "t0": (5.0, 0.5)}
    fit, held, pooled = fit_with_pool(
        law, curve["steps"], curve["losses"], shared=("alpha", "t0"), pool=pool, horizon=1000
    )
    assert pooled and held == pool and fit.ok
    assert (fit.params["alpha"], fit.params["t0"]) == (0.5, 5.0)
    fit, held, pooled = fit_with_pool(
        law,
        curve["steps"],
        curve["losses"],
        shared=("alpha", "t0"),
        pool=pool,
        use_pool=False,
        horizon=1000,
    )
    profiled = fit_profiled(
        law, curve["steps"], curve["losses"], shared=("alpha", "t0"), horizon=1000
    )
    assert not pooled and profiled is not None
    assert held == profiled[1] and fit.params == profiled[0].params


def test_fit_with_pool_falls_back_to_the_general_fitter() -> None:
    # a 3-D shared set is beyond the profile: Law.fit fits every parameter
    law = TwoPhaseLaw()
    curve = _curves(PowerLaw(), {"alpha": 0.5, "t0": 5.0}, 1, noise=1e-3, seed=4)[0]
    fit, held, pooled = fit_with_pool(
        law,
        curve["steps"],
        curve["losses"],
        shared=("alpha", "t0", "tc"),
        pool={},
        horizon=1000,
    )
    assert not pooled and held == {} and fit.ok
    assert fit.params == law.fit(curve["steps"], curve["losses"]).params


def test_delta_interval_brackets_the_prediction_and_grows_with_fixed_spread() -> None:
    law = PowerLaw()
    curve = _curves(law, {"alpha": 0.5, "t0": 5.0}, 1, noise=1e-3, seed=5)[0]
    fit = fit_affine(law, curve["steps"], curve["losses"], fixed={"alpha": 0.5, "t0": 5.0})
    assert fit is not None
    mean, lo, hi = delta_interval(fit, 1000)
    assert mean == pytest.approx(float(fit.predict(np.array([1000.0]))[0]), rel=1e-12)
    assert lo < mean < hi
    _, lo2, hi2 = delta_interval(fit, 1000, fixed_sd={"alpha": 0.05})
    assert lo2 < lo and hi2 > hi
    _, lo3, hi3 = delta_interval(fit, 1000, quantile=0.3)
    assert lo < lo3 < mean < hi3 < hi
    assert all(isinstance(v, float) for v in (mean, lo, hi))


def test_delta_interval_without_usable_uncertainty_is_uninformative() -> None:
    law = PowerLaw()
    curve = _curves(law, {"alpha": 0.5, "t0": 5.0}, 1, noise=1e-3, seed=6)[0]
    fit = fit_affine(law, curve["steps"], curve["losses"], fixed={"alpha": 0.5, "t0": 5.0})
    assert fit is not None
    # what fit_affine reports for an ill-conditioned design: an infinite covariance
    fit = dataclasses.replace(fit, covariance=np.full((2, 2), np.inf))
    mean, lo, hi = delta_interval(fit, 1000)
    assert (lo, hi) == (math.exp(-700.0), math.exp(700.0))
    assert math.isfinite(mean)
