"""Does the demo search pick what full training would have picked, for less compute?

Runs the demo study's search (``lawsearch run`` on ``studies/demo.toml``, in a
fresh run folder), then trains *every* candidate it screened to the full budget
from scratch with the same trainer, config and seed (the ground truth; exact,
since training is deterministic on CPU). It reports:

* the true rank of the search's pick among all candidates (target: top 2);
* the regret of the pick (its true final loss minus the best one);
* compute of the search vs training every candidate fully (target: <= 35%);
* error of the final losses the law predicted from the short budget (mean
  absolute and relative error, Spearman of predicted vs true);
* the same rank for the baseline "pick the lowest loss at the short budget".

``--tiny`` runs a seconds-long study (two small domains, a 1-layer model) for CI.

Run: ``python -m benchmarks.demo_validation [--tiny] [--out DIR] [--study FILE]``.
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from collections.abc import Sequence
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
    write_json,
    write_text,
)
from lawsearch.train._protocol import never_stop

NAME = "demo_validation"
ROOT = Path(__file__).resolve().parents[1]
TARGET_COMPUTE = 0.35
TARGET_RANK = 2


def tiny_study(root: Path) -> Any:
    """A seconds-long study with the demo's structure (for the CI test)."""
    from lawsearch.config import parse_study

    return parse_study(
        {
            "study": {"name": "demo_tiny", "seed": 0},
            "model": {"hidden_size": 16, "intermediate_size": 32, "num_layers": 1, "num_heads": 2},
            "tokenizer": {"vocab_size": 300},
            "corpus": {"max_bytes_per_domain": 24_000, "cache_dir": str(root / "cache")},
            "domains": {
                "docs": {"builtin": "python_docs"},
                "licenses": {"builtin": "licenses"},
            },
            "search_space": {"schedules": ["cosine"], "peak_lr": [3e-3, 3e-2]},
            "budgets": {"short_tokens": 4 * 32 * 10, "full_tokens": 4 * 32 * 40},
            "law": {"name": "power"},
            "pruner": {"min_trials": 2},
            "search": {"candidates": 4, "survivors": 1},
            "train": {
                "batch_size": 4,
                "seq_len": 32,
                "eval_every": 2,
                "eval_tokens": 256,
                "device": "cpu",
                "dtype": "float32",
                "threads": 1,
            },
        },
        base_dir=ROOT / "studies",
        run_root=root,
    )


def _spearman(x: Sequence[float], y: Sequence[float]) -> float:
    from scipy.stats import spearmanr

    if len(x) < 3:
        return math.nan
    return float(spearmanr(x, y).statistic)


def _true_rank(truth: dict[int, float], number: int) -> int:
    """1 + how many candidates are truly better than ``number``."""
    return 1 + sum(1 for v in truth.values() if v < truth[number])


