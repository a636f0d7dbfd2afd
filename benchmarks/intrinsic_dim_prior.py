"""Does an intrinsic-dimension prior on the exponent help short-prefix fits?

Two measurements, each side by side (same curves, same prefixes, with and
without the prior ``alpha ~ N(2/(2+d), (2/(2+d))^2)`` of
``lawsearch.intrinsic_dim.exponent_prior``):

1. *Synthetic, d known.* For each dimension d, data are drawn from a
   d-dimensional Gaussian embedded in 64-D and d is estimated with
   ``levina_bickel`` (the prior uses the estimate, not the truth). Loss curves
   ``L = E + A (t + t0)^-alpha`` get the exponent the theory predicts for d,
   perturbed by a log-normal factor (sd 0.25) because the theory fixes only
   the order of magnitude, plus 0.3 % log-noise. ``PowerLaw`` (steps) is fitted
   on the first 10 % / 20 % of the points; the error is that of the final loss.
2. *Recorded lr_schedules curves* with ``PowerLaw(time="intrinsic")``. No
   embeddings of their training data are available, so d is *assumed*
   (a sweep); this shows how much the prior moves real fits, not a validation.

Run: ``python -m benchmarks.intrinsic_dim_prior [--tiny] [--out DIR]``.
"""

from __future__ import annotations

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
from lawsearch.intrinsic_dim import exponent_prior, levina_bickel
from lawsearch.laws import PowerLaw

NAME = "intrinsic_dim_prior"
AMBIENT = 64
EXPONENT_SCATTER = 0.25  # log-sd of the true exponent around the theory's 2/(2+d)
NOISE = 3e-3


def embedded_gaussian(d: int, n: int, rng: np.random.Generator) -> np.ndarray:
    basis = np.linalg.qr(rng.normal(size=(AMBIENT, d)))[0]
    return rng.normal(size=(n, d)) @ basis.T


