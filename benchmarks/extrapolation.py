"""Extrapolation benchmark: predict the final loss of a run from a prefix of its curve.

On the 18 recorded LLM runs of ``../shared/data/lr_schedules`` (25M and 100M
models × 9 LR schedules), for prefix fractions 10/20/40/60 % of each run's logged
rows and every registered law, in three modes:

* ``independent``: each run's prefix alone;
* ``pooled``: the prefixes of all runs of one model size fitted together, the
  law's shape parameters shared and its offsets/amplitudes per run;
* ``transfer``: one *other complete* run of the same size (the reference) plus
  the prefix. The reference is chosen by a fixed rule: never the run itself,
  never a run that shares logged losses with it (WSD and two-stage runs are
  branches of a constant run and are identical to it up to the branch point,
  so a parent, child or sibling would leak the answer; relatedness is detected
  from the data), and among the rest the longest cosine run (a full annealing
  curve teaches the annealing parameters; a constant run carries none), then the
  longest run. In practice: ``<size>_cosine_72000`` for every run except itself,
  which uses ``<size>_cosine_24000``.

Reported per (law, mode, prefix): mean and worst absolute relative error of the
final logged loss, Spearman correlation of predicted finals among the runs of one
size (mean over sizes), the share of same-length run pairs ordered correctly,
coverage of the 90 % interval (as the library computes it, and *held out*: the
interval's two constants refitted leave-one-model-size-out by
``calibrate_interval`` on the other size's runs at every prefix of the
invocation, see ``loso_coverage``), and median fit time per curve (pooled: the joint
fit time divided by the number of runs; transfer: the prefix fit, the reference
fit is done once and not counted).

Baselines in the same run: the last observed value, and ``scipy.optimize.curve_fit``
of ``E + A * t ** -alpha`` in steps and in intrinsic time ``S1 = sum lr``.

TaskSet (``learning_curves/taskset``): for the schedule-free laws, a deterministic
sample of finite curves that DPL keeps, per task; prefix → error of the value at
the last epoch.

Usage: ``python -m benchmarks.extrapolation [--tiny] [--out DIR] [--laws a,b]
[--modes m,n] [--prefixes 0.1,0.2] [--taskset-curves N] [--jobs N]``.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import partial
from statistics import NormalDist
from typing import Any

import numpy as np

from benchmarks._common import (
    benchmark_parser,
    environment,
    fmt,
    markdown_table,
    output_dir,
    save_figure,
    write_json,
    write_text,
)
from lawsearch.fitting import MODES, Outcome, RunCurve, extrapolate, prefix_rows
from lawsearch.laws import LAWS, Law, get_law

NAME = "extrapolation"
PREFIXES = (0.1, 0.2, 0.4, 0.6)
SCHEDULE_FREE = ("power", "two_phase", "ensemble")
LEVEL = 0.9

#: targets of issue 3 (20 % prefix unless said otherwise)
TARGETS: dict[str, Any] = {
    "transfer_mean": 0.005,
    "transfer_worst": 0.015,
    "pooled_mean": 0.015,
    "pairs_ordered": 0.90,
    "best_vs_power": 3.0,
    "coverage": (0.85, 0.95),
    "mpl_fit_ms": 100.0,
}


# ---- runs ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    """A recorded run with what the metrics need besides the curve."""

    curve: RunCurve
    size: int
    total_steps: int
    schedule: str

    @property
    def run_id(self) -> str:
        return self.curve.run_id


def load_runs() -> list[Run]:
    from lawsearch.recorded.lr_schedules import load_lr_schedule_runs

    return [
        Run(
            RunCurve(r.run_id, r.steps, r.lrs, r.losses, lr_per_step=r.lr_per_step),
            r.model_params,
            r.total_steps,
            r.schedule,
        )
        for r in load_lr_schedule_runs()
    ]


def related(a: Run, b: Run, *, n_check: int = 5) -> bool:
    """Whether two runs share logged losses (branch parent, child or sibling)."""
    common, ia, ib = np.intersect1d(a.curve.steps, b.curve.steps, return_indices=True)
    if common.size < n_check:
        return False
    return bool(np.all(a.curve.losses[ia[:n_check]] == b.curve.losses[ib[:n_check]]))


def choose_reference(target: Run, runs: Sequence[Run]) -> Run | None:
    """The transfer reference of ``target`` (see the module docstring for the rule)."""
    pool = [
        r
        for r in runs
        if r.size == target.size and r.run_id != target.run_id and not related(r, target)
    ]
    if not pool:
        return None
    return max(pool, key=lambda r: (r.schedule == "cosine", r.total_steps, r.run_id))


# ---- laws ---------------------------------------------------------------------------
@dataclass(frozen=True)
class LawSpec:
    label: str
    name: str
    options: tuple[tuple[str, Any], ...] = ()

    def build(self) -> Law:
        return get_law(self.name, **dict(self.options))


def law_specs(names: Sequence[str] | None, *, variants: bool = True) -> list[LawSpec]:
    """Every registered law with default options (and the power law in intrinsic time)."""
    chosen = list(LAWS) if names is None else list(names)
    specs = []
    for name in chosen:
        if name not in LAWS:
            raise ValueError(f"--laws: unknown law {name!r}; registered: {sorted(LAWS)}.")
        specs.append(LawSpec(name, name))
        if name == "power" and variants:
            specs.append(LawSpec("power[intrinsic]", "power", (("time", "intrinsic"),)))
    return specs


# ---- baselines ----------------------------------------------------------------------
def _power3(t: np.ndarray, e: float, a: float, alpha: float) -> np.ndarray:
    return e + a * np.power(t, -alpha)


def curve_fit_power(x: np.ndarray, y: np.ndarray, x_target: float) -> float | None:
    """``scipy.optimize.curve_fit`` of ``E + A x^-alpha``; the prediction at ``x_target``."""
    from scipy.optimize import OptimizeWarning, curve_fit

    scale = float(x[0])
    xs = x / scale
    e0 = 0.9 * float(y.min())
    p0 = (e0, max(float(y[0]) - e0, 1e-6), 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizeWarning)
        try:
            popt, _ = curve_fit(
                _power3,
                xs,
                y,
                p0=p0,
                bounds=([0.0, 0.0, 1e-3], [np.inf, np.inf, 5.0]),
                maxfev=20000,
            )
        except (RuntimeError, ValueError):
            return None
    pred = float(_power3(np.array([x_target / scale]), *popt)[0])
    return pred if math.isfinite(pred) else None


def baseline_outcomes(runs: Sequence[Run], prefix: float) -> dict[str, list[Outcome]]:
    """Last value and curve_fit power laws (steps, intrinsic time) on each prefix."""
    out: dict[str, list[Outcome]] = defaultdict(list)
    for run in runs:
        c = run.curve
        n = prefix_rows(c.n_rows, prefix)
        target = int(c.steps[-1])
        s1 = np.concatenate([[0.0], np.cumsum(c.dense_lr())])
        preds: dict[str, tuple[float | None, float]] = {}
        start = time.perf_counter()
        preds["last value"] = (float(c.losses[n - 1]), time.perf_counter() - start)
        for label, x in (("curve_fit power (steps)", c.steps), ("curve_fit power (S1)", s1)):
            xs = c.steps if x is c.steps else s1[c.steps.astype(int)]
            xt = float(target) if x is c.steps else float(s1[target])
            start = time.perf_counter()
            preds[label] = (curve_fit_power(xs[:n], c.losses[:n], xt), time.perf_counter() - start)
        for label, (pred, seconds) in preds.items():
            out[label].append(
                Outcome(
                    run_id=c.run_id,
                    law=label,
                    mode="baseline",
                    prefix=n / c.n_rows,
                    n_prefix=n,
                    target_step=target,
                    predicted_final=pred,
                    predicted_lo=None,
                    predicted_hi=None,
                    true_final=float(c.losses[-1]),
                    status="ok" if pred is not None else "failed",
                    message="" if pred is not None else "curve_fit did not converge",
                    fit_seconds=seconds,
                )
            )
    return out


# ---- running the laws -----------------------------------------------------------------
def _failed(run: Run, law: str, mode: str, prefix: float, message: str) -> Outcome:
    c = run.curve
    n = prefix_rows(c.n_rows, prefix)
    return Outcome(
        run_id=c.run_id,
        law=law,
        mode=mode,
        prefix=n / c.n_rows,
        n_prefix=n,
        target_step=int(c.steps[-1]),
        predicted_final=None,
        predicted_lo=None,
        predicted_hi=None,
        true_final=float(c.losses[-1]),
        status="failed",
        message=message,
    )


def _guarded(
    call: Callable[[], list[Outcome]], runs: Sequence[Run], spec: LawSpec, mode: str, prefix: float
) -> list[Outcome]:
    """Run ``call``; a bad-input error or a law's bug fails these runs, not the benchmark."""
    try:
        return call()
    except Exception as exc:
        msg = f"{type(exc).__name__}: {exc}"
        return [_failed(r, spec.label, mode, prefix, msg) for r in runs]


