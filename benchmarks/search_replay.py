"""Pruning replay benchmark on the TaskSet learning curves (the DPL / ifBO protocol).

For every TaskSet task in ``../shared/data/learning_curves/taskset`` (all 1000
configs, and DPL's ``dpl_excluded`` filter as a second variant), 3 seeds, each
seed a permutation of the config order (the same permutation for every method),
each method replays the configs one after another with ``ReplayTrainer`` through
``study.ask``/``study.tell`` on an in-memory Optuna storage:

* ``none`` — every config to epoch 51;
* ``median`` — ``MedianPruner()``;
* ``percentile`` — ``PercentilePruner(25, n_warmup_steps=5)``;
* ``sh`` — ``SuccessiveHalvingPruner()`` (defaults: first cut at epoch 1);
* ``hyperband`` — ``HyperbandPruner(min_resource=1, max_resource=51)``;
* ``top10@5`` — train all to epoch 5, continue the top 10 % (Egele et al. 2023);
* ``law`` — ``LawPruner()`` with its defaults (``--law-options`` overrides them);
  ``law@C`` (not run by default): ``LawPruner(caution=C)``;
* ``law+sampler`` — ``LawPruner()`` with ``LawSampler`` (inner TPE) choosing the
  next config: its 8 suggested hyperparameters (normalised; log scale where
  DPL uses it) are snapped to the nearest unused recorded config
  (``law+sampler@C``: with ``caution=C``).

``LawPruner``'s defaults were chosen by measuring on these same 9 tasks
(``TUNED_ON``): every per-task row here is in-sample. The 3 TaskSet tasks that
DPL used and the shared data withholds are the held-out set; they are not in
this repository, so this script cannot run them.

Per task (``per_task`` in the JSON, and a table): each method's compute in each
of the 3 orders, the compute at which it reached regret <= 0.05, and its misses;
the target — the default ``LawPruner`` spends less than ``MedianPruner`` and
``PercentilePruner(25)`` and reaches regret <= 0.05 no later, in every order of
every task — is checked run by run (an Optuna miss counts as never).

Reported per method (over tasks × seeds): total compute in % of no pruning,
compute to reach normalized regret ≤ 0.05 and regret 0 (median over runs that
reach it, and the number of runs that never do), final regret, and the
false-prune rate (share of the truly top-5 % configs that were not trained to
the end). Normalized regret = (best final found − best final) / (max − min of
the finals DPL keeps), on completed trials only. Ranking at epoch 5 (10 %
budget): Spearman with the final value and top-10 recall (share of the 10 best
finals among the top 10 % by the predictor), for the last value and for the
law (LawPruner's pooled prediction), over configs with a finite final.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
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
from lawsearch.train._protocol import never_stop

NAME = "search_replay"
METHODS = ("none", "median", "percentile", "sh", "hyperband", "top10@5", "law", "law+sampler")
#: the Optuna pruners the default LawPruner must beat on every task (the TaskSet target)
RIVALS = ("median", "percentile")
EPOCHS = 51
SHORT = 5
LOG_SCALE = (True, False, False, True, True, True, True, True)  # DPL's log_indicator
#: the tasks ``LawPruner``'s defaults were chosen on (all 9 shared ones: the settings then
#: called ``LAW_OPTIONS`` here came from a numpy simulation of the rule over rungs, keep
#: fractions, law weights, tolerances and trend caps on these tasks); nothing held out
TUNED_ON = frozenset(
    "FixedTextRNNClassification_imdb_" + t
    for t in (
        "patch128_LSTM128_avg_bs64",
        "patch128_LSTM128_bs64",
        "patch32_GRU128_bs128",
        "patch32_GRU64_avg_bs128",
        "patch32_LSTM128_E128_bs128",
        "patch32_LSTM128_bs128",
        "patch32_VRNN128_tanh_bs128",
        "patch32_VRNN64_relu_avg_bs128",
        "patch32_VRNN64_tanh_avg_bs128",
    )
)


@dataclass
class RunResult:
    method: str
    task: str
    variant: str
    seed: int
    trace_compute: list[float] = field(default_factory=list)
    trace_regret: list[float] = field(default_factory=list)
    total: float = 0.0
    full: float = 0.0
    completed: list[int] = field(default_factory=list)
    seconds: float = 0.0

    def compute_to(self, level: float) -> float | None:
        for c, r in zip(self.trace_compute, self.trace_regret, strict=True):
            if r <= level + 1e-12:
                return 100.0 * c / self.full
        return None

    @property
    def final_regret(self) -> float:
        return self.trace_regret[-1] if self.trace_regret else 1.0


@dataclass
class Variant:
    task: str
    name: str
    values: np.ndarray  # (n, 51)
    hp: np.ndarray  # (n, 8) normalised to [0, 1]
    best: float
    scale: float

    def regret(self, final: float) -> float:
        return max(0.0, (final - self.best) / self.scale) if math.isfinite(final) else 1.0

    def top(self, frac: float) -> set[int]:
        f = self.values[:, -1]
        ok = np.flatnonzero(np.isfinite(f))
        k = max(1, math.ceil(frac * ok.size))
        return set(ok[np.argsort(f[ok])[:k]].tolist())


def _variants(tasks: Sequence[str], n_limit: int | None) -> list[Variant]:
    from lawsearch.recorded.taskset import load_taskset

    out = []
    for task in tasks:
        data = load_taskset(task)
        kept_final = data.values[~data.dpl_excluded, -1]
        hp = np.where(LOG_SCALE, np.log10(data.hyperparameters), data.hyperparameters)
        hp = (hp - hp.min(0)) / np.ptp(hp, axis=0)
        for name, mask in (("all", np.ones(data.n_configs, bool)), ("dpl", ~data.dpl_excluded)):
            idx = np.flatnonzero(mask)
            if n_limit is not None:
                idx = idx[:n_limit]
            vals = data.values[idx]
            finals = vals[:, -1][np.isfinite(vals[:, -1])]
            best = float(finals.min())
            scale = float(kept_final.max() - best) or 1.0
            out.append(Variant(task, name, vals, hp[idx], best, scale))
    return out


def config_order(v: Variant, seed: int) -> np.ndarray:
    """The reproducible permutation of ``v``'s configs for ``seed`` (the same for every method)."""
    # crc32, not hash(): str hashes change per process (PYTHONHASHSEED)
    return np.random.default_rng([seed, zlib.crc32(v.task.encode())]).permutation(v.values.shape[0])


