"""Can any last-value cut policy, tuned in hindsight, beat ``MedianPruner`` on TaskSet?

Evidence for the TaskSet target of the Optuna-integration issue: "with its defaults,
LawPruner spends less compute than MedianPruner and PercentilePruner(25) and reaches
regret ≤ 0.05 no later, on every one of the 9 tasks", checked order by order
(``search_replay``: 3 config orders per task, ``config_order(v, seed)`` for seeds
0, 1, 2, variant ``all``; a rival that never reaches regret ≤ 0.05 counts as never,
so any finite time beats it). ``MedianPruner()`` stops about half the configs at
epoch 1, spends only 3.6–7.5 % of no-pruning compute and mostly never reaches
regret ≤ 0.05. This script asks whether *any* policy of the last-value kind could
meet the target against it, even knowing every final.

For each task (variant ``all``) and order:

1. ``MedianPruner`` itself is replayed with ``search_replay.run_method("median", …)``;
   its total compute and its compute to regret ≤ 0.05 (``RunResult.compute_to``, as
   ``per_task_rows`` reads it) are the bar.
2. **Hindsight family**: 1 or 2 cuts at epochs e1 < e2 ≤ 50 with last-value
   thresholds t1, t2: a config continues past a cut iff its value at that epoch is
   ≤ the threshold; a diverged curve (NaN) stops at its first NaN epoch, as in
   ``ranking_ceiling.hindsight_bound``; a config passing every cut trains to epoch
   51. Configs run one after another in the order; each costs the epochs it
   trained; compute is in % of every config to epoch 51. The regret trace is
   ``run_method``'s: after each config trained to the end, ``v.regret`` of the best
   final among the configs trained to the end so far, read with
   ``RunResult.compute_to(0.05)`` (``replay_policy`` replays a policy that way, and
   every reported policy is replayed to check the vectorised search).
3. A policy **meets the target in an order** iff its total compute is < Median's,
   it reaches regret ≤ 0.05, and Median never does or the policy's compute to it is
   ≤ Median's. The thresholds *and the cut epochs* are chosen per order, knowing
   every final (the policy may differ between the 3 orders of a task: this only
   makes the bound more optimistic). A task is **feasible** iff the target is met
   in all 3 orders.

**The search is exact.** Every cut epoch pair is tried (e1 = 1..50, and for two
cuts every e2 = e1+1..50, vectorised over e2). Thresholds: call a config *good* if
its curve has no NaN and its final has regret ≤ 0.05 (with ``compute_to``'s 1e-12
tolerance; a curve with a NaN never trains to the end under any policy); the incumbent
reaches regret ≤ 0.05 exactly when the first good config is trained to the end. Fix
the cut epochs, and let a policy P with thresholds (t1, t2) reach it, first through
the good config g. Lowering the thresholds to g's own values at the cut epochs gives
P' with t1' ≤ t1, t2' ≤ t2: every config that passes a cut under P' passes it under
P, so each config trains no longer under P' than under P (total compute ≤); g still
passes, and no good config before g in the order passes P', since none passes P, so
P' also reaches the target first through g, at a compute (the configs up to and
including g) ≤ P's. P' dominates P in both total and time, so enumerating, for each
good config g, the thresholds equal to g's values at the cut epochs (a handful of
candidates: 1–4 good configs per task) covers the best policy of the family. The
budget cap alone rules out every e1 whose Σ over configs of min(e1, first-NaN epoch)
is ≥ Median's total (with Median at ≤ 7.5 %, e1 ≥ 4 unless many curves diverge that
early), but enumerating all epochs is cheap (about 10 s for the 9 tasks), so the
reported least compute is the family's true minimum even where it exceeds Median's.
"≤ 2 cuts" includes the 1-cut policies.

Reported per task and order: Median's compute and compute to regret ≤ 0.05, the
least-compute policy (1-cut family, and ≤ 2 cuts) that reaches regret ≤ 0.05 no
later than Median (ties on compute broken by earlier time), whether it spends less
than Median, and "feasible on K of N tasks" per family.

What the bound covers: policies whose cut epochs and thresholds are *static* within
one order's run (the same for every config). If none is feasible on a task, no pruner
that cuts at ≤ 2 fixed epochs by a fixed last-value threshold can meet the target
there, however it picks them. It says nothing about pruners whose thresholds move
during the run (MedianPruner itself, LawPruner, anything comparing with the trials
seen so far): with a threshold per config, hindsight could stop every config but one
good config at epoch 1. A feasible task shows only that the static family has room
in hindsight, not that a pruner without the finals can find that policy.
"""

