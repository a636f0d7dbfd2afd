"""``lawsearch fit``: fit a law to the prefixes of loss curves in a CSV and extrapolate them.

The CSV is tidy: one row per logged point, columns ``run_id,step,lr,loss``
(optional ``tokens``, read and ignored: the laws work in optimizer steps and
intrinsic time). ``lr`` is the learning rate at that step. Rows after the
prefix give the future schedule and, when their ``loss`` is filled in, the
true losses the prediction is scored against.

Exit codes: 0 when every run was fitted, 1 when at least one fit failed (its
row says ``failed`` and the other runs are still printed, plotted and
written), 2 on bad input (nothing is written).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lawsearch._errors import did_you_mean
from lawsearch._fit import MAX_TREND_RATIO, trend_ratio
from lawsearch.cli import UserError
from lawsearch.laws import LAWS, FitResult, Law, get_law, shared_params

__all__ = [
    "MODES",
    "Outcome",
    "RunCurve",
    "add_arguments",
    "extrapolate",
    "parse_law",
    "prefix_rows",
    "read_curves",
    "run",
]

FloatArray = NDArray[np.float64]
MODES = ("independent", "pooled", "transfer")
REQUIRED = ("run_id", "step", "lr", "loss")
JSON_KEYS = (
    "run_id",
    "law",
    "mode",
    "prefix",
    "target_step",
    "predicted_final",
    "predicted_lo",
    "predicted_hi",
    "true_final",
    "status",
    "message",
)


# ---- data ---------------------------------------------------------------------------
@dataclass(frozen=True)
class RunCurve:
    """One run of the CSV: every row, with NaN where the loss is not given.

    Attributes:
        run_id: the run's name.
        steps: the logged steps (strictly increasing).
        lrs: the learning rate at each step.
        losses: the loss at each step (NaN for future rows without a loss).
        lines: the CSV line of each row (for error messages).
        lr_per_step: the exact per-step schedule ``lr[0..T-1]`` when known;
            otherwise it is interpolated from ``lrs``.
    """

    run_id: str
    steps: FloatArray
    lrs: FloatArray
    losses: FloatArray
    lines: tuple[int, ...] = ()
    lr_per_step: FloatArray | None = field(default=None, repr=False)

    @property
    def n_rows(self) -> int:
        return int(self.steps.size)

    def line(self, i: int) -> str:
        return f"line {self.lines[i]}" if self.lines else f"row {i}"

    def dense_lr(self, last_step: float | None = None) -> FloatArray:
        """The per-step LR ``lr[0..max(last row, last_step)]`` (exact if known)."""
        end = int(max(self.steps[-1], last_step if last_step is not None else 0.0)) + 1
        if self.lr_per_step is not None and self.lr_per_step.size >= end:
            return np.asarray(self.lr_per_step, dtype=float)
        grid = np.arange(end, dtype=float)
        return np.interp(grid, self.steps, self.lrs)

    def observed(self) -> int:
        """How many leading rows have a loss."""
        missing = np.flatnonzero(~np.isfinite(self.losses))
        return int(missing[0]) if missing.size else self.n_rows


@dataclass(frozen=True)
class Outcome:
    """The extrapolation of one run (what the table, the plot and the JSON show)."""

    run_id: str
    law: str
    mode: str
    prefix: float
    n_prefix: int
    target_step: int
    predicted_final: float | None
    predicted_lo: float | None
    predicted_hi: float | None
    true_final: float | None
    status: str
    message: str = ""
    fit: FitResult | None = field(default=None, repr=False)
    fit_seconds: float = float("nan")

    @property
    def error(self) -> float | None:
        """Relative error of the predicted final loss, when both are known."""
        if self.predicted_final is None or self.true_final is None:
            return None
        return (self.predicted_final - self.true_final) / self.true_final

    @property
    def covered(self) -> bool | None:
        if self.predicted_lo is None or self.predicted_hi is None or self.true_final is None:
            return None
        return self.predicted_lo <= self.true_final <= self.predicted_hi

    def to_json(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in JSON_KEYS}
        out["prefix"] = float(self.prefix)
        out["target_step"] = int(self.target_step)
        return out


def _number(text: str, *, column: str, where: str, allow_empty: bool = False) -> float:
    text = text.strip()
    if text == "" or text.lower() == "nan":
        if allow_empty:
            return float("nan")
        raise UserError(f"{where}: `{column}` is empty; every row needs a {column}.")
    try:
        return float(text)
    except ValueError:
        raise UserError(f"{where}: `{column}` must be a number; got {text!r}.") from None


def read_curves(path: str | os.PathLike[str]) -> dict[str, RunCurve]:
    """Read and validate a tidy curves CSV; runs keep the order of first appearance.

    Raises:
        UserError: naming the file, line, run and column at fault.
    """
    p = Path(path)
    if not p.is_file():
        raise UserError(f"CURVES: file {str(p)!r} not found.")
    rows: dict[str, list[tuple[int, float, float, float]]] = {}
    with p.open(newline="") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise UserError(
                f"{p.name}: missing column(s) {', '.join(repr(m) for m in missing)}; "
                f"the CSV needs the header {','.join(REQUIRED)} (optional tokens); "
                f"found {','.join(header) or 'no header'}."
            )
        reader.fieldnames = header
        for row in reader:
            line = reader.line_num
            where = f"{p.name} line {line}"
            run_id = (row.get("run_id") or "").strip()
            if not run_id:
                raise UserError(f"{where}: `run_id` is empty.")
            step = _number(row.get("step") or "", column="step", where=where)
            lr = _number(row.get("lr") or "", column="lr", where=where)
            loss = _number(row.get("loss") or "", column="loss", where=where, allow_empty=True)
            if not math.isfinite(step) or step < 0 or step != int(step):
                raise UserError(f"{where}: `step` must be an integer >= 0; got {step!r}.")
            if not math.isfinite(lr) or lr < 0:
                raise UserError(f"{where}: `lr` must be a finite number >= 0; got {lr!r}.")
            if math.isinf(loss):
                raise UserError(f"{where}: `loss` must be finite (or empty); got {loss!r}.")
            rows.setdefault(run_id, []).append((line, step, lr, loss))
    if not rows:
        raise UserError(f"{p.name}: no data rows; expected {','.join(REQUIRED)} rows.")
    runs = {}
    for run_id, pts in rows.items():
        arr = np.array([r[1:] for r in pts], dtype=float)
        lines = tuple(r[0] for r in pts)
        bad = np.flatnonzero(np.diff(arr[:, 0]) <= 0)
        if bad.size:
            i = int(bad[0]) + 1
            raise UserError(
                f"run {run_id!r}: `step` must increase; {p.name} line {lines[i]} has step "
                f"{arr[i, 0]:g} after step {arr[i - 1, 0]:g} on line {lines[i - 1]}. "
                "Sort the rows of each run by step and drop duplicates."
            )
        runs[run_id] = RunCurve(run_id, arr[:, 0], arr[:, 1], arr[:, 2], lines)
    return runs


def prefix_rows(n_rows: int, fraction: float) -> int:
    """How many leading rows a prefix ``fraction`` of ``n_rows`` keeps (at least 1)."""
    return max(1, min(n_rows, math.floor(fraction * n_rows + 1e-9)))


# ---- laws ---------------------------------------------------------------------------
def _coerce(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_law(name: str, options: Sequence[str] = ()) -> Law:
    """Build a registered law from its name and ``KEY=VALUE`` options.

    Raises:
        UserError: unknown law (with the closest name) or bad option.
    """
    if name not in LAWS:
        raise UserError(
            f"--law: unknown law {name!r}"
            + did_you_mean(name, LAWS).rstrip(".")
            + f" (registered: {', '.join(sorted(LAWS))})."
        )
    kwargs: dict[str, Any] = {}
    allowed = [f.name for f in fields(LAWS[name])]
    for opt in options:
        key, sep, value = opt.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--law-option: expected KEY=VALUE; got {opt!r}.")
        if key not in allowed:
            raise UserError(
                f"--law-option: {name!r} has no option {key!r}"
                + did_you_mean(key, allowed).rstrip(".")
                + f" (options: {', '.join(allowed)})."
            )
        kwargs[key] = _coerce(value.strip())
    try:
        return get_law(name, **kwargs)
    except (TypeError, ValueError) as exc:
        raise UserError(f"--law-option: {exc}") from None


# ---- fitting ------------------------------------------------------------------------
@dataclass(frozen=True)
class _Job:
    run: RunCurve
    n_prefix: int
    target_step: int
    true_final: float | None


def _prefix_arrays(law: Law, job: _Job) -> tuple[FloatArray, FloatArray, FloatArray | None]:
    """Steps and losses of the prefix, and the whole per-step LR up to the target.

    Schedule-free laws get no LR, so a CSV's ``lr`` column never changes their fit.
    """
    n = job.n_prefix
    lrs = job.run.dense_lr(job.target_step) if law.uses_lr else None
    return job.run.steps[:n], job.run.losses[:n], lrs


def _check_prefix(law: Law, job: _Job, prefix_label: str, n_fixed: int = 0) -> None:
    run, n = job.run, job.n_prefix
    y = run.losses[:n]
    nan = np.flatnonzero(~np.isfinite(y))
    if nan.size:
        i = int(nan[0])
        raise UserError(
            f"run {run.run_id!r}: `loss` is missing (empty or NaN) at {run.line(i)} "
            f"(step {run.steps[i]:g}), inside the {prefix_label} prefix ({n} of {run.n_rows} "
            "rows); fill it in, drop the row, or lower --prefix."
        )
    bad = np.flatnonzero(y <= 0)
    if bad.size:
        i = int(bad[0])
        raise UserError(
            f"run {run.run_id!r}: `loss` must be > 0; got {y[i]:g} at {run.line(i)} "
            f"(step {run.steps[i]:g})."
        )
    need = law.min_points(n_fixed)
    if n < need:
        raise UserError(
            f"run {run.run_id!r}: the {prefix_label} prefix has {n} points but law "
            f"{law.name!r} needs at least {need} (free parameters + 1); raise --prefix, "
            "log more often, or use a simpler law (e.g. --law power)."
        )
    steps, losses, lrs = _prefix_arrays(law, job)
    try:  # the law's own input rules (e.g. a per-position law needs a loss matrix)
        law.make_curve(steps, losses, lrs=lrs, n_fixed=n_fixed)
    except ValueError as exc:
        raise UserError(f"run {run.run_id!r}: law {law.name!r} cannot fit it: {exc}") from None


def _outcome(
    law: Law,
    job: _Job,
    mode: str,
    fit: FitResult | None,
    seconds: float,
    level: float,
    message: str = "",
) -> Outcome:
    base: dict[str, Any] = {
        "run_id": job.run.run_id,
        "law": law.name,
        "mode": mode,
        "prefix": job.n_prefix / job.run.n_rows,
        "n_prefix": job.n_prefix,
        "target_step": job.target_step,
        "true_final": job.true_final,
        "fit": fit,
        "fit_seconds": seconds,
    }
    if fit is None or fit.status == "failed":
        msg = message or (fit.message if fit is not None else "fit failed")
        return Outcome(
            **base,
            predicted_final=None,
            predicted_lo=None,
            predicted_hi=None,
            status="failed",
            message=msg,
        )
    try:
        t = np.array([float(job.target_step)])
        pred = float(fit.predict(t)[0])
        lo, hi = fit.interval(t, level=level)
        lo_f, hi_f = float(lo[0]), float(hi[0])
    except (ValueError, FloatingPointError, np.linalg.LinAlgError) as exc:
        return Outcome(
            **base,
            predicted_final=None,
            predicted_lo=None,
            predicted_hi=None,
            status="failed",
            message=f"prediction failed: {exc}",
        )
    if not all(math.isfinite(v) for v in (pred, lo_f, hi_f)):
        return Outcome(
            **base,
            predicted_final=None,
            predicted_lo=None,
            predicted_hi=None,
            status="failed",
            message="the fit predicts a non-finite loss at the target step",
        )
    return Outcome(
        **base,
        predicted_final=pred,
        predicted_lo=lo_f,
        predicted_hi=hi_f,
        status=fit.status,
        message=fit.message,
    )


def _fit_one(law: Law, job: _Job, **kwargs: Any) -> tuple[FitResult | None, float, str]:
    steps, losses, lrs = _prefix_arrays(law, job)
    start = time.perf_counter()
    try:
        fit = law.fit(steps, losses, lrs=lrs, **kwargs)
    except Exception as exc:  # a law bug must not abort the other runs
        return None, time.perf_counter() - start, f"{type(exc).__name__}: {exc}"
    return fit, time.perf_counter() - start, ""


def extrapolate(
    law: Law,
    runs: Sequence[RunCurve],
    *,
    mode: str = "independent",
    prefix: float | None = None,
    references: Sequence[RunCurve] = (),
    target_step: int | None = None,
    level: float = 0.9,
    shared: Sequence[str] | None = None,
) -> list[Outcome]:
    """Fit ``law`` to the prefix of every run and predict its loss at the target step.

    Args:
        law: the law (options).
        runs: the runs to extrapolate.
        mode: ``independent`` (each prefix alone), ``pooled`` (all prefixes together,
            sharing the law's exponents) or ``transfer`` (parameters learned from the
            complete ``references`` runs carried over to each prefix).
        prefix: the fraction of each run's rows fitted; ``None`` fits every leading
            row that has a loss.
        references: complete runs for transfer mode (used whole).
        target_step: the step to predict (default: each run's last row).
        level: the probability mass of the predictive interval.
        shared: the parameters pooled/transfer modes share across runs (default
            ``shared_params(law)``: the shape parameters, not offsets and amplitudes).

    Returns:
        One ``Outcome`` per run, in order; failed fits have ``status == "failed"``.

    Raises:
        UserError: on bad input (checked for every run before any fitting).
    """
    if mode not in MODES:
        raise UserError(f"--mode: unknown mode {mode!r}" + did_you_mean(mode, MODES))
    if prefix is not None and not (math.isfinite(prefix) and 0 < prefix <= 1):
        raise UserError(
            f"--prefix must be in (0, 1] (a fraction of each run's rows); got {prefix!r}."
        )
    if not 0 < level < 1:
        raise UserError(f"--level must be in (0, 1); got {level!r}.")
    if mode == "transfer" and not references:
        raise UserError("--mode transfer needs at least one --reference RUN_ID (a complete run).")
    if mode != "transfer" and references:
        raise UserError("--reference is only used with --mode transfer.")
    shared_names = () if mode == "independent" else _shared(law, shared)
    label = "observed" if prefix is None else f"{prefix:.0%}"
    jobs = [_job(r, prefix, target_step, law) for r in runs]
    for job in jobs:
        # a pooled curve fits only its own parameters; the shared ones come from all
        _check_prefix(law, job, label, len(shared_names) if mode == "pooled" else 0)
    refs = [_reference_job(r, law) for r in references]
    if mode == "independent":
        out = []
        for job in jobs:
            fit, seconds, message = _fit_one(law, job)
            out.append(_outcome(law, job, mode, fit, seconds, level, message))
        return out
    if mode == "pooled":
        return _pooled(law, jobs, level, shared_names)
    return _transfer(law, jobs, refs, level, shared_names)


def _shared(law: Law, shared: Sequence[str] | None) -> tuple[str, ...]:
    names = shared_params(law) if shared is None else tuple(shared)
    unknown = [n for n in names if n not in law.param_names]
    if unknown:
        raise UserError(
            f"--shared: {law.name!r} has no parameter(s) {', '.join(map(repr, unknown))}"
            + did_you_mean(unknown[0], law.param_names).rstrip(".")
            + f" (parameters: {', '.join(law.param_names)})."
        )
    return names


def _job(run: RunCurve, prefix: float | None, target_step: int | None, law: Law) -> _Job:
    n = run.observed() if prefix is None else prefix_rows(run.n_rows, prefix)
    if n == 0:
        raise UserError(
            f"run {run.run_id!r}: the first row ({run.line(0)}) has no loss; nothing to fit."
        )
    target = int(run.steps[-1]) if target_step is None else int(target_step)
    if target < run.steps[n - 1]:
        raise UserError(
            f"--target-step {target} is before the end of run {run.run_id!r}'s prefix "
            f"(step {run.steps[n - 1]:g}); choose a later step."
        )
    if target > run.steps[-1] and law.uses_lr and run.lr_per_step is None:
        raise UserError(
            f"--target-step {target} is past run {run.run_id!r}'s last row (step "
            f"{run.steps[-1]:g}); law {law.name!r} needs the learning rate up to the target, "
            "so add rows (step, lr, empty loss) up to it."
        )
    hit = np.flatnonzero(run.steps == target)
    true = float(run.losses[hit[0]]) if hit.size and np.isfinite(run.losses[hit[0]]) else None
    return _Job(run, n, target, true)


def _reference_job(run: RunCurve, law: Law) -> _Job:
    n = run.observed()
    if n == 0:
        raise UserError(
            f"--reference {run.run_id!r}: the first row ({run.line(0)}) has no loss; a "
            "reference must be a complete run."
        )
    job = _Job(run, n, int(run.steps[n - 1]), float(run.losses[n - 1]))
    _check_prefix(law, job, "reference (whole run)")
    return job


def _pooled(law: Law, jobs: list[_Job], level: float, shared: tuple[str, ...]) -> list[Outcome]:
    fit_pooled = getattr(law, "fit_pooled", None)
    if fit_pooled is None:
        raise UserError("--mode pooled: this build of lawsearch has no pooled fitting yet.")
    curves = []
    for job in jobs:
        steps, losses, lrs = _prefix_arrays(law, job)
        curves.append({"steps": steps, "losses": losses, "lrs": lrs})
    start = time.perf_counter()
    try:
        fits: list[FitResult | None] = list(fit_pooled(curves, shared=shared))
        message = ""
    except Exception as exc:  # a law bug fails these runs, it does not crash the command
        fits, message = [None] * len(jobs), f"pooled fit: {type(exc).__name__}: {exc}"
    per_curve = (time.perf_counter() - start) / len(jobs)
    return [
        _outcome(law, job, "pooled", fit, per_curve, level, message)
        for job, fit in zip(jobs, fits, strict=True)
    ]


def _transfer(
    law: Law, jobs: list[_Job], refs: list[_Job], level: float, shared: tuple[str, ...]
) -> list[Outcome]:
    """Fit the references whole, then each prefix with the shared parameters as priors."""
    from lawsearch._fit import fit_transfer

    ref_fits = []
    for ref in refs:
        ref_fit, _, message = _fit_one(law, ref)
        if ref_fit is None or ref_fit.status == "failed":
            why = message or (ref_fit.message if ref_fit is not None else "")
            msg = f"reference {ref.run.run_id!r} fit failed: {why}"
            return [_outcome(law, j, "transfer", None, math.nan, level, msg) for j in jobs]
        ref_fits.append(ref_fit)
    free = tuple(n for n in law.param_names if n not in shared)
    out = []
    for job in jobs:
        steps, losses, lrs = _prefix_arrays(law, job)
        start = time.perf_counter()
        try:
            fit: FitResult | None = fit_transfer(
                law, steps, losses, reference=ref_fits, lrs=lrs, free=free
            )
            message = ""
        except Exception as exc:  # a law bug fails this run, not the command
            fit, message = None, f"{type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - start
        out.append(_outcome(law, job, "transfer", fit, seconds, level, message))
    return out


# ---- output -------------------------------------------------------------------------
def _fmt(v: float | None, spec: str = ".4f") -> str:
    return "–" if v is None or not math.isfinite(v) else format(v, spec)


def format_run(o: Outcome, level: float) -> str:
    """The per-run block: header, fitted parameters, prediction vs truth."""
    head = (
        f"run {o.run_id}: law {o.law} ({o.mode}), fitted {o.n_prefix} rows "
        f"({o.prefix:.0%} of the run)"
    )
    lines = [head]
    if o.fit is not None and o.fit.status != "failed":
        width = max(len(n) for n in o.fit.params)
        for name, value in o.fit.params.items():
            se = o.fit.stderr.get(name, float("nan"))
            fixed = name not in o.fit.free
            tail = "  (fixed)" if fixed else (f"  ± {se:.3g}" if math.isfinite(se) else "")
            if name in getattr(o.fit, "shared", ()):
                tail += "  (shared by the runs)"
            elif name in getattr(o.fit, "prior", {}):
                tail += "  (prior from the reference)"
            lines.append(f"  {name:<{width}} = {value:.6g}{tail}")
    if o.status == "failed":
        lines.append(f"  status: failed — {o.message}")
        return "\n".join(lines)
    err = o.error
    lines.append(
        f"  predicted loss at step {o.target_step}: {_fmt(o.predicted_final)} "
        f"[{_fmt(o.predicted_lo)}, {_fmt(o.predicted_hi)}] ({level:.0%} interval)"
    )
    lines.append(
        f"  true loss: {_fmt(o.true_final)}   error: "
        + ("–" if err is None else f"{100 * err:+.2f}%")
    )
    if o.status != "ok":
        lines.append(f"  status: {o.status} — {o.message}")
    ratio = None
    if o.fit is not None and o.fit.curve is not None and o.predicted_final is not None:
        ratio = trend_ratio(o.fit.curve.steps, o.fit.curve.losses, o.target_step, o.predicted_final)
    if ratio is not None and abs(ratio) > MAX_TREND_RATIO:
        lines.append(
            f"  warning: the prediction is {ratio:.2g}x the improvement the curve's own recent "
            "trend gives when continued in log time (real curves stay under about 2); a "
            "parameter the prefix does not identify is the likely cause: fit a longer prefix, "
            "--mode pooled, or --mode transfer with a finished run"
        )
    return "\n".join(lines)


def format_summary(outcomes: Sequence[Outcome]) -> str:
    """One line per run: the table a user scans first."""
    header = ("run", "status", "target", "predicted", "lo", "hi", "true", "error")
    rows = [header]
    for o in outcomes:
        err = o.error
        rows.append(
            (
                o.run_id,
                o.status,
                str(o.target_step),
                _fmt(o.predicted_final),
                _fmt(o.predicted_lo),
                _fmt(o.predicted_hi),
                _fmt(o.true_final),
                "–" if err is None else f"{100 * err:+.2f}%",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    out = []
    for k, r in enumerate(rows):
        out.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def _atomic(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, outcomes: Sequence[Outcome]) -> None:
    """Write the outcomes as a JSON list (temp file + rename)."""
    payload = json.dumps([o.to_json() for o in outcomes], indent=2, allow_nan=False) + "\n"

    def write(tmp: str) -> None:
        Path(tmp).write_text(payload)

    _atomic(path, write)


def plot(
    path: Path, outcomes: Sequence[Outcome], runs: Mapping[str, RunCurve], level: float
) -> None:
    """Curve, fit over the prefix, extrapolation and its interval band, one panel per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(outcomes)
    cols = min(n, 3)
    nrows = math.ceil(n / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.6 * cols, 3.4 * nrows), squeeze=False)
    for ax, o in zip(axes.ravel(), outcomes, strict=False):
        r = runs[o.run_id]
        k = o.n_prefix
        ax.plot(r.steps[:k], r.losses[:k], ".", color="black", ms=3, label="fitted prefix")
        ax.plot(r.steps[k:], r.losses[k:], ".", color="0.65", ms=3, label="held out")
        if o.fit is not None and o.status != "failed":
            fit_s = np.linspace(r.steps[0], r.steps[k - 1], 80)
            ext_s = np.linspace(r.steps[k - 1], float(o.target_step), 80)
            try:
                ax.plot(fit_s, o.fit.predict(fit_s), "-", color="C0", label="fit")
                ax.plot(ext_s, o.fit.predict(ext_s), "--", color="C0", label="extrapolation")
                lo, hi = o.fit.interval(ext_s, level=level)
                ax.fill_between(
                    ext_s, lo, hi, color="C0", alpha=0.2, lw=0, label=f"{level:.0%} interval"
                )
            except (ValueError, FloatingPointError, np.linalg.LinAlgError):
                pass
        if o.true_final is not None:
            ax.plot([o.target_step], [o.true_final], "x", color="C3", label="true final")
        err = o.error
        title = f"{o.run_id}" + ("" if err is None else f"  ({100 * err:+.2f}%)")
        ax.set_title(title if o.status != "failed" else f"{o.run_id}  (fit failed)", fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        finite = r.losses[np.isfinite(r.losses)]
        if finite.size > 4:
            top = float(np.quantile(finite, 0.97))
            ax.set_ylim(float(finite.min()) - 0.05 * (top - finite.min()), top)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    axes.ravel()[0].legend(fontsize=7)
    law, mode = outcomes[0].law, outcomes[0].mode
    fig.suptitle(f"lawsearch fit: {law} ({mode})", fontsize=11)
    fig.tight_layout()
    try:
        _atomic(
            path, lambda tmp: fig.savefig(tmp, dpi=110, format=path.suffix.lstrip(".") or "png")
        )
    finally:
        plt.close(fig)


# ---- command ------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "CSV columns: run_id,step,lr,loss (optional tokens). Rows after the prefix give the\n"
        "future schedule; their loss may be empty (or filled in, to score the prediction).\n"
        "Exit codes: 0 every run fitted; 1 at least one fit failed (the others are still\n"
        "printed and written); 2 bad input (nothing written)."
    )
    parser.add_argument("curves", metavar="CURVES.csv", help="tidy CSV: run_id,step,lr,loss")
    parser.add_argument(
        "--law",
        default="multipower",
        help=f"law name (default multipower; registered: {', '.join(sorted(LAWS))})",
    )
    parser.add_argument(
        "--law-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an option of the law, e.g. time=intrinsic for power (repeatable)",
    )
    parser.add_argument(
        "--prefix",
        type=float,
        default=None,
        help="fraction of each run's rows to fit, in (0, 1] (default: every row with a loss)",
    )
    parser.add_argument("--mode", default="independent", help=f"one of {', '.join(MODES)}")
    parser.add_argument(
        "--reference",
        action="append",
        default=[],
        metavar="RUN_ID",
        help="complete run used whole in transfer mode (repeatable); not evaluated",
    )
    parser.add_argument(
        "--shared",
        default=None,
        metavar="NAME,...",
        help="parameters shared across runs in pooled/transfer mode "
        "(default: the law's shape parameters, not offsets and amplitudes)",
    )
    parser.add_argument(
        "--target-step",
        type=int,
        default=None,
        help="step whose loss is predicted (default: each run's last row)",
    )
    parser.add_argument("--level", type=float, default=0.9, help="interval mass (default 0.9)")
    parser.add_argument("--plot", type=Path, default=None, metavar="OUT.png")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT.json")


