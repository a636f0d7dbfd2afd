"""MixtureSurrogate: accuracy on synthetic mixing laws, determinism, pickling, threads."""

from __future__ import annotations

import pickle
import threading

import numpy as np
import pytest
from scipy.stats import spearmanr

from lawsearch._surrogate import MixtureSurrogate

KINDS = ("gp", "ridge", "linear")


def _mixing_law(w: np.ndarray) -> np.ndarray:
    """A data-mixing-law-shaped loss: diminishing returns in each domain's share."""
    k = w.shape[1]
    rates = np.linspace(0.4, 1.2, k)
    return 2.0 + np.log(np.exp(-rates * np.sqrt(w)).sum(axis=1)) + 0.3 * w[:, 0] * w[:, -1]


def _data(n: int, k: int = 6, seed: int = 0, noise: float = 0.005):
    rng = np.random.default_rng(seed)
    w = rng.dirichlet(np.full(k, 0.7), size=n)
    return w, _mixing_law(w) + noise * rng.standard_normal(n)


@pytest.mark.parametrize("kind", ["gp", "ridge"])
def test_ranks_unseen_mixtures(kind: str) -> None:
    w, y = _data(64)
    wt, _ = _data(300, seed=1, noise=0.0)
    mean, std = MixtureSurrogate(kind, seed=0).fit(w, y).predict(wt)
    assert spearmanr(mean, _mixing_law(wt))[0] > 0.9
    assert mean.shape == std.shape == (300,)
    assert np.all(std > 0)


def test_gp_beats_linear_and_is_calibrated() -> None:
    w, y = _data(64)
    wt, _ = _data(300, seed=1, noise=0.0)
    truth = _mixing_law(wt)
    gp_mean, gp_std = MixtureSurrogate("gp").fit(w, y).predict(wt)
    lin_mean, _ = MixtureSurrogate("linear").fit(w, y).predict(wt)
    assert spearmanr(gp_mean, truth)[0] > spearmanr(lin_mean, truth)[0]
    # honest uncertainty: most truths inside ±3 std
    assert np.mean(np.abs(gp_mean - truth) <= 3 * gp_std + 0.01) > 0.8


def test_std_grows_away_from_data() -> None:
    rng = np.random.default_rng(0)
    w = rng.dirichlet([5.0, 5.0, 5.0, 0.2], size=40)  # last domain almost never used
    s = MixtureSurrogate("gp").fit(w, _mixing_law(w))
    _, std_near = s.predict(np.array([[0.34, 0.33, 0.33, 0.0]]))
    _, std_far = s.predict(np.array([[0.0, 0.0, 0.05, 0.95]]))
    assert std_far[0] > 3 * std_near[0]


def test_loss_std_downweights_uncertain_runs() -> None:
    w, y = _data(60)
    y_bad = y.copy()
    y_bad[:10] += 1.0  # ten badly wrong losses ...
    s = np.full(60, 0.005)
    s[:10] = 2.0  # ... declared as very uncertain
    wt, _ = _data(200, seed=1, noise=0.0)
    truth = _mixing_law(wt)
    for kind in ("gp", "ridge"):
        naive, _ = MixtureSurrogate(kind).fit(w, y_bad).predict(wt)
        aware, _ = MixtureSurrogate(kind).fit(w, y_bad, loss_std=s).predict(wt)
        assert np.abs(aware - truth).mean() < 0.5 * np.abs(naive - truth).mean(), kind


@pytest.mark.parametrize("kind", KINDS)
def test_deterministic_and_picklable(kind: str) -> None:
    w, y = _data(40)
    wt, _ = _data(20, seed=3)
    a = MixtureSurrogate(kind, seed=7).fit(w, y).predict(wt)
    b = MixtureSurrogate(kind, seed=7).fit(w.copy(), y.copy()).predict(wt)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    fitted = MixtureSurrogate(kind, seed=7).fit(w, y)
    clone = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(clone.predict(wt)[0], a[0])
    unfitted = pickle.loads(pickle.dumps(MixtureSurrogate(kind)))
    assert not unfitted.is_fitted


def test_thread_safe_fit_and_predict() -> None:
    s = MixtureSurrogate("gp")
    w1, y1 = _data(30, seed=1)
    w2, y2 = _data(30, seed=2)
    wt, _ = _data(50, seed=3)
    expected = {
        round(float(MixtureSurrogate("gp").fit(w, y).predict(wt)[0][0]), 12)
        for w, y in ((w1, y1), (w2, y2))
    }
    s.fit(w1, y1)
    seen: list[float] = []
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            for _ in range(3):
                if i % 2:
                    s.fit(*((w1, y1) if i % 4 == 1 else (w2, y2)))
                seen.append(round(float(s.predict(wt)[0][0]), 12))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert set(seen) <= expected  # every prediction came from one whole fit


def test_input_validation() -> None:
    w, y = _data(10)
    with pytest.raises(ValueError, match="`kind` must be one of"):
        MixtureSurrogate("forest")
    with pytest.raises(ValueError, match=r"rows must sum to 1 \(row 0 sums to 0.5"):
        MixtureSurrogate().fit(w * 0.5, y)
    with pytest.raises(ValueError, match="`losses` must have shape"):
        MixtureSurrogate().fit(w, y[:-1])
    with pytest.raises(ValueError, match="`losses` must be finite"):
        MixtureSurrogate().fit(w, np.where(np.arange(10) == 3, np.nan, y))
    with pytest.raises(ValueError, match="`loss_std` must be finite"):
        MixtureSurrogate().fit(w, y, loss_std=-np.ones(10))
    with pytest.raises(RuntimeError, match="before fit"):
        MixtureSurrogate().predict(w)
    s = MixtureSurrogate("ridge").fit(w, y)
    with pytest.raises(ValueError, match="must have 6 columns"):
        s.predict(np.full((2, 3), 1 / 3))
    mean, std = s.predict(w[0])
    assert mean.shape == std.shape == (1,)
