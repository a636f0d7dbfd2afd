"""``MixtureSurrogate``: the one surrogate, from mixture weights (and schedule features) to a loss.

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
        likelihood (at most ``max_hyperopt_points`` points for the
        hyperparameters, all points for the posterior). ``std`` is the
        posterior standard deviation of the mean.
    ``"ridge"``: ridge regression on standardised ``z``; ``std`` from
        ``n_bootstrap`` bootstrap refits (seeded).
    ``"linear"``: ordinary least squares on the raw weights (RegMix's linear
        baseline); ``std`` from the least-squares covariance.

Joint space (``"gp"`` only): ``extra`` adds named columns per point, such as a
schedule's family and its peak LR, warmup and decay fraction. A numeric column
must already be scaled to ``[0, 1]`` by the caller (e.g. ``(log lr - log lo) /
(log hi - log lo)`` over the declared range); a column of strings is a
categorical, compared as one-hot vectors (a mismatch is a squared distance of 2,
so a category never seen in ``fit`` is simply unlike every training point). Each
extra column ``e_j`` gets its own length scale ``λ_j`` in the RBF factor,

    s_f·exp(-|z - z'|²/(2ℓ²) - Σ_j (e_j - e_j')²/(2λ_j²)),

so a feature that does not move the loss fades out (large ``λ_j``). Without
``extra`` the model, and every number it gives, is the mixture-only one.

Hyperparameters (``hyperopt``):
    ``"lbfgs"`` (default): deterministic multi-start L-BFGS-B on the log
        marginal likelihood with analytic gradients.
    ``"grid"``: the best of a small fixed grid (``ℓ`` × ``s_n`` × one ``λ``
        shared by the extra columns, ``s_f = 1`` and ``s_b = e^-2`` on
        standardised losses), then each column's own ``λ`` in turn on the same
        grid: no optimiser, for samplers that refit on every proposal and must
        do it in milliseconds (on RegMix it ranks as well as ``"lbfgs"``).

``loss_std`` (per-run uncertainty, e.g. the width of an extrapolation
interval) enters as heteroscedastic noise (``gp``) or inverse-variance weights
(``ridge``/``linear``), so uncertain runs count less.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg as sla
import scipy.optimize as so
from numpy.typing import ArrayLike, NDArray

__all__ = ["MixtureSurrogate"]

FloatArray = NDArray[np.float64]
_KINDS = ("gp", "ridge", "linear")
_HYPEROPTS = ("lbfgs", "grid")
_SIMPLEX_TOL = 0.02
#: slack on the [0, 1] range of numeric extra columns (rounding in the caller's scaling)
_UNIT_TOL = 1e-6
#: bounds of log ℓ, log s_f, log s_b, log s_n, then of each log λ_j (extra columns live in [0, 1])
_BOUNDS = [(-3.0, 6.0), (-6.0, 4.0), (-9.0, 3.0), (-10.0, 1.0)]
_EXTRA_BOUNDS = (-3.5, 3.5)
#: the "grid" search: offsets of log ℓ around its start, log s_n, log λ (one shared by all columns)
_GRID_LENGTH = (-1.5, -0.75, 0.0, 0.75, 1.5)
_GRID_NOISE = tuple(np.log([1e-4, 1e-2, 1e-1]))
_GRID_EXTRA = tuple(np.log([0.1, 0.25, 0.5, 1.0, 2.0, 8.0]))


@dataclass(frozen=True)
class _Columns:
    """Extra per-point features: numeric (float, in [0, 1]) or categorical (str) columns."""

    names: tuple[str, ...]
    values: tuple[NDArray[Any], ...]
    categorical: tuple[bool, ...]

    def take(self, idx: NDArray[np.intp]) -> _Columns:
        return _Columns(self.names, tuple(v[idx] for v in self.values), self.categorical)

    def sqdists(self, other: _Columns) -> list[FloatArray]:
        """Per column, the squared distances ``(n_self, n_other)`` (a category mismatch is 2)."""
        out = []
        for a, b, cat in zip(self.values, other.values, self.categorical, strict=True):
            if cat:
                out.append(2.0 * (a[:, None] != b[None, :]))
            else:
                out.append((a[:, None] - b[None, :]) ** 2)
        return out


_NO_COLUMNS = _Columns((), (), ())


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
    extra: _Columns | None = None
    extra_scales: tuple[float, ...] = ()
    # ridge / linear
    coef: FloatArray | None = None
    coef_boot: FloatArray | None = None
    coef_cov: FloatArray | None = None


class MixtureSurrogate:
    """Predict a loss (mean, std) for mixtures on the simplex, optionally with extra features.

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
        hyperopt: how the GP's hyperparameters are chosen: ``"lbfgs"`` (default,
            multi-start L-BFGS-B) or ``"grid"`` (a small fixed grid, for
            millisecond refits inside a sampler).

    Picklable; ``fit`` and ``predict`` may be called from several threads
    (a fit replaces the model atomically; ``predict`` uses a consistent one).
    A fast sampler surrogate: ``LawSampler(surrogate=functools.partial(
    MixtureSurrogate, hyperopt="grid"))``.
    """

    def __init__(
        self,
        kind: str = "gp",
        *,
        seed: int = 0,
        ridge_alpha: float = 1.0,
        n_bootstrap: int = 32,
        max_hyperopt_points: int = 256,
        hyperopt: str = "lbfgs",
    ) -> None:
        if kind not in _KINDS:
            raise ValueError(f"`kind` must be one of {_KINDS}; got {kind!r}.")
        if ridge_alpha < 0:
            raise ValueError(f"`ridge_alpha` must be >= 0; got {ridge_alpha!r}.")
        if n_bootstrap < 2:
            raise ValueError(f"`n_bootstrap` must be >= 2; got {n_bootstrap!r}.")
        if max_hyperopt_points < 8:
            raise ValueError(f"`max_hyperopt_points` must be >= 8; got {max_hyperopt_points!r}.")
        if hyperopt not in _HYPEROPTS:
            raise ValueError(f"`hyperopt` must be one of {_HYPEROPTS}; got {hyperopt!r}.")
        self.kind = kind
        self.seed = int(seed)
        self.ridge_alpha = float(ridge_alpha)
        self.n_bootstrap = int(n_bootstrap)
        self.max_hyperopt_points = int(max_hyperopt_points)
        self.hyperopt = hyperopt
        # a fit swaps in one immutable _Fitted with a single (atomic) assignment, so
        # concurrent predicts always see a whole fit and no lock is needed
        self._fitted: _Fitted | None = None

    def __repr__(self) -> str:
        return f"MixtureSurrogate(kind={self.kind!r}, seed={self.seed}, hyperopt={self.hyperopt!r})"

    @property
    def is_fitted(self) -> bool:
        return self._fitted is not None

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        weights: ArrayLike,
        losses: ArrayLike,
        *,
        loss_std: ArrayLike | None = None,
        extra: Mapping[str, ArrayLike] | None = None,
    ) -> MixtureSurrogate:
        """Fit to ``n`` runs: ``weights`` ``(n, K)`` on the simplex, ``losses`` ``(n,)``.

        Args:
            weights: mixture proportions; each row must be >= 0 and sum to 1
                (within 0.02; rows are renormalised).
            losses: the loss of each run (finite).
            loss_std: optional ``(n,)`` standard deviation of each loss (>= 0).
            extra: optional columns name → ``(n,)`` values (``"gp"`` only):
                numbers scaled to ``[0, 1]``, or strings for a categorical.

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
            raise ValueError(
                f"`losses` must be finite; got {float(y[i])!r} at index {i}. Drop that run."
            )
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
        columns = _check_extra(extra, w.shape[0], None)
        if columns is not None and self.kind != "gp":
            raise ValueError(
                f"`extra` needs kind='gp' (kind={self.kind!r} models the mixture only); "
                "use MixtureSurrogate('gp') or drop `extra`."
            )
        if self.kind == "gp":
            fitted = self._fit_gp(w, y, s, columns)
        else:
            fitted = (self._fit_ridge if self.kind == "ridge" else self._fit_linear)(w, y, s)
        self._fitted = fitted
        return self

    def _fit_gp(
        self, w: FloatArray, y: FloatArray, s: FloatArray, columns: _Columns | None
    ) -> _Fitted:
        x, x_mean, x_scale = _standardise(np.sqrt(w))
        y_mean, y_scale = float(y.mean()), float(y.std()) or 1.0
        yy = (y - y_mean) / y_scale
        noise = (s / y_scale) ** 2
        n, d = x.shape
        sub = np.arange(n)
        if n > self.max_hyperopt_points:
            rng = np.random.default_rng(self.seed)
            sub = np.sort(rng.choice(n, self.max_hyperopt_points, replace=False))
        xs = x[sub]
        extra_sq = []
        if columns is not None:
            picked = columns.take(sub)
            extra_sq = picked.sqdists(picked)
        nll = _neg_log_likelihood(_sqdist(xs, xs), extra_sq, 1.0 + xs @ xs.T, yy[sub], noise[sub])
        l0 = 0.5 * np.log(d)
        if self.hyperopt == "grid":
            p = _grid_search(nll, l0, len(extra_sq))
        else:
            p = _lbfgs(nll, l0, len(extra_sq))
        ls, sf, sb, sn = (float(v) for v in np.exp(p[:4]))
        scales = tuple(float(v) for v in np.exp(p[4:]))
        extra_all = [] if columns is None else columns.sqdists(columns)
        c = sf * np.exp(-0.5 * _scaled(_sqdist(x, x), ls, extra_all, scales)) + sb * (1.0 + x @ x.T)
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
            extra=columns,
            extra_scales=scales,
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
    def predict(
        self, weights: ArrayLike, *, extra: Mapping[str, ArrayLike] | None = None
    ) -> tuple[FloatArray, FloatArray]:
        """Predicted loss ``mean`` and its ``std`` at ``weights`` ``(m, K)`` (or one ``(K,)``).

        ``extra`` must give the same columns as in ``fit`` (``(m,)`` values each,
        or scalars for one point), and must be omitted when ``fit`` had none.
        """
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
        if single and isinstance(extra, Mapping):
            extra = {name: np.reshape(np.asarray(v), -1) for name, v in extra.items()}
        columns = _check_extra(extra, w.shape[0], fitted.extra or _NO_COLUMNS)
        if fitted.kind == "linear":
            assert fitted.coef is not None and fitted.coef_cov is not None
            a = np.hstack([np.ones((w.shape[0], 1)), w])
            mean = a @ fitted.coef
            std = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", a, fitted.coef_cov, a), 0.0))
        else:
            x = (np.sqrt(w) - fitted.x_mean) / fitted.x_scale
            if fitted.kind == "gp":
                mean, std = _gp_predict(fitted, x, columns)
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


