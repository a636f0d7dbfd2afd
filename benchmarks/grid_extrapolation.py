"""Extrapolating lawsearch's own curves: every law x mode on the recorded grid, from step 0.

The grid (``data/grid``, ``python -m benchmarks.record_grid``) holds real runs
of the demo's trainer logged from step 0: 72 configs of the demo model (240
steps) and 30 of a 4x larger model (480 steps), plus seed repeats. For each
prefix (a fraction of the full budget) every law predicts each run's final
loss, the way the search would:

* ``independent``: each prefix alone (``lawsearch._fit.fit_or_simpler``: the fit
  window, the floor, a less flexible law rather than a failure);
* ``pooled``: the prefixes of a study's candidates jointly (groups of
  ``--group`` runs of one model size, as the search's cut refits a rung),
  sharing the law's ``shared_params``;
* ``transfer``: the same, plus the whole curves of ``--refs`` finished runs
  of other configs (the search has these once a lineage reached the full
  budget); the references are not scored.

Baselines: the short-budget loss (the last value of the prefix: what ranking
without a law does) and a plain power law fitted to every point of the prefix
(no window, no floor: how the laws were used before). A prediction that cannot
be made counts as a failure and ranks by the prefix's last value, as the
search does.

Metrics: mean and worst relative error of the final loss, failures, 90%
interval coverage, Spearman of predicted vs true finals over all runs of a
model size, and within schedule groups (runs that differ only in their
schedule: same model, mixture, peak LR and seed). The seed repeats measure the
noise floor: the spread of one config's final loss over 3 seeds against the
spread its schedules make.

Run: ``python -m benchmarks.grid_extrapolation [--tiny] [--prefixes 0.1,0.2,0.4]``.
"""

from __future__ import annotations

import math
import zlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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

NAME = "grid_extrapolation"
LAWS = ("power", "momentum", "multipower", "functional")
MODES = ("independent", "pooled", "transfer")
LEVEL = 0.9
#: targets of the raw-curves issue (20% prefix, best pooled or transfer law)
TARGETS: dict[str, Any] = {
    "mean": 0.03,
    "worst": 0.08,
    "fail": 0.02,
    "coverage": (0.85, 0.95),
    "sched": 0.8,
}


@dataclass(frozen=True)
class Cell:
    """One prediction of one run's final loss."""

    run_id: str
    true: float
    last: float
    pred: float | None
    lo: float | None
    hi: float | None
    note: str = ""

    @property
    def score(self) -> float:
        """What the run ranks by: the prediction, else the prefix's last value."""
        return self.pred if self.pred is not None else self.last


def _prefix(run: Any, fraction: float) -> int:
    """Rows of ``run`` logged at or before ``fraction`` of its full budget."""
    return int(np.searchsorted(run.steps, fraction * run.full_steps, side="right"))


def _lrs(run: Any) -> np.ndarray:
    return run.schedule.lr(np.arange(run.full_steps + 1))


def _cell(run: Any, n: int, fit: Any) -> Cell:
    from lawsearch._fit import unusable

    last = float(run.losses[n - 1])
    if fit is None or unusable(fit, run.full_steps):
        why = "no fit" if fit is None else fit.message
        return Cell(run.run_id, run.final_loss, last, None, None, None, why)
    pred = float(fit.predict([run.full_steps])[0])
    lo, hi = fit.interval([run.full_steps], level=LEVEL)
    note = f"{fit.law.name}" + (f": {fit.message}" if "instead of" in fit.message else "")
    return Cell(run.run_id, run.final_loss, last, pred, float(lo[0]), float(hi[0]), note)


def _groups(runs: Sequence[Any], size: int) -> list[list[Any]]:
    """Runs in a fixed pseudo-random order (CRC32 of the id), cut into groups."""
    order = sorted(runs, key=lambda r: zlib.crc32(r.run_id.encode()))
    return [order[i : i + size] for i in range(0, len(order), size)]


