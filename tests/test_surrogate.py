"""MixtureSurrogate: synthetic mixing laws, joint inputs, determinism, pickling, threads."""

from __future__ import annotations

import pickle
import threading
from functools import partial

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import spearmanr

from lawsearch._surrogate import MixtureSurrogate

KINDS = ("gp", "ridge", "linear")
HYPEROPTS = ("lbfgs", "grid")
FAMILIES = np.array(["cosine", "wsd", "linear"])


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


# ---------------------------------------------------------------- joint space
def _joint(n: int, seed: int, noise: float = 0.005):
    """Mixtures plus schedule columns; the loss is the mixing law + (log lr - c)² + a family shift.

    ``log_lr`` is the log peak LR scaled to [0, 1] by its range; ``warmup`` does
    not move the loss.
    """
    rng = np.random.default_rng(seed)
    w = rng.dirichlet(np.full(6, 0.7), size=n)
    extra = {
        "log_lr": rng.uniform(0.0, 1.0, n),
        "warmup": rng.uniform(0.0, 1.0, n),
        "family": FAMILIES[rng.integers(0, 3, n)],
    }
    truth = _mixing_law(w) + (extra["log_lr"] - 0.6) ** 2 + 0.05 * (extra["family"] == "wsd")
    return w, truth + noise * rng.standard_normal(n), extra, truth


@pytest.mark.parametrize("hyperopt", HYPEROPTS)
def test_an_extra_feature_that_drives_the_loss_is_learned(hyperopt: str) -> None:
    w, y, extra, _ = _joint(64, seed=0)
    wt, _, extra_t, truth = _joint(300, seed=1, noise=0.0)
    joint = MixtureSurrogate(hyperopt=hyperopt).fit(w, y, extra=extra)
    mean, std = joint.predict(wt, extra=extra_t)
    assert spearmanr(mean, truth)[0] >= 0.9
    assert mean.shape == std.shape == (300,) and np.all(std > 0)
    blind, _ = MixtureSurrogate(hyperopt=hyperopt).fit(w, y).predict(wt)
    assert spearmanr(mean, truth)[0] > spearmanr(blind, truth)[0] + 0.2


@pytest.mark.parametrize("hyperopt", HYPEROPTS)
def test_mixture_only_fits_ignore_empty_and_constant_extras(hyperopt: str) -> None:
    """``extra=None``, ``{}`` and columns that never vary give the mixture-only numbers."""
    w, y = _data(40)
    wt, _ = _data(30, seed=1)
    plain = MixtureSurrogate(hyperopt=hyperopt).fit(w, y).predict(wt)
    empty = MixtureSurrogate(hyperopt=hyperopt).fit(w, y, extra={}).predict(wt, extra={})
    none = MixtureSurrogate(hyperopt=hyperopt).fit(w, y, extra=None).predict(wt)
    for got in (empty, none):
        np.testing.assert_array_equal(got[0], plain[0])
        np.testing.assert_array_equal(got[1], plain[1])
    const = MixtureSurrogate(hyperopt=hyperopt).fit(
        w, y, extra={"warmup": np.full(40, 0.3), "family": ["wsd"] * 40}
    )
    got = const.predict(wt, extra={"warmup": np.full(30, 0.3), "family": ["wsd"] * 30})
    np.testing.assert_allclose(got[0], plain[0], rtol=1e-9)
    np.testing.assert_allclose(got[1], plain[1], rtol=1e-9)


def test_grid_hyperopt_ranks_unseen_mixtures() -> None:
    w, y = _data(64)
    wt, _ = _data(300, seed=1, noise=0.0)
    mean, std = MixtureSurrogate(hyperopt="grid").fit(w, y).predict(wt)
    assert spearmanr(mean, _mixing_law(wt))[0] > 0.9
    assert np.all(std > 0)


