"""``MixtureSurrogate``: regression from simplex mixture weights to a loss, with uncertainty.

Chosen by measurement on RegMix (``benchmarks/mixture_surrogate.py``): the
feature map that matters is the square root of the weights, ``z = sqrt(w)``.
It stretches the boundary of the simplex (where a domain is nearly absent and
the loss reacts most) and flattens the interior, so a smooth model in ``z``
matches the diminishing-returns shape of data-mixing laws. On the RegMix 1M
runs (Pile-CC loss, 256 test mixtures) a Gaussian process in ``z`` with a
linear mean reaches Spearman ≈0.98 with 64 training runs, against ≈0.91 for
log-linear least squares and ≈0.89 for RegMix's LightGBM.

Kinds:
    ``"gp"`` (default): ``k(z, z') = s_f·exp(-|z - z'|²/(2ℓ²)) + s_b·(1 + z·z') + s_n·δ``
        on standardised ``z``; ``ℓ, s_f, s_b, s_n`` by maximum marginal
        likelihood (deterministic multi-start L-BFGS-B, at most
        ``max_hyperopt_points`` points for the hyperparameters, all points for
        the posterior). ``std`` is the posterior standard deviation of the mean.
    ``"ridge"``: ridge regression on standardised ``z``; ``std`` from
        ``n_bootstrap`` bootstrap refits (seeded).
    ``"linear"``: ordinary least squares on the raw weights (RegMix's linear
        baseline); ``std`` from the least-squares covariance.

``loss_std`` (per-run uncertainty, e.g. the width of an extrapolation
interval) enters as heteroscedastic noise (``gp``) or inverse-variance weights
(``ridge``/``linear``), so uncertain runs count less.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg as sla
import scipy.optimize as so
from numpy.typing import ArrayLike, NDArray

__all__ = ["MixtureSurrogate"]

FloatArray = NDArray[np.float64]
_KINDS = ("gp", "ridge", "linear")
_SIMPLEX_TOL = 0.02


@dataclass(frozen=True)
class _Fitted:
    """Immutable fitted state; swapped in one assignment so readers never see half a fit."""

    kind: str
    k: int
    x_mean: FloatArray
    x_scale: FloatArray
    y_mean: float
    y_scale: float
    # gp
    x_train: FloatArray | None = None
    alpha: FloatArray | None = None
    chol: FloatArray | None = None
    hyper: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1e-3)
    # ridge / linear
    coef: FloatArray | None = None
    coef_boot: FloatArray | None = None
    coef_cov: FloatArray | None = None


class MixtureSurrogate:
    """Predict a loss (mean, std) for mixtures on the simplex.

    Args:
        kind: ``"gp"`` (default), ``"ridge"`` or ``"linear"`` (see module docs).
        seed: seeds the hyperparameter subsample and the bootstrap.
        ridge_alpha: L2 penalty of ``"ridge"`` (on standardised features).
        n_bootstrap: bootstrap refits for the ``"ridge"`` std.
        max_hyperopt_points: cap on points used to fit GP hyperparameters (a
            deterministic subsample; the posterior always uses every point). 256
            keeps a refit inside a sampler fast; for a final pick from many runs
            use more (on RegMix with 512 runs, a 256-run subsample once picked a
            mixture 0.10 worse than the best, all 512 picked the best).

    Picklable; ``fit`` and ``predict`` may be called from several threads
    (a fit replaces the model atomically; ``predict`` uses a consistent one).
    """

    def __init__(
        self,
        kind: str = "gp",
        *,
        seed: int = 0,
        ridge_alpha: float = 1.0,
        n_bootstrap: int = 32,
        max_hyperopt_points: int = 256,
    ) -> None:
        if kind not in _KINDS:
            raise ValueError(f"`kind` must be one of {_KINDS}; got {kind!r}.")
        if ridge_alpha < 0:
            raise ValueError(f"`ridge_alpha` must be >= 0; got {ridge_alpha!r}.")
        if n_bootstrap < 2:
            raise ValueError(f"`n_bootstrap` must be >= 2; got {n_bootstrap!r}.")
        if max_hyperopt_points < 8:
            raise ValueError(f"`max_hyperopt_points` must be >= 8; got {max_hyperopt_points!r}.")
        self.kind = kind
        self.seed = int(seed)
        self.ridge_alpha = float(ridge_alpha)
        self.n_bootstrap = int(n_bootstrap)
        self.max_hyperopt_points = int(max_hyperopt_points)
        self._fitted: _Fitted | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MixtureSurrogate(kind={self.kind!r}, seed={self.seed})"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def is_fitted(self) -> bool:
        return self._fitted is not None

    # ------------------------------------------------------------------ fit
    def fit(
        self, weights: ArrayLike, losses: ArrayLike, *, loss_std: ArrayLike | None = None
    ) -> MixtureSurrogate:
        """Fit to ``n`` runs: ``weights`` ``(n, K)`` on the simplex, ``losses`` ``(n,)``.

        Args:
            weights: mixture proportions; each row must be >= 0 and sum to 1
                (within 0.02; rows are renormalised).
            losses: the loss of each run (finite).
            loss_std: optional ``(n,)`` standard deviation of each loss (>= 0).

        Returns:
            ``self``.
        """
        w = _check_weights(weights, "weights")
        y = np.asarray(losses, dtype=float)
        if y.shape != (w.shape[0],):
            raise ValueError(
                f"`losses` must have shape ({w.shape[0]},) to match `weights`; got {y.shape}."
            )
        if not np.all(np.isfinite(y)):
            i = int(np.argmin(np.isfinite(y)))
            raise ValueError(f"`losses` must be finite; got {y[i]!r} at index {i}. Drop that run.")
        if w.shape[0] < 3:
            raise ValueError(f"`weights` needs at least 3 runs to fit; got {w.shape[0]}.")
        if loss_std is None:
            s = np.zeros_like(y)
        else:
            s = np.asarray(loss_std, dtype=float)
            if s.shape != y.shape or not np.all(np.isfinite(s)) or np.any(s < 0):
                raise ValueError(
                    f"`loss_std` must be finite, >= 0 and of shape {y.shape}; "
                    "pass None when unknown."
                )
        fitters = {"gp": self._fit_gp, "ridge": self._fit_ridge, "linear": self._fit_linear}
        fitted = fitters[self.kind](w, y, s)
        with self._lock:
            self._fitted = fitted
        return self

    def _fit_gp(self, w: FloatArray, y: FloatArray, s: FloatArray) -> _Fitted:
        x, x_mean, x_scale = _standardise(np.sqrt(w))
        y_mean, y_scale = float(y.mean()), float(y.std()) or 1.0
        yy = (y - y_mean) / y_scale
        noise = (s / y_scale) ** 2
        n, d = x.shape
        sub = np.arange(n)
        if n > self.max_hyperopt_points:
            rng = np.random.default_rng(self.seed)
            sub = np.sort(rng.choice(n, self.max_hyperopt_points, replace=False))
        xs, ys, ns = x[sub], yy[sub], noise[sub]
        sq = _sqdist(xs, xs)
        lin = 1.0 + xs @ xs.T

        eye = np.eye(xs.shape[0])

        def nll(p: FloatArray) -> tuple[float, FloatArray]:
            ls, sf, sb, sn = np.exp(p)
            rbf = sf * np.exp(-0.5 * sq / ls**2)
            c = rbf + sb * lin
            c[np.diag_indices_from(c)] += sn + ns + 1e-8
            try:
                chol = sla.cho_factor(c, lower=True)
            except np.linalg.LinAlgError:
                return 1e10, np.zeros(4)
            a = sla.cho_solve(chol, ys)
            value = 0.5 * ys @ a + np.log(np.diag(chol[0])).sum()
            # d nll / d log(theta) = 0.5 tr((C^-1 - a a^T) dC/dlog(theta))
            inner = sla.cho_solve(chol, eye) - np.outer(a, a)
            grads = (rbf * sq / ls**2, rbf, sb * lin)
            g = [0.5 * float(np.einsum("ij,ij->", inner, dc)) for dc in grads]
            g.append(0.5 * sn * float(np.trace(inner)))
            return float(value), np.array(g)

        l0 = 0.5 * np.log(d)
        bounds = [(-3.0, 6.0), (-6.0, 4.0), (-9.0, 3.0), (-10.0, 1.0)]
        best: Any = None
        for start in (
            [l0, 0.0, -2.0, -3.0],
            [l0 + 1.0, -1.0, 0.0, -2.0],
            [l0 - 1.0, 0.0, -4.0, -5.0],
        ):
            res = so.minimize(nll, np.array(start), jac=True, method="L-BFGS-B", bounds=bounds)
            if best is None or res.fun < best.fun:
                best = res
        ls, sf, sb, sn = (float(v) for v in np.exp(best.x))
        c = sf * np.exp(-0.5 * _sqdist(x, x) / ls**2) + sb * (1.0 + x @ x.T)
        c[np.diag_indices_from(c)] += sn + noise + 1e-8
        chol = np.asarray(np.linalg.cholesky(c), dtype=float)
        alpha = sla.cho_solve((chol, True), yy)
        return _Fitted(
            kind="gp",
            k=w.shape[1],
            x_mean=x_mean,
            x_scale=x_scale,
            y_mean=y_mean,
            y_scale=y_scale,
            x_train=x,
            alpha=alpha,
            chol=chol,
            hyper=(ls, sf, sb, sn),
        )

    def _fit_ridge(self, w: FloatArray, y: FloatArray, s: FloatArray) -> _Fitted:
        x, x_mean, x_scale = _standardise(np.sqrt(w))
        y_mean, y_scale = float(y.mean()), float(y.std()) or 1.0
        yy = (y - y_mean) / y_scale
        sw = _inverse_variance(s / y_scale)
        a = np.hstack([np.ones((x.shape[0], 1)), x])
        coef = _ridge(a, yy, sw, self.ridge_alpha)
        rng = np.random.default_rng(self.seed)
        boot = np.empty((self.n_bootstrap, a.shape[1]))
        for b in range(self.n_bootstrap):
            idx = rng.integers(0, a.shape[0], a.shape[0])
            boot[b] = _ridge(a[idx], yy[idx], sw[idx], self.ridge_alpha)
        return _Fitted(
            kind="ridge",
            k=w.shape[1],
            x_mean=x_mean,
            x_scale=x_scale,
            y_mean=y_mean,
            y_scale=y_scale,
            coef=coef,
            coef_boot=boot,
        )

    def _fit_linear(self, w: FloatArray, y: FloatArray, s: FloatArray) -> _Fitted:
        k = w.shape[1]
        a = np.hstack([np.ones((w.shape[0], 1)), w])
        sw = _inverse_variance(s)
        coef, *_ = np.linalg.lstsq(a * np.sqrt(sw)[:, None], y * np.sqrt(sw), rcond=None)
        resid = y - a @ coef
        dof = max(a.shape[0] - np.linalg.matrix_rank(a), 1)
        sigma2 = float((sw * resid**2).sum() / dof)
        cov = np.asarray(sigma2 * np.linalg.pinv((a * sw[:, None]).T @ a), dtype=float)
        return _Fitted(
            kind="linear",
            k=k,
            x_mean=np.zeros(k),
            x_scale=np.ones(k),
            y_mean=0.0,
            y_scale=1.0,
            coef=coef,
            coef_cov=cov,
        )

    # -------------------------------------------------------------- predict
    def predict(self, weights: ArrayLike) -> tuple[FloatArray, FloatArray]:
        """Predicted loss ``mean`` and its ``std`` at ``weights`` ``(m, K)`` (or one ``(K,)``)."""
        fitted = self._fitted
        if fitted is None:
            raise RuntimeError("MixtureSurrogate.predict called before fit; call fit() first.")
        w = np.asarray(weights, dtype=float)
        single = w.ndim == 1
        w = _check_weights(w[None, :] if single else w, "weights")
        if w.shape[1] != fitted.k:
            raise ValueError(
                f"`weights` must have {fitted.k} columns (as in fit); got {w.shape[1]}."
            )
        if fitted.kind == "linear":
            assert fitted.coef is not None and fitted.coef_cov is not None
            a = np.hstack([np.ones((w.shape[0], 1)), w])
            mean = a @ fitted.coef
            std = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", a, fitted.coef_cov, a), 0.0))
        else:
            x = (np.sqrt(w) - fitted.x_mean) / fitted.x_scale
            if fitted.kind == "gp":
                mean, std = _gp_predict(fitted, x)
            else:
                assert fitted.coef is not None and fitted.coef_boot is not None
                a = np.hstack([np.ones((x.shape[0], 1)), x])
                mean = a @ fitted.coef
                std = (a @ fitted.coef_boot.T).std(axis=1)
            mean = mean * fitted.y_scale + fitted.y_mean
            std = std * fitted.y_scale
        if single:
            return mean[:1], std[:1]
        return mean, std


def _gp_predict(f: _Fitted, x: FloatArray) -> tuple[FloatArray, FloatArray]:
    assert f.x_train is not None and f.alpha is not None and f.chol is not None
    ls, sf, sb, _ = f.hyper
    ks = sf * np.exp(-0.5 * _sqdist(x, f.x_train) / ls**2) + sb * (1.0 + x @ f.x_train.T)
    mean = ks @ f.alpha
    v = sla.solve_triangular(f.chol, ks.T, lower=True)
    prior = sf + sb * (1.0 + np.einsum("ij,ij->i", x, x))
    var = np.maximum(prior - np.einsum("ij,ij->j", v, v), 0.0)
    return mean, np.sqrt(var)


def _check_weights(weights: ArrayLike, name: str) -> FloatArray:
    w = np.asarray(weights, dtype=float)
    if w.ndim != 2 or w.shape[1] < 2:
        raise ValueError(f"`{name}` must be an (n, K) array with K >= 2; got shape {w.shape}.")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"`{name}` must be finite and >= 0 (mixture proportions).")
    sums = w.sum(axis=1)
    bad = np.abs(sums - 1.0) > _SIMPLEX_TOL
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"`{name}` rows must sum to 1 (row {i} sums to {sums[i]:.4g}); "
            "normalise them to proportions."
        )
    return w / sums[:, None]


def _standardise(x: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    return (x - mean) / scale, mean, scale


def _sqdist(a: FloatArray, b: FloatArray) -> FloatArray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)


def _inverse_variance(s: FloatArray) -> FloatArray:
    """Weights ``1/(s² + s0²)`` normalised to mean 1; ``s0`` keeps exact runs finite."""
    s0 = max(float(np.median(s)), 1e-3) if np.any(s > 0) else 1.0
    w = 1.0 / (s**2 + s0**2)
    return w / w.mean()


def _ridge(a: FloatArray, y: FloatArray, sw: FloatArray, alpha: float) -> FloatArray:
    pen = alpha * np.eye(a.shape[1])
    pen[0, 0] = 0.0
    aw = a * sw[:, None]
    return np.asarray(np.linalg.solve(aw.T @ a + pen, aw.T @ y), dtype=float)
