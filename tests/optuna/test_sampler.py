"""LawSampler: fallback, retrieval within bounds, learning from pruned trials, pickling."""

from __future__ import annotations

import pickle

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from lawsearch.mixtures import MixtureBounds, MixtureSurrogate
from lawsearch.optuna import (
    LawPruner,
    LawSampler,
    SimplexGP,
    attrs,
    mixture_from_params,
    suggest_mixture,
)
from tests.optuna._synthetic import TARGET, curve, objective

optuna.logging.set_verbosity(optuna.logging.WARNING)

DOMAINS = ["a", "b", "c", "d"]
BEST = np.array([0.5, 0.25, 0.15, 0.1])
HIGH = 0.6


def mixture_loss(trial: optuna.Trial) -> float:
    w = suggest_mixture(trial, "mix", DOMAINS, high=HIGH)
    lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    v = np.array([w[d] for d in DOMAINS])
    return float(np.sum((v - BEST) ** 2) + 1e-3 * (np.log10(lr) + 2) ** 2)


def _weights(study: optuna.Study, bounds: MixtureBounds) -> np.ndarray:
    rows = [mixture_from_params(t.params, "mix", bounds) for t in study.trials]
    return np.array([[r[d] for d in DOMAINS] for r in rows if r is not None])


def _params(study: optuna.Study) -> list[dict[str, float]]:
    return [t.params for t in study.trials]


def test_falls_back_to_the_inner_sampler_with_little_history() -> None:
    a = optuna.create_study(sampler=LawSampler(optuna.samplers.TPESampler(seed=3), min_history=8))
    a.optimize(mixture_loss, n_trials=8)
    b = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=3))
    b.optimize(mixture_loss, n_trials=8)
    assert _params(a) == _params(b)


def test_is_deterministic_under_a_seed_and_pickles() -> None:
    sampler = LawSampler(seed=7, n_candidates=256, surrogate=SimplexGP)
    clone = pickle.loads(pickle.dumps(sampler))
    a = optuna.create_study(sampler=sampler)
    a.optimize(mixture_loss, n_trials=14)
    b = optuna.create_study(sampler=clone)
    b.optimize(mixture_loss, n_trials=14)
    assert _params(a) == _params(b)


def test_proposals_stay_in_bounds_keep_distance_and_beat_random() -> None:
    bounds = MixtureBounds.build(DOMAINS, high=HIGH)
    sampler = LawSampler(seed=0, n_candidates=512, min_distance=0.02, surrogate=SimplexGP)
    study = optuna.create_study(sampler=sampler)
    study.optimize(mixture_loss, n_trials=30)
    w = np.array(
        [list(mixture_from_params(t.params, "mix", bounds).values()) for t in study.trials]
    )
    assert bounds.contains(w).all()
    late = w[8:]
    d = np.sqrt(((late[:, None] - w[None, :]) ** 2).sum(axis=2))
    for i in range(late.shape[0]):  # each retrieved pick is away from all earlier trials
        assert d[i, : 8 + i].min() >= 0.02 - 1e-9
    random_best = []
    for seed in range(3):
        r = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
        r.optimize(mixture_loss, n_trials=30)
        random_best.append(r.best_value)
    assert study.best_value < min(random_best)


def test_learns_from_pruned_trials_predictions() -> None:
    """Pruned trials feed the surrogate through lawsearch:predicted_final."""
    bounds = MixtureBounds.build(DOMAINS, high=HIGH)

    def values(trial: optuna.Trial) -> np.ndarray:
        w = suggest_mixture(trial, "mix", DOMAINS, high=HIGH)
        level = 1.0 + 10.0 * float(np.sum((np.array([w[d] for d in DOMAINS]) - BEST) ** 2))
        return curve(level, seed=trial.number)

    pruner = LawPruner(target_step=TARGET, warmup_steps=16, min_trials=2, sync_interval=0.0)
    sampler = LawSampler(
        optuna.samplers.RandomSampler(seed=1), min_history=6, seed=1, surrogate=SimplexGP
    )
    study = optuna.create_study(sampler=sampler, pruner=pruner)
    study.optimize(objective(values), n_trials=14)
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned and all(attrs.PREDICTED_FINAL in t.user_attrs for t in pruned)
    _, y, sd = sampler.history(study, "mix", bounds)
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert y.size == len(finished)  # pruned trials are in the surrogate's data
    assert np.all(sd > 0)


def test_thread_safe_with_n_jobs_2() -> None:
    sampler = LawSampler(seed=0, n_candidates=256, min_history=4, surrogate=SimplexGP)
    study = optuna.create_study(sampler=sampler)
    study.optimize(mixture_loss, n_trials=16, n_jobs=2)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    mixtures = {tuple(round(v, 9) for v in t.params.values()) for t in study.trials}
    assert len(mixtures) == len(study.trials)  # no two workers got the same point


def test_default_surrogate_is_the_mixture_surrogate() -> None:
    sampler = LawSampler(seed=0, n_candidates=128, min_history=4)
    assert isinstance(sampler._surrogate(), MixtureSurrogate)
    study = optuna.create_study(sampler=sampler)
    study.optimize(mixture_loss, n_trials=6)
    bounds = MixtureBounds.build(DOMAINS, high=HIGH)
    w = np.array(
        [list(mixture_from_params(t.params, "mix", bounds).values()) for t in study.trials]
    )
    assert bounds.contains(w).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_candidates": 0}, r"`n_candidates` must be >= 1; got 0"),
        ({"min_history": 1}, r"`min_history` must be >= 2"),
        ({"kappa": -1.0}, r"`kappa` must be >= 0"),
        ({"local_fraction": 2.0}, r"`local_fraction` must be in \[0, 1\]"),
    ],
)
def test_bad_options_raise(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        LawSampler(**kwargs)  # type: ignore[arg-type]