@settings(max_examples=12, deadline=None)
@given(
    n=st.integers(8, 40),
    data_seed=st.integers(0, 2**16),
    seed=st.integers(0, 2**16),
    hyperopt=st.sampled_from(HYPEROPTS),
    with_std=st.booleans(),
)
def test_joint_fits_are_deterministic_and_pickle(
    n: int, data_seed: int, seed: int, hyperopt: str, with_std: bool
) -> None:
    """Same seed and data (columns in any order) give the same numbers, also after pickling."""
    w, y, extra, _ = _joint(n, seed=data_seed)
    wt, _, extra_t, _ = _joint(7, seed=data_seed + 1)
    std = np.linspace(0.0, 0.05, n) if with_std else None
    make = partial(MixtureSurrogate, seed=seed, max_hyperopt_points=8, hyperopt=hyperopt)
    a = make().fit(w, y, loss_std=std, extra=extra)
    shuffled = {k: v.copy() for k, v in reversed(extra.items())}
    b = make().fit(w.copy(), y.copy(), loss_std=std, extra=shuffled)
    clone = pickle.loads(pickle.dumps(a))
    expected = a.predict(wt, extra=extra_t)
    assert np.all(np.isfinite(expected[0])) and np.all(expected[1] >= 0)
    for model in (b, clone):
        got = model.predict(wt, extra=extra_t)
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])


def test_joint_predict_takes_one_point_and_unseen_categories() -> None:
    w, y, extra, _ = _joint(40, seed=0)
    s = MixtureSurrogate(hyperopt="grid").fit(w, y, extra=extra)
    one = {"log_lr": 0.6, "warmup": 0.5, "family": "wsd"}
    mean, std = s.predict(w[0], extra=one)
    assert mean.shape == std.shape == (1,)
    _, std_new = s.predict(w[0], extra={**one, "family": "step"})  # never seen in fit
    assert std_new[0] > std[0]


def test_joint_input_validation_names_the_field() -> None:
    w, y, extra, _ = _joint(10, seed=0)
    fit = MixtureSurrogate().fit
    with pytest.raises(ValueError, match="`hyperopt` must be one of"):
        MixtureSurrogate(hyperopt="bayes")
    with pytest.raises(ValueError, match="`extra` must be a mapping"):
        fit(w, y, extra=[extra["log_lr"]])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"`extra\['log_lr'\]` must have shape \(10,\)"):
        fit(w, y, extra={**extra, "log_lr": extra["log_lr"][:-1]})
    bad = extra["log_lr"].copy()
    bad[4] = np.nan
    with pytest.raises(ValueError, match=r"`extra\['log_lr'\]` must be finite; got nan at index 4"):
        fit(w, y, extra={**extra, "log_lr": bad})
    with pytest.raises(ValueError, match=r"`extra\['log_lr'\]` must be scaled to \[0, 1\]"):
        fit(w, y, extra={**extra, "log_lr": np.log(np.full(10, 3e-4))})
    with pytest.raises(ValueError, match=r"`extra\['warmup'\]` must hold numbers or strings"):
        fit(w, y, extra={**extra, "warmup": [None] * 9 + [{}]})
    with pytest.raises(ValueError, match="`extra` needs kind='gp'"):
        MixtureSurrogate("ridge").fit(w, y, extra=extra)
    s = fit(w, y, extra=extra)
    with pytest.raises(ValueError, match=r"`extra` must have the columns used in fit"):
        s.predict(w)
    with pytest.raises(ValueError, match=r"`extra` must have the columns used in fit"):
        s.predict(w, extra={k: v for k, v in extra.items() if k != "warmup"})
    with pytest.raises(ValueError, match=r"`extra\['family'\]` held strings \(a categorical\)"):
        s.predict(w, extra={**extra, "family": np.zeros(10)})
    with pytest.raises(ValueError, match=r"`extra` must have the columns used in fit \[\]"):
        MixtureSurrogate().fit(w, y).predict(w, extra=extra)
