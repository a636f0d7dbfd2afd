"""The joint surrogate and ``LawSampler``'s retrieval on the recorded grid (issue 12's targets).

The recorded grid (``data/grid``, ``lawsearch.recorded.grid``) holds 72 distinct
configs of the demo model trained to 240 steps (blocks ``core`` and ``spread``;
the ``seeds`` repeats and the larger ``x4`` model are left out): 16 mixtures of
five domains × cosine / WSD (decay 10, 30, 50%) / linear × peak LR 3e-3, 1e-2,
3e-2. The search space is the one of ``benchmarks/search_e2e.py``: mixture
weights in [0, 1], families cosine/wsd/linear, peak LR 3e-3..3e-2 (log),
warmup fixed at 2%, WSD decay 10..50%.

For each of ``--splits`` seeded random splits, ``--observed`` configs (32) are
observed: added to a real Optuna study through ``suggest_mixture`` and
``suggest_schedule`` with their true final loss as the value. Then:

* **Spearman**: the surrogate exactly as ``LawSampler`` builds it — its
  ``history`` of the study (one point per lineage, with its sd), its
  ``training_rows``, the ``JointSpace`` features (weights; family as a
  categorical, peak LR in log scale and decay fraction as [0, 1] columns) and
  the default ``MixtureSurrogate()`` — predicts the final loss of the
  held-out configs **of the same grid** (same model, data and budget; not
  another task), scored by Spearman against their true finals. Also within
  each peak LR (mean over the three LRs), to show what it learns beyond LR.
* **Proposals**: ``LawSampler`` (default options) proposes the next
  ``--proposals`` (8) trials one at a time through ``study.ask()``; each is
  told its true final before the next (a sequential study). The only change,
  in this benchmark and not in the product, is the candidate pool: instead
  of points drawn in the continuous space, the sampler scores the unobserved
  grid configs (its own acquisition ``mean - kappa * std`` and diversity
  radius), so every proposal is a recorded config.
* Baselines at the same count: **random** (the exact expected best of 8
  configs drawn without replacement from the unobserved ones) and **LR only**
  (each held-out config predicted by the mean observed final at its peak LR;
  proposals: the best LR's configs first, ties drawn at random).

Regret is the best final of the 8 proposals over the grid's best final, minus 1.

Run: ``python -m benchmarks.grid_surrogate [--tiny] [--splits 50]``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")  # small dense algebra: threads only contend

import numpy as np
from numpy.typing import NDArray

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

NAME = "grid_surrogate"
FAMILIES = ("cosine", "wsd", "linear")
PEAK_LR = (3e-3, 3e-2)
DECAY = (0.1, 0.5)
WARMUP = 0.02
FINAL_LR_FRACTION = 0.1
TARGET_SPEARMAN = 0.9
METHODS = ("LawSampler retrieval", "LR only", "random")
FloatArray = NDArray[np.float64]


def grid_configs(folder: str | None = None) -> list[Any]:
    """The grid's distinct demo-model configs (seed 0, blocks ``core`` and ``spread``)."""
    from lawsearch.recorded.grid import load_grid

    runs = [r for r in load_grid(folder, models=("demo",)) if r.block != "seeds"]
    keys = [r.config_key() for r in runs]
    if len(set(keys)) != len(keys):
        raise ValueError("the grid's demo runs repeat a config outside the `seeds` block")
    return runs


class _Space:
    """The study's search space and the Optuna parameters of each grid config."""

    def __init__(self, runs: Sequence[Any]) -> None:
        from lawsearch.mixtures import MixtureBounds

        self.domains = tuple(runs[0].mixture)
        self.total_steps = int(runs[0].full_steps)
        self.bounds = MixtureBounds.build(self.domains, low=0.0, high=1.0)
        self.params = [self._params(r) for r in runs]

    def _params(self, run: Any) -> dict[str, Any]:
        sched = run.schedule
        sticks = self.bounds.to_unit(np.array([run.mixture[d] for d in self.domains]))
        out: dict[str, Any] = {f"mixture:stick{i}": float(v) for i, v in enumerate(sticks)}
        out["schedule:family"] = sched.family
        out["schedule:peak_lr"] = float(sched.peak_lr)
        if sched.family == "wsd":
            out["schedule:decay_fraction"] = float(sched.decay_fraction)
        return out

    def suggest(self, trial: Any) -> None:
        """What a user's objective suggests: the mixture and the schedule."""
        from lawsearch.optuna import suggest_mixture, suggest_schedule

        suggest_mixture(trial, "mixture", self.domains, low=0.0, high=1.0)
        suggest_schedule(
            trial,
            "schedule",
            total_steps=self.total_steps,
            families=FAMILIES,
            peak_lr=PEAK_LR,
            warmup=WARMUP,
            decay_fraction=DECAY,
            final_lr_fraction=FINAL_LR_FRACTION,
        )


def _grid_sampler(pool: FloatArray, seed: int) -> Any:
    """``LawSampler`` (default options) scoring ``pool`` (unit points) instead of random draws."""
    from lawsearch.optuna import LawSampler

    class GridPoolSampler(LawSampler):
        def _candidates(self, joint: Any, x: Any, y: Any, rng: Any) -> FloatArray:
            return pool

    return GridPoolSampler(seed=seed)


