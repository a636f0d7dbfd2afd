"""suggest_mixture / suggest_schedule with every built-in sampler."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lawsearch.mixtures import MixtureBounds
from lawsearch.optuna import (
    attrs,
    get_schedule,
    mixture_from_params,
    mixture_specs,
    suggest_mixture,
    suggest_schedule,
    validate_mixture_bounds,
)
from lawsearch.schedules import Schedule

optuna.logging.set_verbosity(optuna.logging.WARNING)

DOMAINS = ["web", "code", "books", "wiki"]
TOKENS = {"web": 1e12, "code": 3e9, "books": 1e9, "wiki": 2e9}


def _samplers(seed: int) -> dict[str, optuna.samplers.BaseSampler]:
    return {
        "tpe": optuna.samplers.TPESampler(seed=seed, n_startup_trials=4),
        "random": optuna.samplers.RandomSampler(seed=seed),
        "cmaes": optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=2),
        "qmc": optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False),
        "gp": optuna.samplers.GPSampler(seed=seed, n_startup_trials=4),
    }


@st.composite
def box(draw: st.DrawFn) -> dict[str, object]:
    low = {d: draw(st.floats(0.0, 0.2)) for d in DOMAINS}
    high = {d: draw(st.floats(0.3, 1.0)) for d in DOMAINS}
    max_epochs = draw(st.sampled_from([None, 1.0, 4.0]))
    if max_epochs is None:
        return {"low": low, "high": high}
    return {
        "low": low,
        "high": high,
        "tokens_available": TOKENS,
        "max_epochs": max_epochs,
        "total_tokens": 1e10,
    }


def _check(study: optuna.Study, bounds: MixtureBounds, kw: dict[str, object]) -> None:
    for t in study.trials:
        w = np.array([t.user_attrs[f"{attrs.MIXTURE_WEIGHT_PREFIX}mix:{d}"] for d in DOMAINS])
        assert abs(w.sum() - 1.0) < 1e-9
        assert bounds.contains(w, tol=1e-9).all()
        if kw.get("max_epochs"):
            cap = np.array([TOKENS[d] for d in DOMAINS]) * kw["max_epochs"] / 1e10  # type: ignore[operator]
            assert np.all(w <= cap + 1e-9)
        assert mixture_from_params(t.params, "mix", bounds) == pytest.approx(
            dict(zip(DOMAINS, w, strict=True))
        )


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
@pytest.mark.parametrize("name", ["tpe", "random", "cmaes", "qmc"])
@settings(max_examples=8, deadline=None)
@given(kw=box(), seed=st.integers(0, 1000))
def test_mixture_sums_to_one_within_bounds_for_every_sampler(
    name: str, kw: dict[str, object], seed: int
) -> None:
    if name == "cmaes":
        pytest.importorskip("cmaes", reason="CmaEsSampler needs the `cmaes` package ([dev] extra)")
    try:
        bounds = validate_mixture_bounds(DOMAINS, **kw)  # type: ignore[arg-type]
    except ValueError:
        return  # an infeasible draw: covered by test_impossible_bounds_fail_before_any_trial
    target = np.array([0.4, 0.3, 0.2, 0.1])

    def objective(trial: optuna.Trial) -> float:
        w = suggest_mixture(trial, "mix", DOMAINS, **kw)  # type: ignore[arg-type]
        return float(np.sum((np.array(list(w.values())) - target) ** 2))

    study = optuna.create_study(sampler=_samplers(seed)[name])
    study.optimize(objective, n_trials=7)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    _check(study, bounds, kw)
    assert mixture_specs(study) == {"mix": bounds}


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_mixture_with_the_gp_sampler() -> None:
    kw: dict[str, object] = {
        "low": 0.05,
        "high": 0.6,
        "tokens_available": TOKENS,
        "max_epochs": 2.0,
        "total_tokens": 1e10,
    }
    bounds = validate_mixture_bounds(DOMAINS, **kw)  # type: ignore[arg-type]

    def objective(trial: optuna.Trial) -> float:
        w = suggest_mixture(trial, "mix", DOMAINS, **kw)  # type: ignore[arg-type]
        return float(np.sum((np.array(list(w.values())) - 0.25) ** 2))

    study = optuna.create_study(sampler=_samplers(0)["gp"])
    study.optimize(objective, n_trials=6)
    _check(study, bounds, kw)


def test_impossible_bounds_fail_before_any_trial() -> None:
    with pytest.raises(ValueError, match=r"lower bounds sum to 1\.2 > 1"):
        validate_mixture_bounds(DOMAINS, low=0.3)
    study = optuna.create_study()
    with pytest.raises(ValueError, match=r"upper bounds .* sum to 0\.8 < 1"):
        study.optimize(lambda t: sum(suggest_mixture(t, "m", DOMAINS, high=0.2).values()), 1)


def test_a_mixture_name_keeps_its_bounds() -> None:
    study = optuna.create_study()
    study.optimize(lambda t: suggest_mixture(t, "m", DOMAINS)["web"], n_trials=1)
    with pytest.raises(ValueError, match=r"already registered .* use a new mixture name"):
        study.optimize(
            lambda t: suggest_mixture(t, "m", DOMAINS, high=0.5)["web"],
            n_trials=1,
            catch=(),
        )


def test_fixed_trial_and_enqueued_points() -> None:
    bounds = MixtureBounds.build(DOMAINS)
    x = bounds.to_unit(np.array([0.4, 0.3, 0.2, 0.1]))
    trial = optuna.trial.FixedTrial({f"mix:stick{i}": float(v) for i, v in enumerate(x)})
    assert suggest_mixture(trial, "mix", DOMAINS) == pytest.approx(
        {"web": 0.4, "code": 0.3, "books": 0.2, "wiki": 0.1}
    )


def test_suggest_schedule_builds_and_stores_a_schedule() -> None:
    seen: list[Schedule] = []

    def objective(trial: optuna.Trial) -> float:
        s = suggest_schedule(trial, total_steps=1000, families=("wsd", "cosine"))
        seen.append(s)
        assert get_schedule(trial.user_attrs) == s
        return s.peak_lr

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=12)
    assert {s.family for s in seen} == {"wsd", "cosine"}
    for s, t in zip(seen, study.trials, strict=True):
        assert 1e-4 <= s.peak_lr <= 1e-2 and 0 <= s.warmup_steps <= 100
        assert s.total_steps == 1000
        assert ("schedule:decay_fraction" in t.params) == (s.family == "wsd")
        assert Schedule.from_dict(t.user_attrs[attrs.SCHEDULE]) == s


def test_suggest_schedule_fixed_values_add_no_parameters() -> None:
    trial = optuna.trial.FixedTrial({})
    s = suggest_schedule(trial, total_steps=100, families=("cosine",), peak_lr=3e-4, warmup=0.1)
    assert s == Schedule(family="cosine", peak_lr=3e-4, total_steps=100, warmup_steps=10)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"families": ("cosin",)}, r"unknown family 'cosin'"),
        ({"families": ()}, r"`families` is empty"),
        ({"peak_lr": (1e-2, 1e-3)}, r"`peak_lr` must be a number or a \(low, high\) range"),
        ({"peak_lr": (0.0, 1e-3)}, r"`peak_lr` must be > 0"),
        ({"total_steps": 1}, r"`total_steps` must be an integer >= 2"),
    ],
)
def test_suggest_schedule_rejects_bad_input(kwargs: dict[str, object], match: str) -> None:
    opts: dict[str, object] = {"total_steps": 100}
    opts.update(kwargs)
    with pytest.raises(ValueError, match=match):
        suggest_schedule(optuna.trial.FixedTrial({}), **opts)  # type: ignore[arg-type]