from __future__ import annotations

import math
import os
import sys
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
from benchmarks.search_replay import EPOCHS, RunResult, Variant, _variants, config_order, run_method

NAME = "median_ceiling"
LEVEL = 0.05
RIVAL = "median"
VARIANT = "all"


def _stop(v: Variant) -> np.ndarray:
    """The epoch each config stops at untouched: its first NaN epoch, else ``EPOCHS``."""
    diverged = ~np.isfinite(v.values)
    return np.where(diverged.any(axis=1), diverged.argmax(axis=1) + 1, EPOCHS)


def replay_policy(
    v: Variant, order: np.ndarray, cuts: Sequence[tuple[int, float]], seed: int = 0
) -> RunResult:
    """Replay a last-value cut policy over ``order`` the way ``run_method`` records a run.

    ``cuts`` is ``[(epoch, threshold), …]`` (increasing epochs): a config continues
    past a cut iff its value there is ≤ the threshold; a NaN curve stops at its first
    NaN epoch. After each config that trains to epoch ``EPOCHS``, the trace gets the
    cumulative compute and ``v.regret`` of the best finite final so far.
    """
    res = RunResult("hindsight", v.task, v.name, seed, full=float(v.values.shape[0] * EPOCHS))
    stop = _stop(v)
    best, used = math.inf, 0.0
    for cid in order.tolist():
        end = EPOCHS
        for epoch, threshold in cuts:
            value = v.values[cid, epoch - 1]
            if not (math.isfinite(value) and value <= threshold):
                end = epoch
                break
        end = min(end, int(stop[cid]))
        used += end
        if end == EPOCHS:
            final = float(v.values[cid, -1])
            res.completed.append(cid)
            best = min(best, final) if math.isfinite(final) else best
            res.trace_compute.append(used)
            res.trace_regret.append(v.regret(best))
    res.total = used
    return res


def best_policies(
    v: Variant, order: np.ndarray, rival_to: float | None, max_cuts: int = 2
) -> tuple[dict[int, dict[str, Any] | None], int]:
    """Per family (1 cut; ≤ 2 cuts), the least-compute policy reaching regret ≤ ``LEVEL``
    no later than ``rival_to`` (% of no pruning; ``None``: the rival never does).

    Also returns the number of good configs. A family gets ``None`` where no policy
    reaches it in time (no config is good, or the rival is earlier than any policy).
    Exhaustive over cut epochs; thresholds from the good configs (see the module
    docstring for why that is exact).
    """
    vv = np.where(np.isfinite(v.values), v.values, np.inf)
    n = vv.shape[0]
    full = float(n * EPOCHS)
    stop = _stop(v)
    pos = np.empty(n, dtype=int)
    pos[order] = np.arange(n)
    good = [
        g
        for g in range(n)
        if stop[g] == EPOCHS and v.regret(float(v.values[g, -1])) <= LEVEL + 1e-12
    ]

    def in_time(time: np.ndarray) -> np.ndarray:
        pct = 100.0 * time / full  # the same arithmetic as ``RunResult.compute_to``
        return np.ones(time.shape, bool) if rival_to is None else pct <= rival_to

    # candidates: (total, time, epochs, thresholds, first good config)
    found: dict[int, tuple[float, float, tuple[int, ...], tuple[float, ...], int] | None] = {
        c: None for c in range(1, max_cuts + 1)
    }

    def consider(cuts: int, total: float, time: float, epochs: tuple[int, ...], g: int) -> None:
        thresholds = tuple(float(vv[g, e - 1]) for e in epochs)
        for family in range(cuts, max_cuts + 1):  # "≤ 2 cuts" includes the 1-cut policies
            old = found[family]
            if old is None or (total, time) < (old[0], old[1]):
                found[family] = (total, time, epochs, thresholds, g)

    for g in good:
        before = pos <= pos[g]  # the configs up to and including g in the order
        for e1 in range(1, EPOCHS):
            pass1 = vv[:, e1 - 1] <= vv[g, e1 - 1]
            spent1 = np.minimum(stop, np.where(pass1, EPOCHS, e1))
            total1, time1 = float(spent1.sum()), float(spent1[before].sum())
            if in_time(np.array(time1)):
                consider(1, total1, time1, (e1,), g)
            if max_cuts < 2 or e1 == EPOCHS - 1:
                continue
            later = vv[:, e1 : EPOCHS - 1]  # second cuts e2 = e1+1 .. EPOCHS-1
            e2 = np.arange(e1 + 1, EPOCHS)
            pass2 = pass1[:, None] & (later <= vv[g, e1 : EPOCHS - 1][None, :])
            spent2 = np.minimum(
                stop[:, None], np.where(pass1[:, None], np.where(pass2, EPOCHS, e2[None, :]), e1)
            )
            total2 = spent2.sum(axis=0).astype(float)
            time2 = spent2[before].sum(axis=0).astype(float)
            ok = np.flatnonzero(in_time(time2))
            if ok.size:
                j = ok[np.lexsort((time2[ok], total2[ok]))[0]]
                consider(2, float(total2[j]), float(time2[j]), (e1, int(e2[j])), g)
    out: dict[int, dict[str, Any] | None] = {}
    for family, got in found.items():
        if got is None:
            out[family] = None
            continue
        total, time, epochs, thresholds, g = got
        out[family] = {
            "total_pct": 100.0 * total / full,
            "to_05_pct": 100.0 * time / full,
            "total_epochs": total,
            "epochs": list(epochs),
            "thresholds": list(thresholds),
            "first_good_config": g,
        }
    return out, len(good)