def expected_best_of_random(
    values: Sequence[float] | np.ndarray, k: int, floor: float = math.inf
) -> float:
    """E[min(floor, min of k values drawn without replacement)], exactly (order statistics)."""
    v = np.sort(np.asarray(values, dtype=float))
    m = v.size
    if k >= m:
        return float(min(floor, v[0]))
    total = math.comb(m, k)
    # P(the subset's minimum is v[i]) = C(m - 1 - i, k - 1) / C(m, k)
    probs = np.array([math.comb(m - 1 - i, k - 1) / total for i in range(m)])
    return float((probs * np.minimum(v, floor)).sum())


def _lr_only(
    lrs: FloatArray, finals: FloatArray, obs: NDArray[np.intp], rest: NDArray[np.intp], k: int
) -> tuple[FloatArray, float]:
    """Predicted finals of ``rest`` (mean observed final at the same LR) and E[best of k]."""
    level = {lr: float(finals[obs][lrs[obs] == lr].mean()) for lr in np.unique(lrs[obs])}
    fallback = float(finals[obs].mean())
    pred = np.array([level.get(lr, fallback) for lr in lrs[rest]])
    # fill k proposals from the best predicted level down; the last level partly, at random
    best, left = math.inf, k
    for value in np.unique(pred):
        members = finals[rest][pred == value]
        if members.size <= left:
            best, left = min(best, float(members.min())), left - members.size
        else:
            return pred, expected_best_of_random(members, left, best)
        if left == 0:
            break
    return pred, best


def one_split(
    space: _Space,
    finals: FloatArray,
    lrs: FloatArray,
    split: int,
    n_observed: int,
    n_proposals: int,
) -> dict[str, Any]:
    """Observe ``n_observed`` configs, score the held-out ones and propose ``n_proposals``."""
    import optuna
    from scipy.stats import spearmanr

    from lawsearch.mixtures import MixtureSurrogate

    rng = np.random.default_rng([2026, split])
    order = rng.permutation(finals.size)
    obs, rest = np.sort(order[:n_observed]), np.sort(order[n_observed:])
    storage = optuna.storages.InMemoryStorage()
    name = f"grid-{split}"
    seeding = optuna.create_study(
        study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler(seed=split)
    )
    for i in obs:
        seeding.enqueue_trial(space.params[i])
        trial = seeding.ask()
        space.suggest(trial)
        seeding.tell(trial, float(finals[i]))
    sampler = _grid_sampler(np.zeros((0, 0)), split)
    study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    joint = sampler.space(study)
    units = np.array([joint.from_params(p) for p in space.params])
    # the surrogate as LawSampler.propose fits it
    x, y, sd = sampler.history(study, joint)
    keep = sampler.training_rows(y)
    w, extra = joint.features(x[keep])
    model = MixtureSurrogate().fit(w, y[keep], loss_std=sd[keep], extra=extra or None)
    cw, cextra = joint.features(units[rest])
    mean, _ = model.predict(cw, extra=cextra or None)
    truth = finals[rest]
    lr_pred, lr_best = _lr_only(lrs, finals, obs, rest, n_proposals)
    within = [
        float(spearmanr(mean[lrs[rest] == lr], truth[lrs[rest] == lr])[0])
        for lr in np.unique(lrs[rest])
        if np.sum(lrs[rest] == lr) >= 3
    ]
    # proposals: one at a time, each told its true final before the next
    sampler = _grid_sampler(units[rest], split)
    study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    proposed: list[int] = []
    for _ in range(n_proposals):
        trial = study.ask()
        space.suggest(trial)
        u = joint.from_params(trial.params)
        dist = np.abs(units[rest] - u).max(axis=1)
        j = int(rest[int(np.argmin(dist))])
        if dist.min() > 1e-6 or j in proposed:
            raise RuntimeError(f"split {split}: proposal {u} is not a fresh grid config")
        proposed.append(j)
        study.tell(trial, float(finals[j]))
    return {
        "split": split,
        "observed": obs.tolist(),
        "proposed": proposed,
        "spearman": {
            "LawSampler retrieval": float(spearmanr(mean, truth)[0]),
            "LR only": float(spearmanr(lr_pred, truth)[0]),
        },
        "spearman_within_lr": float(np.mean(within)) if within else math.nan,
        "best_of_proposals": {
            "LawSampler retrieval": float(finals[proposed].min()),
            "LR only": lr_best,
            "random": expected_best_of_random(truth, n_proposals),
        },
    }


