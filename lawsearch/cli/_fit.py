"""``lawsearch fit``: fit a law to the prefixes of loss curves in a CSV and extrapolate them.

The CSV is tidy: one row per logged point, columns ``run_id,step,lr,loss``
(optional ``tokens``, read and ignored: the laws work in optimizer steps and
intrinsic time). ``lr`` is the learning rate at that step. Rows after the
prefix give the future schedule and, when their ``loss`` is filled in, the
true losses the prediction is scored against.

The workflow is ``lawsearch.fitting.fit_curves``; this module parses the
arguments, calls it, prints the per-run blocks and the table, draws the plot
and writes the JSON.

Exit codes: 0 when every run was fitted, 1 when at least one fit failed (its
row says ``failed`` and the other runs are still printed, plotted and
written), 2 on bad input (nothing is written).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from lawsearch._errors import did_you_mean
from lawsearch.cli import UserError
from lawsearch.fitting import MODES, CurveError, Outcome, fit_curves, resolve_law
from lawsearch.laws import LAWS, Law, get_law

__all__ = [
    "add_arguments",
    "format_run",
    "format_summary",
    "parse_law",
    "plot",
    "run",
    "write_json",
]

#: how ``lawsearch.fitting``'s argument names (written `like_this` in its messages) read here
FLAGS = {
    "data": "CURVES",
    "law": "--law",
    "prefix": "--prefix",
    "mode": "--mode",
    "references": "--reference",
    "shared": "--shared",
    "target_step": "--target-step",
    "level": "--level",
}


def _as_flags(message: str) -> str:
    """A library message with its argument names spelled as this command's flags."""
    return re.sub(r"`(\w+)`", lambda m: FLAGS.get(m[1], m[0]), message)


# ---- laws ---------------------------------------------------------------------------
def _coerce(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_law(name: str, options: Sequence[str] = ()) -> Law:
    """Build a registered law from its name and ``KEY=VALUE`` options.

    Raises:
        CurveError: unknown law (with the closest name).
        UserError: a bad option.
    """
    allowed = [f.name for f in fields(resolve_law(name))]
    kwargs: dict[str, Any] = {}
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
    if o.rows_used is not None and o.rows_used < o.n_prefix:
        lines.append(
            f"  window: the fit used the last {o.rows_used} of those rows, from step "
            f"{o.fit_from_step:g} on; the first {o.n_prefix - o.rows_used} (step 0, warmup or "
            "an early transient no law describes) were left out (--no-window keeps them)"
        )
    if o.law_used is not None and o.law_used != o.law and o.status != "failed":
        lines.append(
            f"  law: fitted by the less flexible {o.law_used!r}: {o.law!r} could not "
            f"extrapolate this prefix ({o.message})"
        )
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
    if o.implausible:
        lines.append(
            f"  warning: the prediction is {o.trend_ratio:.2g}x the improvement the curve's own "
            "recent trend gives when continued in log time (real curves stay under about 2); a "
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


def plot(path: Path, outcomes: Sequence[Outcome], level: float) -> None:
    """Curve, fit over the prefix, extrapolation and its interval band, one panel per run."""
    runs = [o.run for o in outcomes if o.run is not None]
    if len(runs) != len(outcomes):
        raise ValueError("every outcome needs its run to be drawn; plot what fit_curves returns.")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(outcomes)
    cols = min(n, 3)
    nrows = math.ceil(n / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.6 * cols, 3.4 * nrows), squeeze=False)
    for ax, o, r in zip(axes.ravel(), outcomes, runs, strict=False):
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
    parser.add_argument(
        "--no-window",
        dest="window",
        action="store_false",
        help="fit every row of the prefix with the law asked for (default: fit from the "
        "window past step 0, the warmup and an early transient, and fall back to a less "
        "flexible law rather than fail)",
    )
    parser.add_argument("--plot", type=Path, default=None, metavar="OUT.png")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT.json")


def run(args: argparse.Namespace) -> int:
    shared = None
    if args.shared is not None:
        shared = [n.strip() for n in args.shared.split(",") if n.strip()]
    try:
        outcomes = fit_curves(
            args.curves,
            law=parse_law(args.law, args.law_option),
            prefix=args.prefix,
            mode=args.mode,
            references=args.reference,
            target_step=args.target_step,
            level=args.level,
            shared=shared,
            window=args.window,
        )
    except CurveError as exc:
        raise UserError(_as_flags(str(exc))) from None
    for o in outcomes:
        print(format_run(o, args.level))
        print()
    print(format_summary(outcomes))
    if args.plot is not None:
        plot(args.plot, outcomes, args.level)
        print(f"\nplot: {args.plot}")
    if args.json is not None:
        write_json(args.json, outcomes)
        print(f"json: {args.json}")
    failed = [o.run_id for o in outcomes if o.status == "failed"]
    if failed:
        print(f"\n{len(failed)} of {len(outcomes)} fits failed: {', '.join(failed)}")
        return 1
    return 0