def predict(
    law_name: str,
    mode: str,
    runs: Sequence[Any],
    fraction: float,
    *,
    group: int,
    refs: int,
    window: bool = True,
) -> list[Cell]:
    """Every run's prediction for one law, mode and prefix (one model size)."""
    from lawsearch._fit import fit_or_simpler, pooled_or_simpler
    from lawsearch.laws import fallbacks, get_law, shared_params

    law = get_law(law_name)
    backups = fallbacks(law) if window else ()
    cells: list[Cell] = []
    if mode == "independent":
        for run in runs:
            n = _prefix(run, fraction)
            fit = fit_or_simpler(
                law,
                run.steps[:n],
                run.losses[:n],
                target=run.full_steps,
                lrs=_lrs(run) if law.uses_lr else None,
                fallbacks=backups,
                window=window,
            )
            cells.append(_cell(run, n, fit))
        return cells
    order = sorted(runs, key=lambda r: zlib.crc32(r.run_id.encode()))
    for members in _groups(runs, group):
        curves = []
        for run in members:
            n = _prefix(run, fraction)
            curves.append({"steps": run.steps[:n], "losses": run.losses[:n], "lrs": _lrs(run)})
        if mode == "transfer":
            outside = [r for r in order if r not in members][:refs]
            curves += [
                {"steps": r.steps, "losses": r.losses, "lrs": _lrs(r), "whole": True}
                for r in outside
            ]
        fits = pooled_or_simpler(
            law,
            curves,
            shared=shared_params(law),
            target=float(members[0].full_steps),
            fallbacks=backups,
        )
        for run, fit in zip(members, fits, strict=False):
            cells.append(_cell(run, _prefix(run, fraction), fit))
    return cells


def baseline(name: str, runs: Sequence[Any], fraction: float) -> list[Cell]:
    """The short-budget loss, or a power law fitted to every point of the prefix."""
    from lawsearch.laws import PowerLaw

    cells = []
    for run in runs:
        n = _prefix(run, fraction)
        last = float(run.losses[n - 1])
        if name == "short-budget loss":
            cells.append(Cell(run.run_id, run.final_loss, last, last, None, None))
            continue
        try:
            fit = PowerLaw().fit(run.steps[:n], run.losses[:n])
        except ValueError:
            fit = None
        cells.append(_cell(run, n, fit))
    return cells


def _spearman(x: Sequence[float], y: Sequence[float]) -> float:
    from scipy.stats import spearmanr

    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return math.nan
    return float(spearmanr(x, y).statistic)


def metrics(cells: Sequence[Cell], runs: Sequence[Any]) -> dict[str, Any]:
    """Error, failures, coverage and rank agreement of one row."""
    by_id = {r.run_id: r for r in runs}
    made = [c for c in cells if c.pred is not None]
    err = [abs(c.pred / c.true - 1) for c in made if c.pred is not None]
    cov = [c.lo <= c.true <= c.hi for c in made if c.lo is not None and c.hi is not None]
    sched: dict[tuple[Any, ...], list[Cell]] = defaultdict(list)
    for c in cells:
        r = by_id[c.run_id]
        sched[(r.model, tuple(sorted(r.mixture.items())), r.schedule.peak_lr, r.seed)].append(c)
    within = [
        _spearman([c.score for c in g], [c.true for c in g]) for g in sched.values() if len(g) >= 3
    ]
    within = [w for w in within if math.isfinite(w)]
    return {
        "n": len(cells),
        "mean_error": float(np.mean(err)) if err else None,
        "worst_error": float(np.max(err)) if err else None,
        "failures": len(cells) - len(made),
        "fail_rate": (len(cells) - len(made)) / max(len(cells), 1),
        "coverage": float(np.mean(cov)) if cov else None,
        "spearman": _spearman([c.score for c in cells], [c.true for c in cells]),
        "spearman_schedules": float(np.mean(within)) if within else None,
        "schedule_groups": len(within),
        "fallbacks": sum("instead of" in c.note for c in cells),
    }


