"""Data mixtures on the probability simplex: bounds, token/epoch caps, stick-breaking.

A mixture of K domains is a weight vector ``w`` with ``w_i >= 0`` and ``sum w = 1``.
Searches restrict it to a box ``low_i <= w_i <= high_i``; a token budget adds the cap
``w_i <= max_epochs * tokens_available_i / total_tokens`` (no domain is repeated more
than ``max_epochs`` times). The feasible set is the polytope

    P = {w : sum w = 1, lo_i <= w_i <= hi_i},   hi_i = min(high_i, cap_i),

which is non-empty iff ``lo_i <= hi_i`` for all i and ``sum lo <= 1 <= sum hi``.

``MixtureBounds.from_unit(x)`` maps every point of the cube ``[0, 1]^(K-1)`` into
P by *bounded stick-breaking*: domain i takes a share of the remaining mass
``m_i`` inside the interval that keeps the rest feasible,

    a_i = max(lo_i, m_i - sum_{j>i} hi_j),   b_i = min(hi_i, m_i - sum_{j>i} lo_j),
    w_i = a_i + (b_i - a_i) * (1 - (1 - x_i) ** (1 / (K - i))),

and the last domain takes what is left. The Beta(1, K-i) quantile makes the map
push the uniform measure on the cube onto the uniform (Dirichlet(1)) measure on
the simplex when there are no bounds, so any Optuna sampler starts from a fair
prior. Pure numpy: no Optuna here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

# The surrogate lives in its own module (lawsearch/_surrogate.py); re-exported here.
from lawsearch._surrogate import MixtureSurrogate

__all__ = [
    "MixtureBounds",
    "MixtureSurrogate",
    "alr",
    "alr_inverse",
    "clr",
    "clr_inverse",
    "validate_mixture_bounds",
]

FloatArray = NDArray[np.float64]
BoundSpec = float | Mapping[str, float] | Sequence[float]
#: slack tolerated when checking feasibility and bounds (floating point sums)
_TOL = 1e-9


def _per_domain(value: Any, domains: tuple[str, ...], field_name: str) -> FloatArray:
    """A scalar, a mapping domain->value or a sequence, as one float per domain."""
    k = len(domains)
    if isinstance(value, Mapping):
        unknown = [d for d in value if d not in domains]
        if unknown:
            raise ValueError(
                f"`{field_name}` names unknown domain(s) {unknown}; "
                f"the domains are {list(domains)}."
            )
        missing = [d for d in domains if d not in value]
        if missing and field_name == "tokens_available":
            raise ValueError(
                f"`tokens_available` is missing domain(s) {missing}; give the token count of "
                f"every domain."
            )
        default = {"low": 0.0, "high": 1.0}.get(field_name, np.inf)
        out = np.array([float(value.get(d, default)) for d in domains])
    elif np.ndim(value) == 0:
        out = np.full(k, float(value))
    else:
        out = np.asarray(value, dtype=float).ravel()
        if out.size != k:
            raise ValueError(
                f"`{field_name}` has {out.size} values but there are {k} domains; give one per "
                f"domain, a scalar, or a dict domain -> value."
            )
    if np.any(np.isnan(out)):
        raise ValueError(f"`{field_name}` contains NaN; give a number per domain.")
    return out


@dataclass(frozen=True)
class MixtureBounds:
    """The feasible region of a mixture: per-domain lower and upper weights.

    Build it with ``MixtureBounds.build`` (validates and folds the token cap in).

    Attributes:
        domains: the domain names, in the order of every weight vector.
        lo: the lower bound of each weight.
        hi: the upper bound of each weight (token cap included).
    """

    domains: tuple[str, ...]
    lo: tuple[float, ...]
    hi: tuple[float, ...]

    @classmethod
    def build(
        cls,
        domains: Sequence[str],
        *,
        low: BoundSpec = 0.0,
        high: BoundSpec = 1.0,
        tokens_available: Mapping[str, float] | Sequence[float] | None = None,
        max_epochs: float | None = None,
        total_tokens: float | None = None,
    ) -> MixtureBounds:
        """Validate the bounds and return the (non-empty) feasible region.

        Args:
            domains: the domain names (at least 2, unique).
            low: lower weight per domain (scalar, dict or sequence).
            high: upper weight per domain (scalar, dict or sequence).
            tokens_available: tokens each domain holds (with ``max_epochs`` and
                ``total_tokens``: the cap ``w_i <= max_epochs * tokens_i / total_tokens``).
            max_epochs: how many times a domain may be repeated at most.
            total_tokens: the tokens the run trains on.

        Raises:
            ValueError: when the inputs are malformed or no mixture satisfies them.
        """
        names = tuple(str(d) for d in domains)
        if len(names) < 2:
            raise ValueError(f"`domains` needs at least 2 names; got {list(names)}.")
        if len(set(names)) != len(names):
            dup = sorted({d for d in names if names.count(d) > 1})
            raise ValueError(f"`domains` must be unique; {dup} appear more than once.")
        lo = _per_domain(low, names, "low")
        hi = _per_domain(high, names, "high")
        for arr, fname in ((lo, "low"), (hi, "high")):
            bad = np.flatnonzero((arr < 0) | (arr > 1))
            if bad.size:
                i = int(bad[0])
                raise ValueError(
                    f"`{fname}` for domain {names[i]!r} must be in [0, 1]; got {arr[i]!r}."
                )
        hi = np.minimum(hi, _token_cap(names, tokens_available, max_epochs, total_tokens))
        bad = np.flatnonzero(lo > hi + _TOL)
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"domain {names[i]!r}: `low` = {lo[i]:g} exceeds its upper bound {hi[i]:g} "
                f"(`high` or the max_epochs token cap); lower `low` or raise the cap."
            )
        if lo.sum() > 1 + _TOL:
            raise ValueError(
                f"the lower bounds sum to {lo.sum():g} > 1, so no mixture satisfies them; "
                f"lower `low`."
            )
        if hi.sum() < 1 - _TOL:
            raise ValueError(
                f"the upper bounds (`high` and the max_epochs token cap) sum to {hi.sum():g} < 1, "
                f"so no mixture reaches 1; raise `high`, `max_epochs` or `tokens_available`, or "
                f"lower `total_tokens`."
            )
        hi = np.maximum(hi, lo)
        return cls(names, tuple(float(v) for v in lo), tuple(float(v) for v in hi))

    @property
    def k(self) -> int:
        """The number of domains."""
        return len(self.domains)

    @property
    def lo_array(self) -> FloatArray:
        return np.asarray(self.lo, dtype=float)

    @property
    def hi_array(self) -> FloatArray:
        return np.asarray(self.hi, dtype=float)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (inverse of ``from_dict``)."""
        return {"domains": list(self.domains), "lo": list(self.lo), "hi": list(self.hi)}

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> MixtureBounds:
        return cls(
            tuple(spec["domains"]),
            tuple(float(v) for v in spec["lo"]),
            tuple(float(v) for v in spec["hi"]),
        )

    def contains(self, weights: ArrayLike, *, tol: float = 1e-7) -> NDArray[np.bool_]:
        """Whether each row of ``weights`` (n×K or K) lies in the feasible region."""
        w = np.atleast_2d(np.asarray(weights, dtype=float))
        return (
            (np.abs(w.sum(axis=1) - 1.0) <= tol)
            & np.all(w >= self.lo_array - tol, axis=1)
            & np.all(w <= self.hi_array + tol, axis=1)
        )

    def from_unit(self, x: ArrayLike) -> FloatArray:
        """Map cube points (n×(K-1) or K-1) to mixtures (n×K or K) inside the bounds."""
        u = np.asarray(x, dtype=float)
        single = u.ndim == 1
        u = np.atleast_2d(u)
        k = self.k
        if u.shape[1] != k - 1:
            raise ValueError(f"`x` must have {k - 1} columns (K-1 for K={k}); got {u.shape[1]}.")
        if np.any(~np.isfinite(u)) or np.any(u < 0) or np.any(u > 1):
            raise ValueError("`x` must lie in the unit cube [0, 1].")
        lo, hi = self.lo_array, self.hi_array
        lo_tail = np.concatenate([np.cumsum(lo[::-1])[::-1][1:], [0.0]])  # sum_{j>i} lo_j
        hi_tail = np.concatenate([np.cumsum(hi[::-1])[::-1][1:], [0.0]])
        w = np.empty((u.shape[0], k))
        mass = np.ones(u.shape[0])
        for i in range(k - 1):
            a, b = self._interval(i, mass, lo_tail, hi_tail)
            frac = 1.0 - (1.0 - u[:, i]) ** (1.0 / (k - 1 - i))
            w[:, i] = np.clip(a + (b - a) * frac, a, b)
            mass = mass - w[:, i]
        w[:, k - 1] = np.clip(mass, lo[k - 1], hi[k - 1])
        w = w / w.sum(axis=1, keepdims=True)
        return w[0] if single else w

    def to_unit(self, weights: ArrayLike) -> FloatArray:
        """The cube point whose ``from_unit`` image is ``weights`` (inverse map).

        Exact up to the float resolution of the cube: the Beta quantile squeezes
        shares close to their upper limit towards 1, so a share within about
        ``eps ** (1 / (K - 1 - i))`` of its limit (``eps`` = 2.2e-16) comes back at
        the limit (at most ~2e-3 of weight for K = 7, 4e-5 for K = 4).
        """
        w = np.asarray(weights, dtype=float)
        single = w.ndim == 1
        w = np.atleast_2d(w)
        k = self.k
        if w.shape[1] != k:
            raise ValueError(f"`weights` must have {k} columns; got {w.shape[1]}.")
        lo_tail = np.concatenate([np.cumsum(self.lo_array[::-1])[::-1][1:], [0.0]])
        hi_tail = np.concatenate([np.cumsum(self.hi_array[::-1])[::-1][1:], [0.0]])
        x = np.empty((w.shape[0], k - 1))
        mass = np.ones(w.shape[0])
        for i in range(k - 1):
            a, b = self._interval(i, mass, lo_tail, hi_tail)
            span = b - a
            frac = np.where(span > 1e-15, (w[:, i] - a) / np.where(span > 1e-15, span, 1.0), 0.5)
            frac = np.clip(frac, 0.0, 1.0)
            x[:, i] = 1.0 - (1.0 - frac) ** (k - 1 - i)
            mass = mass - w[:, i]
        return x[0] if single else x

    def _interval(
        self, i: int, mass: FloatArray, lo_tail: FloatArray, hi_tail: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """The range of w_i that keeps the remaining domains feasible."""
        a = np.maximum(self.lo[i], mass - hi_tail[i])
        b = np.minimum(self.hi[i], mass - lo_tail[i])
        return a, np.maximum(a, b)

    def sample(self, n: int, *, rng: np.random.Generator | int | None = None) -> FloatArray:
        """``n`` mixtures drawn uniformly from the feasible region (n×K).

        Rejection from Dirichlet(1) while the acceptance rate allows it; the rest
        from bounded stick-breaking over a random domain order per draw, which is
        close to uniform and never rejects.
        """
        gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        out: list[FloatArray] = []
        have = 0
        for _ in range(4):
            cand = gen.dirichlet(np.ones(self.k), size=max(4 * n, 64))
            keep = cand[self.contains(cand, tol=0.0)]
            out.append(keep)
            have += keep.shape[0]
            if have >= n or keep.shape[0] < 0.05 * cand.shape[0]:
                break
        if have < n:
            out.append(self._sample_permuted(n - have, gen))
        return np.concatenate(out)[:n]

    def _sample_permuted(self, n: int, gen: np.random.Generator) -> FloatArray:
        w = np.empty((n, self.k))
        for r in range(n):
            perm = gen.permutation(self.k)
            sub = MixtureBounds(
                tuple(self.domains[j] for j in perm),
                tuple(self.lo[j] for j in perm),
                tuple(self.hi[j] for j in perm),
            )
            w[r, perm] = sub.from_unit(gen.random(self.k - 1))
        return w


def _token_cap(
    domains: tuple[str, ...],
    tokens_available: Mapping[str, float] | Sequence[float] | None,
    max_epochs: float | None,
    total_tokens: float | None,
) -> FloatArray:
    """``max_epochs * tokens_available_i / total_tokens`` (inf where no cap applies)."""
    given = [tokens_available is not None, max_epochs is not None]
    if not any(given):
        return np.full(len(domains), np.inf)
    if not all(given):
        raise ValueError(
            "`tokens_available` and `max_epochs` go together: give both to cap repetition, "
            "or neither."
        )
    if total_tokens is None:
        raise ValueError(
            "`total_tokens` is required with `max_epochs` (the tokens one run trains on, to turn "
            "the epoch cap into a weight cap)."
        )
    assert max_epochs is not None
    if not np.isfinite(max_epochs) or max_epochs <= 0:
        raise ValueError(f"`max_epochs` must be a positive number; got {max_epochs!r}.")
    if not np.isfinite(total_tokens) or total_tokens <= 0:
        raise ValueError(f"`total_tokens` must be a positive number; got {total_tokens!r}.")
    tokens = _per_domain(tokens_available, domains, "tokens_available")
    bad = np.flatnonzero(~np.isfinite(tokens) | (tokens < 0))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"`tokens_available` for domain {domains[i]!r} must be a finite count >= 0; "
            f"got {tokens[i]!r}."
        )
    return np.asarray(max_epochs * tokens / total_tokens, dtype=float)


