"""The law-proposed schedule: valid, within bounds, and predicted to beat the hand families."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lawsearch.laws import LRTrack, MultiPowerLaw, PowerLaw
from lawsearch.schedule_opt import optimise_schedule, predict_final
from lawsearch.schedules import Schedule

#: a Multi-Power Law as fitted on the recorded grid's demo runs at peak 3e-3 (LR unit 1e-3)
TRUE = {
    "L0": 3.108,
    "A": 0.447,
    "alpha": 1.07,
    "S_W": 0.148,
    "B": 427.6,
    "C": 9.96,
    "beta": 0.34,
    "gamma": 0.38,
}
T, PEAK, FINAL, WARM = 240, 3e-3, 3e-4, 5


@pytest.fixture(scope="module")
def law_fit():
    """The law fitted (its linear parameters) to a cosine curve it generated itself."""
    law = MultiPowerLaw()
    sched = Schedule("cosine", PEAK, T, warmup_steps=WARM, final_lr=FINAL)
    steps = np.arange(24, T + 1, 3, dtype=float)
    theta = np.array([TRUE[n] for n in law.param_names])
    lrs = np.append(sched.per_step(), FINAL)
    losses = law.predict_from(theta, steps, LRTrack(lrs))
    fixed = {k: v for k, v in TRUE.items() if k not in ("L0", "A", "B")}
    fit = law.fit(steps, losses, lrs=lrs, fixed=fixed)
    assert fit.ok and fit.params["B"] == pytest.approx(TRUE["B"], rel=1e-3)
    return fit


def test_proposal_is_valid_within_bounds_and_beats_the_hand_families(law_fit) -> None:
    prop = optimise_schedule(
        law_fit, total_steps=T, peak_lr=PEAK, final_lr=FINAL, warmup=WARM, knots=8
    )
    s = prop.schedule
    assert s.family == "piecewise" and len(s.knots) == 8
    lr = s.per_step()
    after = lr[WARM:]
    assert np.all(np.diff(after) <= 1e-15)  # monotone non-increasing after warmup
    assert after.max() <= PEAK * (1 + 1e-12) and after.min() >= FINAL * (1 - 1e-12)
    # JSON round trip: what a trial stores is what a trainer rebuilds
    assert Schedule.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    assert prop.predicted_final == pytest.approx(predict_final(law_fit, s), rel=1e-9)
    assert prop.predicted_final < prop.baselines["cosine"]
    assert all(prop.predicted_final <= v for k, v in prop.baselines.items() if k.startswith("wsd"))
    # WSD-like: at peak for the first half of the decay phase, then a decay
    half = WARM + (T - 1 - WARM) // 2
    assert lr[half] >= 0.99 * PEAK
    assert lr[-1] <= 0.7 * PEAK
    # the cosine of the same peak is far below the peak by then
    assert Schedule("cosine", PEAK, T, warmup_steps=WARM, final_lr=FINAL).lr(half) < 0.6 * PEAK


def test_final_equal_to_peak_gives_the_constant_schedule(law_fit) -> None:
    prop = optimise_schedule(law_fit, total_steps=T, peak_lr=PEAK, final_lr=PEAK, warmup=WARM)
    assert set(prop.schedule.knots) == {1.0}


def test_bad_inputs_name_the_field(law_fit) -> None:
    with pytest.raises(ValueError, match="`knots` must be an integer >= 2"):
        optimise_schedule(law_fit, total_steps=T, peak_lr=PEAK, knots=1)
    with pytest.raises(ValueError, match="`final_lr` must be in"):
        optimise_schedule(law_fit, total_steps=T, peak_lr=PEAK, final_lr=2 * PEAK)
    with pytest.raises(ValueError, match="`knot_positions`"):
        optimise_schedule(law_fit, total_steps=T, peak_lr=PEAK, knots=3, knot_positions=(0, 1))
    steps = np.arange(1, 40, dtype=float)
    power = PowerLaw().fit(steps, 3 + steps**-0.5)
    with pytest.raises(ValueError, match="schedule-aware"):
        optimise_schedule(power, total_steps=T, peak_lr=PEAK)


def _hands(final: float = FINAL) -> list[Schedule]:
    common = {"warmup_steps": WARM, "final_lr": final}
    return [
        Schedule("linear", PEAK, T, **common),
        Schedule("wsd", PEAK, T, decay_fraction=0.1, **common),
        Schedule("wsd", PEAK, T, decay_fraction=0.3, **common),
        Schedule("constant", PEAK, T, warmup_steps=WARM, final_lr=PEAK),
    ]


def test_within_proposes_a_convex_combination_no_worse_than_any_member(law_fit) -> None:
    members = _hands()
    prop = optimise_schedule(
        law_fit, total_steps=T, peak_lr=PEAK, final_lr=FINAL, warmup=WARM, within=members
    )
    w = np.array(prop.weights)
    assert w.size == len(members) and np.all(w >= 0) and w.sum() == pytest.approx(1.0)
    lr = prop.schedule.per_step()
    # piecewise-linear members: the proposal is their combination step by step, exactly
    combined = w @ np.array([m.per_step() for m in members])
    np.testing.assert_allclose(lr, combined, rtol=1e-9, atol=1e-12 * PEAK)
    after = lr[WARM:]
    assert np.all(np.diff(after) <= 1e-15) and after.min() >= FINAL * (1 - 1e-12)
    assert Schedule.from_dict(json.loads(json.dumps(prop.schedule.to_dict()))) == prop.schedule
    assert prop.predicted_final == pytest.approx(predict_final(law_fit, prop.schedule), rel=1e-9)
    assert all(prop.predicted_final <= predict_final(law_fit, m) + 1e-9 for m in members)
    # a real mixture here, not a member: the law's best lies between the shapes it saw
    assert np.sort(w)[-2] > 0.1


def test_within_one_schedule_returns_it(law_fit) -> None:
    cosine = Schedule("cosine", PEAK, T, warmup_steps=WARM, final_lr=FINAL)
    prop = optimise_schedule(
        law_fit, total_steps=T, peak_lr=PEAK, final_lr=FINAL, warmup=WARM, within=[cosine]
    )
    assert prop.weights == (1.0,)
    # 65 knots: cosine's curvature between them is all that differs
    np.testing.assert_allclose(prop.schedule.per_step(), cosine.per_step(), rtol=2e-3)
    assert prop.predicted_final == pytest.approx(predict_final(law_fit, cosine), rel=1e-4)


def test_within_bad_members_name_the_field(law_fit) -> None:
    kw = {"total_steps": T, "peak_lr": PEAK, "final_lr": FINAL, "warmup": WARM}
    with pytest.raises(ValueError, match="`within` must be a non-empty list"):
        optimise_schedule(law_fit, within=[], **kw)
    other_peak = Schedule("cosine", 2 * PEAK, T, warmup_steps=WARM, final_lr=FINAL)
    with pytest.raises(ValueError, match=r"`within\[0\]` has peak_lr="):
        optimise_schedule(law_fit, within=[other_peak], **kw)
    too_low = Schedule("cosine", PEAK, T, warmup_steps=WARM, final_lr=FINAL / 2)
    with pytest.raises(ValueError, match=r"`within\[1\]` \(cosine\) rises after warmup or ends"):
        optimise_schedule(law_fit, within=[_hands()[0], too_low], **kw)
