"""``LawSampler``: propose mixtures by retrieval over a surrogate of predicted finals."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import optuna
from numpy.typing import NDArray
from optuna.distributions import BaseDistribution, FloatDistribution
from optuna.samplers import BaseSampler, TPESampler
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from lawsearch.mixtures import MixtureBounds, MixtureSurrogate
from lawsearch.optuna import _attrs
from lawsearch.optuna._mixture import mixture_param_names, mixture_specs

__all__ = ["LawSampler", "SimplexGP", "Surrogate"]

FloatArray = NDArray[np.float64]


class Surrogate(Protocol):
    """What ``LawSampler`` needs of a mixture surrogate (``MixtureSurrogate`` provides it)."""

    def fit(self, weights: FloatArray, losses: FloatArray, *, loss_std: Any = None) -> Any: ...

    def predict(self, weights: FloatArray) -> tuple[FloatArray, FloatArray]: ...


class SimplexGP:
    """A small, fast Gaussian-process surrogate on mixture weights.

    A cheap alternative to ``MixtureSurrogate`` (``LawSampler(surrogate=SimplexGP)``)
    when trials are short and a surrogate fit must take milliseconds.

    Squared-exponential kernel ``k(a, b) = s^2 exp(-|a - b|^2 / (2 l^2))`` on the
    weights, per-point noise ``loss_std^2`` plus a nugget; the length scale and
    the nugget maximise the marginal likelihood over a small grid. At most
    ``max_points`` points are kept (the best half and an even spread of the rest).
    """

    max_points = 256

    def fit(self, weights: FloatArray, losses: FloatArray, *, loss_std: Any = None) -> SimplexGP:
        x = np.asarray(weights, dtype=float)
        y = np.asarray(losses, dtype=float)
        sd = np.zeros(y.size) if loss_std is None else np.asarray(loss_std, dtype=float)
        if y.size > self.max_points:
            order = np.argsort(y)
            half = self.max_points // 2
            rest = order[half:][np.linspace(0, y.size - half - 1, half).astype(int)]
            keep = np.concatenate([order[:half], rest])
            x, y, sd = x[keep], y[keep], sd[keep]
        self._mu, self._scale = float(np.mean(y)), max(float(np.std(y)), 1e-12)
        z = (y - self._mu) / self._scale
        d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(axis=2)
        noise = (sd / self._scale) ** 2
        best: tuple[float, float, float] | None = None
        for ell in (0.05, 0.1, 0.2, 0.4, 0.8):
            kern = np.exp(-d2 / (2 * ell**2))
            for nugget in (1e-4, 1e-2, 1e-1):
                c = kern + np.diag(noise + nugget + 1e-9)
                try:
                    chol = np.linalg.cholesky(c)
                except np.linalg.LinAlgError:
                    continue
                alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, z))
                lml = -0.5 * float(z @ alpha) - float(np.log(np.diag(chol)).sum())
                if best is None or lml > best[0]:
                    best = (lml, ell, nugget)
        _, self._ell, nugget = best if best is not None else (0.0, 0.2, 1e-1)
        c = np.exp(-d2 / (2 * self._ell**2)) + np.diag(noise + nugget + 1e-9)
        self._chol = np.linalg.cholesky(c)
        self._alpha = np.linalg.solve(self._chol.T, np.linalg.solve(self._chol, z))
        self._x = x
        return self

    def predict(self, weights: FloatArray) -> tuple[FloatArray, FloatArray]:
        q = np.asarray(weights, dtype=float)
        d2 = ((q[:, None, :] - self._x[None, :, :]) ** 2).sum(axis=2)
        ks = np.exp(-d2 / (2 * self._ell**2))
        mean = ks @ self._alpha
        v = np.linalg.solve(self._chol, ks.T)
        var = np.maximum(1.0 - (v**2).sum(axis=0), 1e-12)
        return self._mu + self._scale * mean, self._scale * np.sqrt(var)


def _default_surrogate() -> Surrogate:
    return MixtureSurrogate()


class LawSampler(BaseSampler):
    """Propose data mixtures by retrieval; delegate everything else to an inner sampler.

    For each mixture created with ``suggest_mixture`` (its bounds are recorded in
    the study), once at least ``min_history`` finished trials carry a score, the
    sampler

    1. collects every finished trial's mixture and score: the final value of
       completed trials, ``lawsearch:predicted_final`` of pruned ones (so pruned
       trials still teach it), with a standard deviation from the prediction
       interval (wide intervals weigh less);
    2. fits the surrogate (``MixtureSurrogate`` by default) to them;
    3. draws ``n_candidates`` feasible mixtures (uniform in the bounds plus
       local moves around the best trials, all through the bounded stick-breaking
       map, so every candidate is feasible);
    4. returns the candidate with the lowest lower confidence bound
       ``mean - kappa * std`` (for minimisation) among those at least
       ``min_distance`` (Euclidean, on the simplex) from every mixture already
       tried or running, which keeps parallel workers from picking the same point.

    With less history the inner sampler proposes the mixture's stick coordinates
    like any other parameters.

    Args:
        inner: the sampler for ordinary parameters (default: ``TPESampler(seed=seed)``).
        n_candidates: candidate mixtures scored per proposal.
        min_history: finished, scored trials needed before retrieval starts.
        kappa: weight of the surrogate's std in the acquisition.
        min_distance: the diversity radius.
        local_fraction: share of candidates drawn around the best trials.
        surrogate: a factory of fresh surrogates (default ``MixtureSurrogate``).
        seed: seeds candidate draws (per trial number, so results do not depend
            on thread timing).
    """

    def __init__(
        self,
        inner: BaseSampler | None = None,
        *,
        n_candidates: int = 2048,
        min_history: int = 8,
        kappa: float = 1.0,
        min_distance: float = 0.02,
        local_fraction: float = 0.5,
        surrogate: Callable[[], Surrogate] | None = None,
        seed: int | None = None,
    ) -> None:
        if n_candidates < 1:
            raise ValueError(f"`n_candidates` must be >= 1; got {n_candidates!r}.")
        if min_history < 2:
            raise ValueError(f"`min_history` must be >= 2; got {min_history!r}.")
        if kappa < 0:
            raise ValueError(f"`kappa` must be >= 0; got {kappa!r}.")
        if min_distance < 0:
            raise ValueError(f"`min_distance` must be >= 0; got {min_distance!r}.")
        if not 0 <= local_fraction <= 1:
            raise ValueError(f"`local_fraction` must be in [0, 1]; got {local_fraction!r}.")
        self._inner = inner if inner is not None else TPESampler(seed=seed)
        self.n_candidates = int(n_candidates)
        self.min_history = int(min_history)
        self.kappa = float(kappa)
        self.min_distance = float(min_distance)
        self.local_fraction = float(local_fraction)
        self._surrogate = surrogate or _default_surrogate
        self._seed = (
            int(np.random.SeedSequence(seed).generate_state(1)[0]) if seed is None else seed
        )
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def reseed_rng(self) -> None:
        self._inner.reseed_rng()
        self._seed = _fresh_seed()

    # ---- search space -------------------------------------------------------------------
    def _active_mixtures(self, study: optuna.Study) -> dict[str, MixtureBounds]:
        specs = mixture_specs(study)
        if not specs:
            return {}
        trials = study._get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        out = {}
        for name, bounds in specs.items():
            names = mixture_param_names(name, bounds.k)
            n = sum(1 for t in trials if _score(t) is not None and names[0] in t.params)
            if n >= self.min_history:
                out[name] = bounds
        return out

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        space = dict(self._inner.infer_relative_search_space(study, trial))
        for name, bounds in self._active_mixtures(study).items():
            for p in mixture_param_names(name, bounds.k):
                space[p] = FloatDistribution(0.0, 1.0)
        return space

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        active = {
            name: bounds
            for name, bounds in mixture_specs(study).items()
            if all(p in search_space for p in mixture_param_names(name, bounds.k))
        }
        mixture_params = {p for n, b in active.items() for p in mixture_param_names(n, b.k)}
        inner_space = {k: v for k, v in search_space.items() if k not in mixture_params}
        out = dict(self._inner.sample_relative(study, trial, inner_space)) if inner_space else {}
        for name, bounds in active.items():
            x = self.propose(study, trial, name, bounds)
            if x is not None:
                out.update(
                    dict(zip(mixture_param_names(name, bounds.k), map(float, x), strict=True))
                )
        return out

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self._inner.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._inner.before_trial(study, trial)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._inner.after_trial(study, trial, state, values)

    # ---- retrieval --------------------------------------------------------------------------
    def history(
        self, study: optuna.Study, name: str, bounds: MixtureBounds
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Mixtures, scores and score std of the finished trials (scores: lower is better)."""
        names = mixture_param_names(name, bounds.k)
        sign = -1.0 if study.direction == StudyDirection.MAXIMIZE else 1.0
        xs, ys, sds = [], [], []
        for t in study._get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
            got = _score(t)
            if got is None or not all(p in t.params for p in names):
                continue
            xs.append([t.params[p] for p in names])
            ys.append(sign * got[0])
            sds.append(got[1])
        if not xs:
            k = bounds.k
            return np.zeros((0, k)), np.zeros(0), np.zeros(0)
        w = bounds.from_unit(np.clip(np.asarray(xs, dtype=float), 0.0, 1.0))
        y = np.asarray(ys, dtype=float)
        sd = np.asarray(sds, dtype=float)
        known = np.isfinite(sd) & (sd > 0)
        floor = float(np.min(sd[known])) if np.any(known) else max(1e-3 * float(np.std(y)), 1e-6)
        ceiling = max(10.0 * float(np.max(sd[known])) if np.any(known) else 0.0, float(np.std(y)))
        sd = np.where(known, np.maximum(sd, 0.1 * floor), np.where(sd == 0, 0.1 * floor, ceiling))
        return w, y, np.maximum(sd, 1e-9)

    def propose(
        self, study: optuna.Study, trial: FrozenTrial, name: str, bounds: MixtureBounds
    ) -> FloatArray | None:
        """The stick coordinates of the chosen mixture (None: let the inner sampler choose)."""
        w, y, sd = self.history(study, name, bounds)
        if y.size < self.min_history:
            return None
        rng = np.random.default_rng([self._seed, trial.number])
        cand = self._candidates(bounds, w, y, rng)
        with self._lock:  # surrogates need not be thread-safe; fit and score one at a time
            model = self._surrogate()
            model.fit(w, y, loss_std=sd)
            mean, std = model.predict(cand)
        acq = np.asarray(mean, dtype=float) - self.kappa * np.asarray(std, dtype=float)
        taken = np.concatenate([w, self._pending(study, trial, name, bounds)])
        if taken.size and self.min_distance > 0:
            d = np.sqrt(((cand[:, None, :] - taken[None, :, :]) ** 2).sum(axis=2)).min(axis=1)
            acq = np.where(d >= self.min_distance, acq, np.inf)
        if not np.any(np.isfinite(acq)):
            return None
        best = cand[int(np.argmin(acq))]
        return np.clip(bounds.to_unit(best), 0.0, 1.0)

    def _candidates(
        self, bounds: MixtureBounds, w: FloatArray, y: FloatArray, rng: np.random.Generator
    ) -> FloatArray:
        n_local = round(self.local_fraction * self.n_candidates)
        uniform = bounds.sample(self.n_candidates - n_local, rng=rng)
        if n_local == 0 or w.shape[0] == 0:
            return uniform
        top = w[np.argsort(y)[: max(1, min(5, w.shape[0]))]]
        centres = bounds.to_unit(top)[rng.integers(0, top.shape[0], size=n_local)]
        scale = rng.choice([0.02, 0.05, 0.15], size=(n_local, 1))
        local = np.clip(centres + rng.normal(0.0, 1.0, size=centres.shape) * scale, 0.0, 1.0)
        return np.concatenate([uniform, bounds.from_unit(local)])

    def _pending(
        self, study: optuna.Study, trial: FrozenTrial, name: str, bounds: MixtureBounds
    ) -> FloatArray:
        """Mixtures of running/waiting trials (so parallel workers spread out)."""
        names = mixture_param_names(name, bounds.k)
        xs = [
            [t.params[p] for p in names]
            for t in study._get_trials(
                deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)
            )
            if t.number != trial.number and all(p in t.params for p in names)
        ]
        if not xs:
            return np.zeros((0, bounds.k))
        return bounds.from_unit(np.clip(np.asarray(xs, dtype=float), 0.0, 1.0))


def _fresh_seed() -> int:
    return int(np.random.SeedSequence().generate_state(1)[0])


def _score(trial: FrozenTrial) -> tuple[float, float] | None:
    """(score, std): a completed trial's value, or a pruned trial's predicted final."""
    attrs = trial.user_attrs
    if trial.state == TrialState.COMPLETE and trial.value is not None:
        if math.isfinite(trial.value):
            return float(trial.value), 0.0
        return None
    pred = attrs.get(_attrs.PREDICTED_FINAL)
    if pred is None or attrs.get(_attrs.FIT_STATUS) in ("failed", "diverged"):
        return None
    lo, hi = attrs.get(_attrs.PREDICTED_LO), attrs.get(_attrs.PREDICTED_HI)
    if lo is None or hi is None or not math.isfinite(hi - lo):
        return float(pred), math.inf
    # the interval spans [q, 1-q]; for the default q=0.1 that is 2 * 1.2816 std
    return float(pred), max(float(hi) - float(lo), 0.0) / (2 * 1.2816)