def validate_mixture_bounds(
    domains: Sequence[str],
    *,
    low: BoundSpec = 0.0,
    high: BoundSpec = 1.0,
    tokens_available: Mapping[str, float] | Sequence[float] | None = None,
    max_epochs: float | None = None,
    total_tokens: float | None = None,
) -> MixtureBounds:
    """Check mixture bounds up front (before any trial runs); return the feasible region.

    Raises:
        ValueError: naming the offending field when no mixture satisfies the bounds.
    """
    return MixtureBounds.build(
        domains,
        low=low,
        high=high,
        tokens_available=tokens_available,
        max_epochs=max_epochs,
        total_tokens=total_tokens,
    )


def clr(weights: ArrayLike, *, eps: float = 1e-6) -> FloatArray:
    """Centred log-ratio ``log(w_i + eps) - mean_j log(w_j + eps)`` (rows of n×K)."""
    lw = np.log(np.asarray(weights, dtype=float) + eps)
    return np.asarray(lw - lw.mean(axis=-1, keepdims=True), dtype=float)


def clr_inverse(z: ArrayLike) -> FloatArray:
    """The softmax: the simplex point with centred log-ratio ``z`` (eps-free inverse)."""
    v = np.asarray(z, dtype=float)
    e = np.exp(v - v.max(axis=-1, keepdims=True))
    return np.asarray(e / e.sum(axis=-1, keepdims=True), dtype=float)


def alr(weights: ArrayLike, *, eps: float = 1e-6) -> FloatArray:
    """Additive log-ratio against the last domain: ``log((w_i+eps)/(w_K+eps))``, i < K."""
    lw = np.log(np.asarray(weights, dtype=float) + eps)
    return np.asarray(lw[..., :-1] - lw[..., -1:], dtype=float)


def alr_inverse(z: ArrayLike) -> FloatArray:
    """The simplex point with additive log-ratio ``z`` (K-1 columns -> K)."""
    v = np.asarray(z, dtype=float)
    full = np.concatenate([v, np.zeros((*v.shape[:-1], 1))], axis=-1)
    return clr_inverse(full)
