"""How well anything can rank TaskSet configs at epoch 5 of 51; what a 5 % false-prune cap costs.

Evidence for two targets of the Optuna-integration issue: "ranking at 10 % budget
(epoch 5): Spearman ≥ 0.90 and top-10 recall ≥ 0.98", and "false-prune rate ≤ 5 %"
(a false prune is a truly top-5 % config not trained to the end) together with
"total compute ≤ 10 % of no pruning". On every TaskSet task in
``../shared/data/learning_curves/taskset``, for all 1000 configs and for DPL's
``dpl_excluded`` filter (``search_replay``'s two variants), three sections:

1. **Noise ceiling** — Spearman with the final value and top-10 recall (share of
   the 10 best finals among the top 10 % by the predictor) of the *last value* at
   epochs 5, 10, 20, 40 and 50. The curves cross until the end, so even epoch 50
   does not rank epoch 51 perfectly; this is how much ranking signal the
   validation curve carries at each budget.
2. **Learned from finished configs** — a corrector trained on a random 10 % or
   30 % of the configs run to the end (3 seeds), scored on the rest against the
   last value on the same held-out configs: k-nearest neighbours (k = 10) on the
   5-point prefix and its 4 differences, in loss units, predicting the final −
   last-value residual (inverse-distance-weighted mean, or the median, which a
   neighbour diverging after epoch 5 cannot drag by nats) or the final's rank
   (weighted mean). Standardising the
   features was worse (the differences are ~100× smaller than the levels, so
   standardising amplifies their noise), and k and the features were chosen on
   these same tasks: an in-sample choice that can only flatter the corrector.
   ``--law-ranking`` adds LawPruner's pooled prediction (``search_replay``'s number;
   one fit per config, slow).
3. **Cost of false-prune ≤ 5 %** — a hindsight lower bound on the compute of any
   policy that cuts by a last-value threshold at 1 or 2 epochs: epochs *and*
   thresholds are chosen knowing every final, exhaustively over the cut epochs,
   and the ≤ 5 % of the top-5 % configs to give up are chosen exactly (for fixed
   cut epochs the cost only grows with each threshold, so the lowest feasible
   threshold at the second cut, for each of the few candidate thresholds at the
   first, is the optimum). A diverged curve (NaN) stops at its first NaN epoch.
   Compute is in % of every config to epoch 51, as in ``search_replay``. A real
   pruner does not know the finals, so no pruner of this kind can do better.

The metrics are ``search_replay``'s (``ranking_at_short``, ``_false_prune``, the
top-5 % of ``Variant.top``), imported, not copied.
"""

from __future__ import annotations

import argparse
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
from benchmarks.search_replay import (
    EPOCHS,
    SHORT,
    RunResult,
    Variant,
    _false_prune,
    _variants,
    config_order,
    ranking_at_short,
)

NAME = "ranking_ceiling"
LAST_EPOCHS = (5, 10, 20, 40, 50)
FRACTIONS = (0.1, 0.3)
CORRECTORS = ("knn residual", "knn residual median", "knn rank")
NEIGHBOURS = 10
#: diverged or exploded losses enter the corrector's features and targets as this
#: (ln 2 ≈ 0.69 is the chance level of these binary tasks)
LOSS_CAP = 5.0
TOP_FRACTION = 0.05
MAX_FALSE_PRUNE = 0.05
TARGET_SPEARMAN = 0.90
TARGET_RECALL = 0.98
TARGET_COMPUTE_PCT = 10.0


def rank_metrics(score: np.ndarray, final: np.ndarray) -> tuple[float, float]:
    """Spearman and top-10 recall of ``score`` (lower = better) against ``final``.

    ``ranking_at_short`` reads the predictor at epoch ``SHORT`` and the truth at the
    last epoch, so a stand-in curve with only those two columns measures any score
    with exactly the metric the search replay reports.
    """
    values = np.full((score.size, EPOCHS), np.nan)
    values[:, SHORT - 1] = score
    values[:, -1] = final
    stand_in = Variant("", "", values, np.zeros((score.size, 0)), 0.0, 1.0)
    got = ranking_at_short(stand_in, 0, with_law=False)
    return got["spearman_last"], got["recall_last"]