def summarise(records: Sequence[dict[str, Any]], grid_best: float) -> list[dict[str, Any]]:
    """Per method: Spearman (mean / median / min, share ≥ 0.9) and regret of the best proposal."""
    rows = []
    for method in METHODS:
        regret = np.array([r["best_of_proposals"][method] / grid_best - 1.0 for r in records])
        row: dict[str, Any] = {
            "method": method,
            "splits": len(records),
            "mean_regret": float(regret.mean()),
            "median_regret": float(np.median(regret)),
        }
        if method in records[0]["spearman"]:
            rho = np.array([r["spearman"][method] for r in records])
            row |= {
                "spearman_mean": float(rho.mean()),
                "spearman_median": float(np.median(rho)),
                "spearman_min": float(rho.min()),
                "share_at_target": float(np.mean(rho >= TARGET_SPEARMAN)),
            }
        if method == "LawSampler retrieval":
            within = [r["spearman_within_lr"] for r in records]
            row["spearman_within_lr"] = float(np.nanmean(within))
        rows.append(row)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = benchmark_parser(NAME, __doc__)
    parser.add_argument("--grid", default=None, help="grid folder (default: data/grid)")
    parser.add_argument("--splits", type=int, default=50, help="seeded random splits")
    parser.add_argument("--observed", type=int, default=32, help="observed configs per split")
    parser.add_argument("--proposals", type=int, default=8, help="proposals scored per split")
    args = parser.parse_args(argv)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    runs = grid_configs(args.grid)
    splits, n_proposals = (2, 3) if args.tiny else (args.splits, args.proposals)
    if not 4 <= args.observed <= len(runs) - n_proposals:
        raise SystemExit(
            f"--observed must be in [4, {len(runs) - n_proposals}] for {len(runs)} grid configs "
            f"and {n_proposals} proposals; got {args.observed}."
        )
    space = _Space(runs)
    finals = np.array([r.final_loss for r in runs])
    lrs = np.array([float(r.schedule.peak_lr) for r in runs])
    grid_best = float(finals.min())
    with timer() as clock:
        records = [
            one_split(space, finals, lrs, s, args.observed, n_proposals) for s in range(splits)
        ]
    rows = summarise(records, grid_best)
    held_out = len(runs) - args.observed
    table = markdown_table(
        [
            "method",
            f"Spearman on the {held_out} held-out configs (mean / median / min)",
            f"splits ≥ {TARGET_SPEARMAN}",
            "Spearman within a peak LR",
            f"best of next {n_proposals}: mean regret",
            "median regret",
        ],
        [
            [
                r["method"],
                (
                    f"{fmt(r['spearman_mean'], '.3f')} / {fmt(r['spearman_median'], '.3f')} / "
                    f"{fmt(r['spearman_min'], '.3f')}"
                    if "spearman_mean" in r
                    else "–"
                ),
                fmt(r.get("share_at_target"), ".0%"),
                fmt(r.get("spearman_within_lr"), ".3f"),
                fmt(r["mean_regret"], ".2%"),
                fmt(r["median_regret"], ".2%"),
            ]
            for r in rows
        ],
    )
    law = rows[0]
    rand = next(r for r in rows if r["method"] == "random")
    verdict = (
        f"- Spearman ≥ {TARGET_SPEARMAN} with {args.observed} observed configs (mean over "
        f"splits): {fmt(law['spearman_mean'], '.3f')} — "
        f"{'met' if law['spearman_mean'] >= TARGET_SPEARMAN else 'NOT met'}\n"
        f"- retrieval beats random at {n_proposals} proposals (mean regret): "
        f"{fmt(law['mean_regret'], '.2%')} vs {fmt(rand['mean_regret'], '.2%')} — "
        f"{'met' if law['mean_regret'] < rand['mean_regret'] else 'NOT met'}"
    )
    md = (
        f"# Joint surrogate and retrieval on the recorded grid ({splits} splits)\n\n"
        f"{args.observed} observed configs, {held_out} held-out configs **of the same grid** "
        f"({len(runs)} demo-model configs; grid best final {grid_best:.4f}). Regret: best "
        f"final of the proposals over the grid's best, minus 1.\n\n{table}\n\n"
        f"## Targets (issue 12)\n\n{verdict}\n"
    )
    print(md)
    out = output_dir(args.out, NAME)
    write_json(
        out / f"{NAME}.json",
        {
            "tiny": args.tiny,
            "splits": splits,
            "observed": args.observed,
            "proposals": n_proposals,
            "grid_configs": len(runs),
            "grid_best": grid_best,
            "run_ids": [r.run_id for r in runs],
            "summary": rows,
            "records": records,
            "seconds": clock[0],
            "environment": environment(),
        },
    )
    write_text(out / f"{NAME}.md", md)
    _plot(records, grid_best, out / f"{NAME}.png")
    return 0


def _plot(records: Sequence[dict[str, Any]], grid_best: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    rho = [[r["spearman"][m] for r in records] for m in ("LawSampler retrieval", "LR only")]
    axes[0].boxplot(rho, tick_labels=["surrogate", "LR only"])
    axes[0].axhline(TARGET_SPEARMAN, color="grey", ls="--", lw=0.6)
    axes[0].set_title("Spearman on held-out grid configs")
    regret = [[100 * (r["best_of_proposals"][m] / grid_best - 1) for r in records] for m in METHODS]
    axes[1].boxplot(regret, tick_labels=["retrieval", "LR only", "random (expected)"])
    axes[1].set_title("regret of the best of the next proposals, %")
    save_figure(fig, path)


if __name__ == "__main__":
    raise SystemExit(main())