def run(args: argparse.Namespace) -> int:
    law = parse_law(args.law, args.law_option)
    runs = read_curves(args.curves)
    refs = []
    for ref in args.reference:
        if ref not in runs:
            raise UserError(
                f"--reference: no run {ref!r} in {Path(args.curves).name}"
                + did_you_mean(ref, runs).rstrip(".")
                + f" (runs: {', '.join(runs)})."
            )
        refs.append(runs[ref])
    evaluated = [r for rid, r in runs.items() if rid not in set(args.reference)]
    if not evaluated:
        raise UserError("every run is a --reference; leave at least one run to extrapolate.")
    shared = None
    if args.shared is not None:
        if args.mode == "independent":
            raise UserError("--shared is only used with --mode pooled or --mode transfer.")
        shared = [n.strip() for n in args.shared.split(",") if n.strip()]
    outcomes = extrapolate(
        law,
        evaluated,
        mode=args.mode,
        prefix=args.prefix,
        references=refs,
        target_step=args.target_step,
        level=args.level,
        shared=shared,
    )
    for o in outcomes:
        print(format_run(o, args.level))
        print()
    print(format_summary(outcomes))
    if args.plot is not None:
        plot(args.plot, outcomes, runs, args.level)
        print(f"\nplot: {args.plot}")
    if args.json is not None:
        write_json(args.json, outcomes)
        print(f"json: {args.json}")
    failed = [o.run_id for o in outcomes if o.status == "failed"]
    if failed:
        print(f"\n{len(failed)} of {len(outcomes)} fits failed: {', '.join(failed)}")
        return 1
    return 0