def task_row(v: Variant, seeds: int, max_cuts: int) -> dict[str, Any]:
    """Median and the hindsight families in each order of ``v``; per-order and task verdicts."""
    orders = []
    good = 0
    for seed in range(seeds):
        order = config_order(v, seed)
        rival = run_method(RIVAL, v, order, seed)
        rival_to = rival.compute_to(LEVEL)
        got, good = best_policies(v, order, rival_to, max_cuts)
        row: dict[str, Any] = {
            "seed": seed,
            "median_total_pct": 100.0 * rival.total / rival.full,
            "median_to_05_pct": rival_to,
        }
        for family in range(1, max_cuts + 1):
            p = got[family]
            if p is not None:
                cuts = list(zip(p["epochs"], p["thresholds"], strict=True))
                check = replay_policy(v, order, cuts, seed)
                if check.total != p["total_epochs"] or check.compute_to(LEVEL) != p["to_05_pct"]:
                    raise RuntimeError(f"vectorised search disagrees with the replay: {p}")
                p["met"] = bool(p["total_epochs"] < rival.total)
            row[f"cut{family}"] = p
        orders.append(row)
    no_cut = 100.0 * float(_stop(v).sum()) / (v.values.shape[0] * EPOCHS)
    out: dict[str, Any] = {"task": v.task, "variant": v.name, "good_configs": good}
    out["no_cut_pct"] = no_cut
    out["orders"] = orders
    for family in range(1, max_cuts + 1):
        out[f"feasible_cut{family}"] = all(
            o[f"cut{family}"] is not None and o[f"cut{family}"]["met"] for o in orders
        )
    return out