def _gp_predict(
    f: _Fitted, x: FloatArray, columns: _Columns | None
) -> tuple[FloatArray, FloatArray]:
    assert f.x_train is not None and f.alpha is not None and f.chol is not None
    ls, sf, sb, _ = f.hyper
    extra_sq = [] if columns is None or f.extra is None else columns.sqdists(f.extra)
    rbf = sf * np.exp(-0.5 * _scaled(_sqdist(x, f.x_train), ls, extra_sq, f.extra_scales))
    ks = rbf + sb * (1.0 + x @ f.x_train.T)
    mean = ks @ f.alpha
    v = sla.solve_triangular(f.chol, ks.T, lower=True)
    prior = sf + sb * (1.0 + np.einsum("ij,ij->i", x, x))
    var = np.maximum(prior - np.einsum("ij,ij->j", v, v), 0.0)
    return mean, np.sqrt(var)


# ---------------------------------------------------------------- GP hyperparameters
_Objective = Callable[[FloatArray, bool], tuple[float, FloatArray]]


def _scaled(
    sq: FloatArray, ls: float, extra_sq: list[FloatArray], scales: tuple[float, ...] | FloatArray
) -> FloatArray:
    """``|z - z'|²/ℓ² + Σ_j (e_j - e_j')²/λ_j²``: the RBF exponent times -2."""
    out = sq / ls**2
    for dist, scale in zip(extra_sq, scales, strict=True):
        out = out + dist / scale**2
    return out