# ---------------------------------------------------------------- 1. noise ceiling
def noise_ceiling(v: Variant) -> list[dict[str, Any]]:
    """The last value at each of ``LAST_EPOCHS`` as the predictor of the final."""
    out = []
    for epoch in LAST_EPOCHS:
        rho, recall = rank_metrics(v.values[:, epoch - 1], v.values[:, -1])
        out.append({"epoch": epoch, "spearman": rho, "recall": recall})
    return out


# ------------------------------------------------------ 2. learned from finished configs
def _prefix_features(values: np.ndarray) -> np.ndarray:
    p = values[:, :SHORT]
    p = np.minimum(np.where(np.isfinite(p), p, LOSS_CAP), LOSS_CAP)
    return np.hstack([p, np.diff(p, axis=1)])


def _knn(
    x_train: np.ndarray, y_train: np.ndarray, x: np.ndarray, k: int, *, median: bool = False
) -> np.ndarray:
    """Inverse-distance-weighted mean (or plain median) of the ``k`` nearest training targets."""
    d = np.sqrt(((x[:, None, :] - x_train[None, :, :]) ** 2).sum(axis=-1))
    k = min(k, x_train.shape[0])
    nn = np.argpartition(d, k - 1, axis=1)[:, :k]
    if median:
        return np.median(y_train[nn], axis=1)
    w = 1.0 / (np.take_along_axis(d, nn, axis=1) + 1e-9)
    return (w * y_train[nn]).sum(axis=1) / w.sum(axis=1)


def corrector_score(values: np.ndarray, train: np.ndarray, method: str) -> np.ndarray:
    """Predicted ordering score (lower = better) of the configs not in ``train``."""
    from scipy.stats import rankdata

    x = _prefix_features(values)
    final = values[:, -1]
    y = np.minimum(np.where(np.isfinite(final), final, LOSS_CAP), LOSS_CAP)
    last = x[:, SHORT - 1]
    test = ~train
    if method in ("knn residual", "knn residual median"):
        residual = (y - last)[train]
        median = method == "knn residual median"
        return last[test] + _knn(x[train], residual, x[test], NEIGHBOURS, median=median)
    if method == "knn rank":
        rank = (rankdata(y[train]) - 0.5) / train.sum()
        return _knn(x[train], rank, x[test], NEIGHBOURS)
    raise ValueError(f"`method` must be one of {CORRECTORS}; got {method!r}.")


def learned(v: Variant, fraction: float, seed: int) -> list[dict[str, Any]]:
    """Each corrector and the last value, on one random split of ``v``."""
    n = v.values.shape[0]
    perm = config_order(v, seed)
    train = np.zeros(n, dtype=bool)
    train[perm[: max(1, round(fraction * n))]] = True
    final = v.values[~train, -1]
    scores = {"last value": v.values[~train, SHORT - 1]}
    scores.update({m: corrector_score(v.values, train, m) for m in CORRECTORS})
    out = []
    for method, score in scores.items():
        rho, recall = rank_metrics(score, final)
        out.append({"method": method, "spearman": rho, "recall": recall})
    return out


