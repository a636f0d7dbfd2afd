import gzip
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lawsearch.schedules import (
    DECAY_SHAPES,
    FAMILIES,
    Schedule,
    annealing_momentum,
    intrinsic_time,
)

PEAK, T, W = 1e-3, 1000, 100


def make(family: str, **kw: object) -> Schedule:
    if family == "piecewise":
        kw = {"knots": (1.0, 0.5, 0.0)} | {k: v for k, v in kw.items() if k != "milestones"}
    return Schedule(family, peak_lr=PEAK, total_steps=T, warmup_steps=W, **kw)  # type: ignore[arg-type]


def test_warmup_is_linear_from_zero() -> None:
    for family in FAMILIES:
        lr = make(family, milestones=(500,)).per_step()
        np.testing.assert_allclose(lr[:W], PEAK * np.arange(W) / W)
        assert lr[W] == pytest.approx(PEAK)


def test_warmup_can_include_the_peak() -> None:
    lr = make("constant", warmup_includes_peak=True).per_step()
    assert lr[0] == 0.0 and lr[W - 1] == PEAK
    np.testing.assert_allclose(lr[:W], PEAK * np.arange(W) / (W - 1))


def test_constant() -> None:
    np.testing.assert_array_equal(make("constant").per_step()[W:], PEAK)


@pytest.mark.parametrize("family", ["linear", "cosine"])
def test_linear_and_cosine_reach_final_at_the_last_step(family: str) -> None:
    lr = make(family, final_lr=1e-4).per_step()
    assert lr[W] == pytest.approx(PEAK)
    assert lr[T - 1] == pytest.approx(1e-4)
    assert np.all(np.diff(lr[W:]) <= 0)
    mid = W + (T - 1 - W) / 2
    assert make(family, final_lr=1e-4).lr(mid) == pytest.approx(PEAK / 2 + 1e-4 / 2)


def test_cosine_values_at_key_steps() -> None:
    s = make("cosine", final_lr=0.0)
    u = (np.array([W, 300, 700]) - W) / (T - 1 - W)
    np.testing.assert_allclose(s.lr([W, 300, 700]), PEAK * 0.5 * (1 + np.cos(np.pi * u)))


def test_decay_can_end_one_past_the_last_step() -> None:
    s = make("cosine", final_lr=1e-4, decay_ends_at_last_step=False)
    assert s.lr(T) == pytest.approx(1e-4)
    assert s.per_step()[-1] > 1e-4


@pytest.mark.parametrize("shape", DECAY_SHAPES)
def test_wsd_shapes(shape: str) -> None:
    s = make("wsd", final_lr=1e-5, decay_fraction=0.2, decay_shape=shape)
    lr = s.per_step()
    assert s.decay_start == 800
    np.testing.assert_array_equal(lr[W:800], PEAK)
    assert np.all(np.diff(lr[800:]) < 0)
    assert lr[T - 1] == pytest.approx(1e-5)
    u = (900 - 800) / (T - 1 - 800)
    expected = {
        "linear": PEAK + (1e-5 - PEAK) * u,
        "cosine": 1e-5 + (PEAK - 1e-5) * 0.5 * (1 + math.cos(math.pi * u)),
        "1-sqrt": 1e-5 + (PEAK - 1e-5) * (1 - math.sqrt(u)),
        "exponential": PEAK ** (1 - u) * 1e-5**u,
    }[shape]
    assert s.lr(900) == pytest.approx(expected)


def test_multistep_exponential_inverse_sqrt() -> None:
    ms = make("multistep", milestones=(400, 700), gamma=0.5)
    np.testing.assert_allclose(
        ms.lr([399, 400, 699, 700, 999]), PEAK * np.array([1, 0.5, 0.5, 0.25, 0.25])
    )
    ex = make("exponential", gamma=0.99)
    np.testing.assert_allclose(ex.lr([W, W + 10]), [PEAK, PEAK * 0.99**10])
    inv = make("inverse_sqrt")
    np.testing.assert_allclose(inv.lr([W, 4 * W]), [PEAK, PEAK / 2])
    for s in (ms, ex, inv):
        assert np.all(np.diff(s.per_step()[W:]) <= 0)


def test_dict_round_trip() -> None:
    s = make("wsd", final_lr=1e-5, decay_shape="cosine", milestones=(10, 20))
    d = s.to_dict()
    assert d["milestones"] == [10, 20]
    assert Schedule.from_dict(d) == s


def test_unknown_key_and_family_suggest_the_closest() -> None:
    with pytest.raises(
        ValueError, match="unknown schedule key 'warmup_step'; did you mean 'warmup_steps'"
    ):
        Schedule.from_dict(
            {"family": "cosine", "peak_lr": 1e-3, "total_steps": 10, "warmup_step": 1}
        )
    with pytest.raises(ValueError, match="did you mean 'cosine'"):
        Schedule("cosin", peak_lr=1e-3, total_steps=10)
    with pytest.raises(ValueError, match="did you mean '1-sqrt'"):
        Schedule("wsd", peak_lr=1e-3, total_steps=10, decay_shape="1-sqr")
    with pytest.raises(ValueError, match="missing required key"):
        Schedule.from_dict({"family": "cosine"})
    with pytest.raises(ValueError, match="`final_lr` must be in"):
        Schedule("cosine", peak_lr=1e-3, total_steps=10, final_lr=1.0)


