import numpy as np
import pytest

from lawsearch._fit import fit_pooled
from lawsearch.laws import PowerLaw
from tests._fit.helpers import STEPS, power_curves

PREFIX = 30  # points: a short prefix (15 % of the curve)


def _curves(ys: list[np.ndarray], n: int = PREFIX) -> list[dict[str, np.ndarray]]:
    return [{"steps": STEPS[:n], "losses": y[:n]} for y in ys]


def test_pooled_beats_independent_fits_on_short_prefixes() -> None:
    thetas, ys = power_curves(8, alpha=0.4, noise=2e-3, seed=1)
    law = PowerLaw()
    pooled = law.fit_pooled(_curves(ys), shared=("alpha",))
    indep = [law.fit(STEPS[:PREFIX], y[:PREFIX]) for y in ys]
    truth_final = [law.predict_from(t, STEPS[-1:], None)[0] for t in thetas]

    def final_err(results: list) -> float:
        preds = [r.predict(STEPS[-1:])[0] for r in results]
        return float(np.mean([abs(p / t - 1) for p, t in zip(preds, truth_final, strict=True)]))

    alpha_pooled = pooled[0].params["alpha"]
    alpha_err_indep = np.mean([abs(r.params["alpha"] - 0.4) for r in indep])
    assert all(r.params["alpha"] == alpha_pooled for r in pooled)
    assert abs(alpha_pooled - 0.4) < 0.5 * alpha_err_indep
    assert final_err(pooled) < 0.7 * final_err(indep)
    # per-curve amplitudes are recovered too
    for r, t in zip(pooled, thetas, strict=True):
        assert r.params["E"] == pytest.approx(t[0], rel=0.05)


def test_results_carry_the_marginal_covariance_of_shared_and_own_parameters() -> None:
    _, ys = power_curves(4, seed=2)
    results = fit_pooled(PowerLaw(), _curves(ys, 60), shared=("alpha",))
    for r in results:
        assert r.shared == ("alpha",)
        assert r.free == ("E", "A", "alpha", "t0")
        assert r.covariance.shape == (4, 4)
        np.testing.assert_allclose(r.covariance, r.covariance.T)
        assert r.stderr["alpha"] == pytest.approx(results[0].stderr["alpha"])
        assert r.status in ("ok", "degenerate")
        lo, hi = r.interval(STEPS[-1:])
        assert lo[0] <= r.predict(STEPS[-1:])[0] <= hi[0]
    # the shared exponent is known far better than one curve alone knows it
    alone = PowerLaw().fit(STEPS[:60], ys[0][:60])
    assert results[0].stderr["alpha"] < alone.stderr["alpha"]


def test_sparse_jacobian_gives_the_dense_answer() -> None:
    _, ys = power_curves(5, seed=3)
    sparse = fit_pooled(PowerLaw(), _curves(ys, 50), shared=("alpha", "t0"))
    dense = fit_pooled(PowerLaw(), _curves(ys, 50), shared=("alpha", "t0"), sparse=False)
    for s, d in zip(sparse, dense, strict=True):
        for name in ("E", "A", "alpha"):
            assert s.params[name] == pytest.approx(d.params[name], rel=1e-3), name


def test_one_curve_pooled_is_an_independent_fit() -> None:
    _, ys = power_curves(1, seed=4)
    pooled = fit_pooled(PowerLaw(), _curves(ys, 80), shared=("alpha",))[0]
    alone = PowerLaw().fit(STEPS[:80], ys[0][:80])
    assert pooled.params["alpha"] == pytest.approx(alone.params["alpha"], rel=1e-3)
    assert pooled.params["E"] == pytest.approx(alone.params["E"], rel=1e-3)


def test_fixed_and_prior_apply_to_every_curve() -> None:
    _, ys = power_curves(3, seed=5)
    results = fit_pooled(
        PowerLaw(),
        _curves(ys, 50),
        shared=("alpha",),
        fixed={"t0": 150.0},
        prior={"alpha": (0.4, 0.01)},
    )
    for r in results:
        assert r.params["t0"] == 150.0
        assert "t0" not in r.free
        assert r.prior == {"alpha": (0.4, 0.01)}
        assert abs(r.params["alpha"] - 0.4) < 0.03


def test_pooled_fit_is_deterministic() -> None:
    _, ys = power_curves(3, seed=6)
    a = fit_pooled(PowerLaw(), _curves(ys), shared=("alpha",))
    b = fit_pooled(PowerLaw(), _curves(ys), shared=("alpha",))
    assert [r.params for r in a] == [r.params for r in b]


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (
            lambda c: c[1].update(losses=np.where(np.arange(PREFIX) == 4, np.nan, c[1]["losses"])),
            r"curves\[1\]: `losses` contains NaN at index 4",
        ),
        (lambda c: c[2].pop("losses"), r"curves\[2\] lacks \['losses'\]"),
        (lambda c: c[0].update(loss=1.0), r"curves\[0\] has unknown keys \['loss'\]"),
        (
            lambda c: c[1].update(steps=c[1]["steps"][::-1].copy()),
            r"curves\[1\]: `steps` must increase strictly",
        ),
        (
            lambda c: c[2].update(steps=STEPS[:3], losses=c[2]["losses"][:3]),
            r"curves\[2\]: PowerLaw fits 3 free parameters, so it needs at least 4",
        ),
    ],
)
def test_bad_curves_are_named_by_index(mutate, match) -> None:  # type: ignore[no-untyped-def]
    _, ys = power_curves(3, seed=7)
    curves = _curves(ys)
    mutate(curves)
    with pytest.raises(ValueError, match=match):
        fit_pooled(PowerLaw(), curves, shared=("alpha",))


def test_bad_options_are_rejected() -> None:
    _, ys = power_curves(2, seed=8)
    curves = _curves(ys)
    with pytest.raises(ValueError, match="`shared` names unknown parameter 'alfa'"):
        fit_pooled(PowerLaw(), curves, shared=("alfa",))
    with pytest.raises(ValueError, match="both `shared` and `fixed`"):
        fit_pooled(PowerLaw(), curves, shared=("alpha",), fixed={"alpha": 0.4})
    with pytest.raises(ValueError, match="must be a sequence of names; got the string"):
        fit_pooled(PowerLaw(), curves, shared="alpha")
    with pytest.raises(ValueError, match="`curves` must be a non-empty sequence"):
        fit_pooled(PowerLaw(), [], shared=("alpha",))


def test_arrow_covariance_equals_the_dense_inverse() -> None:
    from lawsearch._fit._pooled import _arrow_covariance

    rng = np.random.default_rng(9)
    s, m, n = 2, 3, 4
    jacs = [rng.normal(size=(12, s + m)) * rng.uniform(0.01, 100.0, size=s + m) for _ in range(n)]
    dense = np.zeros((12 * n, s + n * m))
    for i, j in enumerate(jacs):
        dense[12 * i : 12 * (i + 1), :s] = j[:, :s]
        dense[12 * i : 12 * (i + 1), s + i * m : s + (i + 1) * m] = j[:, s:]
    full = np.linalg.inv(dense.T @ dense)
    covs, weak = _arrow_covariance(jacs, s, m, None)
    for i in range(n):
        cols = np.concatenate([np.arange(s), s + i * m + np.arange(m)])
        np.testing.assert_allclose(covs[i], full[np.ix_(cols, cols)], rtol=1e-8, atol=1e-14)
        assert weak[i] == set()
