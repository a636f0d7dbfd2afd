"""Intrinsic dimension of data (Levina–Bickel MLE) and the exponent prior it implies.

The Levina–Bickel estimator (NIPS 2004) treats the number of neighbours inside a
small ball around a point as a Poisson process whose rate grows as ``r**d``. For
a point with sorted neighbour distances ``T_1 <= … <= T_k`` the maximum
likelihood estimate is

    m_k(x) = [ 1/(k-1) * sum_{j<k} log(T_k / T_j) ] ** -1.

MacKay & Ghahramani (2005) pointed out that averaging ``m_k(x)`` over points is
biased upwards; averaging the *inverses* and inverting is the MLE of the pooled
likelihood, so

    m_k = [ mean_x m_k(x)**-1 ] ** -1,      d_hat = mean_{k in k1..k2} m_k.

Havrilla & Liao (2024) relate the data-scaling exponent of a transformer to the
intrinsic dimension ``d`` of its data: the excess loss after ``D`` samples falls
as ``D ** -(2s / (2s + d))`` for a target of smoothness ``s``, so the exponent
shrinks roughly as ``2s/d`` when ``d`` grows. ``exponent_prior`` turns that into a
*weak* Gaussian prior for a law's exponent.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.spatial import cKDTree

__all__ = ["exponent_prior", "levina_bickel", "levina_bickel_pointwise"]

FloatArray = NDArray[np.float64]
_METRICS = ("euclidean", "cosine")
#: the law parameters that are a data-scaling exponent (loss ~ time ** -exponent)
_EXPONENT_PARAMS = ("alpha", "beta")


def _neighbour_distances(X: ArrayLike, k2: int, metric: str) -> FloatArray:
    """Sorted distances to the ``k2`` nearest *other* points, shape (n, k2)."""
    if metric not in _METRICS:
        raise ValueError(f"`metric` must be one of {_METRICS}; got {metric!r}.")
    x = np.array(X, dtype=float, copy=True)
    if x.ndim != 2:
        raise ValueError(f"`X` must be 2-D (points x features); got shape {x.shape}.")
    bad = ~np.isfinite(x)
    if np.any(bad):
        i, j = (int(v[0]) for v in np.nonzero(bad))
        raise ValueError(f"`X` contains a non-finite value at row {i}, column {j}.")
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1)
        if np.any(norms == 0):
            i = int(np.argmax(norms == 0))
            raise ValueError(
                f"`X` row {i} is all zeros, which has no direction for metric='cosine'; "
                "drop it or use metric='euclidean'."
            )
        # The chord between unit vectors is ~ the angle locally. The cosine
        # *distance* 1 - cos is chord**2 / 2, which would halve the estimate.
        x = x / norms[:, None]
    # Duplicated points have a zero neighbour distance and no defined density.
    x = np.unique(x, axis=0)
    n = x.shape[0]
    if n <= k2:
        raise ValueError(
            f"`X` has {n} distinct points but `k2`={k2} neighbours are needed per point; "
            f"pass more than {k2} distinct points or lower `k2`."
        )
    dist, _ = cKDTree(x).query(x, k=k2 + 1)
    return np.asarray(dist[:, 1:], dtype=float)


def _check_k(k1: int, k2: int) -> None:
    if int(k1) != k1 or int(k2) != k2:
        raise ValueError(f"`k1` and `k2` must be integers; got k1={k1!r}, k2={k2!r}.")
    if k1 < 3:
        raise ValueError(f"`k1` must be >= 3 (an MLE needs two neighbour ratios); got {k1}.")
    if k2 < k1:
        raise ValueError(f"`k2` must be >= `k1`; got k1={k1}, k2={k2}.")


def _inverse_estimates(dist: FloatArray, k1: int, k2: int) -> FloatArray:
    """``1 / m_k(x)`` for every point (rows) and every k in k1..k2 (columns)."""
    logs = np.log(dist)
    cum = np.cumsum(logs, axis=1)
    ks = np.arange(k1, k2 + 1)
    # sum_{j<k} log(T_k / T_j) = (k-1) log T_k - sum_{j<k} log T_j
    total = (ks - 1) * logs[:, ks - 1] - cum[:, ks - 2]
    return np.asarray(total / (ks - 1), dtype=float)


def levina_bickel(X: ArrayLike, *, k1: int = 10, k2: int = 20, metric: str = "euclidean") -> float:
    """Levina–Bickel MLE of the intrinsic dimension, averaged over ``k = k1..k2``.

    ``d_hat = mean_k [ mean_x m_k(x)**-1 ]**-1`` with the MacKay–Ghahramani
    averaging of inverses (see the module docstring for ``m_k``).

    Args:
        X: points, shape (n_points, n_features); duplicates are dropped.
        k1: smallest neighbourhood size (>= 3).
        k2: largest neighbourhood size (>= k1, < number of distinct points).
        metric: ``"euclidean"``, or ``"cosine"`` (directions only: rows are
            normalised and the chord distance between them is used).

    Returns:
        The estimated intrinsic dimension.

    Raises:
        ValueError: on bad shapes, non-finite values, too few points or bad k.
    """
    _check_k(k1, k2)
    inv = _inverse_estimates(_neighbour_distances(X, k2, metric), k1, k2)
    return float(np.mean(1.0 / inv.mean(axis=0)))


def levina_bickel_pointwise(
    X: ArrayLike, *, k1: int = 10, k2: int = 20, metric: str = "euclidean"
) -> FloatArray:
    """Per-point Levina–Bickel estimates ``mean_k m_k(x)`` (noisy; for diagnostics).

    Rows follow the *distinct* points of ``X`` in ``numpy.unique`` order (rows are
    normalised first when ``metric="cosine"``). Arguments as in ``levina_bickel``.
    """
    _check_k(k1, k2)
    inv = _inverse_estimates(_neighbour_distances(X, k2, metric), k1, k2)
    return np.asarray(np.mean(1.0 / inv, axis=1), dtype=float)


def exponent_prior(
    d: float,
    *,
    law_param: str = "alpha",
    smoothness: float = 1.0,
    rel_sd: float = 1.0,
) -> tuple[float, float]:
    """A weak Gaussian prior ``(mean, sd)`` on a data-scaling exponent from ``d``.

    ``mean = 2s / (2s + d)`` (Havrilla & Liao 2024, generalisation error of a
    transformer on data of intrinsic dimension d and a target of smoothness s;
    s = 1, Lipschitz, by default, so ``mean ≈ 2/d`` for large d), and
    ``sd = rel_sd * mean``. With the default ``rel_sd=1`` the prior is weak: it
    only pulls an exponent that short data leave undetermined towards the right
    order of magnitude, and a few well-measured points override it.

    Use it as ``law.fit(steps, losses, prior={"alpha": exponent_prior(d)})``.

    Args:
        d: intrinsic dimension (e.g. from ``levina_bickel`` on model embeddings).
        law_param: the exponent it is for: ``"alpha"`` (PowerLaw, TwoPhaseLaw, …)
            or ``"beta"`` (TemporalLaw's floor exponent).
        smoothness: s in the formula above (> 0).
        rel_sd: prior sd relative to its mean (> 0); larger is weaker.

    Returns:
        ``(mean, sd)``.
    """
    if law_param not in _EXPONENT_PARAMS:
        raise ValueError(
            f"`law_param` must name a data-scaling exponent, one of {_EXPONENT_PARAMS}; "
            f"got {law_param!r}."
        )
    for name, value in (("d", d), ("smoothness", smoothness), ("rel_sd", rel_sd)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"`{name}` must be a finite number > 0; got {value!r}.")
    mean = 2.0 * smoothness / (2.0 * smoothness + float(d))
    return mean, rel_sd * mean
