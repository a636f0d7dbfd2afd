import pickle
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lawsearch._curve import Curve, FloatArray
from lawsearch._errors import FitError
from lawsearch.laws import Law, LRTrack, Param, PowerLaw
from lawsearch.laws._ensemble import EnsembleFitResult, EnsembleLaw
from lawsearch.laws._two_phase import TwoPhaseLaw
from lawsearch.schedules import Schedule
from tests.laws.conformance import LawConformance


class _PowerTruth(LawConformance):
    """Ensemble conformance: data come from a power law, whose member must recover it."""

    power_truth: ClassVar[dict[str, float]]

    def true_losses(self) -> np.ndarray:
        member = self.law.members[0]  # type: ignore[attr-defined]
        theta = np.array([self.power_truth[n] for n in member.param_names])
        track = LRTrack(self.lrs) if self.lrs is not None else None
        return member.predict_from(theta, self.steps, track)


class TestEnsembleAIC(_PowerTruth):
    law = EnsembleLaw(members=(PowerLaw(), TwoPhaseLaw()))
    power_truth: ClassVar[dict[str, float]] = {"E": 2.0, "A": 5.0, "alpha": 0.4, "t0": 100.0}
    truth: ClassVar[dict[str, float]] = {f"power.{k}": v for k, v in power_truth.items()}
    steps = np.arange(100.0, 5000.0, 50.0)
    rtol: ClassVar[dict[str, float]] = {"power.t0": 0.5}


class TestEnsembleStackingIntrinsic(_PowerTruth):
    law = EnsembleLaw(
        members=(PowerLaw(time="intrinsic"), TwoPhaseLaw(time="intrinsic")), method="stacking"
    )
    power_truth: ClassVar[dict[str, float]] = {"E": 2.5, "A": 1.0, "alpha": 0.5, "t0": 0.1}
    truth: ClassVar[dict[str, float]] = {f"power.{k}": v for k, v in power_truth.items()}
    lrs = Schedule("cosine", peak_lr=1e-3, total_steps=6000, warmup_steps=100).per_step()
    steps = np.arange(200.0, 6000.0, 120.0)
    rtol: ClassVar[dict[str, float]] = {"power.t0": 0.5}


def two_phase_curve(steps: np.ndarray, seed: int = 0) -> np.ndarray:
    clean = TwoPhaseLaw().predict_from(np.array([2.0, 8.0, 0.5, 200.0, 1000.0]), steps, None)
    return clean * np.exp(np.random.default_rng(seed).normal(0.0, 1e-3, steps.size))


STEPS = np.arange(20.0, 6000.0, 30.0)


@pytest.mark.parametrize("method", ["aic", "bic", "stacking"])
def test_weights_are_a_distribution_and_favour_the_true_law(method: str) -> None:
    result = EnsembleLaw(method=method).fit(STEPS, two_phase_curve(STEPS))
    w = np.array(result.member_weights)
    assert isinstance(result, EnsembleFitResult)
    assert w.sum() == pytest.approx(1.0)
    assert np.all(w >= 0)
    assert result.params["w_two_phase"] > 0.5
    assert result.params["w_two_phase"] == w[1]
    assert method in result.message


def test_prediction_is_the_weighted_average_of_members() -> None:
    result = EnsembleLaw().fit(STEPS[:80], two_phase_curve(STEPS)[:80])
    future = np.array([3000.0, 6000.0])
    expected = sum(
        w * r.predict(future)
        for w, r in zip(result.member_weights, result.members, strict=True)
        if r is not None
    )
    np.testing.assert_allclose(result.predict(future), expected)
    # the parametric form agrees with the delegation
    np.testing.assert_allclose(result.law.predict_from(result.theta, future, None), expected)


def test_interval_widens_by_the_spread_of_members() -> None:
    y = two_phase_curve(STEPS)
    n = 100  # a short prefix: the members disagree about the far future
    fitted = EnsembleLaw().fit(STEPS[:n], y[:n])
    assert all(r is not None for r in fitted.members)
    # the property holds for any weights; fix balanced ones to see both members
    result = replace(fitted, member_weights=(0.5, 0.5))
    far = np.array([1e5])
    preds = [r.predict(far)[0] for r in result.members if r is not None]
    assert abs(np.log(preds[0] / preds[1])) > 1e-3  # they do disagree
    spread = result.between_sd(far)[0]
    assert spread == pytest.approx(abs(np.log(preds[0] / preds[1])) / 2, rel=1e-9)
    lo, hi = result.interval(far)
    width = np.log(hi / lo)[0]
    member_widths = []
    for r in result.members:
        assert r is not None
        lo_m, hi_m = r.interval(far)
        member_widths.append(np.log(hi_m / lo_m)[0])
    # within-member variance alone would give at most the wider member's width
    z = 1.6448536269514722
    within_only = 2 * z * np.sqrt(np.mean((np.array(member_widths) / (2 * z)) ** 2))
    assert width == pytest.approx(2 * z * np.sqrt((within_only / (2 * z)) ** 2 + spread**2))
    assert width > within_only
    assert lo[0] <= min(preds) and hi[0] >= max(preds)


@dataclass(frozen=True)
class _NeverFits(Law):
    """A law whose every prediction is negative: its fit always fails."""

    name = "never"

    def params(self) -> tuple[Param, ...]:
        return (Param("c", 0.0, 1.0, "a constant"),)

    def features(self, steps: FloatArray, track: LRTrack | None) -> Any:
        return steps

    def evaluate(self, theta: FloatArray, feats: Any) -> FloatArray:
        return np.full(np.shape(feats), -1.0 - theta[0])

    def initial_guesses(self, curve: Curve) -> list[FloatArray]:
        return [np.array([0.5])]