# ------------------------------------------------------- 3. cost of false-prune ≤ 5 %
def hindsight_bound(v: Variant, max_cuts: int = 2) -> dict[str, Any]:
    """Least compute of a ≤ ``max_cuts``-cut last-value cut policy keeping 95 % of the top 5 %.

    Returns the best 1-cut and (if ``max_cuts`` is 2) 2-cut policies: compute in % of
    every config to epoch ``EPOCHS``, cut epochs, and the false-prune rate of the
    policy as ``search_replay._false_prune`` counts it.
    """
    vv = np.where(np.isfinite(v.values), v.values, np.inf)
    n = vv.shape[0]
    diverged = ~np.isfinite(v.values)
    stop = np.where(diverged.any(axis=1), diverged.argmax(axis=1) + 1, EPOCHS)
    top = np.array(sorted(v.top(TOP_FRACTION)))
    give_up = math.floor(MAX_FALSE_PRUNE * top.size + 1e-9)
    full = float(n * EPOCHS)
    best: dict[int, tuple[float, tuple[int, ...], np.ndarray]] = {
        0: (float(stop.sum()), (), np.ones(n, dtype=bool))
    }

    def consider(cuts: int, cost: float, epochs: tuple[int, ...], kept: np.ndarray) -> None:
        if cuts not in best or cost < best[cuts][0]:
            best[cuts] = (cost, epochs, kept)

    for e1 in range(1, EPOCHS):
        at1 = vv[top, e1 - 1]
        for t1 in np.unique(np.sort(at1)[::-1][: give_up + 1]):
            keep1 = at1 <= t1
            left = give_up - int((~keep1).sum())
            if left < 0:
                continue
            pass1 = vv[:, e1 - 1] <= t1
            spent1 = np.where(pass1, EPOCHS, e1)
            consider(1, float(np.minimum(stop, spent1).sum()), (e1,), pass1)
            if max_cuts < 2 or e1 == EPOCHS - 1:
                continue
            later = vv[:, e1 : EPOCHS - 1]  # candidate second cuts e2 = e1+1 .. EPOCHS-1
            t2 = np.sort(later[top[keep1]], axis=0)[::-1][left]
            pass2 = pass1[:, None] & (later <= t2[None, :])
            e2 = np.arange(e1 + 1, EPOCHS)
            spent2 = np.where(pass1[:, None], np.where(pass2, EPOCHS, e2[None, :]), e1)
            cost2 = np.minimum(stop[:, None], spent2).sum(axis=0)
            j = int(np.argmin(cost2))
            consider(2, float(cost2[j]), (e1, int(e2[j])), pass2[:, j])
    out: dict[str, Any] = {"configs": n, "top": int(top.size), "give_up": give_up}
    for cuts in range(1, max_cuts + 1):
        if cuts not in best or best[cuts - 1][0] <= best[cuts][0]:
            best[cuts] = best[cuts - 1]  # "at most `cuts` cuts": fewer may do better
        cost, epochs, kept = best[cuts]
        run = RunResult("hindsight", v.task, v.name, 0, completed=np.flatnonzero(kept).tolist())
        out[f"cut{cuts}"] = {
            "compute_pct": 100.0 * cost / full,
            "epochs": list(epochs),
            "false_prune_rate": _false_prune(run, v),
        }
    out["no_cut_pct"] = 100.0 * best[0][0] / full
    return out


# ------------------------------------------------------------------------- report
def _learned(
    payload: dict[str, Any], variant: str, fraction: float, method: str
) -> list[dict[str, Any]]:
    """The "learned from finished configs" rows of one variant, fraction and method."""
    return [
        r
        for r in payload["learned"]
        if r["variant"] == variant and r["fraction"] == fraction and r["method"] == method
    ]


def _mean(rows: list[dict[str, Any]], key: str) -> float:
    return float(np.mean([r[key] for r in rows]))