def _neg_log_likelihood(
    sq: FloatArray, extra_sq: list[FloatArray], lin: FloatArray, ys: FloatArray, ns: FloatArray
) -> _Objective:
    """The GP's negative log marginal likelihood in ``p = log(ℓ, s_f, s_b, s_n, λ_1, ...)``."""
    eye = np.eye(ys.shape[0])

    def nll(p: FloatArray, with_grad: bool) -> tuple[float, FloatArray]:
        ls, sf, sb, sn = np.exp(p[:4])
        scales = np.exp(p[4:])
        rbf = sf * np.exp(-0.5 * _scaled(sq, ls, extra_sq, scales))
        c = rbf + sb * lin
        c[np.diag_indices_from(c)] += sn + ns + 1e-8
        try:
            chol = sla.cho_factor(c, lower=True)
        except np.linalg.LinAlgError:
            return 1e10, np.zeros(p.size)
        a = sla.cho_solve(chol, ys)
        value = 0.5 * ys @ a + np.log(np.diag(chol[0])).sum()
        if not with_grad:
            return float(value), np.zeros(0)
        # d nll / d log(theta) = 0.5 tr((C^-1 - a a^T) dC/dlog(theta))
        inner = sla.cho_solve(chol, eye) - np.outer(a, a)
        grads = (rbf * sq / ls**2, rbf, sb * lin)
        g = [0.5 * float(np.einsum("ij,ij->", inner, dc)) for dc in grads]
        g.append(0.5 * sn * float(np.trace(inner)))
        for dist, scale in zip(extra_sq, scales, strict=True):
            g.append(0.5 * float(np.einsum("ij,ij->", inner, rbf * dist / scale**2)))
        return float(value), np.array(g)

    return nll