def run_law(
    spec: LawSpec, mode: str, prefix: float, runs: Sequence[Run], all_runs: Sequence[Run]
) -> tuple[list[Outcome], dict[str, str]]:
    """Every run extrapolated by one law in one mode; returns outcomes and references."""
    law = spec.build()
    by_size: dict[int, list[Run]] = defaultdict(list)
    for r in runs:
        by_size[r.size].append(r)
    outcomes: list[Outcome] = []
    refs: dict[str, str] = {}
    for group in by_size.values():
        if mode == "independent":
            for r in group:
                outcomes += _guarded(
                    partial(extrapolate, law, [r.curve], prefix=prefix, level=LEVEL),
                    [r],
                    spec,
                    mode,
                    prefix,
                )
        elif mode == "pooled":
            start = time.perf_counter()
            res = _guarded(
                partial(
                    extrapolate,
                    law,
                    [r.curve for r in group],
                    mode="pooled",
                    prefix=prefix,
                    level=LEVEL,
                ),
                group,
                spec,
                mode,
                prefix,
            )
            per_curve = (time.perf_counter() - start) / max(len(group), 1)
            outcomes += [
                replace(o, fit_seconds=per_curve) if math.isnan(o.fit_seconds) else o for o in res
            ]
        else:
            targets: dict[str, list[Run]] = defaultdict(list)
            ref_of: dict[str, Run] = {}
            for r in group:
                ref = choose_reference(r, all_runs)
                if ref is None:
                    outcomes.append(_failed(r, spec.label, mode, prefix, "no unrelated reference"))
                    continue
                refs[r.run_id] = ref.run_id
                targets[ref.run_id].append(r)
                ref_of[ref.run_id] = ref
            for ref_id, members in targets.items():
                outcomes += _guarded(
                    partial(
                        extrapolate,
                        law,
                        [m.curve for m in members],
                        mode="transfer",
                        prefix=prefix,
                        references=[ref_of[ref_id].curve],
                        level=LEVEL,
                    ),
                    members,
                    spec,
                    mode,
                    prefix,
                )
    order = {r.run_id: i for i, r in enumerate(runs)}
    outcomes.sort(key=lambda o: order[o.run_id])
    return [replace(o, law=spec.label) for o in outcomes], refs