def summarise(payload: dict[str, Any], variants: Sequence[str], max_cuts: int) -> str:
    ceiling = payload["noise_ceiling"]
    rows = []
    for epoch in LAST_EPOCHS:
        row: list[Any] = [epoch, fmt(100 * epoch / EPOCHS, ".0f")]
        for key in ("spearman", "recall"):
            for variant in variants:
                got = [r for r in ceiling if r["variant"] == variant and r["epoch"] == epoch]
                row.append(fmt(_mean(got, key), ".3f"))
        rows.append(row)
    headers = ["last value at epoch", "% of budget"]
    headers += [f"Spearman {v}" for v in variants] + [f"top-10 recall {v}" for v in variants]
    md = [
        f"# Ranking ceiling on TaskSet ({len(payload['tasks'])} task(s), epoch 5 of {EPOCHS})",
        f"Targets: Spearman ≥ {TARGET_SPEARMAN}, top-10 recall ≥ {TARGET_RECALL} at epoch "
        f"{SHORT}; false-prune ≤ {MAX_FALSE_PRUNE:.0%} with compute ≤ {TARGET_COMPUTE_PCT:.0f}%.",
        "## 1. Noise ceiling: the last value as the predictor (mean over tasks)",
        markdown_table(headers, rows),
    ]
    rows = []
    for variant in variants:
        for fraction in FRACTIONS:
            for method in ("last value", *CORRECTORS):
                got = _learned(payload, variant, fraction, method)
                if got:
                    rows.append(
                        [
                            variant,
                            f"{fraction:.0%}",
                            method,
                            fmt(_mean(got, "spearman"), ".3f"),
                            fmt(_mean(got, "recall"), ".3f"),
                        ]
                    )
    law = payload.get("law_ranking") or []
    for variant in variants:
        got = [r for r in law if r["variant"] == variant]
        if got:
            rows.append(
                [
                    variant,
                    "0%",
                    "LawPruner pooled prediction",
                    fmt(_mean(got, "spearman_law"), ".3f"),
                    fmt(_mean(got, "recall_law"), ".3f"),
                ]
            )
    md += [
        f"## 2. Learned from finished configs (scored on the rest; mean over tasks × "
        f"{payload['seeds']} seeds)",
        markdown_table(
            ["variant", "trained to the end", "predictor", "Spearman@5", "top-10 recall@5"], rows
        ),
    ]
    per_task, summary = [], []
    for variant in variants:
        got = [r for r in payload["false_prune_bound"] if r["variant"] == variant]
        for r in got:
            cells = [r["task"][27:], variant, r["top"], r["give_up"]]
            for cuts in range(1, max_cuts + 1):
                c = r[f"cut{cuts}"]
                cells.append(
                    f"{fmt(c['compute_pct'], '.1f')} @ {','.join(map(str, c['epochs'])) or '–'}"
                )
            cells.append(fmt(r[f"cut{max_cuts}"]["false_prune_rate"], ".3f"))
            per_task.append(cells)
        best = [r[f"cut{max_cuts}"]["compute_pct"] for r in got]
        summary.append(
            [
                variant,
                len(best),
                fmt(float(np.median(best)), ".1f"),
                fmt(max(best), ".1f"),
                fmt(min(best), ".1f"),
                sum(b <= TARGET_COMPUTE_PCT for b in best),
            ]
        )
    md += [
        f"## 3. Cost of false-prune ≤ {MAX_FALSE_PRUNE:.0%}: hindsight lower bound, "
        f"≤ {max_cuts} last-value cut(s), % of no-pruning compute",
        markdown_table(
            [
                "variant",
                "tasks",
                "median %",
                "worst %",
                "best %",
                f"tasks ≤ {TARGET_COMPUTE_PCT:.0f}%",
            ],
            summary,
        ),
        markdown_table(
            ["task", "variant", "top-5% configs", "may give up"]
            + [f"{c}-cut % @ epochs" for c in range(1, max_cuts + 1)]
            + ["false-prune rate"],
            per_task,
        ),
    ]
    return "\n\n".join(md) + "\n"