def _lbfgs(nll: _Objective, l0: float, n_extra: int) -> FloatArray:
    """The best of three deterministic L-BFGS-B starts."""
    e0 = np.log(0.5)
    bounds = _BOUNDS + [_EXTRA_BOUNDS] * n_extra
    best: Any = None
    for start, extra_start in (
        ([l0, 0.0, -2.0, -3.0], e0),
        ([l0 + 1.0, -1.0, 0.0, -2.0], e0 + 1.0),
        ([l0 - 1.0, 0.0, -4.0, -5.0], e0 - 1.0),
    ):
        x0 = np.array(start + [extra_start] * n_extra)
        res = so.minimize(nll, x0, args=(True,), jac=True, method="L-BFGS-B", bounds=bounds)
        if best is None or res.fun < best.fun:
            best = res
    return np.asarray(best.x, dtype=float)


def _grid_search(nll: _Objective, l0: float, n_extra: int) -> FloatArray:
    """The grid point (``s_f = 1``, ``s_b = e^-2``) of lowest negative log likelihood.

    ``ℓ × s_n × λ`` with one ``λ`` for every extra column, then one pass over
    the columns moving each ``λ_j`` alone.
    """
    best, best_value = None, np.inf
    for dl in _GRID_LENGTH:
        for sn in _GRID_NOISE:
            for le in _GRID_EXTRA if n_extra else (0.0,):
                p = np.array([l0 + dl, 0.0, -2.0, sn] + [le] * n_extra)
                value, _ = nll(p, False)
                if value < best_value:
                    best, best_value = p, value
    assert best is not None  # every grid point is finite: a failed Cholesky scores 1e10
    for j in range(4, 4 + n_extra):  # then each extra column's own λ, one column at a time
        for le in _GRID_EXTRA:
            p = best.copy()
            p[j] = le
            value, _ = nll(p, False)
            if value < best_value:
                best, best_value = p, value
    return best


# ---------------------------------------------------------------- input checks
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


def _check_extra(
    extra: Mapping[str, ArrayLike] | None, n: int, fitted: _Columns | None
) -> _Columns | None:
    """Validated extra columns for ``n`` points (``fitted``: the columns they must match).

    ``fitted`` is None in ``fit`` (any columns) and ``_NO_COLUMNS`` in ``predict``
    after a mixture-only fit (none allowed).
    """
    if extra is not None and not isinstance(extra, Mapping):
        raise ValueError(
            "`extra` must be a mapping from column name to (n,) values, e.g. "
            f"{{'log_lr': [...], 'family': [...]}}; got {type(extra).__name__}."
        )
    given = tuple(extra or ())
    bad_name = next((name for name in given if not isinstance(name, str)), None)
    if bad_name is not None:
        raise ValueError(f"`extra` column names must be strings; got {bad_name!r}.")
    # sorted, so the model does not depend on the order of the mapping
    expected = tuple(sorted(given)) if fitted is None else fitted.names
    if set(given) != set(expected):
        raise ValueError(
            f"`extra` must have the columns used in fit {list(expected)}; got {list(given)}."
        )
    if not given or extra is None:
        return None
    values, categorical = [], []
    for i, name in enumerate(expected):
        column = _check_column(extra[name], f"`extra[{name!r}]`", n)
        values.append(column)
        categorical.append(column.dtype.kind == "U")
        if fitted is not None and categorical[i] != fitted.categorical[i]:
            was = "strings (a categorical)" if fitted.categorical[i] else "numbers"
            raise ValueError(f"`extra[{name!r}]` held {was} in fit; give the same kind.")
    return _Columns(expected, tuple(values), tuple(categorical))


def _check_column(values: ArrayLike, field: str, n: int) -> NDArray[Any]:
    """One extra column: strings as a categorical, else finite numbers in [0, 1]."""
    raw = np.asarray(values)
    if raw.shape != (n,):
        raise ValueError(f"{field} must have shape ({n},) to match `weights`; got {raw.shape}.")
    if raw.dtype.kind in "US" or (raw.dtype.kind == "O" and all(isinstance(v, str) for v in raw)):
        return raw.astype(str)
    try:
        x = raw.astype(float)
    except (TypeError, ValueError):
        raise ValueError(f"{field} must hold numbers or strings; got {raw.dtype}.") from None
    if not np.all(np.isfinite(x)):
        i = int(np.argmin(np.isfinite(x)))
        raise ValueError(f"{field} must be finite; got {float(x[i])!r} at index {i}.")
    outside = (x < -_UNIT_TOL) | (x > 1.0 + _UNIT_TOL)
    if outside.any():
        i = int(np.argmax(outside))
        raise ValueError(
            f"{field} must be scaled to [0, 1] by its declared range (e.g. "
            f"(log(lr) - log(low)) / (log(high) - log(low))); got {float(x[i])!r} at index {i}."
        )
    return np.clip(x, 0.0, 1.0)


# ---------------------------------------------------------------- algebra
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