# ---- out-of-sample interval calibration -------------------------------------------------
#: a run's interval terms at its target: log prediction, base variance, unseen LR
#: drop, and the log error ``log(true) - log(prediction)``
Terms = tuple[float, float, float, float]


def target_terms(o: Outcome) -> Terms | None:
    """The interval terms of an outcome's fit at its target step (None if unusable)."""
    from lawsearch._fit._intervals import interval_terms

    if o.fit is None or o.predicted_final is None or not o.true_final:
        return None
    t = np.array([float(o.target_step)])
    try:
        terms = interval_terms(o.fit, t, o.fit.track_for(t, None))
    except (ValueError, FloatingPointError, np.linalg.LinAlgError):
        return None
    if terms.center.size != 1:  # a per-position law: no single target value
        return None
    center = float(terms.center.ravel()[0])
    return (
        center,
        float(terms.base_var.ravel()[0]),
        float(terms.drop.ravel()[0]),
        math.log(o.true_final) - center,
    )


def loso_coverage(
    terms_by_prefix: dict[float, dict[str, Terms]], runs: Sequence[Run]
) -> tuple[dict[float, float | None], dict[str, list[float]]]:
    """Held-out coverage of intervals recalibrated leave-one-model-size-out.

    For each model size, ``calibrate_interval`` fits ``(scale, lr_drop_sd)`` on
    the runs of the *other* sizes (every prefix of this benchmark run pooled),
    and the 90 % intervals of this size's runs use them; no run's own final
    enters the constants its interval is judged with. Returns the coverage per
    prefix and the constants per held-out size (``{"25M": [scale, drop_sd]}``).
    """
    size_of = {r.run_id: r.size for r in runs}
    if len({r.size for r in runs}) < 2:
        return {}, {}
    constants: dict[str, list[float]] = {}

    def train(rid: str) -> Callable[[str], bool]:
        return lambda other: size_of[other] != size_of[rid]

    cov = _held_out(terms_by_prefix, train, lambda rid: f"{size_of[rid] // 10**6}M", constants)
    return cov, constants


def loro_coverage(
    terms_by_prefix: dict[float, dict[str, Terms]], runs: Sequence[Run]
) -> dict[float, float | None]:
    """Held-out coverage of intervals recalibrated leave-one-run-out within a size.

    Each run's constants are fitted on the other runs of its model size (every
    prefix pooled) minus its branch relatives (``related``: a WSD run and its
    constant parent share the prefix, so their errors are not independent).
    """
    info = {r.run_id: r for r in runs}

    def train(rid: str) -> Callable[[str], bool]:
        me = info[rid]
        return lambda other: (
            other != rid and info[other].size == me.size and not related(info[other], me)
        )

    return _held_out(terms_by_prefix, train, lambda rid: rid, {})


def _held_out(
    terms_by_prefix: dict[float, dict[str, Terms]],
    train: Callable[[str], Callable[[str], bool]],
    group: Callable[[str], str],
    constants: dict[str, list[float]],
) -> dict[float, float | None]:
    """Coverage per prefix of intervals whose constants come from ``train(run)`` runs."""
    from lawsearch._fit._intervals import IntervalTerms, calibrate_interval

    z = NormalDist().inv_cdf(0.5 + LEVEL / 2)
    hits: dict[float, list[bool]] = defaultdict(list)
    for prefix, per_run in terms_by_prefix.items():
        for rid, (c, v1, d1, e1) in per_run.items():
            key = group(rid)
            if key not in constants:
                keep = train(rid)
                rows = [t for p in terms_by_prefix.values() for o, t in p.items() if keep(o)]
                if not rows:
                    continue
                _, v, d, e = (np.array(x) for x in zip(*rows, strict=True))
                constants[key] = list(calibrate_interval(v, d, e, LEVEL))
            scale, drop_sd = constants[key]
            it = IntervalTerms(np.array([c]), np.array([v1]), np.array([d1]))
            hits[prefix].append(bool(abs(e1) <= z * float(it.sd(scale, drop_sd)[0])))
    return {p: (float(np.mean(h)) if h else None) for p, h in hits.items()}


# ---- metrics --------------------------------------------------------------------------
def _spearman(pred: Sequence[float], true: Sequence[float]) -> float | None:
    from scipy.stats import spearmanr

    if len(pred) < 3 or len(set(pred)) < 2 or len(set(true)) < 2:
        return None
    return float(spearmanr(pred, true).statistic)


