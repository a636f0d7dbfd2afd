"""Model averaging over laws: Akaike/Bayesian weights or stacking, with between-model spread."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import nnls

from lawsearch._errors import did_you_mean
from lawsearch.laws._base import (
    Curve,
    FitResult,
    FloatArray,
    Law,
    LRTrack,
    Param,
    Prior,
)
from lawsearch.laws._registry import LAWS, get_law

__all__ = ["EnsembleFitResult", "EnsembleLaw"]

_METHODS = ("aic", "bic", "stacking")


@dataclass(frozen=True)
class EnsembleLaw(Law):
    """A weighted average of several laws, each fitted on its own.

    ``L(t) = sum_m w_m * L_m(t; theta_m)``, with ``sum_m w_m = 1``, ``w_m >= 0``.

    Weights:
        * ``"aic"`` / ``"bic"``: Akaike (Bayesian) weights
          ``w_m ∝ exp(-IC_m / 2)`` from each member's fit in log-loss space;
        * ``"stacking"``: each member is fitted on the first ``1 - holdout`` of
          the observations, predicts the rest, and the simplex weights that
          minimise the relative squared error of the combined prediction there
          are kept (non-negative least squares); the members are then refitted
          on all observations.

    The predictive interval is that of the mixture: in log-loss space each
    member contributes a normal with its own interval's width, so the variance
    is the weighted within-member variance *plus* the between-member variance
    ``sum_m w_m (log L_m - mean)^2`` (see ``EnsembleFitResult.between_sd``).

    Members whose fit raises on their own constraints (e.g. too few points
    for their parameters) or returns ``status="failed"`` are dropped with the
    reason in the message; when all fail the result is ``failed``.

    Parameters are ``w_<member>`` (the weights) followed by the members'
    parameters as ``<member>.<name>``; members are keyed by their law name,
    with ``_2``, ``_3`` … appended to repeats. ``fixed`` and ``prior`` accept a
    qualified name (``"power.alpha"``) or a bare one (``"alpha"``: every member
    that has it).

    Args:
        members: the laws to combine: instances, short names as in ``get_law``,
            or one comma-separated string (``"power,two_phase"``).
        method: ``"aic"``, ``"bic"`` or ``"stacking"``.
        holdout: fraction of the observations held out to choose stacking weights.
        time: ``"steps"`` or ``"intrinsic"``, passed to the members given by name
            that have a ``time`` option (the CLI's ``--law-option time=intrinsic``).
    """

    members: tuple[Law, ...] = ("power", "two_phase")  # type: ignore[assignment]
    method: str = "aic"
    holdout: float = 0.25
    time: str | None = None
    name = "ensemble"

    def __post_init__(self) -> None:
        from dataclasses import fields

        raw: Any = self.members
        if isinstance(raw, str):
            raw = [m.strip() for m in raw.split(",") if m.strip()]
        built: list[Any] = []
        for m in raw:
            if isinstance(m, str):
                opts = {}
                if self.time is not None and m in LAWS:
                    if "time" in {f.name for f in fields(LAWS[m])}:
                        opts["time"] = self.time
                m = get_law(m, **opts)
            built.append(m)
        members = tuple(built)
        if not members:
            raise ValueError("`members` must name at least one law, e.g. ('power', 'two_phase').")
        for m in members:
            if not isinstance(m, Law) or isinstance(m, EnsembleLaw):
                raise ValueError(f"`members` must be laws (not ensembles); got {type(m).__name__}.")
            if m.name == "temporal":
                raise ValueError(
                    "`members` cannot include TemporalLaw (its losses are a matrix); fit it on "
                    "its own and use TemporalLaw.mean_result for the overall loss."
                )
        object.__setattr__(self, "members", members)
        if self.method not in _METHODS:
            raise ValueError(f"`method` must be one of {_METHODS}; got {self.method!r}.")
        if not 0.05 <= self.holdout <= 0.5:
            raise ValueError(f"`holdout` must be in [0.05, 0.5]; got {self.holdout!r}.")

    @property
    def uses_lr(self) -> bool:
        return any(m.uses_lr for m in self.members)

    @property
    def keys(self) -> tuple[str, ...]:
        """One unique key per member: its law name, ``_2``, ``_3`` … on repeats."""
        out: list[str] = []
        for m in self.members:
            base = m.name or type(m).__name__.lower()
            key, i = base, 1
            while key in out:
                i += 1
                key = f"{base}_{i}"
            out.append(key)
        return tuple(out)

    def params(self) -> tuple[Param, ...]:
        weights = tuple(Param(f"w_{k}", 0.0, 1.0, f"weight of the {k} member") for k in self.keys)
        inner = tuple(
            Param(f"{k}.{p.name}", p.lower, p.upper, p.doc)
            for k, m in zip(self.keys, self.members, strict=True)
            for p in m.params()
        )
        return weights + inner

    def _split(self, theta: FloatArray) -> list[tuple[float, FloatArray]]:
        k = len(self.members)
        out, pos = [], k
        for i, m in enumerate(self.members):
            n = len(m.params())
            out.append((float(theta[i]), np.asarray(theta[pos : pos + n], dtype=float)))
            pos += n
        return out

    def features(self, steps: FloatArray, track: LRTrack | None) -> Any:
        return tuple(m.features(steps, track) for m in self.members)

    def evaluate(self, theta: FloatArray, feats: Any) -> FloatArray:
        total: FloatArray | None = None
        for (w, th), m, f in zip(self._split(theta), self.members, feats, strict=True):
            if w > 0:
                part = w * np.asarray(m.evaluate(th, f), dtype=float)
                total = part if total is None else total + part
        if total is None:
            raise ValueError("every ensemble weight is 0; nothing to evaluate.")
        return total

    def initial_guesses(self, curve: Curve) -> list[FloatArray]:
        w = np.full(len(self.members), 1.0 / len(self.members))
        firsts = [m.initial_guesses(curve)[0] for m in self.members]
        return [np.concatenate([w, *firsts])]

    def min_points(self, n_fixed: int = 0) -> int:
        return min(m.min_points() for m in self.members)

    def shared_params(self) -> tuple[str, ...]:
        """What pooled/transfer modes share: each member's non-linear parameters."""
        out: list[str] = []
        for key, m in zip(self.keys, self.members, strict=True):
            hook = getattr(m, "shared_params", None)
            declared = hook() if callable(hook) else None
            if declared is None:
                linear = m.linear_params()
                per_run = tuple(linear) if linear is not None else m.param_names[:2]
                declared = tuple(n for n in m.param_names if n not in per_run)
            out.extend(f"{key}.{n}" for n in declared)
        return tuple(out)

    # ---- fitting: each member on its own, then the weights -------------------------
    def fit(
        self,
        steps: ArrayLike,
        losses: ArrayLike,
        *,
        lrs: ArrayLike | None = None,
        weights: ArrayLike | None = None,
        fixed: Mapping[str, float] | None = None,
        prior: Mapping[str, Prior] | None = None,
    ) -> EnsembleFitResult:
        """Fit every member, weight them, and return an ``EnsembleFitResult``.

        Arguments as in ``Law.fit``; ``fixed`` and ``prior`` are routed to the
        members that have the named parameter.
        """
        routed_fixed = self._route(fixed or {}, "fixed")
        routed_prior = self._route(prior or {}, "prior")
        curve = self.make_curve(steps, losses, lrs=lrs, weights=weights)
        fits: list[FitResult | None] = []
        notes: list[str] = []
        for key, m, fx, pr in zip(self.keys, self.members, routed_fixed, routed_prior, strict=True):
            res, why = _fit_member(m, steps, losses, lrs, weights, fx, pr)
            if why:
                notes.append(f"{key} dropped: {why}")
            fits.append(res)
        if all(r is None for r in fits):
            return self._failed(curve, "; ".join(notes) or "every member failed")
        if self.method == "stacking":
            w, note = self._stacking_weights(
                curve, steps, losses, lrs, weights, fits, routed_fixed, routed_prior
            )
            if note:
                notes.append(note)
        else:
            w = _ic_weights(fits, self.method)
        return self._result(curve, fits, w, notes)

    def fit_pooled(
        self,
        curves: Sequence[Mapping[str, Any]],
        *,
        shared: Sequence[str],
        fixed: Mapping[str, float] | None = None,
        prior: Mapping[str, Prior] | None = None,
    ) -> list[FitResult]:
        """Pooled fit of every member (``shared`` routed like ``fixed``), then weights per run.

        Stacking needs one hold-out per run and is not pooled: ``method="stacking"``
        uses AIC weights here and says so in the message.
        """
        if isinstance(shared, str):
            raise ValueError(f"`shared` must be a sequence of names; got the string {shared!r}.")
        routed_shared = self._route(dict.fromkeys(shared, 0.0), "shared")
        routed_fixed = self._route(fixed or {}, "fixed")
        routed_prior = self._route(prior or {}, "prior")
        cvs = [
            self.make_curve(c["steps"], c["losses"], lrs=c.get("lrs"), weights=c.get("weights"))
            for c in curves
        ]
        per_member: list[list[FitResult | None]] = []
        notes: list[list[str]] = [[] for _ in cvs]
        for key, m, sh, fx, pr in zip(
            self.keys, self.members, routed_shared, routed_fixed, routed_prior, strict=True
        ):
            member_curves = [{**c, "lrs": c.get("lrs") if m.uses_lr else None} for c in curves]
            fits: list[FitResult | None]
            try:
                fits = list(
                    m.fit_pooled(
                        member_curves, shared=tuple(sh), fixed=fx or None, prior=pr or None
                    )
                )
            except ValueError as exc:
                fits = [None] * len(cvs)
                for n in notes:
                    n.append(f"{key} dropped: {exc}")
            kept: list[FitResult | None] = []
            for i, r in enumerate(fits):
                if r is not None and (not r.ok or not np.isfinite(r.aic)):
                    notes[i].append(f"{key} dropped: {r.message or 'fit failed'}")
                    kept.append(None)
                else:
                    kept.append(r)
            per_member.append(kept)
        method = "bic" if self.method == "bic" else "aic"
        out: list[FitResult] = []
        for i, curve in enumerate(cvs):
            fits_i = [col[i] for col in per_member]
            if all(r is None for r in fits_i):
                out.append(self._failed(curve, "; ".join(notes[i]) or "every member failed"))
                continue
            if self.method == "stacking":
                notes[i].append("pooled fits use AIC weights instead of stacking")
            out.append(self._result(curve, fits_i, _ic_weights(fits_i, method), notes[i]))
        return out

    def _route(self, mapping: Mapping[str, Any], field_name: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [{} for _ in self.members]
        bare = {p.name for m in self.members for p in m.params()}
        qualified = {n for n in self.param_names if "." in n}
        for key, value in mapping.items():
            if key in qualified:
                member, pname = key.split(".", 1)
                out[self.keys.index(member)][pname] = value
            elif key in bare:
                for i, m in enumerate(self.members):
                    if key in m.param_names:
                        out[i][key] = value
            else:
                raise ValueError(
                    f"`{field_name}` names unknown parameter {key!r} of EnsembleLaw (use a member "
                    f"parameter such as 'alpha' or 'power.alpha'; weights cannot be fixed)"
                    + did_you_mean(key, sorted(bare | qualified))
                )
        return out

    def _stacking_weights(
        self,
        curve: Curve,
        steps: ArrayLike,
        losses: ArrayLike,
        lrs: ArrayLike | None,
        weights: ArrayLike | None,
        fits: list[FitResult | None],
        routed_fixed: list[dict[str, Any]],
        routed_prior: list[dict[str, Any]],
    ) -> tuple[FloatArray, str]:
        n = curve.n_points
        n_head = math.ceil((1.0 - self.holdout) * n)
        s = np.asarray(steps, dtype=float)
        y = np.asarray(losses, dtype=float)
        lr = None if lrs is None else np.asarray(lrs, dtype=float)
        per_point = lr is not None and lr.size == n
        head_lr = lr[:n_head] if per_point and lr is not None else lr
        tail_lr = lr[n_head:] if per_point and lr is not None else None
        head_w = None if weights is None else np.asarray(weights, dtype=float)[:n_head]
        cols = []
        for m, full_fit, fx, pr in zip(self.members, fits, routed_fixed, routed_prior, strict=True):
            col = np.full(n - n_head, np.nan)
            if full_fit is not None and n - n_head >= 1:
                head, _ = _fit_member(m, s[:n_head], y[:n_head], head_lr, head_w, fx, pr)
                if head is not None:
                    pred = head.predict(s[n_head:], lrs=tail_lr)
                    if np.all(np.isfinite(pred)):
                        col = pred
            cols.append(col)
        usable = np.array([np.all(np.isfinite(c)) for c in cols])
        if not np.any(usable):
            return _ic_weights(fits, "aic"), (
                f"stacking impossible (no member fits the first {n_head} of {n} points); "
                "used AIC weights"
            )
        tail = y[n_head:]
        design = np.column_stack([c / tail for c in np.asarray(cols)[usable]])
        big = 1e3 * max(float(np.abs(design).max()), 1.0)
        a = np.vstack([design, np.full((1, design.shape[1]), big)])
        b = np.concatenate([np.ones(tail.size), [big]])
        sol, _ = nnls(a, b)
        w = np.zeros(len(self.members))
        w[usable] = sol
        total = float(w.sum())
        if not total > 0:
            return _ic_weights(fits, "aic"), "stacking weights degenerate; used AIC weights"
        return w / total, ""

    def _result(
        self,
        curve: Curve,
        fits: list[FitResult | None],
        w: FloatArray,
        notes: list[str],
    ) -> EnsembleFitResult:
        params: dict[str, float] = {}
        stderr: dict[str, float] = {}
        free: list[str] = []
        blocks: list[FloatArray] = []
        for key, wm in zip(self.keys, w, strict=True):
            params[f"w_{key}"] = float(wm)
            stderr[f"w_{key}"] = float("nan")
        for key, m, r in zip(self.keys, self.members, fits, strict=True):
            for p in m.param_names:
                params[f"{key}.{p}"] = float("nan") if r is None else r.params[p]
                stderr[f"{key}.{p}"] = float("nan") if r is None else r.stderr[p]
            if r is not None:
                free.extend(f"{key}.{p}" for p in r.free)
                blocks.append(np.asarray(r.covariance, dtype=float))
        cov = _block_diag(blocks)
        pred = np.zeros(curve.n_points)
        k_eff = 0.0
        for wm, r in zip(w, fits, strict=True):
            if r is not None and wm > 0:
                pred = pred + wm * r.predict(curve.steps)
                k_eff += wm * len(r.free)
        k_eff += float(np.sum(w > 0)) - 1.0  # the free weights
        resid = np.log(pred) - np.log(curve.losses)
        rss = float(np.sum(resid**2))
        n = curve.n_points
        base = n * math.log(max(rss, 1e-300) / n)
        live = [r for wm, r in zip(w, fits, strict=True) if r is not None and wm > 0]
        status = "ok" if any(r.status == "ok" for r in live) else "degenerate"
        notes = [f"{self.method} weights", *notes]
        if status == "degenerate":
            notes.append(
                "every weighted member is degenerate: " + "; ".join(r.message for r in live)
            )
        return EnsembleFitResult(
            law=self,
            params=params,
            stderr=stderr,
            covariance=cov,
            free=tuple(free),
            objective=0.5 * rss,
            rss=rss,
            aic=base + 2 * k_eff,
            bic=base + k_eff * math.log(n),
            n_points=n,
            status=status,
            message="; ".join(notes),
            curve=curve,
            members=tuple(fits),
            member_weights=tuple(float(x) for x in w),
        )

    def _failed(self, curve: Curve, message: str) -> EnsembleFitResult:
        nan = float("nan")
        return EnsembleFitResult(
            law=self,
            params={n: nan for n in self.param_names},
            stderr={n: nan for n in self.param_names},
            covariance=np.zeros((0, 0)),
            free=(),
            objective=nan,
            rss=nan,
            aic=nan,
            bic=nan,
            n_points=curve.n_points,
            status="failed",
            message=f"all members failed: {message}",
            curve=curve,
            members=tuple(None for _ in self.members),
            member_weights=tuple(0.0 for _ in self.members),
        )


@dataclass(frozen=True)
class EnsembleFitResult(FitResult):
    """A ``FitResult`` whose predictions and intervals delegate to the member fits.

    Attributes (besides ``FitResult``'s):
        members: each member's ``FitResult`` (``None`` where it was dropped), in
            the order of ``EnsembleLaw.members``.
        member_weights: the weights, in the same order (also ``params["w_<key>"]``).
    """

    members: tuple[FitResult | None, ...] = ()
    member_weights: tuple[float, ...] = field(default=())

    def _live(self) -> list[tuple[float, FitResult]]:
        return [
            (w, r)
            for w, r in zip(self.member_weights, self.members, strict=True)
            if r is not None and w > 0
        ]

    def predict(self, steps: ArrayLike, *, lrs: ArrayLike | None = None) -> FloatArray:
        """Weighted average of the members' predictions at ``steps``."""
        self._require_ok()
        s = np.atleast_1d(np.asarray(steps, dtype=float))
        return np.asarray(sum(w * r.predict(s, lrs=lrs) for w, r in self._live()), dtype=float)

    def _log_moments(
        self, steps: ArrayLike, lrs: ArrayLike | None, level: float
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Mixture mean, within-member variance and between-member variance of log loss."""
        z = NormalDist().inv_cdf(0.5 + level / 2.0)
        s = np.atleast_1d(np.asarray(steps, dtype=float))
        mus, sds, ws = [], [], []
        for w, r in self._live():
            mus.append(np.log(r.predict(s, lrs=lrs)))
            lo, hi = r.interval(s, lrs=lrs, level=level)
            sds.append((np.log(hi) - np.log(lo)) / (2.0 * z))
            ws.append(w)
        wv = np.asarray(ws)[:, None]
        mu = np.asarray(mus)
        mean = np.sum(wv * mu, axis=0)
        within = np.sum(wv * np.asarray(sds) ** 2, axis=0)
        between = np.sum(wv * (mu - mean) ** 2, axis=0)
        return mean, within, between

    def between_sd(self, steps: ArrayLike, *, lrs: ArrayLike | None = None) -> FloatArray:
        """The spread of the members' predictions: weighted sd of their log loss."""
        self._require_ok()
        _, _, between = self._log_moments(steps, lrs, 0.9)
        return np.sqrt(between)

    def interval(
        self, steps: ArrayLike, *, lrs: ArrayLike | None = None, level: float = 0.9
    ) -> tuple[FloatArray, FloatArray]:
        """Interval of the mixture: within-member plus between-member variance (log space)."""
        self._require_ok()
        if not 0 < level < 1:
            raise ValueError(f"`level` must be in (0, 1); got {level!r}.")
        mean, within, between = self._log_moments(steps, lrs, level)
        z = NormalDist().inv_cdf(0.5 + level / 2.0)
        sd = np.sqrt(within + between)
        pred = self.predict(steps, lrs=lrs)
        lo = np.minimum(np.exp(mean - z * sd), pred)
        hi = np.maximum(np.exp(mean + z * sd), pred)
        return lo, hi

    def summary(self) -> dict[str, Any]:
        out = super().summary()
        law = self.law
        assert isinstance(law, EnsembleLaw)
        out["members"] = {
            k: {"weight": float(w), "law": m.name, "status": None if r is None else r.status}
            for k, m, w, r in zip(
                law.keys, law.members, self.member_weights, self.members, strict=True
            )
        }
        return out


def _fit_member(
    law: Law,
    steps: ArrayLike,
    losses: ArrayLike,
    lrs: ArrayLike | None,
    weights: ArrayLike | None,
    fixed: Mapping[str, float],
    prior: Mapping[str, Prior],
) -> tuple[FitResult | None, str]:
    """A member's fit, or ``None`` and why (its own input limits, or a failed fit)."""
    try:
        res = law.fit(
            steps,
            losses,
            lrs=lrs if law.uses_lr else None,
            weights=weights,
            fixed=fixed or None,
            prior=prior or None,
        )
    except ValueError as exc:  # the ensemble validated the data; this is the member's limit
        return None, str(exc)
    if not res.ok:
        return None, res.message or "fit failed"
    if not np.isfinite(res.aic):
        return None, "non-finite information criterion"
    return res, ""


def _ic_weights(fits: list[FitResult | None], method: str) -> FloatArray:
    ic = np.array(
        [np.inf if r is None else (r.aic if method == "aic" else r.bic) for r in fits], dtype=float
    )
    delta = ic - np.min(ic)
    w = np.where(np.isfinite(delta), np.exp(-0.5 * np.where(np.isfinite(delta), delta, 0.0)), 0.0)
    return np.asarray(w / w.sum(), dtype=float)


def _block_diag(blocks: list[FloatArray]) -> FloatArray:
    size = sum(b.shape[0] for b in blocks)
    out = np.zeros((size, size))
    pos = 0
    for b in blocks:
        k = b.shape[0]
        out[pos : pos + k, pos : pos + k] = b
        pos += k
    return out
