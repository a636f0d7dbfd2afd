"""Multi-start, bounded, Huber-robust least squares in log-loss space.

Three things make a fit fast and keep it honest (each chosen by measurement on
the recorded lr_schedules curves):

1. *Variable projection.* Parameters that enter the loss linearly (offsets and
   amplitudes such as ``E``, ``A``, ``L0``) are solved exactly, by bounded
   weighted linear least squares, for every value of the nonlinear ones. The
   nonlinear search then runs in fewer dimensions and never sees the badly
   scaled amplitudes (``A`` spans 1e-10..1e10). Which parameters are linear is
   declared by ``Law.linear_params()`` or detected numerically, and verified
   on every fit, so a wrong declaration falls back to the plain search.
2. *Screened starts.* Every deterministic start is scored by its projected cost
   first; local searches run best first and stop once two of them agree.
3. *A polish* of all parameters together with the Huber loss in log space, using
   the law's analytic ``jacobian`` when it has one (finite differences if not).

Non-convergence is a status (``failed``/``degenerate`` with a message), never an
exception and never a silent wrong answer.

Size: this module is one concept, the single-curve fitter, whose three steps
share one problem object (residuals, projection, Jacobians); ``_pooled`` and
``_profile`` reuse its pieces for many curves.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import OptimizeResult, least_squares, lsq_linear

from lawsearch._curve import Curve, FitResult, LawModel, Prior, information_criteria

__all__ = ["fit_curve", "linear_indices", "log_residuals", "noise_scale"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int_]
_BAD_LOG = 50.0  # residual used where a law returns a non-positive or non-finite loss
_LINEAR_RTOL = 1e-7  # second differences this small (relative) mean "affine in the parameter"
_SOLVER_ERRORS = (ValueError, FloatingPointError, np.linalg.LinAlgError, ZeroDivisionError)


def noise_scale(log_losses: FloatArray) -> float:
    """A robust estimate of the per-point noise in log loss.

    Uses the MAD of second differences, which a smooth trend barely touches:
    for white noise of sd sigma, ``diff2`` has sd ``sigma * sqrt(6)``.
    """
    y = np.asarray(log_losses, dtype=float).reshape(log_losses.shape[0], -1).mean(axis=1)
    if y.size < 4:
        return 1e-3
    d2 = np.diff(y, 2)
    mad = float(np.median(np.abs(d2 - np.median(d2))))
    return max(1.4826 * mad / math.sqrt(6.0), 1e-5)


def log_residuals(pred: FloatArray, log_y: FloatArray) -> FloatArray:
    """``log(pred) - log_y``, with a large finite penalty where pred is unusable."""
    pred = np.asarray(pred, dtype=float)
    ok = np.isfinite(pred) & (pred > 0)
    safe = np.where(ok, pred, 1.0)
    return np.where(ok, np.log(safe) - log_y, _BAD_LOG)


@dataclass(frozen=True)
class Problem:
    """One curve's weighted, robust log-space least-squares problem.

    ``x`` is the vector of free parameters (positions ``free_idx`` of the law's
    parameter vector); the others come from ``fixed_vec``. Priors add residuals
    ``sigma * (theta - mu) / sd`` so that one prior sd weighs like one noise sd.
    """

    law: LawModel
    feats: Any
    log_y: FloatArray  # raveled
    w: FloatArray  # raveled sqrt weights
    fixed_vec: FloatArray
    free_idx: IntArray
    lo: FloatArray  # bounds of the free parameters
    hi: FloatArray
    prior_idx: IntArray
    prior_mu: FloatArray
    prior_sd: FloatArray
    sigma: float

    @property
    def n_obs(self) -> int:
        return int(self.log_y.size)

    def full(self, x: FloatArray) -> FloatArray:
        theta = self.fixed_vec.copy()
        theta[self.free_idx] = x
        return theta

    def predict(self, theta: FloatArray) -> FloatArray:
        return np.asarray(self.law.evaluate(theta, self.feats), dtype=float).ravel()

    def prior_rows(self, theta: FloatArray) -> FloatArray:
        return self.sigma * (theta[self.prior_idx] - self.prior_mu) / self.prior_sd

    def residuals(self, x: FloatArray) -> FloatArray:
        theta = self.full(x)
        r = self.w * log_residuals(self.predict(theta), self.log_y)
        if self.prior_idx.size:
            r = np.concatenate([r, self.prior_rows(theta)])
        return r

    def analytic_jac(self, probe: FloatArray) -> Callable[[FloatArray], FloatArray] | None:
        """The residual Jacobian from ``Law.jacobian`` if the law provides one at ``probe``.

        Where the law declines (returns None) at some point, that call falls back
        to finite differences.
        """
        from scipy.optimize._numdiff import approx_derivative

        free_pos = {int(j): i for i, j in enumerate(self.free_idx)}
        if self.law.jacobian(self.full(probe), self.feats) is None:
            return None

        def jac(x: FloatArray) -> FloatArray:
            theta = self.full(x)
            pred = self.predict(theta)
            raw = self.law.jacobian(theta, self.feats)
            if raw is None:
                j = approx_derivative(
                    self.residuals, x, method="2-point", bounds=(self.lo, self.hi)
                )
                return np.asarray(j, dtype=float)
            d = np.asarray(raw, dtype=float).reshape(self.n_obs, -1)[:, self.free_idx]
            ok = np.isfinite(pred) & (pred > 0)
            scale = np.where(ok, self.w / np.where(ok, pred, 1.0), 0.0)
            j = np.nan_to_num(d * scale[:, None], nan=0.0, posinf=0.0, neginf=0.0)
            if self.prior_idx.size:
                pj = np.zeros((self.prior_idx.size, self.free_idx.size))
                for r, k in enumerate(self.prior_idx):
                    if int(k) in free_pos:
                        pj[r, free_pos[int(k)]] = self.sigma / self.prior_sd[r]
                j = np.vstack([j, pj])
            return j

        return jac


def make_problem(
    law: LawModel,
    curve: Curve,
    *,
    fixed: Mapping[str, float],
    prior: Mapping[str, Prior],
    feats: Any = None,
) -> Problem:
    """Build the least-squares problem of ``law`` on a validated ``curve``."""
    names = law.param_names
    lo, hi = law.bounds
    for n, v in fixed.items():
        i = names.index(n)
        if not lo[i] <= v <= hi[i]:
            raise ValueError(
                f"`fixed[{n!r}]` = {v!r} is outside the bounds [{lo[i]:g}, {hi[i]:g}] of "
                f"{type(law).__name__}; clip it or free the parameter."
            )
    for n, (_, sd) in prior.items():
        if not (np.isfinite(sd) and sd > 0):
            raise ValueError(f"`prior[{n!r}]` has sd {sd!r}; it must be finite and > 0.")
    free_idx = np.array([i for i, n in enumerate(names) if n not in fixed], dtype=int)
    if feats is None:
        feats = law.features(curve.steps, curve.track)
    log_y = np.log(curve.losses)
    sqrt_w = np.sqrt(curve.weights / curve.weights.mean())
    if log_y.ndim > 1:
        sqrt_w = sqrt_w.reshape(-1, *([1] * (log_y.ndim - 1)))
    w = np.broadcast_to(sqrt_w, log_y.shape).ravel().copy()
    return Problem(
        law=law,
        feats=feats,
        log_y=log_y.ravel(),
        w=w,
        fixed_vec=np.array([fixed.get(n, np.nan) for n in names], dtype=float),
        free_idx=free_idx,
        lo=lo[free_idx],
        hi=hi[free_idx],
        prior_idx=np.array([names.index(n) for n in prior], dtype=int),
        prior_mu=np.array([prior[n][0] for n in prior], dtype=float),
        prior_sd=np.array([prior[n][1] for n in prior], dtype=float),
        sigma=noise_scale(log_y),
    )


# ---- variable projection ---------------------------------------------------------------


def _step_within(x: float, lo: float, hi: float) -> float:
    a = 0.1 * (abs(x) + 1e-3)
    if x + 2 * a > hi:
        a = -a
    if x + 2 * a < lo:
        a = (hi - x) / 2 if hi - x > x - lo else -(x - lo) / 2
    return a


def linear_indices(prob: Problem, starts: list[FloatArray]) -> IntArray:
    """Positions (in the free vector) of the parameters the loss is affine in.

    ``Law.linear_params()`` is used when the law declares it; otherwise each
    free parameter is tested numerically (vanishing second differences at two
    starts). Either way the split is verified again at every screened start.
    """
    declared = prob.law.linear_params()
    names = prob.law.param_names
    free_names = [names[i] for i in prob.free_idx]
    if declared is not None:
        return np.array([i for i, n in enumerate(free_names) if n in declared], dtype=int)
    out = []
    probes = starts[:2]
    for j in range(prob.free_idx.size):
        linear = bool(probes)
        for x in probes:
            a = _step_within(float(x[j]), float(prob.lo[j]), float(prob.hi[j]))
            f = []
            for m in (0.0, 1.0, 2.0):
                xm = x.copy()
                xm[j] = x[j] + m * a
                f.append(prob.predict(prob.full(xm)))
            d1 = f[1] - f[0]
            d2 = f[2] - 2 * f[1] + f[0]
            if not (np.all(np.isfinite(d2)) and np.max(np.abs(d1)) > 0):
                linear = False
                break
            if np.max(np.abs(d2)) > _LINEAR_RTOL * np.max(np.abs(d1)) + 1e-300:
                linear = False
                break
        if linear:
            out.append(j)
    return np.array(out, dtype=int)


def _small_lstsq(a: FloatArray, rhs: FloatArray) -> FloatArray:
    """Least squares for a few columns: scaled normal equations, SVD if ill-posed."""
    norm = np.sqrt(np.einsum("ij,ij->j", a, a))
    if np.all(norm > 0):
        an = a / norm
        g = an.T @ an
        # unit diagonal, so the determinant measures how close to collinear
        if abs(np.linalg.det(g)) > 1e-10:
            return np.asarray(np.linalg.solve(g, an.T @ rhs) / norm, dtype=float)
    return np.asarray(np.linalg.lstsq(a, rhs, rcond=None)[0], dtype=float)


@dataclass(frozen=True)
class Projection:
    """Solve the linear parameters exactly for given nonlinear ones."""

    prob: Problem
    lin: IntArray  # positions in the free vector
    nonlin: IntArray
    memo: dict[bytes, FloatArray | None] = field(default_factory=dict, compare=False)

    def assemble(self, z: FloatArray, beta: FloatArray) -> FloatArray:
        x = np.empty(self.prob.free_idx.size)
        x[self.nonlin] = z
        x[self.lin] = beta
        return x

    def basis(self, z: FloatArray) -> tuple[FloatArray, FloatArray] | None:
        """``(c, B)`` with ``pred = c + B @ beta``, or None where unusable."""
        k = self.lin.size
        x = self.assemble(z, np.zeros(k))
        c = self.prob.predict(self.prob.full(x))
        cols = []
        for j in range(k):
            e = np.zeros(k)
            e[j] = 1.0
            cols.append(self.prob.predict(self.prob.full(self.assemble(z, e))) - c)
        b = np.column_stack(cols) if cols else np.zeros((c.size, 0))
        if not (np.all(np.isfinite(c)) and np.all(np.isfinite(b))):
            return None
        return c, b

    def solve(self, z: FloatArray) -> FloatArray | None:
        """The linear parameters minimising relative squared error (≈ log error)."""
        key = z.tobytes()
        if key in self.memo:  # scipy asks for residuals and Jacobian at the same z
            return self.memo[key]
        beta = self._solve(z)
        self.memo.clear()
        self.memo[key] = beta
        return beta

    def _solve(self, z: FloatArray) -> FloatArray | None:
        cb = self.basis(z)
        if cb is None:
            return None
        c, b = cb
        prob = self.prob
        y = np.exp(prob.log_y)
        rw = prob.w / y
        a = b * rw[:, None]
        rhs = (y - c) * rw
        lin_full = prob.free_idx[self.lin]
        rows_a, rows_b = [a], [rhs]
        for r, k in enumerate(prob.prior_idx):
            hit = np.flatnonzero(lin_full == k)
            if hit.size:
                row = np.zeros(self.lin.size)
                row[hit[0]] = prob.sigma / prob.prior_sd[r]
                rows_a.append(row[None, :])
                rows_b.append(np.array([prob.sigma * prob.prior_mu[r] / prob.prior_sd[r]]))
        a = np.vstack(rows_a)
        rhs = np.concatenate(rows_b)
        lo, hi = prob.lo[self.lin], prob.hi[self.lin]
        try:
            beta = _small_lstsq(a, rhs)
            if np.all(beta >= lo) and np.all(beta <= hi):
                return np.asarray(beta, dtype=float)
            return np.asarray(lsq_linear(a, rhs, bounds=(lo, hi), method="bvls").x, dtype=float)
        except _SOLVER_ERRORS:
            return None

    def residuals(self, z: FloatArray) -> FloatArray:
        beta = self.solve(z)
        if beta is None:
            return np.full(self.prob.n_obs + self.prob.prior_idx.size, _BAD_LOG)
        return self.prob.residuals(self.assemble(z, beta))

    def jac(self, z: FloatArray) -> FloatArray:
        """Kaufman's variable-projection Jacobian ``(I - A A^+) J_z`` from ``Law.jacobian``.

        ``A`` holds the residual derivatives in the linear parameters and
        ``J_z`` those in the nonlinear ones at the projected optimum; the
        projection accounts, to first order, for the linear parameters moving
        with ``z``. Finite differences are used where the law gives no Jacobian.
        """
        from scipy.optimize._numdiff import approx_derivative

        prob = self.prob
        beta = self.solve(z)
        raw = None
        if beta is not None:
            theta = prob.full(self.assemble(z, beta))
            raw = prob.law.jacobian(theta, prob.feats)
        if raw is None:
            lo, hi = prob.lo[self.nonlin], prob.hi[self.nonlin]
            return np.asarray(
                approx_derivative(self.residuals, z, method="2-point", bounds=(lo, hi)), dtype=float
            )
        pred = prob.predict(theta)
        ok = np.isfinite(pred) & (pred > 0)
        scale = np.where(ok, prob.w / np.where(ok, pred, 1.0), 0.0)
        d = np.asarray(raw, dtype=float).reshape(prob.n_obs, -1)[:, prob.free_idx] * scale[:, None]
        d = np.nan_to_num(d, nan=0.0, posinf=0.0, neginf=0.0)
        # prior rows: d(prior residual)/d(theta_k) = sigma / sd on the prior's parameter
        if prob.prior_idx.size:
            pj = np.zeros((prob.prior_idx.size, prob.free_idx.size))
            for r, k in enumerate(prob.prior_idx):
                hit = np.flatnonzero(prob.free_idx == k)
                if hit.size:
                    pj[r, hit[0]] = prob.sigma / prob.prior_sd[r]
            d = np.vstack([d, pj])
        a, jz = d[:, self.lin], d[:, self.nonlin]
        coef = np.linalg.lstsq(a, jz, rcond=None)[0]
        return np.asarray(jz - a @ coef, dtype=float)

    def consistent(self, x: FloatArray) -> bool:
        """Whether ``pred(x) == c + B beta`` at ``x`` (the linear split holds there)."""
        cb = self.basis(x[self.nonlin])
        if cb is None:
            return False
        c, b = cb
        direct = self.prob.predict(self.prob.full(x))
        via = c + b @ x[self.lin]
        scale = np.max(np.abs(direct)) if direct.size else 1.0
        return bool(np.all(np.isfinite(direct)) and np.max(np.abs(direct - via)) <= 1e-6 * scale)


# ---- the local searches -------------------------------------------------------------------


def _ls(fun: Any, x0: FloatArray, lo: FloatArray, hi: FloatArray, delta: float, **kw: Any) -> Any:
    x0 = np.clip(x0, lo, hi)
    try:
        res = least_squares(
            fun,
            x0,
            bounds=(lo, hi),
            loss="huber",
            f_scale=delta,
            method="trf",
            **kw,
        )
    except _SOLVER_ERRORS:
        return None
    return res if np.isfinite(res.cost) else None


def _interior(x: FloatArray, lo: FloatArray, hi: FloatArray) -> FloatArray:
    span = np.where(np.isfinite(hi - lo), hi - lo, 1.0)
    a = lo + 1e-9 * span + 1e-12 * np.abs(lo)
    b = hi - 1e-9 * span - 1e-12 * np.abs(hi)
    return np.clip(x, a, b)


def _huber_cost(r: FloatArray, delta: float) -> float:
    a = np.abs(r)
    return float(np.sum(np.where(a <= delta, 0.5 * a**2, delta * (a - 0.5 * delta))))


def _local(
    prob: Problem,
    proj: Projection | None,
    x0: FloatArray,
    delta: float,
    jac: Callable[[FloatArray], FloatArray] | None,
) -> OptimizeResult | None:
    """One local search from ``x0``: projected nonlinear search, then a full polish."""
    n = prob.free_idx.size
    if proj is not None and proj.nonlin.size:
        z = _ls(
            proj.residuals,
            x0[proj.nonlin],
            prob.lo[proj.nonlin],
            prob.hi[proj.nonlin],
            delta,
            jac=proj.jac if jac is not None else "2-point",
            x_scale="jac",
            # a relative cost change of 1e-7 is far below what the noise can
            # distinguish; tighter tolerances only crawl along flat directions
            ftol=1e-7,
            xtol=1e-7,
            max_nfev=30 * (proj.nonlin.size + 1),
        )
        if z is not None:
            beta = proj.solve(z.x)
            if beta is not None:
                x0 = proj.assemble(z.x, beta)
    elif proj is not None:
        beta = proj.solve(np.zeros(0))
        if beta is not None:
            x0 = beta
    # From a projected optimum the polish gains little (the projection already
    # minimises a first-order equivalent of the log objective), so loose
    # tolerances stop it before TRF crawls along an active bound.
    return _ls(
        prob.residuals,
        x0,
        prob.lo,
        prob.hi,
        delta,
        jac=jac if jac is not None else "2-point",
        x_scale="jac",
        ftol=1e-6 if proj is not None else 1e-8,
        xtol=1e-6 if proj is not None else 1e-8,
        max_nfev=100 * (n + 1),
    )


def _screen(
    prob: Problem, proj: Projection | None, starts: list[FloatArray], delta: float
) -> list[tuple[float, FloatArray]]:
    """Each start with its linear part re-solved, scored by its robust cost, best first."""
    scored = []
    seen: list[FloatArray] = []
    for x0 in starts:
        x = x0
        if proj is not None:
            # starts that differ only in linear parameters project to one point
            z = x0[proj.nonlin]
            if any(np.array_equal(z, s) for s in seen):
                continue
            seen.append(z)
            beta = proj.solve(x0[proj.nonlin])
            if beta is not None:
                x = proj.assemble(x0[proj.nonlin], beta)
        r = prob.residuals(x)
        cost = _huber_cost(r, delta) if np.all(np.isfinite(r)) else np.inf
        scored.append((cost, x))
    order = np.argsort([c for c, _ in scored], kind="stable")
    return [scored[i] for i in order]


def solve_problem(
    prob: Problem, starts: list[FloatArray], *, delta: float, n_starts: int
) -> OptimizeResult | None:
    """Multi-start minimisation; stops as soon as two local searches agree.

    Two independent starts reaching the same optimum is the cheapest evidence
    that it is the global one; the remaining starts would only cost time.
    """
    if not starts:
        return None
    proj: Projection | None = None
    lin = linear_indices(prob, starts)
    if lin.size:
        nonlin = np.setdiff1d(np.arange(prob.free_idx.size), lin)
        proj = Projection(prob, lin, nonlin)
        if not proj.consistent(starts[0]):
            proj = None
    jac = prob.analytic_jac(starts[0])
    return best_agreed(
        (x0 for _, x0 in _screen(prob, proj, starts, delta)),
        lambda x0: _local(prob, proj, x0, delta, jac),
        n_starts,
    )


def best_agreed(
    starts: Iterable[Any], solve: Callable[[Any], Any], max_tries: int
) -> OptimizeResult | None:
    """The best local search from ``starts`` (in order), stopping early once two agree.

    At most ``max_tries`` starts are solved; ``solve`` returns an
    ``OptimizeResult`` (``cost`` is compared) or None for a search that failed.
    """
    best, agreed, tried = None, 0, 0
    for x0 in starts:
        if tried >= max(max_tries, 1) or agreed >= 1:
            break
        tried += 1
        res = solve(x0)
        if res is None:
            continue
        if best is not None and _agree(res.cost, best.cost):
            agreed += 1
        if best is None or res.cost < best.cost:
            best = res
    return best


def _agree(a: float, b: float) -> bool:
    """Two local optima with costs this close are taken as the same optimum."""
    return abs(a - b) <= 1e-4 * max(a, b, 1e-300) + 1e-14


def law_starts(
    law: LawModel, curve: Curve, free_idx: IntArray, fixed_vec: FloatArray
) -> list[FloatArray]:
    """The law's deterministic starts, fixed values imposed, strictly inside the bounds."""
    lo, hi = law.bounds
    out = []
    for x0 in law.initial_guesses(curve)[: max(law.n_starts, 1) * 3]:
        x = np.asarray(x0, dtype=float).copy()
        has_fixed = np.isfinite(fixed_vec)
        x[has_fixed] = fixed_vec[has_fixed]
        x = _interior(x, lo, hi)
        if np.all(np.isfinite(x)):
            out.append(x[free_idx])
    return out