def metrics(outcomes: Sequence[Outcome], runs: Sequence[Run]) -> dict[str, Any]:
    """The summary of one (law, mode, prefix) cell."""
    info = {r.run_id: r for r in runs}
    ok = [o for o in outcomes if o.status != "failed" and o.error is not None]
    errs = np.array([abs(o.error) for o in ok if o.error is not None])
    cov = [o.covered for o in ok if o.covered is not None]
    times = [o.fit_seconds for o in outcomes if math.isfinite(o.fit_seconds)]
    by_size: dict[int, list[Outcome]] = defaultdict(list)
    for o in ok:
        by_size[info[o.run_id].size].append(o)
    rhos = []
    for group in by_size.values():
        rho = _spearman(
            [o.predicted_final for o in group],  # type: ignore[misc]
            [o.true_final for o in group],  # type: ignore[misc]
        )
        if rho is not None:
            rhos.append(rho)
    correct = total = 0
    for i, a in enumerate(ok):
        for b in ok[i + 1 :]:
            ra, rb = info[a.run_id], info[b.run_id]
            if ra.size != rb.size or ra.total_steps != rb.total_steps:
                continue
            assert a.predicted_final is not None and b.predicted_final is not None
            assert a.true_final is not None and b.true_final is not None
            total += 1
            correct += (a.predicted_final - b.predicted_final) * (a.true_final - b.true_final) > 0
    return {
        "n": len(outcomes),
        "n_ok": len(ok),
        "mean_error": float(errs.mean()) if errs.size else None,
        "worst_error": float(errs.max()) if errs.size else None,
        "spearman": float(np.mean(rhos)) if rhos else None,
        "pairs_total": total,
        "pairs_ordered": correct / total if total else None,
        "coverage": float(np.mean(cov)) if cov else None,
        "median_fit_ms": 1e3 * float(np.median(times)) if times else None,
        "failures": sorted({o.message for o in outcomes if o.status == "failed"})[:3],
    }