def ground_truth(
    cfg: Any, trainer: Any, study: Any, lineages: Sequence[Any], *, scratch: bool, log: Any
) -> dict[int, Any]:
    """Each candidate's curve to the full budget: number -> (steps, values, seconds, how).

    With ``scratch`` every candidate is retrained from step 0 (which also checks
    that training is deterministic: survivors must match what the search saw).
    Otherwise a candidate the search already trained to the full budget keeps its
    observed curve, and one whose screening run left a checkpoint resumes from it
    (resume is exact); the others (pruned, or whose checkpoint the search's
    retention removed) start again from scratch.
    """
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    out = {}
    for i, lin in enumerate(lineages):
        last = by_number[lin.trials[-1]]
        config = {"mixture": lin.mixture, "schedule": lin.lr_schedule, "seed": cfg.study.seed}
        t0 = time.perf_counter()
        if not scratch and math.isfinite(lin.observed):
            steps, values, how = lin.steps, lin.values, "observed by the search"
        else:
            attrs = last.user_attrs
            resume = (
                None
                if scratch
                else attrs.get("lawsearch:checkpoint_out", attrs.get("lawsearch:checkpoint"))
            )
            if resume is not None and not Path(resume).is_file():
                # the search keeps only the checkpoints it can still use
                # (`[train] keep_checkpoints = "needed"`, the default): retrain the rest
                resume = None
            done = {s: v for s, v in zip(lin.steps, lin.values, strict=True)}
            if resume is not None:
                start = int(last.user_attrs.get("lawsearch:budget", 0))
                done = {s: v for s, v in done.items() if s <= start}
                how = f"resumed at step {start}"
            else:
                done, how = {}, "from scratch"
            res = trainer.train(
                config, budget_steps=cfg.full_steps, resume_from=resume, report=never_stop
            )
            done.update(zip(res.steps, res.values, strict=True))
            steps, values = tuple(sorted(done)), tuple(done[s] for s in sorted(done))
        dt = time.perf_counter() - t0
        out[lin.number] = (steps, values, dt, how)
        print(
            f"ground truth {i + 1}/{len(lineages)}: trial {lin.number} final {values[-1]:.4f} "
            f"({how}, {dt:.0f} s)",
            file=log,
            flush=True,
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = benchmark_parser(NAME, __doc__)
    parser.add_argument(
        "--study", type=Path, default=ROOT / "studies" / "demo.toml", help="the study to validate"
    )
    parser.add_argument(
        "--scratch",
        action="store_true",
        help="retrain every candidate from step 0 (default with --tiny; otherwise survivors "
        "keep their observed curves and screened candidates resume from their checkpoints)",
    )
    args = parser.parse_args(argv)
    out = output_dir(args.out, NAME)
    work = out / "work"
    if (work / "runs").exists():
        shutil.rmtree(work / "runs")  # a fresh search every time (the corpus cache stays)
    work.mkdir(parents=True, exist_ok=True)

    from lawsearch import report as reporting
    from lawsearch.config import load_study
    from lawsearch.runner import run_study
    from lawsearch.study import build_trainer, open_study_storage

    cfg = tiny_study(work) if args.tiny else load_study(args.study, run_root=work)
    trainer = build_trainer(cfg)
    t0 = time.perf_counter()
    trainer.prepare()
    prepare_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    searched = run_study(cfg, trainer=trainer, progress=not args.tiny)
    search_s = time.perf_counter() - t0
    assert searched.report is not None  # one process: no torchrun follower
    table = reporting.format_table(searched.report)
    import optuna

    study = optuna.load_study(study_name=cfg.name, storage=open_study_storage(cfg, must_exist=True))
    rep = reporting.collect(study, cfg)
    lineages = [lin for lin in rep.lineages if lin.lr_schedule is not None]

    t0 = time.perf_counter()
    truth_runs = ground_truth(
        cfg, trainer, study, lineages, scratch=args.tiny or args.scratch, log=sys.stderr
    )
    truth_s = time.perf_counter() - t0
    truth = {n: float(r[1][-1]) for n, r in truth_runs.items()}

    pick = lineages[0]
    best = min(truth.values())
    short_loss = {
        lin.number: lin.values[max(i for i, s in enumerate(lin.steps) if s <= cfg.short_steps)]
        for lin in lineages
        if lin.steps and lin.steps[0] <= cfg.short_steps
    }
    # the baseline may only compare candidates that reached the short budget
    full_short = {n: v for n, v in short_loss.items() if _reached_short(lineages, n, cfg)}
    baseline_pick = min(full_short, key=full_short.__getitem__) if full_short else pick.number
    predicted = {
        lin.number: lin.short_predicted for lin in lineages if math.isfinite(lin.short_predicted)
    }
    errors = [predicted[n] - truth[n] for n in predicted]
    # the screen's intervals (candidates ranked by their last value carry none)
    covered = [
        lin.short_lo <= truth[lin.number] <= lin.short_hi
        for lin in lineages
        if math.isfinite(lin.short_lo) and math.isfinite(lin.short_hi)
    ]
    observed_match = [
        abs(lin.observed - truth[lin.number]) for lin in lineages if math.isfinite(lin.observed)
    ]
    full_compute = len(lineages) * cfg.full_steps * cfg.train.tokens_per_step
    result: dict[str, Any] = {
        "study": cfg.name,
        "tiny": bool(args.tiny),
        "candidates": len(lineages),
        "short_steps": cfg.short_steps,
        "full_steps": cfg.full_steps,
        "tokens_per_step": cfg.train.tokens_per_step,
        "law": cfg.law.name,
        "pick": pick.number,
        "pick_true_rank": _true_rank(truth, pick.number),
        "pick_regret": truth[pick.number] - best,
        "pick_true_final": truth[pick.number],
        "best_true_final": best,
        "baseline_short_loss_pick": baseline_pick,
        "baseline_true_rank": _true_rank(truth, baseline_pick),
        "search_compute_tokens": rep.compute_tokens,
        "full_compute_tokens": full_compute,
        "compute_fraction": rep.compute_tokens / full_compute,
        "prediction_mae": float(np.mean(np.abs(errors))) if errors else math.nan,
        "prediction_mean_rel_error": float(
            np.mean([abs(predicted[n] - truth[n]) / truth[n] for n in predicted])
        )
        if predicted
        else math.nan,
        "prediction_spearman": _spearman(
            [predicted[n] for n in predicted], [truth[n] for n in predicted]
        ),
        "screen_interval_level": 1.0 - 2.0 * cfg.pruner.search_quantile,
        "screen_intervals": len(covered),
        "screen_interval_coverage": float(np.mean(covered)) if covered else math.nan,
        "short_loss_spearman": _spearman(
            [full_short[n] for n in full_short], [truth[n] for n in full_short]
        ),
        # only measured when survivors were retrained from scratch (a determinism check)
        "search_vs_truth_max_abs_diff": max(observed_match)
        if observed_match and (args.tiny or args.scratch)
        else math.nan,
        "seconds": {"prepare": prepare_s, "search": search_s, "ground_truth": truth_s},
        "trial_states": rep.counts,
        "per_candidate": [
            {
                "trial": lin.number,
                "search_rank": lin.rank,
                "true_rank": _true_rank(truth, lin.number),
                "state": lin.state,
                "reached_step": lin.reached_step,
                "predicted_final": lin.short_predicted,
                "predicted_lo": lin.short_lo,
                "predicted_hi": lin.short_hi,
                "true_final": truth[lin.number],
                "short_loss": short_loss.get(lin.number, math.nan),
                "ground_truth": truth_runs[lin.number][3],
                # the full curve (eval steps, held-out loss) and the LR at every step,
                # so laws and settings can be compared offline on the same candidates
                "curve_steps": list(truth_runs[lin.number][0]),
                "curve_values": list(truth_runs[lin.number][1]),
                "lr_schedule": lin.lr_schedule,
                "mixture": lin.mixture,
                "schedule": lin.schedule,
            }
            for lin in lineages
        ],
        "environment": environment(),
    }
    result["rung_predictions"] = rung_predictions(cfg, trainer, study, truth)
    result["targets"] = [
        {
            "target": f"search compute <= {TARGET_COMPUTE:.0%} of training all fully",
            "value": result["compute_fraction"],
            "met": result["compute_fraction"] <= TARGET_COMPUTE,
        },
        {
            "target": f"pick in the true top {TARGET_RANK}",
            "value": result["pick_true_rank"],
            "met": result["pick_true_rank"] <= TARGET_RANK,
        },
    ]
    md = _markdown(result, table)
    print(md)
    write_json(out / f"{NAME}.json", result)
    write_text(out / f"{NAME}.md", md)
    _figure(result, truth_runs, lineages, cfg, out / f"{NAME}.png")
    return 0


def rung_predictions(
    cfg: Any, trainer: Any, study: Any, truth: dict[int, float]
) -> list[dict[str, Any]]:
    """How well the joint (pooled) refit the promotion rule ranks with predicts, per rung."""
    from lawsearch.study import build_search

    search = build_search(cfg, trainer=trainer)
    nodes, _ = search._nodes(study)
    out = []
    for rung, steps in enumerate(cfg.budget_steps[:-1]):
        at = [n for n in nodes if n.rung == rung]
        scores = search.extrapolator.pooled_scores(study, rung, steps, at)
        root = {n.number: n.root for n in at}
        pairs = [(truth[root[k]], v[0]) for k, v in scores.items() if root[k] in truth]
        out.append(
            {
                "rung": rung,
                "steps": steps,
                "trials": len(at),
                "jointly_scored": len(pairs),
                "mean_rel_error": float(np.mean([abs(p - t) / t for t, p in pairs]))
                if pairs
                else math.nan,
                "spearman": _spearman([p for _, p in pairs], [t for t, _ in pairs]),
            }
        )
    return out


def _reached_short(lineages: Sequence[Any], number: int, cfg: Any) -> bool:
    lin = next(lin for lin in lineages if lin.number == number)
    return lin.reached_step >= cfg.short_steps


def _markdown(r: dict[str, Any], search_table: str) -> str:
    rows = [
        ["true rank of the pick", r["pick_true_rank"], f"<= {TARGET_RANK}"],
        ["regret of the pick (loss)", fmt(r["pick_regret"], ".4f"), ""],
        ["search compute / all-full", f"{100 * r['compute_fraction']:.1f}%", "<= 35%"],
        ["predicted final: MAE", fmt(r["prediction_mae"], ".4f"), ""],
        ["predicted final: mean rel. error", fmt(r["prediction_mean_rel_error"], ".2%"), ""],
        ["Spearman predicted vs true", fmt(r["prediction_spearman"], ".3f"), ""],
        [
            f"screen's {r['screen_interval_level']:.0%} intervals covering the truth",
            f"{fmt(r['screen_interval_coverage'], '.0%')} of {r['screen_intervals']}",
            "",
        ],
        ["Spearman short-budget loss vs true", fmt(r["short_loss_spearman"], ".3f"), "baseline"],
        ["true rank of the short-loss pick", r["baseline_true_rank"], "baseline"],
    ]
    rungs = [
        [
            x["rung"],
            x["steps"],
            x["trials"],
            x["jointly_scored"],
            fmt(x["mean_rel_error"], ".2%"),
            fmt(x["spearman"], ".3f"),
        ]
        for x in r.get("rung_predictions", [])
    ]
    cands = [
        [
            c["trial"],
            c["search_rank"],
            c["true_rank"],
            c["state"],
            fmt(c["predicted_final"], ".4f"),
            fmt(c["true_final"], ".4f"),
            fmt(c["short_loss"], ".4f"),
            c["schedule"],
        ]
        for c in sorted(r["per_candidate"], key=lambda c: c["true_rank"])
    ]
    sec = r["seconds"]
    return (
        f"# Demo validation ({r['study']}{', tiny' if r['tiny'] else ''})\n\n"
        f"{r['candidates']} candidates, short budget {r['short_steps']} steps, full "
        f"{r['full_steps']} steps, law `{r['law']}`; search {sec['search']:.0f} s, ground "
        f"truth {sec['ground_truth']:.0f} s.\n\n"
        + markdown_table(["measure", "value", "target"], rows)
        + "\n\n## Joint refits the promotion rule ranked with\n\n"
        + markdown_table(
            ["rung", "steps", "trials", "jointly scored", "mean rel. error", "Spearman"], rungs
        )
        + "\n\n## Candidates (by true rank)\n\n"
        + markdown_table(
            [
                "trial",
                "search rank",
                "true rank",
                "state",
                "predicted",
                "true final",
                "short loss",
                "schedule",
            ],
            cands,
        )
        + "\n\n## Targets\n\n"
        + "\n".join(
            f"- {t['target']}: {fmt(t['value'], '.3g')} — {'met' if t['met'] else 'NOT met'}"
            for t in r["targets"]
        )
        + "\n\n## The search's own table\n\n"
        + search_table
    )


def _figure(
    r: dict[str, Any], truth_runs: dict[int, Any], lineages: Sequence[Any], cfg: Any, path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    for i, lin in enumerate(lineages):
        steps, values, _, _ = truth_runs[lin.number]
        color = plt.get_cmap("tab10")(i % 10)
        lw = 2.2 if lin.number == r["pick"] else 1.0
        ax1.plot(steps, values, color=color, lw=lw, label=f"trial {lin.number}")
        ax1.plot(lin.steps, lin.values, "o", ms=2, color=color)
    ax1.axvline(cfg.short_steps, color="0.3", ls=":", lw=1)
    ax1.set_xlabel("optimizer step")
    ax1.set_ylabel("held-out loss")
    ax1.set_title("ground truth (lines) and what the search trained (dots)")
    ax1.legend(fontsize=7, ncol=2)
    cands = [
        c
        for c in r["per_candidate"]
        if c["predicted_final"] is not None and math.isfinite(c["predicted_final"])
    ]
    if cands:
        x = np.array([c["predicted_final"] for c in cands])
        y = np.array([c["true_final"] for c in cands])
        lo = np.array([c["predicted_lo"] for c in cands])
        hi = np.array([c["predicted_hi"] for c in cands])
        err = np.where(np.isfinite([lo, hi]), np.abs(np.stack([x - lo, hi - x])), 0.0)
        ax2.errorbar(x, y, xerr=err, fmt="o", capsize=2)
        for c in cands:
            ax2.annotate(
                str(c["trial"]),
                (c["predicted_final"], c["true_final"]),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
        span = [float(min(x.min(), y.min())), float(max(x.max(), y.max()))]
        ax2.plot(span, span, "k--", lw=1)
    ax2.set_xlabel("final loss predicted from the short budget")
    ax2.set_ylabel("true final loss")
    ax2.set_title(
        f"pick: true rank {r['pick_true_rank']}, compute {100 * r['compute_fraction']:.0f}%"
    )
    save_figure(fig, path)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