_VAGUE_RATIO = 10.0


def _weakly_identified(
    law: LawModel, theta: FloatArray, free_idx: NDArray[np.int_], se: FloatArray
) -> list[str]:
    """Free parameters, off their bounds, whose standard error dwarfs their value."""
    lo, hi = law.bounds
    names = law.param_names
    out = []
    for j, i in enumerate(free_idx):
        span = hi[i] - lo[i] if np.isfinite(hi[i] - lo[i]) else 1.0
        at_bound = min(theta[i] - lo[i], hi[i] - theta[i]) <= 1e-6 * span
        if not at_bound and se[j] > _VAGUE_RATIO * max(abs(theta[i]), 1e-12):
            out.append(names[i])
    return out


def fit_curve(
    law: LawModel,
    curve: Curve,
    *,
    fixed: Mapping[str, float],
    prior: Mapping[str, Prior],
    feats: Any = None,
) -> FitResult:
    """Fit ``law`` to a validated ``curve`` (see ``Law.fit`` for the arguments)."""
    prob = make_problem(law, curve, fixed=fixed, prior=prior, feats=feats)
    starts = law_starts(law, curve, prob.free_idx, prob.fixed_vec)
    best = solve_problem(prob, starts, delta=law.huber_delta, n_starts=law.n_starts)
    free = tuple(law.param_names[i] for i in prob.free_idx)
    if best is None:
        msg = "no starting point converged" if starts else "the law proposed no valid start"
        return failed_result(law, curve, free, msg, prior=prior)
    return build_result(
        law,
        curve,
        prob,
        best.x,
        best.fun,
        best.cost,
        best.success,
        str(best.message),
        prior=prior,
        jac=np.asarray(best.jac, dtype=float),
    )