def summarise(rows: list[dict[str, Any]], max_cuts: int) -> str:
    def many(xs: list[Any], spec: str = ".2f", missing: str = "never") -> str:
        return " / ".join(fmt(x, spec, missing=missing) for x in xs)

    lines = []
    for r in rows:
        o = r["orders"]
        cells: list[Any] = [
            r["task"].removeprefix("FixedTextRNNClassification_imdb_"),
            r["good_configs"],
            many([x["median_total_pct"] for x in o], missing="–"),
            many([x["median_to_05_pct"] for x in o]),
        ]
        for family in range(1, max_cuts + 1):
            ps = [x[f"cut{family}"] for x in o]
            cells += [
                many([p and p["total_pct"] for p in ps], missing="–"),
                many([p and p["to_05_pct"] for p in ps]),
                " / ".join(",".join(map(str, p["epochs"])) if p else "–" for p in ps),
                f"{sum(bool(p and p['met']) for p in ps)}/{len(ps)}"
                + (" feasible" if r[f"feasible_cut{family}"] else ""),
            ]
        lines.append(cells)
    headers = ["task", "good configs", "Median compute %", "Median to ≤0.05 %"]
    for family in range(1, max_cuts + 1):
        name = "1-cut" if family == 1 else f"≤{family}-cut"
        headers += [
            f"{name} compute %",
            f"{name} to ≤0.05 %",
            f"{name} epochs",
            f"{name} orders met",
        ]
    verdicts = []
    for family in range(1, max_cuts + 1):
        name = "1-cut" if family == 1 else f"≤ {family}-cut"
        k = sum(r[f"feasible_cut{family}"] for r in rows)
        verdicts.append(
            f"{name} hindsight policy vs MedianPruner: feasible on {k} of {len(rows)} tasks"
        )
    return (
        f"# Hindsight last-value cut policies vs MedianPruner on TaskSet "
        f"({len(rows)} task(s), variant {VARIANT!r})\n\n"
        "Per order (orders separated by /): Median's compute and compute to regret ≤ 0.05 "
        "(% of no pruning); the least-compute hindsight policy reaching regret ≤ 0.05 no "
        "later than Median (thresholds and cut epochs chosen per order knowing every "
        "final); an order is met when that policy also spends less than Median.\n\n"
        + markdown_table(headers, lines)
        + "\n\n"
        + "\n".join(verdicts)
        + "\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    import optuna

    parser = benchmark_parser(NAME, __doc__)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--tasks", default=None, help="comma-separated task names (default: all)")
    parser.add_argument("--max-cuts", type=int, choices=(1, 2), default=2)
    args = parser.parse_args(argv)
    from lawsearch.recorded.taskset import taskset_tasks

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tasks = args.tasks.split(",") if args.tasks else list(taskset_tasks())
    seeds, max_cuts, n_limit = args.seeds, args.max_cuts, None
    if args.tiny:
        tasks, seeds, n_limit = tasks[:1], 1, 120
    variants = [v for v in _variants(tasks, n_limit) if v.name == VARIANT]
    rows = []
    with timer() as total_t:
        for v in variants:
            rows.append(task_row(v, seeds, max_cuts))
            print(f"{v.task[27:]:<40} done", file=sys.stderr, flush=True)
    payload: dict[str, Any] = {
        "tiny": args.tiny,
        "tasks": tasks,
        "variant": VARIANT,
        "seeds": seeds,
        "max_cuts": max_cuts,
        "configs_limit": n_limit,
        "level": LEVEL,
        "rival": RIVAL,
        "per_task": rows,
        "feasible": {
            f"cut{c}": sum(r[f"feasible_cut{c}"] for r in rows) for c in range(1, max_cuts + 1)
        },
        "seconds": total_t[0],
        "environment": environment(),
    }
    md = summarise(rows, max_cuts)
    print(md)
    out = output_dir(args.out, NAME)
    write_json(out / f"{NAME}.json", payload)
    write_text(out / f"{NAME}.md", md)
    plot(rows, max_cuts, out / f"{NAME}.png")
    return 0


def plot(rows: list[dict[str, Any]], max_cuts: int, path: Path) -> None:
    """Per task and order: MedianPruner's total compute against the least of each family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.5))
    series = [("median_total_pct", "MedianPruner()", "k", "_")]
    series += [(f"cut{c}", f"hindsight, {'1 cut' if c == 1 else '<= 2 cuts'}", f"C{c}", "o")
               for c in range(1, max_cuts + 1)]  # fmt: skip
    for j, (key, label, color, marker) in enumerate(series):
        xs: list[float] = []
        ys: list[float] = []
        for i, row in enumerate(rows):
            for k, o in enumerate(row["orders"]):
                got = o[key] if key == "median_total_pct" else (o[key] or {}).get("total_pct")
                if got is not None:
                    xs.append(i + 0.12 * (k - 1) + 0.04 * j)
                    ys.append(float(got))
        ax.plot(xs, ys, marker, color=color, ms=8 if marker == "_" else 5, ls="", label=label)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([r["task"][32:] for r in rows], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("total compute, % of no pruning")
    ax.set_title(
        "Least compute of a hindsight last-value cut policy reaching regret <= 0.05 "
        "no later than MedianPruner (3 orders per task)",
        fontsize=9,
    )
    ax.legend(fontsize=8)
    save_figure(fig, path)


if __name__ == "__main__":
    raise SystemExit(main())