def seed_noise(runs: Sequence[Any], fraction: float) -> list[dict[str, Any]]:
    """Spread of one config's loss over its seeds, at the prefix and at the end."""
    by_config: dict[tuple[Any, ...], list[Any]] = defaultdict(list)
    for r in runs:
        by_config[r.config_key()].append(r)
    out = []
    for group in by_config.values():
        if len(group) < 3:
            continue
        finals = np.array([r.final_loss for r in group])
        shorts = np.array([r.losses[_prefix(r, fraction) - 1] for r in group])
        out.append(
            {
                "config": group[0].run_id,
                "schedule": group[0].schedule_label,
                "peak_lr": group[0].schedule.peak_lr,
                "seeds": sorted(r.seed for r in group),
                "final_sd": float(finals.std(ddof=1)),
                "final_rel_sd": float(finals.std(ddof=1) / finals.mean()),
                "short_sd": float(shorts.std(ddof=1)),
                "final_order_matches_short": bool(
                    np.array_equal(np.argsort(finals), np.argsort(shorts))
                ),
            }
        )
    return out


def schedule_spread(runs: Sequence[Any]) -> dict[str, float]:
    """Median spread (sd) of the final loss across the schedules of one group, by peak LR."""
    groups: dict[tuple[Any, ...], list[float]] = defaultdict(list)
    for r in runs:
        if r.block == "core":
            groups[(tuple(sorted(r.mixture.items())), r.schedule.peak_lr)].append(r.final_loss)
    by_lr: dict[float, list[float]] = defaultdict(list)
    for (_, lr), finals in groups.items():
        if len(finals) >= 3:
            by_lr[lr].append(float(np.std(finals, ddof=1)))
    return {f"{lr:g}": float(np.median(v)) for lr, v in sorted(by_lr.items())}


def main(argv: Sequence[str] | None = None) -> int:
    parser = benchmark_parser(NAME, __doc__)
    parser.add_argument("--grid", default=None, help="grid folder (default: data/grid)")
    parser.add_argument("--prefixes", default="0.1,0.2,0.4")
    parser.add_argument("--laws", default=",".join(LAWS))
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--models", default="demo,x4", help="model sizes of the grid")
    parser.add_argument("--group", type=int, default=12, help="candidates per pooled fit")
    parser.add_argument("--refs", type=int, default=2, help="finished runs in a transfer fit")
    args = parser.parse_args(argv)
    from lawsearch.recorded.grid import load_grid

    out = output_dir(args.out, NAME)
    prefixes = [float(p) for p in args.prefixes.split(",")]
    laws = [s for s in args.laws.split(",") if s]
    modes = [s for s in args.modes.split(",") if s]
    models = tuple(s for s in args.models.split(",") if s)
    every = load_grid(args.grid, models=models)
    if args.tiny:
        every = tuple(r for r in every if r.model == "demo")
        every = every[:8] + tuple(r for r in every if r.block == "seeds")[:3]
        prefixes, laws, modes = prefixes[:1], laws[:2], modes
    rows: list[dict[str, Any]] = []
    cells_of: dict[str, list[Cell]] = {}
    with timer() as clock:
        for model in dict.fromkeys(r.model for r in every):
            runs = [r for r in every if r.model == model and r.block != "seeds"]
            for fraction in prefixes:
                for base in ("short-budget loss", "plain power law (all points)"):
                    cells = baseline(base, runs, fraction)
                    rows.append({"model": model, "prefix": fraction, "law": base, "mode": "-"})
                    rows[-1].update(metrics(cells, runs))
                for law in laws:
                    for mode in modes:
                        cells = predict(law, mode, runs, fraction, group=args.group, refs=args.refs)
                        cells_of[f"{model}/{fraction}/{law}/{mode}"] = cells
                        rows.append({"model": model, "prefix": fraction, "law": law, "mode": mode})
                        rows[-1].update(metrics(cells, runs))
                        print(_line(rows[-1]), flush=True)
    noise = {
        f"{m}/{p}": seed_noise([r for r in every if r.model == m], p)
        for m in dict.fromkeys(r.model for r in every)
        for p in prefixes
    }
    spread = {
        m: schedule_spread([r for r in every if r.model == m])
        for m in dict.fromkeys(r.model for r in every)
    }
    table = _table(rows)
    summary = _targets(rows)
    print(table)
    print(summary)
    payload = {
        "rows": rows,
        "seed_noise": noise,
        "schedule_spread": spread,
        "cells": {k: [c.__dict__ for c in v] for k, v in cells_of.items()},
        "settings": {
            "group": args.group,
            "refs": args.refs,
            "level": LEVEL,
            "prefixes": prefixes,
            "laws": laws,
            "modes": modes,
            "grid_runs": len(every),
        },
        "seconds": clock[0],
        "environment": environment(),
    }
    write_json(out / f"{NAME}.json", payload)
    write_text(out / f"{NAME}.md", table + "\n\n" + summary + "\n")
    _figure(rows, out)
    return 0