def covariance_from(
    jac: FloatArray, s2: float, names: tuple[str, ...]
) -> tuple[FloatArray, int, list[str]]:
    """``s2 (J^T J)^+``, the numerical rank, and the weakest parameters if rank-deficient."""
    k = jac.shape[1]
    if k == 0:
        return np.zeros((0, 0)), 0, []
    jtj = jac.T @ jac
    diag = np.diag(jtj)
    col = np.sqrt(np.clip(diag, 1e-300, None))
    u, sv, _ = np.linalg.svd(jtj / np.outer(col, col))
    tol = (sv.max() if sv.size else 0.0) * 1e-12
    rank = int(np.sum(sv > tol))
    if not np.all(diag > 0):
        rank = min(rank, int(np.sum(diag > 0)))
    # invert the column-normalised matrix: raw amplitudes and offsets differ by
    # many orders of magnitude, and a raw pinv would truncate real directions
    keep = sv > tol
    inv_n = (u[:, keep] / sv[keep]) @ u[:, keep].T
    cov = np.asarray(s2 * inv_n / np.outer(col, col), dtype=float)
    weak: list[str] = []
    if rank < k:
        null = u[:, rank:]
        weak = [names[i] for i in np.argsort(-np.abs(null).sum(axis=1))[: k - rank]]
    return cov, rank, weak