def synthetic_curve(alpha: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    """Steps, noisy losses and the clean final loss of one power-law curve."""
    steps = np.arange(50.0, 20_000.0 + 1.0, 50.0)
    e, t0 = 2.0, 200.0
    a = 3.0 * t0**alpha  # excess loss 3 nats at t = 0
    clean = e + a * (steps + t0) ** -alpha
    losses = clean * np.exp(rng.normal(0.0, NOISE, steps.size))
    return steps, losses, float(clean[-1])


def final_error(result: Any, target_step: float, true_final: float, **kw: Any) -> float:
    if not result.ok:
        return float("nan")
    return float(abs(result.predict([target_step], **kw)[0] / true_final - 1.0))


def run_synthetic(
    dims: Sequence[int], seeds: int, prefixes: Sequence[float]
) -> list[dict[str, Any]]:
    rows = []
    law = PowerLaw()
    for d in dims:
        for seed in range(seeds):
            rng = np.random.default_rng(1000 * d + seed)
            d_hat = levina_bickel(embedded_gaussian(d, 1000, rng))
            alpha = exponent_prior(d)[0] * float(np.exp(rng.normal(0.0, EXPONENT_SCATTER)))
            steps, losses, true_final = synthetic_curve(alpha, rng)
            prior = {"alpha": exponent_prior(d_hat)}
            for frac in prefixes:
                n = max(round(frac * steps.size), law.min_points())
                plain = law.fit(steps[:n], losses[:n])
                with_prior = law.fit(steps[:n], losses[:n], prior=prior)
                rows.append(
                    {
                        "d": d,
                        "d_hat": d_hat,
                        "seed": seed,
                        "alpha_true": alpha,
                        "prior_mean": prior["alpha"][0],
                        "prefix": frac,
                        "error_plain": final_error(plain, steps[-1], true_final),
                        "error_prior": final_error(with_prior, steps[-1], true_final),
                        "alpha_plain": plain.params["alpha"],
                        "alpha_prior": with_prior.params["alpha"],
                    }
                )
    return rows


def run_recorded(
    assumed_dims: Sequence[int], prefixes: Sequence[float], max_runs: int | None
) -> tuple[list[dict[str, Any]], str]:
    try:
        from lawsearch.recorded import SharedDataMissing
        from lawsearch.recorded.lr_schedules import load_lr_schedule_runs

        runs = load_lr_schedule_runs()
    except (SharedDataMissing, FileNotFoundError) as exc:
        return [], f"skipped: {exc}"
    if max_runs is not None:
        runs = tuple(r for r in runs if r.schedule == "cosine")[:max_runs]
    law = PowerLaw(time="intrinsic")
    rows = []
    for run in runs:
        true_final = float(run.losses[-1])
        for frac in prefixes:
            n = max(round(frac * run.steps.size), law.min_points())
            plain = law.fit(run.steps[:n], run.losses[:n], lrs=run.lr_per_step)
            row: dict[str, Any] = {
                "run_id": run.run_id,
                "prefix": frac,
                "error_plain": final_error(plain, run.steps[-1], true_final),
                "alpha_plain": plain.params["alpha"],
            }
            for d in assumed_dims:
                fit = law.fit(
                    run.steps[:n],
                    run.losses[:n],
                    prior={"alpha": exponent_prior(d)},
                    lrs=run.lr_per_step,
                )
                row[f"error_prior_d{d}"] = final_error(fit, run.steps[-1], true_final)
                row[f"alpha_prior_d{d}"] = fit.params["alpha"]
            rows.append(row)
    return rows, "ok"


def _stats(values: Sequence[float]) -> tuple[float, float, int]:
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    if v.size == 0:
        return float("nan"), float("nan"), 0
    return float(v.mean()), float(v.max()), int(v.size)


def summarise(
    synthetic: list[dict[str, Any]], recorded: list[dict[str, Any]], assumed_dims: Sequence[int]
) -> list[dict[str, Any]]:
    out = []
    for frac in sorted({r["prefix"] for r in synthetic}):
        sel = [r for r in synthetic if r["prefix"] == frac]
        for label, key in (("no prior", "error_plain"), ("prior from d_hat", "error_prior")):
            mean, worst, n = _stats([r[key] for r in sel])
            wins = sum(r["error_prior"] < r["error_plain"] for r in sel)
            out.append(
                {
                    "data": "synthetic (d known)",
                    "prefix": frac,
                    "fit": label,
                    "mean_error": mean,
                    "worst_error": worst,
                    "n": n,
                    "prior_wins": wins if key == "error_prior" else None,
                }
            )
    for frac in sorted({r["prefix"] for r in recorded}):
        sel = [r for r in recorded if r["prefix"] == frac]
        cols = [("no prior", "error_plain")] + [
            (f"prior, assumed d={d}", f"error_prior_d{d}") for d in assumed_dims
        ]
        for label, key in cols:
            mean, worst, n = _stats([r[key] for r in sel])
            wins = sum(r[key] < r["error_plain"] for r in sel) if key != "error_plain" else None
            out.append(
                {
                    "data": "lr_schedules (intrinsic time)",
                    "prefix": frac,
                    "fit": label,
                    "mean_error": mean,
                    "worst_error": worst,
                    "n": n,
                    "prior_wins": wins,
                }
            )
    return out


def verdict(summary: list[dict[str, Any]]) -> list[str]:
    lines = []
    for data in dict.fromkeys(r["data"] for r in summary):
        for frac in sorted({r["prefix"] for r in summary if r["data"] == data}):
            sel = [r for r in summary if r["data"] == data and r["prefix"] == frac]
            base = next(r for r in sel if r["fit"] == "no prior")
            for r in sel:
                if r is base or not np.isfinite(r["mean_error"]):
                    continue
                ratio = base["mean_error"] / r["mean_error"] if r["mean_error"] > 0 else np.inf
                word = "helps" if ratio > 1.05 else "hurts" if ratio < 0.95 else "no change"
                lines.append(
                    f"{data}, {frac:.0%} prefix, {r['fit']}: mean error {base['mean_error']:.2%} → "
                    f"{r['mean_error']:.2%} ({ratio:.2f}× better; {word}; prior better on "
                    f"{r['prior_wins']}/{r['n']} curves)"
                )
    return lines


def _exponent_note(recorded: list[dict[str, Any]], assumed: Sequence[int]) -> list[str]:
    """How far the prior means are from the exponents the recorded curves show."""
    if not recorded:
        return []
    fitted = float(np.nanmedian([r["alpha_plain"] for r in recorded]))
    prior_means = [exponent_prior(d)[0] for d in assumed]
    means = ", ".join(f"d={d}: {m:.3f}" for d, m in zip(assumed, prior_means, strict=True))
    lines = [
        "",
        f"Median exponent fitted without the prior (in intrinsic time): {fitted:.3f}; prior "
        f"means {means}.",
    ]
    if fitted > 2 * max(prior_means):
        lines[-1] += (
            " The prior means are far below the fitted exponents, so whatever the prior changes "
            "here comes from shrinking the exponent of a short prefix, not from a right mean "
            "(the exponent in intrinsic time is not the data-scaling exponent)."
        )
    return lines


def plot(summary: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(dict.fromkeys((r["data"], r["prefix"]) for r in summary))
    fig, axes = plt.subplots(1, len(groups), figsize=(4.5 * len(groups), 3.6), squeeze=False)
    for ax, (data, frac) in zip(axes[0], groups, strict=True):
        sel = [r for r in summary if r["data"] == data and r["prefix"] == frac]
        labels = [r["fit"] for r in sel]
        ax.bar(range(len(sel)), [100 * r["mean_error"] for r in sel], color="C0", label="mean")
        ax.plot(range(len(sel)), [100 * r["worst_error"] for r in sel], "kv", label="worst")
        ax.set_xticks(range(len(sel)), labels, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("final-loss error (%)")
        ax.set_title(f"{data}\n{frac:.0%} prefix", fontsize=9)
        ax.legend(fontsize=7)
    save_figure(fig, path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = benchmark_parser(NAME, __doc__)
    args = parser.parse_args(argv)
    out = output_dir(args.out, NAME)
    dims: tuple[int, ...]
    prefixes: tuple[float, ...]
    assumed: tuple[int, ...]
    if args.tiny:
        dims, seeds, prefixes, assumed, max_runs = (8,), 2, (0.2,), (16,), 1
    else:
        dims, seeds, prefixes, assumed, max_runs = (4, 8, 16, 32), 8, (0.1, 0.2), (8, 16, 32), None
    synthetic = run_synthetic(dims, seeds, prefixes)
    recorded, recorded_status = run_recorded(assumed, prefixes, max_runs)
    summary = summarise(synthetic, recorded, assumed)
    lines = verdict(summary)
    headers = ["data", "prefix", "fit", "mean error", "worst error", "prior better on"]
    rows = [
        [
            r["data"],
            f"{r['prefix']:.0%}",
            r["fit"],
            fmt(100 * r["mean_error"], ".2f") + " %",
            fmt(100 * r["worst_error"], ".2f") + " %",
            "–" if r["prior_wins"] is None else f"{r['prior_wins']}/{r['n']}",
        ]
        for r in summary
    ]
    d_rows = [
        [d, fmt(np.mean([r["d_hat"] for r in synthetic if r["d"] == d]), ".2f")] for d in dims
    ]
    md = "\n".join(
        [
            "# Intrinsic-dimension exponent prior: short-prefix fits with vs without",
            "",
            markdown_table(headers, rows),
            "",
            "## Verdict",
            "",
            *[f"- {line}" for line in lines],
            "",
            "## Levina–Bickel estimates behind the synthetic priors",
            "",
            markdown_table(["true d", "mean d_hat"], d_rows),
            "",
            f"Recorded curves: {recorded_status}. Their data's d is unknown: the prior there "
            "uses assumed d values, so it is a sensitivity check, not a validation.",
            *_exponent_note(recorded, assumed),
        ]
    )
    print(md)
    write_text(out / f"{NAME}.md", md)
    write_json(
        out / f"{NAME}.json",
        {
            "tiny": bool(args.tiny),
            "dims": list(dims),
            "seeds": seeds,
            "prefixes": list(prefixes),
            "assumed_dims": list(assumed),
            "exponent_scatter": EXPONENT_SCATTER,
            "noise": NOISE,
            "summary": summary,
            "verdict": lines,
            "synthetic": synthetic,
            "recorded": recorded,
            "recorded_status": recorded_status,
            "environment": environment(),
        },
    )
    plot(summary, out / f"{NAME}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
