"""Simplex math: bounded stick-breaking, feasibility, uniform sampling, log-ratios."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lawsearch.mixtures import (
    MixtureBounds,
    alr,
    alr_inverse,
    clr,
    clr_inverse,
    validate_mixture_bounds,
)


@st.composite
def feasible_bounds(draw: st.DrawFn) -> MixtureBounds:
    """Random feasible boxes: lows summing below 1, highs summing above 1."""
    k = draw(st.integers(2, 7))
    lows = np.array(draw(st.lists(st.floats(0, 1), min_size=k, max_size=k)))
    lows = lows / max(lows.sum(), 1e-9) * draw(st.floats(0, 0.95))
    spare = np.array(draw(st.lists(st.floats(0, 1), min_size=k, max_size=k)))
    highs = np.minimum(lows + spare, 1.0)
    if highs.sum() < 1.0:
        highs = np.minimum(highs + (1.0 - highs.sum()) / k + 1e-6, 1.0)
    return MixtureBounds.build([f"d{i}" for i in range(k)], low=list(lows), high=list(highs))


@settings(max_examples=60, deadline=None)
@given(bounds=feasible_bounds(), seed=st.integers(0, 2**31 - 1))
def test_every_cube_point_maps_inside_the_bounds(bounds: MixtureBounds, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.random((64, bounds.k - 1))
    x[0] = 0.0
    x[1] = 1.0
    w = bounds.from_unit(x)
    assert np.allclose(w.sum(axis=1), 1.0, atol=1e-12)
    assert bounds.contains(w, tol=1e-9).all()


@settings(max_examples=40, deadline=None)
@given(bounds=feasible_bounds(), seed=st.integers(0, 2**31 - 1))
def test_to_unit_inverts_from_unit(bounds: MixtureBounds, seed: int) -> None:
    w = bounds.sample(32, rng=seed)
    assert bounds.contains(w, tol=1e-9).all()
    x = bounds.to_unit(w)
    back = bounds.from_unit(x)
    assert np.allclose(back, w, atol=5e-3)  # float resolution of the cube near its faces
    interior = np.all(x < 1 - 1e-6, axis=1)
    assert np.allclose(back[interior], w[interior], atol=1e-9)


def test_unbounded_map_is_uniform_on_the_simplex() -> None:
    b = MixtureBounds.build(["a", "b", "c"])
    w = b.from_unit(np.random.default_rng(0).random((100_000, 2)))
    # Dirichlet(1,1,1): each marginal is Beta(1, 2), P(w_i < 0.2) = 1 - 0.8^2 = 0.36
    for i in range(3):
        assert abs(np.mean(w[:, i] < 0.2) - 0.36) < 0.01


def test_token_cap_limits_the_weight() -> None:
    b = validate_mixture_bounds(
        ["web", "code", "books"],
        tokens_available={"web": 1e12, "code": 2e9, "books": 1e9},
        max_epochs=4,
        total_tokens=1e10,
    )
    assert b.hi == pytest.approx((1.0, 0.8, 0.4))
    w = b.from_unit(np.random.default_rng(1).random((1000, 2)))
    assert np.all(w[:, 1] <= 0.8 + 1e-12)
    assert np.all(w[:, 2] <= 0.4 + 1e-12)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"low": 0.4}, r"lower bounds sum to 1\.2 > 1"),
        ({"high": 0.3}, r"upper bounds .* sum to 0\.9 < 1"),
        ({"low": {"a": 0.5}, "high": {"a": 0.4}}, r"domain 'a': `low` = 0\.5 exceeds"),
        ({"low": -0.1}, r"`low` for domain 'a' must be in \[0, 1\]"),
        ({"high": [0.5, 0.5]}, r"`high` has 2 values but there are 3 domains"),
        ({"low": {"z": 0.1}}, r"`low` names unknown domain"),
        (
            {"tokens_available": [1, 1, 1], "max_epochs": 1, "total_tokens": 10},
            r"sum to 0\.3 < 1.*raise `high`, `max_epochs`",
        ),
        ({"tokens_available": [1, 1, 1]}, r"`tokens_available` and `max_epochs` go together"),
        ({"tokens_available": [1, 1, 1], "max_epochs": 2}, r"`total_tokens` is required"),
        ({"tokens_available": {"a": 1}, "max_epochs": 2, "total_tokens": 1}, r"missing domain"),
    ],
)
def test_impossible_bounds_raise(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        validate_mixture_bounds(["a", "b", "c"], **kwargs)  # type: ignore[arg-type]


def test_domains_must_be_unique_and_several() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        MixtureBounds.build(["a"])
    with pytest.raises(ValueError, match="must be unique"):
        MixtureBounds.build(["a", "a"])


def test_sample_is_uniform_in_a_box_and_feasible() -> None:
    b = MixtureBounds.build(list("abcd"), low=0.1, high=0.4)
    w = b.sample(2000, rng=3)
    assert w.shape == (2000, 4)
    assert b.contains(w).all()
    assert np.allclose(w.mean(axis=0), 0.25, atol=0.01)


def test_tight_region_falls_back_to_stick_breaking() -> None:
    # acceptance of Dirichlet(1) here is ~1e-6: the permuted stick-breaking path fills in
    b = MixtureBounds.build(list("abcdef"), low=[0.3, 0.2, 0.1, 0.1, 0.1, 0.1], high=0.32)
    w = b.sample(50, rng=0)
    assert w.shape == (50, 6)
    assert b.contains(w).all()


def test_log_ratio_round_trips() -> None:
    w = np.random.default_rng(0).dirichlet(np.ones(5), size=10)
    assert np.allclose(clr_inverse(clr(w, eps=0.0)), w)
    assert np.allclose(alr_inverse(alr(w, eps=0.0)), w)
    assert np.allclose(clr(w).sum(axis=1), 0.0)


def test_bounds_round_trip_through_a_dict() -> None:
    b = MixtureBounds.build(list("abc"), low={"a": 0.2}, high=0.7)
    assert MixtureBounds.from_dict(b.to_dict()) == b