def test_failed_members_are_dropped() -> None:
    law = EnsembleLaw(members=(PowerLaw(), _NeverFits()))
    result = law.fit(STEPS, two_phase_curve(STEPS))
    assert result.ok
    assert result.params["w_never"] == 0.0
    assert result.params["w_power"] == 1.0
    assert "never dropped" in result.message
    np.testing.assert_allclose(result.predict(STEPS), result.members[0].predict(STEPS))  # type: ignore[union-attr]


def test_member_with_too_few_points_is_dropped_not_raised() -> None:
    law = EnsembleLaw(members=(PowerLaw(), TwoPhaseLaw()))
    result = law.fit(STEPS[:5], two_phase_curve(STEPS)[:5])
    assert result.params["w_two_phase"] == 0.0
    assert "two_phase dropped" in result.message and "needs at least" in result.message


def test_all_members_failed_is_a_failed_status() -> None:
    result = EnsembleLaw(members=(_NeverFits(), _NeverFits())).fit(STEPS, two_phase_curve(STEPS))
    assert result.status == "failed"
    assert "all members failed" in result.message
    assert law_keys(result) == ("never", "never_2")
    with pytest.raises(FitError, match="cannot predict from a failed"):
        result.predict(STEPS)
    clone = pickle.loads(pickle.dumps(result))
    assert clone.status == "failed"


def law_keys(result: EnsembleFitResult) -> tuple[str, ...]:
    law = result.law
    assert isinstance(law, EnsembleLaw)
    return law.keys


def test_prior_and_fixed_are_routed_to_members() -> None:
    law = EnsembleLaw()
    y = two_phase_curve(STEPS)
    result = law.fit(STEPS, y, fixed={"power.t0": 50.0}, prior={"alpha": (0.5, 1e-4)})
    assert result.params["power.t0"] == 50.0
    assert result.params["power.alpha"] == pytest.approx(0.5, abs=0.02)
    assert result.params["two_phase.alpha"] == pytest.approx(0.5, abs=0.02)
    with pytest.raises(ValueError, match=r"unknown parameter 'alpah'.*did you mean 'alpha'"):
        law.fit(STEPS, y, prior={"alpah": (0.5, 0.1)})
    with pytest.raises(ValueError, match="weights cannot be fixed"):
        law.fit(STEPS, y, fixed={"w_power": 1.0})


def test_members_by_name_and_bad_options() -> None:
    law = EnsembleLaw(members=("power", "two_phase"))  # type: ignore[arg-type]
    assert law == EnsembleLaw() == EnsembleLaw(members="power, two_phase")  # type: ignore[arg-type]
    assert law.members == (PowerLaw(), TwoPhaseLaw())
    timed = EnsembleLaw(members="power,two_phase", time="intrinsic")  # type: ignore[arg-type]
    assert timed.members == (PowerLaw(time="intrinsic"), TwoPhaseLaw(time="intrinsic"))
    assert timed.uses_lr
    with pytest.raises(ValueError, match="`time` must be one of"):
        EnsembleLaw(time="tokens")
    with pytest.raises(ValueError, match="`method` must be one of"):
        EnsembleLaw(method="average")
    with pytest.raises(ValueError, match="`members` must name at least one law"):
        EnsembleLaw(members=())
    with pytest.raises(ValueError, match="`holdout` must be in"):
        EnsembleLaw(holdout=0.9)


def test_summary_is_json_safe_and_lists_members() -> None:
    import json

    result = EnsembleLaw().fit(STEPS, two_phase_curve(STEPS))
    summary = result.summary()
    assert set(summary["members"]) == {"power", "two_phase"}
    json.dumps(summary)


def test_pooled_fit_shares_member_exponents_and_weights_each_run() -> None:
    law = EnsembleLaw()
    curves = [
        {"steps": STEPS[:100], "losses": two_phase_curve(STEPS, seed=s)[:100]} for s in range(3)
    ]
    results = law.fit_pooled(curves, shared=("alpha",))
    assert len(results) == 3
    for r in results:
        assert isinstance(r, EnsembleFitResult) and r.ok
        assert sum(r.member_weights) == pytest.approx(1.0)
    alphas = {r.params["two_phase.alpha"] for r in results}
    assert len(alphas) == 1  # shared across runs
    assert results[0].params["two_phase.A"] != results[1].params["two_phase.A"]


def test_shared_params_are_qualified_nonlinear_member_params() -> None:
    shared = EnsembleLaw().shared_params()
    assert "power.alpha" in shared and "two_phase.tc" in shared
    assert not any(n.startswith("w_") for n in shared)
    assert "power.E" not in shared


def test_temporal_members_are_rejected() -> None:
    with pytest.raises(ValueError, match="cannot include TemporalLaw"):
        EnsembleLaw(members=("power", "temporal"))  # type: ignore[arg-type]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.one_of(st.none(), st.floats(-1e4, 1e4)), min_size=1, max_size=5))
def test_ic_weights_are_a_distribution_favouring_the_lowest(aics: list[float | None]) -> None:
    from lawsearch.laws._ensemble import _ic_weights

    if all(a is None for a in aics):
        return
    fits = [None if a is None else _FakeFit(aic=a, bic=a) for a in aics]
    w = _ic_weights(fits, "aic")  # type: ignore[arg-type]
    assert w.sum() == pytest.approx(1.0) and np.all(w >= 0)
    assert all(wi == 0 for wi, a in zip(w, aics, strict=True) if a is None)
    best = int(np.nanargmin([np.inf if a is None else a for a in aics]))
    assert w[best] == w.max()


@dataclass(frozen=True)
class _FakeFit:
    aic: float
    bic: float