def _trainer(v: Variant) -> Any:
    from lawsearch.train._replay import ReplayCurve, ReplayTrainer

    steps = np.arange(1, EPOCHS + 1)
    return ReplayTrainer(
        {i: ReplayCurve(steps=steps, values=v.values[i]) for i in range(v.values.shape[0])},
        compute_unit="epochs",
    )


def _pruner(method: str, seed: int, law_options: dict[str, Any] | None = None) -> Any:
    import optuna

    from lawsearch.optuna import LawPruner

    if method == "median":
        return optuna.pruners.MedianPruner()
    if method == "percentile":
        return optuna.pruners.PercentilePruner(25.0, n_warmup_steps=5)
    if method == "sh":
        return optuna.pruners.SuccessiveHalvingPruner()
    if method == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=EPOCHS)
    if method in ("law", "law+sampler") or method.startswith(("law@", "law+sampler@")):
        caution = method.partition("@")[2]
        opts = {**(law_options or {}), **({"caution": float(caution)} if caution else {})}
        return LawPruner(target_step=EPOCHS, seed=seed, **opts)
    return optuna.pruners.NopPruner()


def _known(method: str) -> bool:
    base, at, caution = method.partition("@")
    if method in METHODS or not at:
        return method in METHODS
    try:
        return base in ("law", "law+sampler") and 0.0 <= float(caution) <= 1.0
    except ValueError:
        return False