def held_out_overall(summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (law, mode): runs × prefixes and held-out coverage over all prefixes."""
    acc: dict[tuple[str, str], list[tuple[int, float | None, float | None]]] = defaultdict(list)
    for r in summary:
        if r["mode"] != "baseline" and r.get("coverage_loso") is not None:
            acc[(r["law"], r["mode"])].append(
                (r["n_ok"], r.get("coverage_loso"), r.get("coverage_loro"))
            )
    out = []
    for key, rows in acc.items():
        n = sum(k for k, _, _ in rows)

        def mean(i: int, rows: list[Any] = rows, n: int = n) -> float | None:
            vals = [(row[0], row[i]) for row in rows if row[i] is not None]
            return sum(k * v for k, v in vals) / n if vals and n else None

        out.append(
            {
                "law": key[0],
                "mode": key[1],
                "n": n,
                "coverage_loso": mean(1),
                "coverage_loro": mean(2),
            }
        )
    return out


def _record(o: Outcome) -> dict[str, Any]:
    out = o.to_json()
    out["fit_ms"] = 1e3 * o.fit_seconds if math.isfinite(o.fit_seconds) else None
    out["error"] = o.error
    return out


# ---- TaskSet ----------------------------------------------------------------------------
def taskset_curves(n_per_task: int, *, tasks: int | None = None, seed: int = 0) -> list[RunCurve]:
    """A deterministic sample of finite, DPL-kept curves per task (epoch as the step)."""
    from lawsearch.recorded.taskset import load_taskset, taskset_tasks

    rng = np.random.default_rng(seed)
    curves = []
    for task in taskset_tasks()[:tasks]:
        t = load_taskset(task)
        keep = np.flatnonzero(~t.nonfinite & ~t.dpl_excluded & np.all(t.values > 0, axis=1))
        pick = np.sort(rng.choice(keep, size=min(n_per_task, keep.size), replace=False))
        steps = t.epochs.astype(float)
        for i in pick:
            curves.append(
                RunCurve(f"{task}#{int(t.config_ids[i])}", steps, np.ones_like(steps), t.values[i])
            )
    return curves


def _taskset_failed(c: RunCurve, label: str, prefix: float, message: str) -> Outcome:
    n = prefix_rows(c.n_rows, prefix)
    return Outcome(
        c.run_id,
        label,
        "independent",
        n / c.n_rows,
        n,
        int(c.steps[-1]),
        None,
        None,
        None,
        float(c.losses[-1]),
        "failed",
        message,
    )


def taskset_law_cell(spec: LawSpec, curves: Sequence[RunCurve], prefix: float) -> list[Outcome]:
    """One schedule-free law on every sampled TaskSet curve at one prefix."""
    law = spec.build()
    outs: list[Outcome] = []
    for c in curves:
        try:
            outs += extrapolate(law, [c], prefix=prefix, level=LEVEL)
        except Exception as exc:
            outs.append(_taskset_failed(c, spec.label, prefix, f"{type(exc).__name__}: {exc}"))
    return [replace(o, law=spec.label, fit=None, run=None) for o in outs]


def taskset_baseline_cells(curves: Sequence[RunCurve], prefix: float) -> dict[str, list[Outcome]]:
    """Last value and curve_fit power law on every sampled TaskSet curve at one prefix."""
    cells: dict[str, list[Outcome]] = defaultdict(list)
    for c in curves:
        n = prefix_rows(c.n_rows, prefix)
        guesses: dict[str, Callable[[], float | None]] = {
            "last value": partial(float, c.losses[n - 1]),
            "curve_fit power (steps)": partial(
                curve_fit_power, c.steps[:n], c.losses[:n], float(c.steps[-1])
            ),
        }
        for label, guess in guesses.items():
            start = time.perf_counter()
            pred = guess()
            cells[label].append(
                Outcome(
                    c.run_id,
                    label,
                    "baseline",
                    n / c.n_rows,
                    n,
                    int(c.steps[-1]),
                    pred,
                    None,
                    None,
                    float(c.losses[-1]),
                    "ok" if pred is not None else "failed",
                    "",
                    fit_seconds=time.perf_counter() - start,
                )
            )
    return cells


def taskset_row(label: str, prefix: float, outs: Sequence[Outcome]) -> dict[str, Any]:
    """The summary of one law (or baseline) at one prefix on TaskSet."""
    ok = [o for o in outs if o.error is not None]
    errs = np.array([abs(o.error) for o in ok if o.error is not None])
    cov = [o.covered for o in ok if o.covered is not None]
    times = [o.fit_seconds for o in outs if math.isfinite(o.fit_seconds)]
    return {
        "law": label,
        "prefix": prefix,
        "n": len(outs),
        "n_ok": len(ok),
        "mean_error": float(errs.mean()) if errs.size else None,
        "median_error": float(np.median(errs)) if errs.size else None,
        "worst_error": float(errs.max()) if errs.size else None,
        "coverage": float(np.mean(cov)) if cov else None,
        "median_fit_ms": 1e3 * float(np.median(times)) if times else None,
    }


# ---- cells in worker processes --------------------------------------------------------
def _compute_cell(
    kind: str, key: tuple[Any, ...], runs: Sequence[Run], curves: Sequence[RunCurve]
) -> tuple[Any, float]:
    """One (law, mode, prefix) cell, or one TaskSet (law, prefix) cell; fits and runs dropped."""
    start = time.perf_counter()
    if kind == "taskset":
        spec, prefix = key
        return taskset_law_cell(spec, curves, prefix), time.perf_counter() - start
    spec, mode, prefix = key
    outs, refs = run_law(spec, mode, prefix, runs, runs)
    terms = {o.run_id: t for o in outs if (t := target_terms(o)) is not None}
    light = [replace(o, fit=None, run=None) for o in outs]
    return (light, refs, terms), time.perf_counter() - start


def _run_cells(
    cells: Sequence[tuple[str, tuple[Any, ...]]],
    runs: Sequence[Run],
    curves: Sequence[RunCurve],
    jobs: int,
) -> Iterator[tuple[tuple[str, tuple[Any, ...]], tuple[Any, float]]]:
    """Yield ``(cell, (result, seconds))`` as cells finish (in order when ``jobs == 1``)."""
    if jobs <= 1:
        for kind, key in cells:
            yield (kind, key), _compute_cell(kind, key, runs, curves)
        return
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = {
            pool.submit(_compute_cell, kind, key, runs, curves): (kind, key) for kind, key in cells
        }
        for fut in as_completed(futures):
            yield futures[fut], fut.result()


# ---- report -----------------------------------------------------------------------------
def _pct(v: float | None) -> str:
    return fmt(None if v is None else 100 * v, ".2f") + ("%" if v is not None else "")


def _cell(summary: list[dict[str, Any]], law: str, mode: str, prefix: float) -> dict[str, Any]:
    for row in summary:
        if row["law"] == law and row["mode"] == mode and math.isclose(row["prefix"], prefix):
            return row
    return {}


def targets(summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets next to the measured numbers (20 % prefix)."""
    p = 0.2
    law_rows = [r for r in summary if r["mode"] != "baseline" and r["mean_error"] is not None]
    at20 = [r for r in law_rows if math.isclose(r["prefix"], p)]

    def best(mode: str, key: str = "mean_error") -> dict[str, Any]:
        rows = [r for r in at20 if r["mode"] == mode and r[key] is not None]
        return min(rows, key=lambda r: r[key]) if rows else {}

    out = []
    t = best("transfer")
    out.append(
        (
            "transfer mean error",
            t,
            "mean_error",
            f"≤ {_pct(TARGETS['transfer_mean'])}",
            lambda v: v <= TARGETS["transfer_mean"],
        )
    )
    out.append(
        (
            "transfer worst error",
            t,
            "worst_error",
            f"≤ {_pct(TARGETS['transfer_worst'])}",
            lambda v: v <= TARGETS["transfer_worst"],
        )
    )
    out.append(
        (
            "pooled mean error",
            best("pooled"),
            "mean_error",
            f"≤ {_pct(TARGETS['pooled_mean'])}",
            lambda v: v <= TARGETS["pooled_mean"],
        )
    )
    pairs = [r for r in at20 if r["mode"] == "transfer" and r["pairs_ordered"] is not None]
    pbest = max(pairs, key=lambda r: r["pairs_ordered"]) if pairs else {}
    out.append(
        (
            "same-length pairs ordered (transfer)",
            pbest,
            "pairs_ordered",
            f"≥ {TARGETS['pairs_ordered']:.0%}",
            lambda v: v >= TARGETS["pairs_ordered"],
        )
    )
    rows: list[dict[str, Any]] = []
    for label, row, key, target, ok in out:
        v = row.get(key)
        rows.append(
            {
                "target": label,
                "goal": target,
                "law": row.get("law"),
                "mode": row.get("mode"),
                "measured": v,
                "met": None if v is None else bool(ok(v)),
            }
        )
    power = _cell(summary, "curve_fit power (steps)", "baseline", p).get("mean_error")
    overall = min(at20, key=lambda r: r["mean_error"]) if at20 else {}
    ratio = power / overall["mean_error"] if power and overall.get("mean_error") else None
    rows.append(
        {
            "target": "best law vs plain power law (mean error)",
            "goal": "≥ 3×",
            "law": overall.get("law"),
            "mode": overall.get("mode"),
            "measured": ratio,
            "met": None if ratio is None else ratio >= TARGETS["best_vs_power"],
        }
    )
    lo, hi = TARGETS["coverage"]
    for mode in MODES:
        c = best(mode)
        v = c.get("coverage_loso")
        rows.append(
            {
                "target": f"90% interval held-out coverage ({mode}, best law)",
                "goal": "85–95%",
                "law": c.get("law"),
                "mode": mode,
                "measured": v,
                "met": None if v is None else lo <= v <= hi,
            }
        )
    m = _cell(summary, "multipower", "independent", p).get("median_fit_ms")
    rows.append(
        {
            "target": "MultiPowerLaw median fit time",
            "goal": "≤ 100 ms",
            "law": "multipower",
            "mode": "independent",
            "measured": m,
            "met": None if m is None else m <= TARGETS["mpl_fit_ms"],
        }
    )
    return rows


def headline(summary: list[dict[str, Any]], prefix: float) -> str:
    """One row per law or baseline, one column per mode, at one prefix."""
    labels: list[str] = []
    for r in summary:
        if math.isclose(r["prefix"], prefix) and r["law"] not in labels:
            labels.append(r["law"])
    modes = ["baseline", *MODES]
    rows = []
    for label in labels:
        cells = []
        for mode in modes:
            c = _cell(summary, label, mode, prefix)
            if not c or c["mean_error"] is None:
                cells.append("–" if not c else f"failed ({c['n_ok']}/{c['n']})")
                continue
            pairs = c["pairs_ordered"]
            cells.append(
                f"{_pct(c['mean_error'])} / {_pct(c['worst_error'])}"
                + ("" if pairs is None else f" ({pairs:.0%})")
            )
        if any(x != "–" for x in cells):
            rows.append([label, *cells])
    return markdown_table(["law", *modes], rows)


def markdown(payload: dict[str, Any]) -> str:
    summary = payload["summary"]
    parts = ["# Extrapolation benchmark", ""]
    parts.append(
        f"{payload['n_runs']} lr_schedules runs, prefixes {payload['prefixes']}, "
        f"{LEVEL:.0%} intervals. Errors are |predicted − true| / true of the final logged loss."
    )
    parts += ["", "## Targets (20% prefix)", ""]
    trows = []
    for t in payload["targets"]:
        v = t["measured"]
        if v is None:
            shown = "–"
        elif "×" in t["goal"]:
            shown = f"{v:.2f}×"
        elif "ms" in t["goal"]:
            shown = f"{v:.1f} ms"
        else:
            shown = _pct(v)
        met = {True: "met", False: "not met", None: "n/a"}[t["met"]]
        trows.append([t["target"], t["goal"], shown, t["law"] or "–", met])
    parts.append(markdown_table(["target", "goal", "measured", "by", "status"], trows))
    parts += ["", "## 20% prefix at a glance: mean / worst error (pairs ordered)", ""]
    parts.append(headline(summary, 0.2))
    parts += ["", "## lr_schedules: all laws, modes and prefixes", ""]
    headers = [
        "law",
        "mode",
        "prefix",
        "ok/n",
        "mean err",
        "worst err",
        "Spearman",
        "pairs ordered",
        "coverage",
        "held-out cov. (size)",
        "held-out cov. (run)",
        "median fit ms",
    ]
    rows = []
    for r in sorted(
        summary,
        key=lambda r: (
            r["prefix"],
            r["mode"] != "baseline",
            r["mode"],
            r["mean_error"] if r["mean_error"] is not None else math.inf,
        ),
    ):
        rows.append(
            [
                r["law"],
                r["mode"],
                f"{r['prefix']:.0%}",
                f"{r['n_ok']}/{r['n']}",
                _pct(r["mean_error"]),
                _pct(r["worst_error"]),
                fmt(r["spearman"], ".2f"),
                "–"
                if r["pairs_ordered"] is None
                else f"{r['pairs_ordered']:.0%} of {r['pairs_total']}",
                _pct(r["coverage"]),
                _pct(r.get("coverage_loso")),
                _pct(r.get("coverage_loro")),
                fmt(r["median_fit_ms"], ".1f"),
            ]
        )
    parts.append(markdown_table(headers, rows))
    parts += [
        "",
        "*coverage*: the library's intervals with their default constants (the unseen-"
        "annealing sd 0.03 was chosen on these same runs). *held-out cov. (size)*: the "
        "interval's two constants (scale of the parameter/noise/backtest sd, sd per "
        "unit of unseen LR drop) refitted by `calibrate_interval` on the runs of the "
        "other model size (all prefixes of this invocation pooled) and applied to this "
        "size: leave-one-model-size-out. *held-out cov. (run)*: refitted for each run on "
        "the other runs of its size that are not its branch relatives "
        "(leave-one-run-out). Either way no run's own final enters its interval. With "
        "18 runs a perfectly calibrated 90 % interval lands in 85–95 % (16 or 17 "
        "covered) only ~58 % of the time; the pooled rows below (all prefixes) are "
        "steadier.",
    ]
    parts += ["", "## Held-out 90% coverage over all prefixes of this invocation", ""]
    agg_rows = []
    for h in sorted(payload.get("held_out", []), key=lambda h: (h["law"], h["mode"])):
        agg_rows.append(
            [h["law"], h["mode"], str(h["n"]), _pct(h["coverage_loso"]), _pct(h["coverage_loro"])]
        )
    parts.append(markdown_table(["law", "mode", "runs × prefixes", "by size", "by run"], agg_rows))
    consts = sorted(
        {
            (r["law"], r["mode"], k, *v)
            for r in summary
            if r["mode"] != "baseline"
            for k, v in (r.get("loso_constants") or {}).items()
        }
    )
    if consts:
        parts += ["", "## Held-out interval constants (fitted on the other size)", ""]
        parts.append(
            markdown_table(
                ["law", "mode", "held-out size", "scale", "lr_drop_sd"],
                [[a, b, c, f"{x:.3g}", f"{y:.3g}"] for a, b, c, x, y in consts],
            )
        )
    if payload["references"]:
        parts += ["", "## Transfer references", ""]
        parts.append(markdown_table(["run", "reference"], sorted(payload["references"].items())))
    if payload["taskset"]:
        parts += ["", f"## TaskSet ({payload['taskset_curves']} curves), last-epoch error", ""]
        rows = [
            [
                r["law"],
                f"{r['prefix']:.0%}",
                f"{r['n_ok']}/{r['n']}",
                _pct(r["mean_error"]),
                _pct(r["median_error"]),
                _pct(r["worst_error"]),
                _pct(r["coverage"]),
                fmt(r["median_fit_ms"], ".1f"),
            ]
            for r in payload["taskset"]
        ]
        parts.append(
            markdown_table(
                [
                    "law",
                    "prefix",
                    "ok/n",
                    "mean err",
                    "median err",
                    "worst err",
                    "coverage",
                    "median fit ms",
                ],
                rows,
            )
        )
    if payload["law_failures"]:
        parts += ["", "## Laws that failed", ""]
        for label, msgs in sorted(payload["law_failures"].items()):
            parts.append(f"- **{label}**: " + "; ".join(msgs))
    return "\n".join(parts) + "\n"


def figure(payload: dict[str, Any]) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), sharey=True)
    summary = payload["summary"]
    labels = sorted({r["law"] for r in summary if r["mode"] != "baseline"})
    for ax, mode in zip(axes, MODES, strict=True):
        for i, label in enumerate(labels):
            pts = [
                (r["prefix"], r["mean_error"])
                for r in summary
                if r["law"] == label and r["mode"] == mode and r["mean_error"]
            ]
            if pts:
                x, y = zip(*sorted(pts), strict=True)
                ax.plot(np.array(x) * 100, np.array(y) * 100, "o-", color=f"C{i % 10}", label=label)
        for j, base in enumerate(sorted({r["law"] for r in summary if r["mode"] == "baseline"})):
            pts = [
                (r["prefix"], r["mean_error"])
                for r in summary
                if r["law"] == base and r["mean_error"]
            ]
            if pts:
                x, y = zip(*sorted(pts), strict=True)
                ax.plot(
                    np.array(x) * 100,
                    np.array(y) * 100,
                    ":",
                    color=f"{0.2 + 0.2 * j:.1f}",
                    label=base,
                )
        ax.axhline(
            100 * TARGETS["transfer_mean" if mode == "transfer" else "pooled_mean"],
            color="C3",
            lw=0.8,
            ls="--",
        )
        ax.set_yscale("log")
        ax.set_title(f"lr_schedules — {mode}")
        ax.set_xlabel("prefix (% of logged rows)")
    axes[0].set_ylabel("mean |error| of the final loss (%)")
    axes[-1].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return fig