def numeric_jac(prob: Problem, x: FloatArray) -> FloatArray:
    """The residual Jacobian at ``x`` (analytic when available), data rows only."""
    from scipy.optimize._numdiff import approx_derivative

    jac = prob.analytic_jac(x)
    if jac is not None:
        return jac(x)[: prob.n_obs]
    j = approx_derivative(prob.residuals, x, method="2-point", bounds=(prob.lo, prob.hi))
    return np.asarray(j, dtype=float)[: prob.n_obs]


def build_result(
    law: LawModel,
    curve: Curve,
    prob: Problem,
    x: FloatArray,
    fun: FloatArray,
    cost: float,
    success: bool,
    solver_message: str,
    *,
    prior: Mapping[str, Prior],
    jac: FloatArray | None = None,
    s2: float | None = None,
    cov: FloatArray | None = None,
    weak: list[str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> FitResult:
    """Turn an optimum into a ``FitResult`` with covariance, criteria and status."""
    names = law.param_names
    free = tuple(names[i] for i in prob.free_idx)
    theta = prob.full(x)
    data_r = np.asarray(fun[: prob.n_obs], dtype=float)
    if np.any(np.abs(data_r) >= _BAD_LOG * 0.5 * prob.w.min()):
        return failed_result(
            law,
            curve,
            free,
            "the best fit predicts a non-positive or non-finite loss",
            prior=prior,
        )
    n, k = prob.n_obs, prob.free_idx.size
    rss = float(np.sum(data_r**2))
    aic, bic = information_criteria(rss, n, k)
    if s2 is None:
        s2 = max(rss / max(n - k, 1), prob.sigma**2)
    if weak is None or cov is None:
        if jac is None:
            jac = numeric_jac(prob, x)
        cov_free, _, weak = covariance_from(np.asarray(jac, dtype=float), s2, free)
        cov = cov_free if cov is None else cov
    status, message = "ok", ""
    if weak:
        status = "degenerate"
        message = f"parameters not identified by the data: {', '.join(weak)}"
    se = np.sqrt(np.clip(np.diag(cov), 0.0, None)) if k else np.zeros(0)
    if status == "ok" and k:
        vague = _weakly_identified(law, theta, prob.free_idx, se)
        if vague:
            status = "degenerate"
            message = (
                f"parameters weakly identified (standard error > {_VAGUE_RATIO:g}x the value): "
                f"{', '.join(vague)}; intervals will be wide. Pool runs or transfer them."
            )
    if not success and status == "ok":
        status, message = "degenerate", f"optimizer stopped early: {solver_message}"
    stderr = {n_: 0.0 for n_ in names}
    stderr.update({free[i]: float(se[i]) for i in range(k)})
    calibration = {"noise": float(math.sqrt(s2))}
    return FitResult(
        law=law,
        params={n_: float(theta[i]) for i, n_ in enumerate(names)},
        stderr=stderr,
        covariance=cov,
        free=free,
        objective=float(cost),
        rss=rss,
        aic=aic,
        bic=bic,
        n_points=curve.n_points,
        status=status,
        message=message,
        curve=curve,
        calibration=calibration,
        prior=dict(prior),
        **dict(extra or {}),
    )


def failed_result(
    law: LawModel,
    curve: Curve,
    free: tuple[str, ...],
    message: str,
    *,
    prior: Mapping[str, Prior] | None = None,
    **extra: Any,
) -> FitResult:
    """A ``failed`` result: NaN parameters and the reason."""
    nan = float("nan")
    return FitResult(
        law=law,
        params={n: nan for n in law.param_names},
        stderr={n: nan for n in law.param_names},
        covariance=np.full((len(free), len(free)), nan),
        free=free,
        objective=nan,
        rss=nan,
        aic=nan,
        bic=nan,
        n_points=curve.n_points,
        status="failed",
        message=message,
        curve=curve,
        prior=dict(prior or {}),
        **extra,
    )