def run_method(
    method: str,
    v: Variant,
    order: np.ndarray,
    seed: int,
    law_options: dict[str, Any] | None = None,
) -> RunResult:
    """Replay every config of ``v`` once under ``method``; trace regret vs compute."""
    import optuna
    from optuna.trial import TrialState

    trainer = _trainer(v)
    res = RunResult(method, v.task, v.name, seed, full=float(v.values.shape[0] * EPOCHS))
    best = math.inf

    def record(final: float, cid: int) -> None:
        nonlocal best
        res.completed.append(cid)
        best = min(best, final) if math.isfinite(final) else best
        res.trace_compute.append(trainer.compute_used)
        res.trace_regret.append(v.regret(best))

    with timer() as t:
        if method == "top10@5":
            _top_k_at_short(trainer, order, record)
        elif method == "none":  # the reference: no decisions, so no study needed
            for cid in order.tolist():
                out = trainer.train({"config_id": cid}, budget_steps=EPOCHS, report=never_stop)
                record(out.final_value, cid)
        else:
            sampler: Any = optuna.samplers.RandomSampler(seed=seed)
            snap = None
            if method.startswith("law+sampler"):
                from lawsearch.optuna import LawSampler

                sampler = LawSampler(optuna.samplers.TPESampler(seed=seed), seed=seed)
                snap = _Snapper(v.hp)
            study = optuna.create_study(
                direction="minimize", sampler=sampler, pruner=_pruner(method, seed, law_options)
            )
            for i in range(order.size):
                trial = study.ask()
                cid = int(order[i]) if snap is None else snap(trial)

                def report(step: int, value: float, extras: Any, trial: Any = trial) -> bool:
                    trial.report(value, step)
                    return bool(method != "none" and trial.should_prune())

                out = trainer.train({"config_id": cid}, budget_steps=EPOCHS, report=report)
                if out.stopped:
                    study.tell(trial, state=TrialState.PRUNED)
                elif math.isfinite(out.final_value):
                    study.tell(trial, out.final_value)
                    record(out.final_value, cid)
                else:
                    study.tell(trial, state=TrialState.FAIL)
                    record(out.final_value, cid)
    res.total = trainer.compute_used
    res.seconds = t[0]
    return res


def _top_k_at_short(trainer: Any, order: np.ndarray, record: Callable[[float, int], None]) -> None:
    """Egele et al. 2023: all to epoch 5, then the top 10 % (by epoch-5 value) to the end."""
    short: dict[int, tuple[float, str | None]] = {}
    for cid in order.tolist():
        out = trainer.train({"config_id": cid}, budget_steps=SHORT, report=never_stop)
        short[cid] = (
            out.final_value if math.isfinite(out.final_value) else math.inf,
            out.checkpoint,
        )
    k = max(1, math.ceil(0.1 * order.size))
    for cid in sorted(short, key=lambda c: short[c][0])[:k]:
        out = trainer.train(
            {"config_id": cid},
            budget_steps=EPOCHS,
            resume_from=short[cid][1],
            report=never_stop,
        )
        record(out.final_value, cid)


class _Snapper:
    """Map a trial's 8 suggested (normalised) hyperparameters to the nearest unused config."""

    def __init__(self, hp: np.ndarray) -> None:
        self.hp = hp
        self.free = np.ones(hp.shape[0], dtype=bool)

    def __call__(self, trial: Any) -> int:
        x = np.array([trial.suggest_float(f"x{j}", 0.0, 1.0) for j in range(self.hp.shape[1])])
        d = ((self.hp - x) ** 2).sum(axis=1)
        d[~self.free] = np.inf
        cid = int(np.argmin(d))
        self.free[cid] = False
        trial.set_user_attr("config_id", cid)
        return cid


