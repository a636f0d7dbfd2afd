"""Pooled fits: parameters shared across the runs of one study, the others per run.

The joint problem has a block structure: curve ``i``'s residuals depend only on
the shared parameters and on curve ``i``'s own ones. The Jacobian is therefore
sparse (an "arrow" pattern), which scipy exploits twice: finite differences
perturb the own parameters of every curve at once (``jac_sparsity``), and the
trust-region steps use a sparse solver. The same variable projection as in a
single fit removes each curve's linear parameters (offsets, amplitudes) from
the nonlinear search.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from scipy.optimize import least_squares

from lawsearch._curve import Curve, FitResult, LawModel, Prior
from lawsearch._fit._least_squares import (
    _SOLVER_ERRORS,
    Problem,
    Projection,
    _huber_cost,
    best_agreed,
    build_result,
    failed_result,
    law_starts,
    linear_indices,
    make_problem,
)

__all__ = ["fit_pooled"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int_]
_KEYS = ("steps", "losses", "lrs", "weights")


def _validate(
    law: LawModel,
    curves: Sequence[Mapping[str, Any]],
    shared: Sequence[str],
    fixed: Mapping[str, float],
    prior: Mapping[str, Prior],
) -> list[Curve]:
    law.check_names(dict.fromkeys(shared), "shared")
    law.check_names(fixed, "fixed")
    law.check_names(prior, "prior")
    both = sorted(set(shared) & set(fixed))
    if both:
        raise ValueError(f"{both} are both `shared` and `fixed`; a parameter can only be one.")
    if len(shared) != len(set(shared)):
        raise ValueError(f"`shared` names a parameter twice: {list(shared)}.")
    if isinstance(curves, Mapping) or len(curves) == 0:
        raise ValueError(
            "`curves` must be a non-empty sequence of mappings with keys steps, losses "
            "(and optionally lrs, weights)."
        )
    out = []
    n_fixed = len(fixed) + len(shared)
    for i, c in enumerate(curves):
        if not isinstance(c, Mapping):
            raise ValueError(f"curves[{i}] must be a mapping with keys {_KEYS}; got {type(c)}.")
        unknown = sorted(set(c) - set(_KEYS))
        if unknown:
            raise ValueError(f"curves[{i}] has unknown keys {unknown}; allowed: {list(_KEYS)}.")
        missing = [k for k in ("steps", "losses") if k not in c]
        if missing:
            raise ValueError(f"curves[{i}] lacks {missing}; give at least steps and losses.")
        try:
            out.append(
                law.make_curve(
                    c["steps"],
                    c["losses"],
                    lrs=c.get("lrs"),
                    weights=c.get("weights"),
                    n_fixed=n_fixed,
                )
            )
        except ValueError as exc:
            raise ValueError(f"curves[{i}]: {exc}") from None
    return out


@dataclass(frozen=True)
class _Blocks:
    """The arrow-shaped joint problem over per-curve residual functions.

    ``z = [shared (s) | own_0 (m) | own_1 (m) | ...]``; ``funcs[i](x_i)`` gives
    curve ``i``'s residuals where ``x_i = [shared, own_i]`` placed at
    ``shared_pos`` / ``own_pos`` of that curve's vector.
    """

    funcs: list[Callable[[FloatArray], FloatArray]]
    rows: list[int]
    shared_pos: IntArray
    own_pos: IntArray
    extra: Callable[[FloatArray], FloatArray] | None  # rows on the shared values only
    n_extra: int
    sparse: bool = True

    @property
    def s(self) -> int:
        return int(self.shared_pos.size)

    @property
    def m(self) -> int:
        return int(self.own_pos.size)

    def local(self, z: FloatArray, i: int) -> FloatArray:
        x = np.empty(self.s + self.m)
        x[self.shared_pos] = z[: self.s]
        x[self.own_pos] = z[self.s + i * self.m : self.s + (i + 1) * self.m]
        return x

    def pack(self, xs: list[FloatArray]) -> FloatArray:
        parts = [xs[0][self.shared_pos]] + [x[self.own_pos] for x in xs]
        return np.concatenate(parts)

    def residuals(self, z: FloatArray) -> FloatArray:
        parts = [f(self.local(z, i)) for i, f in enumerate(self.funcs)]
        if self.extra is not None:
            parts.append(self.extra(z[: self.s]))
        return np.concatenate(parts)

    def sparsity(self) -> sp.csr_matrix:
        n_cols = self.s + len(self.funcs) * self.m
        mat = sp.lil_matrix((sum(self.rows) + self.n_extra, n_cols), dtype=int)
        r0 = 0
        for i, n in enumerate(self.rows):
            mat[r0 : r0 + n, : self.s] = 1
            mat[r0 : r0 + n, self.s + i * self.m : self.s + (i + 1) * self.m] = 1
            r0 += n
        if self.n_extra:
            mat[r0:, : self.s] = 1
        return mat.tocsr()

    def solve(self, z0: FloatArray, lo: FloatArray, hi: FloatArray, delta: float, **kw: Any) -> Any:
        try:
            res = least_squares(
                self.residuals,
                np.clip(z0, lo, hi),
                bounds=(lo, hi),
                loss="huber",
                f_scale=delta,
                method="trf",
                jac_sparsity=self.sparsity() if self.sparse else None,
                x_scale="jac",
                **kw,
            )
        except _SOLVER_ERRORS:
            return None
        return res if np.isfinite(res.cost) else None


def _bounds(lo: FloatArray, hi: FloatArray, b: _Blocks, n: int) -> tuple[FloatArray, FloatArray]:
    zl = np.concatenate([lo[b.shared_pos]] + [lo[b.own_pos]] * n)
    zh = np.concatenate([hi[b.shared_pos]] + [hi[b.own_pos]] * n)
    return zl, zh


def fit_pooled(
    law: LawModel,
    curves: Sequence[Mapping[str, Any]],
    *,
    shared: Sequence[str],
    fixed: Mapping[str, float] | None = None,
    prior: Mapping[str, Prior] | None = None,
    sparse: bool = True,
) -> list[FitResult]:
    """Fit ``shared`` parameters jointly across ``curves``, the rest per curve.

    Args:
        law: the law (options) fitted to every curve.
        curves: one mapping per run: ``steps``, ``losses``, optional ``lrs``, ``weights``.
        shared: parameters common to all runs (e.g. ``("alpha",)``).
        fixed: parameters held at given values in every run.
        prior: Gaussian priors ``name -> (mean, sd)``; on a shared parameter it
            counts once, on a per-run parameter once per run.
        sparse: exploit the block structure of the Jacobian (False solves the
            same problem with dense finite differences; for checking only).

    Returns:
        One ``FitResult`` per curve (same order) with the full parameter values,
        the covariance of that curve's free parameters (shared and own, in the
        law's order) marginalised from the joint fit, status and message.

    Raises:
        ValueError: on bad input; the message names the offending curve index.
    """
    if isinstance(shared, str):
        raise ValueError(
            f"`shared` must be a sequence of names; got the string {shared!r} "
            f"(write shared=({shared!r},))."
        )
    fixed = dict(fixed or {})
    prior = dict(prior or {})
    shared = tuple(shared)
    cvs = _validate(law, curves, shared, fixed, prior)
    names = law.param_names
    own_prior = {k: v for k, v in prior.items() if k not in shared}
    probs = [make_problem(law, c, fixed=fixed, prior=own_prior) for c in cvs]
    free = tuple(names[i] for i in probs[0].free_idx)
    shared_pos = np.array([free.index(n) for n in shared], dtype=int)
    own_pos = np.array([j for j, n in enumerate(free) if n not in shared], dtype=int)
    sigma = float(np.median([p.sigma for p in probs]))
    sh_prior = [(shared.index(k), mu, sd) for k, (mu, sd) in prior.items() if k in shared]

    def shared_rows(v: FloatArray) -> FloatArray:
        return np.array([sigma * (v[j] - mu) / sd for j, mu, sd in sh_prior])

    extra = shared_rows if sh_prior else None
    starts = [law_starts(law, c, p.free_idx, p.fixed_vec) for c, p in zip(cvs, probs, strict=True)]
    if not all(starts):
        return [failed_result(law, c, free, "the law proposed no valid start") for c in cvs]
    projs = _projections(probs, starts, shared_pos)
    full = _Blocks(
        funcs=[p.residuals for p in probs],
        rows=[p.n_obs + p.prior_idx.size for p in probs],
        shared_pos=shared_pos,
        own_pos=own_pos,
        extra=extra,
        n_extra=len(sh_prior),
        sparse=sparse,
    )
    best = _multistart(law, probs, projs, starts, full, shared_pos)
    if best is None:
        return [failed_result(law, c, free, "no starting point converged") for c in cvs]
    return _results(law, cvs, probs, full, best, free, prior, shared, sigma)


def _projections(
    probs: list[Problem], starts: list[list[FloatArray]], shared_pos: IntArray
) -> list[Projection] | None:
    """Per-curve projections of the own linear parameters (None if any curve lacks one)."""
    out = []
    for p, st in zip(probs, starts, strict=True):
        lin = np.setdiff1d(linear_indices(p, st), shared_pos)
        if not lin.size:
            return None
        proj = Projection(p, lin, np.setdiff1d(np.arange(p.free_idx.size), lin))
        if not proj.consistent(st[0]):
            return None
        out.append(proj)
    return out


def _candidates(
    probs: list[Problem],
    projs: list[Projection] | None,
    starts: list[list[FloatArray]],
    shared_pos: IntArray,
    delta: float,
    n_max: int,
) -> list[tuple[float, list[FloatArray]]]:
    """Shared values proposed by any curve's starts, each curve's best own start under them."""
    proposals: list[FloatArray] = []
    for st in starts:
        for x in st:
            v = x[shared_pos]
            if not any(np.array_equal(v, q) for q in proposals):
                proposals.append(v)
    scored = []
    for v in proposals[: 4 * max(n_max, 1)]:
        total, chosen = 0.0, []
        for i, (p, st) in enumerate(zip(probs, starts, strict=True)):
            best_c, best_x = np.inf, st[0].copy()
            for x0 in st:
                x = x0.copy()
                x[shared_pos] = v
                if projs is not None:
                    beta = projs[i].solve(x[projs[i].nonlin])
                    if beta is None:
                        continue
                    x[projs[i].lin] = beta
                r = p.residuals(x)
                c = _huber_cost(r, delta) if np.all(np.isfinite(r)) else np.inf
                if c < best_c:
                    best_c, best_x = c, x
            total += best_c
            chosen.append(best_x)
        scored.append((total, chosen))
    scored.sort(key=lambda t: t[0])
    return scored


def _multistart(
    law: LawModel,
    probs: list[Problem],
    projs: list[Projection] | None,
    starts: list[list[FloatArray]],
    full: _Blocks,
    shared_pos: IntArray,
) -> Any:
    delta = law.huber_delta
    lo, hi = probs[0].lo, probs[0].hi
    zl, zh = _bounds(lo, hi, full, len(probs))
    n_z = zl.size

    def solve(xs: list[FloatArray]) -> Any:
        if projs is not None:
            xs = _projected_stage(probs, projs, xs, full, delta)
        return full.solve(
            full.pack(xs), zl, zh, delta, ftol=1e-6 if projs else 1e-8, max_nfev=50 * (n_z + 1)
        )

    candidates = _candidates(probs, projs, starts, shared_pos, delta, law.n_starts)
    return best_agreed((xs for _, xs in candidates), solve, law.n_starts)


def _projected_stage(
    probs: list[Problem],
    projs: list[Projection],
    xs: list[FloatArray],
    full: _Blocks,
    delta: float,
) -> list[FloatArray]:
    """Joint search over shared + own nonlinear parameters, linear ones projected out."""
    nonlin = projs[0].nonlin
    # positions within the nonlinear vector
    sh = np.array([int(np.flatnonzero(nonlin == j)[0]) for j in full.shared_pos], dtype=int)
    own = np.setdiff1d(np.arange(nonlin.size), sh)
    blocks = _Blocks(
        funcs=[pj.residuals for pj in projs],
        rows=full.rows,
        shared_pos=sh,
        own_pos=own,
        extra=full.extra,
        n_extra=full.n_extra,
        sparse=full.sparse,
    )
    lo, hi = probs[0].lo[nonlin], probs[0].hi[nonlin]
    zl, zh = _bounds(lo, hi, blocks, len(probs))
    z0 = blocks.pack([x[nonlin] for x in xs])
    res = blocks.solve(z0, zl, zh, delta, max_nfev=60 * (zl.size + 1))
    if res is None:
        return xs
    out = []
    for i, pj in enumerate(projs):
        zi = blocks.local(res.x, i)
        beta = pj.solve(zi)
        if beta is None:
            return xs
        out.append(pj.assemble(zi, beta))
    return out


def _results(
    law: LawModel,
    cvs: list[Curve],
    probs: list[Problem],
    full: _Blocks,
    best: Any,
    free: tuple[str, ...],
    prior: Mapping[str, Prior],
    shared: tuple[str, ...],
    sigma: float,
) -> list[FitResult]:
    jac = best.jac.tocsr() if sp.issparse(best.jac) else np.asarray(best.jac, dtype=float)
    s, m, n = full.s, full.m, len(probs)
    # each curve's Jacobian block (rows of curve i; columns shared then own_i),
    # weighted by that curve's noise so the joint covariance is the
    # Gauss-Newton posterior under per-run noise
    blocks, s2s, r0 = [], [], 0
    for i, p in enumerate(probs):
        rows = slice(r0, r0 + full.rows[i])
        r = best.fun[r0 : r0 + p.n_obs]
        s2 = max(float(np.sum(r**2)) / max(p.n_obs - m - s / n, 1.0), p.sigma**2)
        cols = np.concatenate([np.arange(s), s + i * m + np.arange(m)])
        jb = jac[rows][:, cols]
        jb = np.asarray(jb.toarray() if sp.issparse(jb) else jb, dtype=float)  # type: ignore[union-attr]
        blocks.append((rows, jb, jb / math.sqrt(s2)))
        s2s.append(s2)
        r0 += full.rows[i]
    extra: FloatArray | None = None
    if full.n_extra:
        tail = jac[r0:][:, :s]
        dense = tail.toarray() if sp.issparse(tail) else tail  # type: ignore[union-attr]
        extra = np.asarray(dense, dtype=float) / sigma
    covs, weak_sets = _arrow_covariance([b[2] for b in blocks], s, m, extra)
    local_order = np.concatenate([full.shared_pos, full.own_pos])
    perm = np.argsort(local_order)  # shared-then-own -> the law's order of `free`
    out = []
    for i, (c, p) in enumerate(zip(cvs, probs, strict=True)):
        rows, jb, _ = blocks[i]
        weak = sorted({free[local_order[j]] for j in weak_sets[i]}, key=free.index)
        result = build_result(
            law,
            c,
            p,
            full.local(best.x, i),
            best.fun[rows],
            _huber_cost(best.fun[rows], law.huber_delta),
            bool(best.success) or best.status == 0,
            str(best.message),
            prior=prior,
            jac=jb[:, perm],
            s2=s2s[i],
            cov=covs[i][np.ix_(perm, perm)],
            weak=weak,
            extra={"shared": shared},
        )
        out.append(result)
    return out


def _arrow_covariance(
    jacs: list[FloatArray], s: int, m: int, extra: FloatArray | None
) -> tuple[list[FloatArray], list[set[int]]]:
    """Marginal covariance blocks of ``(J^T J)^+`` for an arrow-shaped Jacobian.

    With ``J^T J = [[S, B_i], [B_i^T, D_i]]`` (shared block ``S``, per-curve
    blocks ``D_i``), the Schur complement ``C = (S - sum B_i D_i^+ B_i^T)^+``
    is the shared covariance and curve ``i``'s block follows from it; only
    ``s x s`` and ``m x m`` matrices are ever factorised, so the cost grows
    linearly with the number of curves. Also returns, per curve, the block
    columns (shared first) that the data do not identify.
    """
    schur = np.zeros((s, s)) if extra is None else extra.T @ extra
    parts = []
    for j in jacs:
        js, jo = j[:, :s], j[:, s:]
        d_inv, weak_own = _pinv_weak(jo.T @ jo)
        b = js.T @ jo
        schur += js.T @ js - b @ d_inv @ b.T
        parts.append((b, d_inv, weak_own))
    c_s, weak_shared = _pinv_weak(schur)
    covs, weak = [], []
    for b, d_inv, weak_own in parts:
        cross = -c_s @ b @ d_inv
        own = d_inv + d_inv @ b.T @ c_s @ b @ d_inv
        covs.append(np.block([[c_s, cross], [cross.T, own]]))
        weak.append(set(weak_shared) | {s + k for k in weak_own})
    return covs, weak


def _pinv_weak(mat: FloatArray) -> tuple[FloatArray, list[int]]:
    """Pseudo-inverse of a small PSD matrix and the columns in its null space."""
    k = mat.shape[0]
    if k == 0:
        return np.zeros((0, 0)), []
    diag = np.diag(mat)
    col = np.sqrt(np.clip(diag, 1e-300, None))
    vals, vecs = np.linalg.eigh(mat / np.outer(col, col))
    keep = vals > max(float(vals.max()), 0.0) * 1e-12
    inv = (vecs[:, keep] / vals[keep]) @ vecs[:, keep].T / np.outer(col, col)
    weak = {int(j) for j in np.flatnonzero(diag <= 0)}
    if not np.all(keep):
        null = np.abs(vecs[:, ~keep])
        weak |= {int(j) for j in np.flatnonzero(null.max(axis=1) > 0.3)}
    return np.asarray(inv, dtype=float), sorted(weak)