def _line(row: dict[str, Any]) -> str:
    return (
        f"{row['model']:5s} {row['prefix']:.0%} {row['law']:12s} {row['mode']:11s} "
        f"err {fmt(row['mean_error'], '.2%')} / {fmt(row['worst_error'], '.2%')} "
        f"fail {row['failures']}/{row['n']} cov {fmt(row['coverage'], '.2f')} "
        f"rho {fmt(row['spearman'], '.3f')} sched {fmt(row['spearman_schedules'], '.2f')}"
    )


def _table(rows: Sequence[dict[str, Any]]) -> str:
    return markdown_table(
        [
            "model",
            "prefix",
            "law",
            "mode",
            "mean / worst error",
            "failures",
            "fell back",
            "90% coverage",
            "Spearman (all)",
            "Spearman (schedules)",
        ],
        [
            [
                r["model"],
                f"{r['prefix']:.0%}",
                r["law"],
                r["mode"],
                f"{fmt(r['mean_error'], '.2%')} / {fmt(r['worst_error'], '.2%')}",
                f"{r['failures']}/{r['n']}",
                r["fallbacks"],
                fmt(r["coverage"], ".0%"),
                fmt(r["spearman"], ".3f"),
                fmt(r["spearman_schedules"], ".2f"),
            ]
            for r in rows
        ],
    )


def _targets(rows: Sequence[dict[str, Any]]) -> str:
    """The issue's targets at the 20% prefix against the best pooled or transfer law."""
    lines = []
    for model in dict.fromkeys(r["model"] for r in rows):
        at = [r for r in rows if r["model"] == model and abs(r["prefix"] - 0.2) < 1e-9]
        short = next((r for r in at if r["law"] == "short-budget loss"), None)
        cands = [r for r in at if r["mode"] in ("pooled", "transfer")]
        if short is None or not cands:
            continue
        best = max(cands, key=lambda r: r["spearman"] if math.isfinite(r["spearman"]) else -9)
        lo, hi = TARGETS["coverage"]
        lines.append(
            f"{model}, 20% prefix, best pooled/transfer by Spearman: {best['law']} {best['mode']}: "
            f"Spearman {fmt(best['spearman'], '.3f')} vs short-budget "
            f"{fmt(short['spearman'], '.3f')} + 0.10; schedules "
            f"{fmt(best['spearman_schedules'], '.2f')} (target 0.8); error "
            f"{fmt(best['mean_error'], '.2%')} / {fmt(best['worst_error'], '.2%')} (3% / 8%); "
            f"failures {best['fail_rate']:.1%} (2%); coverage {fmt(best['coverage'], '.0%')} "
            f"({lo:.0%}-{hi:.0%})"
        )
    return "\n".join(lines)


def _figure(rows: Sequence[dict[str, Any]], out: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        at = [r for r in rows if r["model"] == model]
        for label in dict.fromkeys(f"{r['law']} {r['mode']}".strip(" -") for r in at):
            pts = [
                (r["prefix"], r["spearman"])
                for r in at
                if f"{r['law']} {r['mode']}".strip(" -") == label
            ]
            xs, ys = zip(*sorted(pts), strict=True)
            style = "k--" if "short" in label else "-"
            ax.plot(xs, ys, style, marker="o", ms=3, label=label, lw=1)
        ax.set_xlabel("prefix (fraction of the full budget)")
        ax.set_ylabel("Spearman, predicted vs true final loss")
        ax.set_title(f"grid: {model} model")
        ax.legend(fontsize=6)
    save_figure(fig, out / f"{NAME}.png")


if __name__ == "__main__":
    raise SystemExit(main())