def test_intrinsic_time_and_momentum_against_plain_loops() -> None:
    lr = make("wsd", final_lr=1e-5, decay_shape="linear").per_step()
    s1 = [0.0]
    for v in lr:
        s1.append(s1[-1] + v)
    np.testing.assert_allclose(intrinsic_time(lr), s1, rtol=1e-12)
    m, s2 = 0.0, [0.0]
    for i in range(lr.size):
        m = 0.99 * m + ((lr[i - 1] - lr[i]) if i else 0.0)
        s2.append(s2[-1] + m)
    np.testing.assert_allclose(annealing_momentum(lr, 0.99), s2, rtol=1e-9, atol=1e-15)
    with pytest.raises(ValueError, match=r"`decay` must be in \(0, 1\)"):
        annealing_momentum(lr, 1.0)


@settings(max_examples=50, deadline=None)
@given(
    family=st.sampled_from(FAMILIES),
    shape=st.sampled_from(DECAY_SHAPES),
    total=st.integers(2, 3000),
    warm_frac=st.floats(0.0, 0.9),
    final_frac=st.floats(0.01, 1.0),
    decay_fraction=st.floats(0.01, 1.0),
)
def test_lr_stays_within_zero_and_peak(
    family: str, shape: str, total: int, warm_frac: float, final_frac: float, decay_fraction: float
) -> None:
    s = Schedule(
        family,
        peak_lr=PEAK,
        total_steps=total,
        warmup_steps=int(warm_frac * (total - 1)),
        final_lr=PEAK * final_frac,
        decay_fraction=decay_fraction,
        decay_shape=shape,
        gamma=0.5,
        **(
            {"knots": (1.0, 0.5 + 0.5 * final_frac, final_frac)}
            if family == "piecewise"
            else {"milestones": (total // 2 + 1,)}
        ),
    )
    lr = s.per_step()
    assert np.all(lr >= 0) and np.all(lr <= PEAK * (1 + 1e-12))
    if family == "wsd" and s.decay_start < total - 1:
        assert lr[-1] == pytest.approx(PEAK * final_frac, rel=1e-9)


def test_rebuilds_the_recorded_schedules(shared_data: Path) -> None:
    table: dict[str, list[float]] = {}
    with gzip.open(shared_data / "lr_schedules" / "lr_per_step.csv.gz", "rt") as fh:
        next(fh)
        for line in fh:
            sid, _, lr = line.rstrip("\n").split(",")
            table.setdefault(sid, []).append(float(lr))
    common = {"peak_lr": 3e-4, "warmup_steps": 2160, "warmup_includes_peak": True}
    common["decay_ends_at_last_step"] = False
    specs = {
        "constant_24000": {"family": "constant", "total_steps": 24000},
        "cosine_24000": {"family": "cosine", "total_steps": 24000, "final_lr": 3e-5},
        "cosine_72000": {"family": "cosine", "total_steps": 72000, "final_lr": 3e-5},
        "wsd_20000_24000": {
            "family": "wsd",
            "total_steps": 24000,
            "final_lr": 3e-5,
            "decay_fraction": 4000 / 24000,
            "decay_shape": "exponential",
        },
        "wsdld_20000_24000": {
            "family": "wsd",
            "total_steps": 24000,
            "final_lr": 3e-5,
            "decay_fraction": 4000 / 24000,
            "decay_shape": "linear",
        },
        "wsdcon_9": {
            "family": "multistep",
            "total_steps": 16000,
            "milestones": [8000],
            "gamma": 0.3,
        },
    }
    for sid, spec in specs.items():
        rebuilt = Schedule.from_dict({**common, **spec}).per_step()
        np.testing.assert_allclose(rebuilt, table[sid], rtol=1e-12, atol=1e-18, err_msg=sid)


def test_piecewise_interpolates_its_knots_after_warmup() -> None:
    s = Schedule("piecewise", 1e-2, 101, warmup_steps=10, final_lr=1e-3, knots=(1.0, 1.0, 0.5, 0.1))
    lr = s.per_step()
    assert lr[10] == pytest.approx(1e-2) and lr[-1] == pytest.approx(1e-3)
    assert lr[5] == pytest.approx(5e-3)  # the warmup ramp
    assert np.all(np.diff(lr[10:]) <= 0)
    assert Schedule.from_dict(s.to_dict()) == s
    assert "knots" not in Schedule("cosine", 1e-2, 100).to_dict()  # other dicts unchanged


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"knots": (1.0,)}, "at least 2"),
        ({"knots": (0.9, 0.5)}, r"`knots\[0\]` must be 1.0"),
        ({"knots": (1.0, 0.5, 0.7)}, "non-increasing"),
        ({"knots": (1.0, 0.05)}, "within \\[final_lr, peak_lr\\]"),
        ({"knots": (1.0, 0.5), "knot_positions": (0.0, 0.5, 1.0)}, "one position per knot"),
        ({"knots": (1.0, 0.5, 0.2), "knot_positions": (0.0, 0.7, 0.6)}, "increase strictly"),
    ],
)
def test_piecewise_refuses_bad_knots(kw, match) -> None:
    with pytest.raises(ValueError, match=match):
        Schedule("piecewise", 1e-2, 100, final_lr=1e-3, **kw)


def test_knots_belong_to_piecewise_only() -> None:
    with pytest.raises(ValueError, match="belong to family 'piecewise'"):
        Schedule("cosine", 1e-2, 100, knots=(1.0, 0.5))