def plot(payload: dict[str, Any], variants: Sequence[str], max_cuts: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, variant in enumerate(variants):
        color = f"C{i}"
        ceiling = [r for r in payload["noise_ceiling"] if r["variant"] == variant]
        ys = [_mean([r for r in ceiling if r["epoch"] == e], "spearman") for e in LAST_EPOCHS]
        ax.plot(LAST_EPOCHS, ys, "-", color=color, label=f"last value ({variant})")
        for j, fraction in enumerate(FRACTIONS):
            for k, method in enumerate(CORRECTORS):
                got = _learned(payload, variant, fraction, method)
                if got:
                    ax.plot(
                        SHORT + 0.4 * (1 + j + 2 * k),
                        _mean(got, "spearman"),
                        "os^"[k],
                        color=color,
                        mfc=color if j else "none",
                        label=f"{method}, {fraction:.0%} finished ({variant})",
                    )
        bound = [r for r in payload["false_prune_bound"] if r["variant"] == variant]
        bx.plot(
            np.arange(len(bound)) + 0.15 * i,
            [r[f"cut{max_cuts}"]["compute_pct"] for r in bound],
            "o",
            color=color,
            label=variant,
        )
    ax.axhline(TARGET_SPEARMAN, color="grey", lw=0.8, ls="--")
    ax.set_xlabel(f"epoch of the ranking (of {EPOCHS})")
    ax.set_ylabel("Spearman with the final value (mean over tasks)")
    ax.set_title("Last value by epoch; markers: correctors at epoch 5 (filled: 30 %)")
    ax.legend(fontsize=7)
    bx.axhline(TARGET_COMPUTE_PCT, color="grey", lw=0.8, ls="--")
    bx.set_yscale("log")
    bx.set_xlabel("task")
    bx.set_ylabel("compute, % of no pruning")
    bx.set_title(f"Hindsight least compute for false-prune ≤ {MAX_FALSE_PRUNE:.0%}")
    bx.legend(fontsize=8)
    save_figure(fig, path)


def main(argv: Sequence[str] | None = None) -> int:
    import optuna

    parser = benchmark_parser(NAME, __doc__)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--tasks", default=None, help="comma-separated task names (default: all)")
    parser.add_argument("--variants", default="all,dpl")
    parser.add_argument("--max-cuts", type=int, choices=(1, 2), default=2)
    parser.add_argument(
        "--law-ranking",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="also rank with LawPruner's pooled prediction at epoch 5 (one fit per config)",
    )
    args = parser.parse_args(argv)
    from lawsearch.recorded.taskset import taskset_tasks

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # ranking_at_short makes studies
    tasks = args.tasks.split(",") if args.tasks else list(taskset_tasks())
    seeds, max_cuts, n_limit = args.seeds, args.max_cuts, None
    if args.tiny:
        tasks, seeds, max_cuts, n_limit = tasks[:1], 1, 1, 120
    names = args.variants.split(",")
    variants = [v for v in _variants(tasks, n_limit) if v.name in names]
    ceiling: list[dict[str, Any]] = []
    learned_rows: list[dict[str, Any]] = []
    bounds: list[dict[str, Any]] = []
    law: list[dict[str, Any]] = []
    with timer() as total_t:
        for v in variants:
            key = {"task": v.task, "variant": v.name}
            ceiling += [{**key, **r} for r in noise_ceiling(v)]
            for fraction in FRACTIONS:
                for seed in range(seeds):
                    learned_rows += [
                        {**key, "fraction": fraction, "seed": seed, **r}
                        for r in learned(v, fraction, seed)
                    ]
            bounds.append({**key, **hindsight_bound(v, max_cuts)})
            if args.law_ranking:
                law.append({**key, **ranking_at_short(v, 0, with_law=True)})
            print(f"{v.task[27:]:<40} {v.name:<4} done", file=sys.stderr, flush=True)
    payload: dict[str, Any] = {
        "tiny": args.tiny,
        "tasks": tasks,
        "variants": names,
        "seeds": seeds,
        "max_cuts": max_cuts,
        "configs_limit": n_limit,
        "neighbours": NEIGHBOURS,
        "targets": {
            "spearman": TARGET_SPEARMAN,
            "recall": TARGET_RECALL,
            "false_prune_rate": MAX_FALSE_PRUNE,
            "compute_pct": TARGET_COMPUTE_PCT,
        },
        "noise_ceiling": ceiling,
        "learned": learned_rows,
        "law_ranking": law,
        "false_prune_bound": bounds,
        "seconds": total_t[0],
        "environment": environment(),
    }
    md = summarise(payload, names, max_cuts)
    print(md)
    out = output_dir(args.out, NAME)
    write_json(out / f"{NAME}.json", payload)
    write_text(out / f"{NAME}.md", md)
    plot(payload, names, max_cuts, out / f"{NAME}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
