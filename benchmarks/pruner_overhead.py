"""Pruner overhead: milliseconds per ``should_prune`` decision as the study grows.

A study (in-memory storage) is filled with 10 / 100 / 1,000 / 5,000 finished
trials whose curves are noisy power laws over 51 steps (a third completed, the
rest pruned at a random step). Then ``--probe`` new trials report their curves
step by step, and every ``trial.should_prune()`` is timed. Reported per pruner
and study size: mean ms per report, mean and p95 ms per *decision* (a report at
which the pruner does real work: for ``LawPruner`` a rung step with a fit), and
the first call's ms (which includes reading the study once).

Target (issue 4): ``LawPruner`` ≤ 10 ms per decision at 1,000 trials, flat from
100 to 5,000. Optuna's ``MedianPruner`` and ``PercentilePruner`` are timed in the
same run for reference.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from benchmarks._common import (
    benchmark_parser,
    environment,
    fmt,
    markdown_table,
    output_dir,
    save_figure,
    timer,
    write_json,
    write_text,
)

NAME = "pruner_overhead"
SIZES = (10, 100, 1000, 5000)
STEPS = 51


def _curve(rng: np.random.Generator) -> np.ndarray:
    t = np.arange(1, STEPS + 1, dtype=float)
    e, a, alpha = rng.uniform(0.3, 0.7), rng.uniform(0.2, 1.0), rng.uniform(0.3, 1.0)
    return e + a * t**-alpha * np.exp(0.01 * rng.standard_normal(STEPS))


def _study(n: int, pruner: Any, seed: int) -> Any:
    import optuna
    from optuna.trial import TrialState, create_trial

    rng = np.random.default_rng(seed)
    study = optuna.create_study(direction="minimize", pruner=pruner)
    trials = []
    for i in range(n):
        c = _curve(rng)
        if i % 3 == 0:
            trials.append(
                create_trial(
                    value=float(c[-1]),
                    intermediate_values={s + 1: float(v) for s, v in enumerate(c)},
                )
            )
        else:
            stop = int(rng.integers(5, STEPS))
            trials.append(
                create_trial(
                    state=TrialState.PRUNED,
                    intermediate_values={s + 1: float(v) for s, v in enumerate(c[:stop])},
                )
            )
    study.add_trials(trials)
    return study


def _pruners(tiny: bool) -> dict[str, Any]:
    import optuna

    from lawsearch.optuna import LawPruner

    return {
        "LawPruner": lambda: LawPruner(target_step=STEPS, warmup_steps=5, min_points=5),
        "MedianPruner": lambda: optuna.pruners.MedianPruner(n_warmup_steps=5),
        "PercentilePruner": lambda: optuna.pruners.PercentilePruner(25.0, n_warmup_steps=5),
    }


def measure(name: str, make: Any, n: int, probes: int) -> dict[str, Any]:
    from optuna.trial import TrialState

    pruner = make()
    study = _study(n, pruner, seed=n)
    rng = np.random.default_rng(12345)
    per_report: list[float] = []
    decisions: list[float] = []
    work: list[float] = []
    first = None
    for _ in range(probes):
        trial = study.ask()
        c = _curve(rng)
        pruned = False
        for s in range(STEPS):
            trial.report(float(c[s]), s + 1)
            t0 = time.perf_counter()
            pruned = trial.should_prune()
            dt = 1000.0 * (time.perf_counter() - t0)
            if first is None:
                first = dt
            else:
                per_report.append(dt)
            decisions.append(dt)
            if _is_decision(pruner, s + 1):
                work.append(dt)
            if pruned:
                break
        study.tell(trial, state=TrialState.PRUNED) if pruned else study.tell(trial, float(c[-1]))
    arr = np.asarray(decisions[1:])
    return {
        "pruner": name,
        "trials": n,
        "reports": len(per_report),
        "ms_per_report": float(np.mean(per_report)),
        "ms_per_decision": float(np.mean(work)),
        "ms_p95": float(np.quantile(arr, 0.95)),
        "ms_first": float(first or 0.0),
    }


def _is_decision(pruner: Any, step: int) -> bool:
    """A report where the pruner does real work (LawPruner: a rung step past warm-up)."""
    warmup = max(getattr(pruner, "warmup_steps", 0), getattr(pruner, "min_points", 0), 6)
    if step < warmup:
        return False
    rung_of = getattr(pruner, "rung_of", None)
    if rung_of is None:
        return True
    return step == warmup or rung_of(step) != rung_of(step - 1)


def main(argv: Sequence[str] | None = None) -> int:
    import optuna

    parser = benchmark_parser(NAME, __doc__)
    parser.add_argument("--probe", type=int, default=20, help="new trials timed per size")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sizes, probes = ((10, 100), 4) if args.tiny else (SIZES, args.probe)
    rows: list[dict[str, Any]] = []
    with warnings.catch_warnings(), timer() as total:
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        for name, make in _pruners(args.tiny).items():
            for n in sizes:
                r = measure(name, make, n, probes)
                rows.append(r)
                print(f"{name} {n}: {r['ms_per_decision']:.2f} ms", file=sys.stderr, flush=True)
    table = markdown_table(
        [
            "pruner",
            "trials in study",
            "ms / report (mean)",
            "ms / decision (mean)",
            "ms p95 (all reports)",
            "first call ms",
        ],
        [
            [
                r["pruner"],
                r["trials"],
                fmt(r["ms_per_report"], ".2f"),
                fmt(r["ms_per_decision"], ".2f"),
                fmt(r["ms_p95"], ".2f"),
                fmt(r["ms_first"], ".1f"),
            ]
            for r in rows
        ],
    )
    law = {r["trials"]: r["ms_per_decision"] for r in rows if r["pruner"] == "LawPruner"}
    lines = []
    if 1000 in law:
        lines.append(
            f"- LawPruner at 1,000 trials: {law[1000]:.2f} ms per decision (target ≤ 10) — "
            f"{'met' if law[1000] <= 10 else 'NOT met'}"
        )
    if 100 in law and 5000 in law:
        ratio = law[5000] / law[100]
        lines.append(
            f"- 5,000 vs 100 trials: ×{ratio:.2f} (flat means ≤ ×1.5) — "
            f"{'met' if ratio <= 1.5 else 'NOT met'}"
        )
    md = (
        f"# Pruner overhead\n\n{table}\n\n## Targets\n\n"
        + ("\n".join(lines) or "- (tiny run)")
        + "\n"
    )
    print(md)
    out = output_dir(args.out, NAME)
    write_json(
        out / f"{NAME}.json",
        {
            "tiny": args.tiny,
            "probes": probes,
            "rows": rows,
            "seconds": total[0],
            "environment": environment(),
        },
    )
    write_text(out / f"{NAME}.md", md)
    _plot(rows, out / f"{NAME}.png")
    return 0


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name in dict.fromkeys(r["pruner"] for r in rows):
        rs = [r for r in rows if r["pruner"] == name]
        ax.plot(
            [r["trials"] for r in rs], [r["ms_per_decision"] for r in rs], marker="o", label=name
        )
    ax.axhline(10, color="grey", ls="--", lw=0.6)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("trials in the study")
    ax.set_ylabel("ms per decision")
    ax.legend()
    save_figure(fig, path)


if __name__ == "__main__":
    raise SystemExit(main())