def ranking_at_short(
    v: Variant,
    seed: int,
    with_law: bool = True,
    law_options: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Spearman / top-10 recall at epoch 5 of the last value and of LawPruner's prediction."""
    import optuna
    from scipy.stats import spearmanr

    from lawsearch.optuna import LawPruner, attrs

    skip = ("keep_fraction", "rung_factor", "warmup_steps")
    opts = {k: val for k, val in (law_options or {}).items() if k not in skip}
    pruner = LawPruner(target_step=EPOCHS, keep_fraction=1.0, rung_factor=None, seed=seed, **opts)
    study = optuna.create_study(direction="minimize", pruner=pruner)
    n = v.values.shape[0]
    pred = np.full(n, np.inf)
    order = np.random.default_rng(seed).permutation(n)
    for cid in order.tolist() if with_law else []:
        trial = study.ask()
        for e in range(1, SHORT + 1):
            trial.report(float(v.values[cid, e - 1]), e)
            trial.should_prune()
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        got = study.trials[-1].user_attrs.get(attrs.PREDICTED_FINAL)
        if got is not None and math.isfinite(got):
            pred[cid] = got
    last = np.where(np.isfinite(v.values[:, SHORT - 1]), v.values[:, SHORT - 1], np.inf)
    final = v.values[:, -1]
    ok = np.isfinite(final)
    truth_top = set(np.flatnonzero(ok)[np.argsort(final[ok])[:10]].tolist())
    k = max(10, math.ceil(0.1 * ok.sum()))
    out = {}
    for name, score in (("last", last), ("law", pred)) if with_law else (("last", last),):
        s = np.where(
            np.isfinite(score), score, np.nanmax(np.where(np.isfinite(score), score, np.nan)) + 1
        )
        out[f"spearman_{name}"] = float(spearmanr(s[ok], final[ok])[0])
        chosen = set(np.argsort(s)[:k].tolist())
        out[f"recall_{name}"] = len(truth_top & chosen) / len(truth_top)
    return out


def summarise(
    runs: list[RunResult], v_of: dict[tuple[str, str], Variant], methods: Sequence[str]
) -> list[dict[str, Any]]:
    rows = []
    for variant in ("all", "dpl"):
        for method in methods:
            rs = [r for r in runs if r.method == method and r.variant == variant]
            if not rs:
                continue
            to05 = [r.compute_to(0.05) for r in rs]
            to0 = [r.compute_to(0.0) for r in rs]
            fp = [_false_prune(r, v_of[(r.task, r.variant)]) for r in rs]
            rows.append(
                {
                    "variant": variant,
                    "method": method,
                    "runs": len(rs),
                    "total_pct_median": float(np.median([100 * r.total / r.full for r in rs])),
                    "total_pct_mean": float(np.mean([100 * r.total / r.full for r in rs])),
                    "to_05_pct_median": _median(to05),
                    "misses_05": sum(x is None for x in to05),
                    "to_0_pct_median": _median(to0),
                    "misses_0": sum(x is None for x in to0),
                    "final_regret_max": float(max(r.final_regret for r in rs)),
                    "false_prune_rate": float(np.mean(fp)),
                    "seconds_mean": float(np.mean([r.seconds for r in rs])),
                }
            )
    return rows


def per_task_rows(runs: list[RunResult]) -> list[dict[str, Any]]:
    """Per variant, task and method: compute and compute to regret <= 0.05 in each order.

    For the default ``law`` method, ``vs[rival]`` checks the TaskSet target against
    each of ``RIVALS`` run by run (same order): ``compute_margin_pct`` is the largest
    excess of our total compute over the rival's (< 0: less in every order) and
    ``to_05_margin_pct`` the same for the compute at which regret <= 0.05 is reached
    (<= 0: no later in every order; "inf" when we miss in some order, "-inf" when the
    rival misses in every order). ``target_met``: met against every rival.
    """
    by = {(r.variant, r.task, r.method, r.seed): r for r in runs}
    out = []
    for variant, task, method in dict.fromkeys((r.variant, r.task, r.method) for r in runs):
        rs = sorted((r for r in runs if (r.variant, r.task, r.method) == (variant, task, method)),
                    key=lambda r: r.seed)  # fmt: skip
        to05 = [r.compute_to(0.05) for r in rs]
        row: dict[str, Any] = {
            "variant": variant,
            "task": task,
            "in_sample": task in TUNED_ON,
            "method": method,
            "seeds": [r.seed for r in rs],
            "total_pct": [100 * r.total / r.full for r in rs],
            "total_epochs": [r.total for r in rs],
            "to_05_pct": to05,
            "misses_05": sum(x is None for x in to05),
            "final_regret_max": max(r.final_regret for r in rs),
        }
        if method == "law":
            vs = {}
            for rival in RIVALS:
                found = ((r, by.get((variant, task, rival, r.seed))) for r in rs)
                pairs = [(r, o) for r, o in found if o is not None]
                if pairs:
                    vs[rival] = _margins(pairs)
            if vs:
                row["vs"] = vs
                row["target_met"] = all(m["met"] for m in vs.values())
        out.append(row)
    return out


def _margins(pairs: list[tuple[RunResult, RunResult]]) -> dict[str, Any]:
    gaps_c, gaps_t = [], []
    for ours, theirs in pairs:
        gaps_c.append(100 * (ours.total - theirs.total) / ours.full)
        a, b = ours.compute_to(0.05), theirs.compute_to(0.05)
        gaps_t.append(math.inf if a is None else -math.inf if b is None else a - b)
    c, t = max(gaps_c), max(gaps_t)
    return {
        "compute_margin_pct": c,
        "to_05_margin_pct": t if math.isfinite(t) else ("inf" if t > 0 else "-inf"),
        "met": c < 0 and t <= 0,
    }


def per_task_table(rows: list[dict[str, Any]], variant: str) -> str:
    """Markdown: one line per task and method, the 3 orders' numbers side by side."""

    def many(xs: list[float | None], spec: str) -> str:
        return " / ".join(fmt(x, spec) for x in xs)

    def margin(r: dict[str, Any], rival: str) -> str:
        m = r.get("vs", {}).get(rival)
        if m is None:
            return ""
        t = m["to_05_margin_pct"]
        t = {"inf": "law misses", "-inf": "rival misses"}.get(t, t) if isinstance(t, str) else t
        return f"{fmt(m['compute_margin_pct'], '+.1f')} / {fmt(t, '+.2f')}"

    lines = []
    for r in (r for r in rows if r["variant"] == variant):
        lines.append(
            [
                r["task"].removeprefix("FixedTextRNNClassification_imdb_"),
                "in-sample" if r["in_sample"] else "held out",
                r["method"],
                many(r["total_pct"], ".1f"),
                many(r["to_05_pct"], ".2f"),
                r["misses_05"],
                *(margin(r, rival) for rival in RIVALS),
                ("met" if r["target_met"] else "NOT met") if "target_met" in r else "",
            ]
        )
    headers = [
        "task",
        "settings",
        "method",
        "compute % (3 orders)",
        "to regret≤0.05 % (3 orders)",
        "misses",
        *(f"law − {rival}: compute / to≤0.05 (worst order)" for rival in RIVALS),
        "target",
    ]
    return markdown_table(headers, lines)


def _false_prune(r: RunResult, v: Variant) -> float:
    """Share of the truly top-5 % configs that the run did not train to the end."""
    if r.method == "none":
        return 0.0
    top = v.top(0.05)
    return len(top - set(r.completed)) / len(top)


def _median(xs: list[float | None]) -> float | None:
    got = [x for x in xs if x is not None]
    return float(np.median(got)) if got else None


def plot(runs: list[RunResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    grid = np.logspace(-1, 2, 200)
    for ax, variant in zip(axes, ("all", "dpl"), strict=True):
        for method in dict.fromkeys(r.method for r in runs):
            rs = [r for r in runs if r.method == method and r.variant == variant]
            if not rs:
                continue
            curves = []
            for r in rs:
                c = 100 * np.asarray(r.trace_compute) / r.full
                reg = np.asarray(r.trace_regret)
                idx = np.searchsorted(c, grid, side="right") - 1
                curves.append(np.where(idx >= 0, reg[np.maximum(idx, 0)], 1.0))
            ax.plot(grid, np.median(curves, axis=0), label=method)
        ax.set_xscale("log")
        ax.set_yscale("symlog", linthresh=1e-3)
        ax.axhline(0.05, color="grey", lw=0.5, ls="--")
        ax.set_xlabel("cumulative compute (% of no pruning)")
        ax.set_title(f"TaskSet, {'all configs' if variant == 'all' else 'DPL filter'}")
    axes[0].set_ylabel("normalized regret (median over runs)")
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:  # a variant not run has only the 0.05 line
            ax.legend(fontsize=8)
    save_figure(fig, path)


def main(argv: Sequence[str] | None = None) -> int:
    import optuna

    parser = benchmark_parser(NAME, __doc__)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--tasks", default=None, help="comma-separated task names (default: all)")
    parser.add_argument("--methods", default=None, help=f"comma-separated, of {', '.join(METHODS)}")
    parser.add_argument("--variants", default="all,dpl")
    parser.add_argument(
        "--law-ranking",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also rank every config at epoch 5 with LawPruner's prediction (one fit each)",
    )
    parser.add_argument(
        "--law-options",
        default=None,
        help="JSON object updating the LawPruner options of the law methods",
    )
    args = parser.parse_args(argv)
    law_options: dict[str, Any] = json.loads(args.law_options or "{}")
    from lawsearch.recorded.taskset import taskset_tasks

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tasks = args.tasks.split(",") if args.tasks else list(taskset_tasks())
    methods = args.methods.split(",") if args.methods else list(METHODS)
    unknown = sorted(m for m in methods if not _known(m))
    if unknown:
        parser.error(f"unknown --methods {unknown}; choose from {METHODS} (law@C: caution C)")
    seeds = args.seeds
    n_limit = None
    if args.tiny:
        tasks, seeds, n_limit = tasks[:1], 1, 40
    variants = [v for v in _variants(tasks, n_limit) if v.name in args.variants.split(",")]
    runs: list[RunResult] = []
    ranking: list[dict[str, Any]] = []
    with warnings.catch_warnings():
        # Optuna flags HyperbandPruner + RandomSampler and ask/tell pruning as experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        with timer() as total_t:
            for v in variants:
                for seed in range(seeds):
                    order = config_order(v, seed)
                    for method in methods:
                        r = run_method(method, v, order, seed, law_options)
                        runs.append(r)
                        print(
                            f"{v.task[27:]:<40} {v.name:<4} seed {seed} {method:<12} "
                            f"total {100 * r.total / r.full:6.2f}%  "
                            f"to.05 {fmt(r.compute_to(0.05))}%  "
                            f"final regret {r.final_regret:.4f}  {r.seconds:.1f}s",
                            file=sys.stderr,
                            flush=True,
                        )
                ranking.append(
                    {
                        "task": v.task,
                        "variant": v.name,
                        **ranking_at_short(v, 0, args.law_ranking, law_options),
                    }
                )
    v_of = {(v.task, v.name): v for v in variants}
    rows = summarise(runs, v_of, methods)
    per_task = per_task_rows(runs)
    headers = [
        "variant",
        "method",
        "runs",
        "total % (median)",
        "to regret≤0.05 % (median)",
        "misses ≤0.05",
        "to regret 0 % (median)",
        "misses 0",
        "max final regret",
        "false-prune rate",
    ]
    table = markdown_table(
        headers,
        [
            [
                r["variant"],
                r["method"],
                r["runs"],
                fmt(r["total_pct_median"], ".1f"),
                fmt(r["to_05_pct_median"], ".1f"),
                r["misses_05"],
                fmt(r["to_0_pct_median"], ".1f"),
                r["misses_0"],
                fmt(r["final_regret_max"], ".3f"),
                fmt(r["false_prune_rate"], ".3f"),
            ]
            for r in rows
        ],
    )
    rank_rows = []
    for variant in ("all", "dpl"):
        got = [x for x in ranking if x["variant"] == variant]
        if got:
            rank_rows.append(
                [variant]
                + [
                    fmt(np.mean([x.get(k, np.nan) for x in got]), ".3f")
                    for k in ("spearman_last", "spearman_law", "recall_last", "recall_law")
                ]
            )
    rank_table = markdown_table(
        [
            "variant",
            "Spearman@5 last value",
            "Spearman@5 law",
            "top-10 recall last",
            "top-10 recall law",
        ],
        rank_rows,
    )
    md = (
        f"# Pruning replay on TaskSet ({len(tasks)} tasks × {seeds} seeds)\n\n{table}\n\n"
        f"## Ranking at epoch {SHORT} of {EPOCHS} (mean over tasks)\n\n{rank_table}\n"
    )
    for variant in dict.fromkeys(r["variant"] for r in per_task):
        checked = [r for r in per_task if r["variant"] == variant and "target_met" in r]
        verdict = "".join(
            f"LawPruner() vs {rival} (less compute and regret ≤ 0.05 no later, every order): "
            f"met on {sum(r['vs'][rival]['met'] for r in checked if rival in r['vs'])} of "
            f"{sum(rival in r['vs'] for r in checked)} tasks\n"
            for rival in RIVALS
        )
        if checked:
            verdict += (
                f"target (against both): met on {sum(r['target_met'] for r in checked)} of "
                f"{len(checked)} tasks\n"
            )
        md += (
            f"\n## Per task, variant {variant!r} (compute in % of no pruning; settings "
            f"chosen on these tasks: in-sample)\n\n{per_task_table(per_task, variant)}\n\n"
            + verdict
        )
    print(md)
    out = output_dir(args.out, NAME)
    write_json(
        out / f"{NAME}.json",
        {
            "tiny": args.tiny,
            "tasks": tasks,
            "seeds": seeds,
            "methods": methods,
            "law_options": law_options,
            "summary": rows,
            "per_task": per_task,
            "tuned_on": sorted(TUNED_ON),
            "rivals": list(RIVALS),
            "ranking": ranking,
            "runs": [
                {
                    "method": r.method,
                    "task": r.task,
                    "variant": r.variant,
                    "seed": r.seed,
                    "total_pct": 100 * r.total / r.full,
                    "to_05_pct": r.compute_to(0.05),
                    "to_0_pct": r.compute_to(0.0),
                    "final_regret": r.final_regret,
                    "false_prune": _false_prune(r, v_of[(r.task, r.variant)]),
                    "seconds": r.seconds,
                }
                for r in runs
            ],
            "seconds": total_t[0],
            "environment": environment(),
        },
    )
    write_text(out / f"{NAME}.md", md)
    plot(runs, out / f"{NAME}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