# ---- main -------------------------------------------------------------------------------
def _csv_list(text: str | None, cast: Callable[[str], Any]) -> list[Any] | None:
    if text is None:
        return None
    return [cast(x.strip()) for x in text.split(",") if x.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = benchmark_parser(NAME, __doc__)
    parser.add_argument("--laws", default=None, help="comma-separated law names (default: all)")
    parser.add_argument("--modes", default=None, help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--prefixes", default=None, help="comma-separated fractions")
    parser.add_argument(
        "--taskset-curves",
        type=int,
        default=10,
        help="TaskSet curves sampled per task (0 to skip TaskSet)",
    )
    parser.add_argument(
        "--jobs", type=int, default=1, help="worker processes for the (law, mode, prefix) cells"
    )
    args = parser.parse_args(argv)
    out = output_dir(args.out, NAME)
    runs = load_runs()
    laws: list[str] | None = _csv_list(args.laws, str)
    prefixes = _csv_list(args.prefixes, float) or list(PREFIXES)
    modes = _csv_list(args.modes, str) or list(MODES)
    taskset_n, taskset_tasks = args.taskset_curves, None
    if args.tiny:
        keep = ("100M_cosine_24000", "100M_cosine_72000")
        runs = [r for r in runs if r.run_id in keep]
        prefixes = [0.2]
        if laws is None:
            tiny_laws = [str(n) for n in ("multipower", "power") if n in LAWS][:2]
            laws = tiny_laws + [n for n in LAWS if n not in tiny_laws][: 2 - len(tiny_laws)]
        taskset_n, taskset_tasks = min(taskset_n, 2), 1
    for m in modes:
        if m not in MODES:
            parser.error(f"--modes: unknown mode {m!r}; choose from {', '.join(MODES)}")
    specs = law_specs(laws, variants=not args.tiny)
    summary: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    references: dict[str, str] = {}
    law_failures: dict[str, list[str]] = {}
    t0 = time.perf_counter()
    for prefix in prefixes:
        for label, outs in baseline_outcomes(runs, prefix).items():
            summary.append(
                {"law": label, "mode": "baseline", "prefix": prefix, **metrics(outs, runs)}
            )
            records += [_record(o) for o in outs]
    free = [s for s in specs if s.name in SCHEDULE_FREE and s.options == ()]
    curves = taskset_curves(taskset_n, tasks=taskset_tasks) if taskset_n > 0 else []
    cells: list[tuple[str, tuple[Any, ...]]] = [
        ("lr", (spec, mode, prefix)) for prefix in prefixes for spec in specs for mode in modes
    ]
    if curves:
        cells += [("taskset", (spec, prefix)) for prefix in prefixes for spec in free]
    taskset_cells: dict[tuple[str, float], list[Outcome]] = {}
    lr_cells: dict[tuple[str, str, float], list[Outcome]] = {}
    lr_terms: dict[tuple[str, str, float], dict[str, Terms]] = {}
    for (kind, key), (result, seconds) in _run_cells(cells, runs, curves, args.jobs):
        if kind == "taskset":
            spec, prefix = key
            taskset_cells[(spec.label, prefix)] = result
            what = f"TaskSet {spec.label:<18}"
        else:
            spec, mode, prefix = key
            outs, refs, terms = result
            references.update(refs)
            lr_cells[(spec.label, mode, prefix)] = outs
            lr_terms[(spec.label, mode, prefix)] = terms
            what = f"{spec.label:<18} {mode:<11}"
        print(
            f"[{time.perf_counter() - t0:7.1f}s] {what} {prefix:4.0%} done ({seconds:.1f}s)",
            file=sys.stderr,
        )
    held_out: dict[tuple[str, str], Any] = {}
    for spec in specs:
        for mode in modes:
            by_prefix = {p: lr_terms[(spec.label, mode, p)] for p in prefixes}
            held_out[(spec.label, mode)] = (
                *loso_coverage(by_prefix, runs),
                loro_coverage(by_prefix, runs),
            )
    for prefix in prefixes:
        for spec in specs:
            for mode in modes:
                outs = lr_cells[(spec.label, mode, prefix)]
                cell = metrics(outs, runs)
                cov_loso, constants, cov_loro = held_out[(spec.label, mode)]
                cell["coverage_loso"] = cov_loso.get(prefix)
                cell["loso_constants"] = constants
                cell["coverage_loro"] = cov_loro.get(prefix)
                summary.append({"law": spec.label, "mode": mode, "prefix": prefix, **cell})
                records += [_record(o) for o in outs]
                if cell["failures"]:  # the first reason per (law, mode) is enough to act on
                    entries = law_failures.setdefault(spec.label, [])
                    if not any(e.startswith(f"{mode} ") for e in entries):
                        n_bad = cell["n"] - cell["n_ok"]
                        entries.append(
                            f"{mode} {prefix:.0%} ({n_bad}/{cell['n']} runs): {cell['failures'][0]}"
                        )
    taskset_rows: list[dict[str, Any]] = []
    for prefix in prefixes if curves else []:
        for spec in free:
            taskset_rows.append(
                taskset_row(spec.label, prefix, taskset_cells[(spec.label, prefix)])
            )
        for label, outs in taskset_baseline_cells(curves, prefix).items():
            taskset_rows.append(taskset_row(label, prefix, outs))
    n_taskset = len(curves)
    payload: dict[str, Any] = {
        "benchmark": NAME,
        "tiny": bool(args.tiny),
        "environment": environment(),
        "n_runs": len(runs),
        "runs": [r.run_id for r in runs],
        "prefixes": prefixes,
        "modes": modes,
        "laws": [s.label for s in specs],
        "registered_laws": sorted(LAWS),
        "targets_spec": {k: list(v) if isinstance(v, tuple) else v for k, v in TARGETS.items()},
        "summary": summary,
        "references": references,
        "law_failures": law_failures,
        "taskset": taskset_rows,
        "taskset_curves": n_taskset,
        "outcomes": records,
        "held_out": held_out_overall(summary),
        "interval_terms": [
            {"law": k[0], "mode": k[1], "prefix": k[2], "run_id": rid, "terms": list(t)}
            for k, per_run in lr_terms.items()
            for rid, t in per_run.items()
        ],
        "seconds": time.perf_counter() - t0,
    }
    payload["targets"] = targets(summary)
    text = markdown(payload)
    write_json(out / f"{NAME}.json", payload)
    write_text(out / f"{NAME}.md", text)
    save_figure(figure(payload), out / f"{NAME}.png")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
