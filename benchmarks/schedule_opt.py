"""Law-proposed LR schedules, trained for real against the best hand-family schedule.

``lawsearch.schedule_opt.optimise_schedule`` minimises a fitted schedule-aware
law's predicted final loss over monotone piecewise schedules. A prediction is
not a result: this benchmark trains the proposals on the demo's model and
built-in corpus (the recorded grid's model: ``studies/demo.toml``, uniform
mixture of the five domains, 240 steps) and compares them with the best hand
family at the same peak LR.

1. **Fit data (in-sample, training seed 0).** For each peak LR (3e-3, 1e-2,
   3e-2) train the hand families: cosine, linear, WSD with a 10% and a 30%
   linear decay, constant (warmup 2% of the budget, final LR 0.1 x peak as
   the grid's).
2. **Fit the Multi-Power Law** pooled over those curves (its own shared
   parameters: everything but the amplitude ``A`` is common), from 5% of the
   budget on (the first steps after warmup are a transient no law here
   follows), in two variants: ``all peaks`` (one fit over all 15 curves) and
   ``per peak`` (one fit over the 5 curves of each peak).
3. **Propose.** ``optimise_schedule`` within the same bounds (that peak LR,
   final LR 0.1 x peak, the same warmup, monotone decay), with the fit of the
   best seed-0 hand run at that peak (its amplitude ``A``): free 12-knot
   schedules for ``all peaks`` and ``per peak``; for ``per peak, within hands``
   only convex combinations of the 5 hand schedules that fit saw at that peak
   (``within=``: the law interpolates between shapes it was fitted on); for
   ``per peak, iterated``, 3 rounds of: fit per peak on the hand runs and every
   earlier round's proposal, propose, train the proposal on seed 0; the round
   whose proposal ends lowest on seed 0 is the one held out (the law sees where
   its proposals really go before it proposes again).
4. **Held-out.** Train each proposal and that best hand family on training
   seeds 1-4 (never used to fit or to pick) and compare final losses seed
   by seed: ``proposal - best hand``, its mean with a paired 95% t interval
   (the verdict: "beats" or "loses" when the interval excludes 0 and the mean
   is beyond 0.001, "tie" when the interval lies within +-0.001), and the
   seed-to-seed spread (sample sd over seeds 0-4) of the best hand family's
   final loss. The law's prediction of the proposal's final loss is scored
   against the held-out finals too.

5. **Before training** (seed 0 only, what a user can know): the law's
   leave-one-out error on the hand schedules at that peak: refit without one
   hand run, predict its final (median over the other runs' amplitudes), minus
   its seed-0 final; the rms over the 5.

The pick of the best hand family and every law fit use seed 0 only (in-sample);
every number in the "held-out" columns comes from seeds 1-4 (1-2 with ``--tiny``). Finished runs
are kept under ``<out>/parts/`` so an interrupted run resumes.

Run: ``python -m benchmarks.schedule_opt [--jobs 2] [--tiny]``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.stats

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

NAME = "schedule_opt"
PEAK_LRS = (3e-3, 1e-2, 3e-2)
#: hand families: label -> (family, WSD decay fraction)
HANDS: dict[str, tuple[str, float]] = {
    "cosine": ("cosine", 0.2),
    "linear": ("linear", 0.2),
    "wsd10": ("wsd", 0.1),
    "wsd30": ("wsd", 0.3),
    "constant": ("constant", 0.2),
}
HULL = "per peak, within hands"
ITERATED = "per peak, iterated"
VARIANTS = ("all peaks", "per peak", HULL, ITERATED)
#: rounds of the iterated variant: propose, train on seed 0, refit with that curve
ROUNDS = 3
#: run-id keys of the variants' proposals
VARIANT_KEYS = {"all peaks": "all", "per peak": "per", HULL: "hull", ITERATED: "iter"}
FIT_SEED = 0
HELD_OUT_SEEDS = (1, 2, 3, 4)
#: a difference in final loss too small to matter: an interval inside +-TIE is a tie, and
#: "beats" / "loses" need a mean beyond it (a proposal equal to its hand family up to the
#: knots' rounding would otherwise "lose" by 1e-7)
TIE = 1e-3
WARMUP = 0.02
FINAL_LR_RATIO = 0.1
#: the fit starts at this fraction of the budget (after warmup's transient)
FIT_START = 0.05
#: evaluation cadence of the fit runs and of the held-out runs (steps, full size)
FIT_EVAL_EVERY = 6
HELD_OUT_EVAL_EVERY = 24


@dataclass(frozen=True)
class Proposal:
    """One variant's proposal at one peak (everything here is in-sample: seed 0)."""

    variant: str
    peak_lr: float
    best_hand: str
    schedule: dict[str, Any]
    predicted_final: float
    predicted_best_hand: float
    law_baselines: dict[str, float] = field(default_factory=dict)
    fit_rmse: float = float("nan")
    weights: dict[str, float] = field(default_factory=dict)
    loo_errors: dict[str, float] = field(default_factory=dict)
    #: the iterated variant: the round its held-out proposal came from, each round's
    #: seed-0 final
    from_round: int = 0
    round_finals: dict[str, float] = field(default_factory=dict)


def _schedule(family: str, decay: float, peak: float, total: int) -> dict[str, Any]:
    from lawsearch.schedules import Schedule

    spec: dict[str, Any] = {
        "family": family,
        "peak_lr": peak,
        "total_steps": total,
        "warmup_steps": round(WARMUP * total),
        "final_lr": peak if family == "constant" else peak * FINAL_LR_RATIO,
    }
    if family == "wsd":
        spec["decay_fraction"] = decay
    return Schedule.from_dict(spec).to_dict()


def _run(
    run_id: str,
    label: str,
    schedule: dict[str, Any],
    seed: int,
    mixture: dict[str, float],
    every: int,
) -> Any:
    from benchmarks.record_grid import GridRun

    return GridRun(
        run_id=run_id,
        block="schedule_opt",
        size="demo",
        mixture=mixture,
        schedule_label=label,
        peak_lr=float(schedule["peak_lr"]),
        seed=seed,
        total_steps=int(schedule["total_steps"]),
        eval_every=every,
        schedule=schedule,
    )


def train_all(
    runs: Sequence[Any], parts: Path, *, tiny: bool, cache: str | None, jobs: int
) -> dict[str, dict[str, Any]]:
    """Train every run not yet under ``parts`` (``record_grid``'s trainer); all results."""
    from benchmarks.record_grid import _save_part, _worker

    done: dict[str, dict[str, Any]] = {}
    for run in runs:
        f = parts / f"{run.run_id}.json"
        if f.is_file():
            done[run.run_id] = json.loads(f.read_text())
    work = [(r, tiny, cache) for r in runs if r.run_id not in done]
    if jobs > 1 and len(work) > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(jobs, maxtasksperchild=8) as pool:
            for run_id, got in pool.imap_unordered(_worker, work):
                _save_part(parts, run_id, got, done)
    else:
        for item in work:
            run_id, got = _worker(item)
            _save_part(parts, run_id, got, done)
    return done


def _curve(result: dict[str, Any], schedule: dict[str, Any]) -> dict[str, Any]:
    from lawsearch.schedules import Schedule

    sched = Schedule.from_dict(schedule)
    steps = np.array([r["step"] for r in result["rows"]], dtype=float)
    losses = np.array([r["loss"] for r in result["rows"]], dtype=float)
    keep = steps >= FIT_START * sched.total_steps
    return {
        "steps": steps[keep],
        "losses": losses[keep],
        "lrs": sched.lr(np.arange(sched.total_steps + 1)),
    }


def final_loss(result: dict[str, Any]) -> float:
    return float(result["rows"][-1]["loss"])


def pooled_fits(
    runs: Sequence[Any], done: dict[str, dict[str, Any]], memo: dict[tuple[str, ...], Any]
) -> Any:
    """The Multi-Power Law fitted pooled over ``runs``' seed-0 curves, once per set of runs.

    The variants and rounds fit the same groups again (``per peak`` and ``within
    hands`` share every fit, the iterated variant's first round too, and each
    leave-one-out refit recurs), so ``memo`` keeps each fit by its runs' ids.
    """
    from lawsearch.laws import MultiPowerLaw, shared_params

    key = tuple(r.run_id for r in runs)
    if key not in memo:
        law = MultiPowerLaw()
        curves = [_curve(done[r.run_id], r.schedule) for r in runs]
        memo[key] = law.fit_pooled(curves, shared=shared_params(law))
    return memo[key]


def propose(
    fit_runs: Sequence[Any],
    done: dict[str, dict[str, Any]],
    variant: str,
    peaks: Sequence[float],
    memo: dict[tuple[str, ...], Any] | None = None,
) -> list[Proposal]:
    """Fit the law (one variant) on the seed-0 hand runs and optimise a schedule per peak.

    ``memo``: fits already made (``pooled_fits``), shared between calls.
    """
    from lawsearch.schedule_opt import optimise_schedule
    from lawsearch.schedules import Schedule

    memo = {} if memo is None else memo
    groups = (
        [list(fit_runs)]
        if variant == "all peaks"
        else [[r for r in fit_runs if r.peak_lr == p] for p in peaks]
    )
    hull = variant == HULL
    out = []
    for group in groups:
        curves = [_curve(done[r.run_id], r.schedule) for r in group]
        fits = pooled_fits(group, done, memo)
        resid = [f.predict(c["steps"]) - c["losses"] for f, c in zip(fits, curves, strict=True)]
        rmse = float(np.sqrt(np.mean(np.concatenate(resid) ** 2)))
        for peak in peaks:
            at = [i for i, r in enumerate(group) if r.peak_lr == peak]
            if not at:
                continue
            best = min(at, key=lambda i: final_loss(done[group[i].run_id]))
            run = group[best]
            total = run.total_steps
            within = [Schedule.from_dict(group[i].schedule) for i in at] if hull else None
            loo = _leave_one_out(group, at, done, memo)
            prop = optimise_schedule(
                fits[best],
                total_steps=total,
                peak_lr=peak,
                final_lr=peak * FINAL_LR_RATIO,
                warmup=round(WARMUP * total),
                within=within,
            )
            out.append(
                Proposal(
                    variant=variant,
                    peak_lr=peak,
                    best_hand=run.schedule_label,
                    schedule=prop.schedule.to_dict(),
                    predicted_final=prop.predicted_final,
                    predicted_best_hand=float(fits[best].predict([total])[0]),
                    law_baselines=dict(prop.baselines),
                    fit_rmse=rmse,
                    weights={
                        group[i].schedule_label: w for i, w in zip(at, prop.weights, strict=True)
                    }
                    if hull
                    else {},
                    loo_errors=loo,
                )
            )
    return out


def iterate(
    fit_runs: Sequence[Any],
    done: dict[str, dict[str, Any]],
    peaks: Sequence[float],
    make_run: Any,
    train: Any,
    memo: dict[tuple[str, ...], Any] | None = None,
) -> list[Proposal]:
    """The iterated variant (seed 0 only): each round fits the law per peak on the hand
    runs and every earlier proposal's trained curve, proposes, and trains the proposal
    on seed 0; the proposal with the lowest seed-0 final is the one held out.

    The law sees where its last proposal really went, so a shape it was wrong about is
    corrected before the next one (the answer to its optimism about its own proposals).
    """
    extra: list[Any] = []
    made: dict[str, Proposal] = {}
    for k in range(ROUNDS):
        runs = []
        for p in propose([*fit_runs, *extra], done, "per peak", peaks, memo):
            # a schedule proposed again is not trained again (same id: same schedule)
            rid = proposal_run_id(dataclasses.replace(p, variant=ITERATED), FIT_SEED)
            if rid not in made:
                made[rid] = p
                runs.append(make_run(rid, f"round {k + 1}", p.schedule))
        done |= train(runs)
        extra += runs
    out = []
    for peak in peaks:
        hand = min(
            (r for r in fit_runs if r.peak_lr == peak), key=lambda r: final_loss(done[r.run_id])
        )
        mine = [r for r in extra if r.peak_lr == peak]
        if not mine:
            continue
        pick = min(mine, key=lambda r: final_loss(done[r.run_id]))
        out.append(
            dataclasses.replace(
                made[pick.run_id],
                variant=ITERATED,
                best_hand=hand.schedule_label,
                from_round=int(pick.schedule_label.split()[-1]),
                round_finals={r.schedule_label: final_loss(done[r.run_id]) for r in mine},
            )
        )
    return out


def _leave_one_out(
    group: Sequence[Any],
    at: Sequence[int],
    done: dict[str, dict[str, Any]],
    memo: dict[tuple[str, ...], Any],
) -> dict[str, float]:
    """Seed 0 only: refit without each hand run at this peak, predict its final, minus truth.

    What a user can know before training a proposal: how far the law misses the
    final loss of a schedule it was not fitted on. The left-out run's amplitude is
    unknown, so the prediction is the median over the other runs' fits at its peak.
    """
    from lawsearch.schedule_opt import predict_final
    from lawsearch.schedules import Schedule

    out = {}
    for i in at:
        keep = [j for j in range(len(group)) if j != i]
        fits = pooled_fits([group[j] for j in keep], done, memo)
        sched = Schedule.from_dict(group[i].schedule)
        preds = [predict_final(f, sched) for f, j in zip(fits, keep, strict=True) if j in at]
        out[group[i].schedule_label] = float(np.median(preds)) - final_loss(done[group[i].run_id])
    return out


def proposal_run_id(proposal: Proposal, seed: int) -> str:
    """The run id of a proposal's training run: its schedule's hash is in it, so a
    changed proposal (another fit, another optimiser) never reuses a cached run."""
    spec = json.dumps(proposal.schedule, sort_keys=True).encode()
    tag = hashlib.sha1(spec).hexdigest()[:8]
    return f"prop-{VARIANT_KEYS[proposal.variant]}-{proposal.peak_lr:g}-{tag}-s{seed}"


def compare(
    proposal: Proposal,
    done: dict[str, dict[str, Any]],
    ids: dict[tuple[str, float, int], str],
    seeds: Sequence[int],
) -> dict[str, Any]:
    """Held-out finals of the proposal and the best hand family, and the verdict."""
    peak = proposal.peak_lr
    prop = [final_loss(done[ids[(proposal.variant, peak, s)]]) for s in seeds]
    hand = [final_loss(done[ids[(proposal.best_hand, peak, s)]]) for s in seeds]
    hand0 = final_loss(done[ids[(proposal.best_hand, peak, FIT_SEED)]])
    diffs = [p - h for p, h in zip(prop, hand, strict=True)]
    spread = statistics.stdev([hand0, *hand])
    diff = float(np.mean(diffs))
    t95 = float(scipy.stats.t.ppf(0.975, len(diffs) - 1))  # two-sided 95%, paired
    half = t95 * statistics.stdev(diffs) / math.sqrt(len(diffs))
    if -TIE <= diff - half and diff + half <= TIE:
        verdict = "tie"
    elif diff + half < 0 and diff < -TIE:
        verdict = "beats"
    elif diff - half > 0 and diff > TIE:
        verdict = "loses"
    else:
        verdict = "not resolved"
    return {
        **asdict(proposal),
        "held_out_seeds": list(seeds),
        "proposal_finals": prop,
        "best_hand_finals": hand,
        "best_hand_final_seed0": hand0,
        "diffs": diffs,
        "mean_diff": diff,
        "diff_ci95": [diff - half, diff + half],
        "best_hand_seed_sd": spread,
        "prediction_error": proposal.predicted_final - float(np.mean(prop)),
        "predicted_gain": proposal.predicted_final - proposal.predicted_best_hand,
        "loo_rms": float(np.sqrt(np.mean(np.square(list(proposal.loo_errors.values()))))),
        "verdict": verdict,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = benchmark_parser(NAME, __doc__)
    parser.add_argument("--jobs", type=int, default=2, help="parallel training processes")
    args = parser.parse_args(argv)
    from benchmarks.record_grid import _rounded, _study, _trainer

    out = output_dir(args.out, NAME)
    parts = out / "parts"
    parts.mkdir(exist_ok=True)
    cache = str(out / "cache") if args.tiny else None
    cfg = _study(args.tiny, cache)
    domains = list(cfg.domain_names)
    mixture = _rounded(domains, np.full(len(domains), 1.0 / len(domains)))
    total = int(cfg.full_steps)
    peaks = (3e-3, 3e-2) if args.tiny else PEAK_LRS
    fit_every, held_every = (2, 10) if args.tiny else (FIT_EVAL_EVERY, HELD_OUT_EVAL_EVERY)
    seeds = HELD_OUT_SEEDS[:2] if args.tiny else HELD_OUT_SEEDS
    _trainer(cfg, "demo", args.tiny).prepare()  # corpus and tokenizer once, before the workers

    with timer() as clock:
        ids: dict[tuple[str, float, int], str] = {}
        fit_runs = []
        for peak in peaks:
            for label, (family, decay) in HANDS.items():
                rid = f"fit-{label}-{peak:g}-s{FIT_SEED}"
                ids[(label, peak, FIT_SEED)] = rid
                sched = _schedule(family, decay, peak, total)
                fit_runs.append(_run(rid, label, sched, FIT_SEED, mixture, fit_every))
        t0 = time.perf_counter()
        done = train_all(fit_runs, parts, tiny=args.tiny, cache=cache, jobs=args.jobs)
        print(f"{NAME}: {len(fit_runs)} seed-0 hand runs in {time.perf_counter() - t0:.0f} s")
        memo: dict[tuple[str, ...], Any] = {}  # every pooled fit, made once
        proposals = [p for v in VARIANTS[:-1] for p in propose(fit_runs, done, v, peaks, memo)]
        t0 = time.perf_counter()
        proposals += iterate(
            fit_runs,
            done,
            peaks,
            lambda rid, label, sched: _run(rid, label, sched, FIT_SEED, mixture, fit_every),
            lambda runs: train_all(runs, parts, tiny=args.tiny, cache=cache, jobs=args.jobs),
            memo,
        )
        print(f"{NAME}: {ROUNDS} iterated rounds in {time.perf_counter() - t0:.0f} s")
        held = []
        for p in proposals:
            hand_sched = next(
                r.schedule
                for r in fit_runs
                if r.peak_lr == p.peak_lr and r.schedule_label == p.best_hand
            )
            for s in seeds:
                rid = proposal_run_id(p, s)
                ids[(p.variant, p.peak_lr, s)] = rid
                held.append(
                    _run(rid, f"proposal ({p.variant})", p.schedule, s, mixture, held_every)
                )
                hid = f"hand-{p.best_hand}-{p.peak_lr:g}-s{s}"
                ids[(p.best_hand, p.peak_lr, s)] = hid
                held.append(_run(hid, p.best_hand, hand_sched, s, mixture, held_every))
        held = list({r.run_id: r for r in held}.values())
        t0 = time.perf_counter()
        done |= train_all(held, parts, tiny=args.tiny, cache=cache, jobs=args.jobs)
        print(f"{NAME}: {len(held)} held-out runs in {time.perf_counter() - t0:.0f} s")
        rows = [compare(p, done, ids, seeds) for p in proposals]

    table = _table(rows)
    print(table)
    hands = {
        f"{label}@{peak:g}": final_loss(done[ids[(label, peak, FIT_SEED)]])
        for peak in peaks
        for label in HANDS
    }
    payload = {
        "rows": rows,
        "seed0_hand_finals": hands,
        "in_sample": "seed 0: the hand runs, the law fits, the pick of the best hand family",
        "held_out": f"seeds {list(seeds)}: every proposal and best-hand final in the comparison",
        "total_steps": total,
        "peaks": list(peaks),
        "fit_start": FIT_START,
        "tiny": bool(args.tiny),
        "seconds": clock[0],
        "train_seconds_sum": sum(float(done[r]["seconds"]) for r in set(ids.values())),
        "environment": {**environment(), "jobs": args.jobs},
    }
    write_json(out / f"{NAME}.json", payload)
    write_text(out / f"{NAME}.md", table)
    _figure(rows, done, ids, out, seeds)
    return 0


def _table(rows: Sequence[dict[str, Any]]) -> str:
    return markdown_table(
        [
            "law fit (seed 0)",
            "peak LR",
            "best hand (seed 0)",
            "predicted gain",
            "law's leave-one-out error (seed 0, rms)",
            "proposal − best hand, held-out (per seed)",
            "paired 95% interval",
            "best hand seed sd",
            "verdict",
            "law error on the proposal (held-out)",
        ],
        [
            [
                r["variant"],
                fmt(r["peak_lr"], "g"),
                r["best_hand"],
                fmt(r["predicted_gain"], "+.3f"),
                fmt(r["loo_rms"], ".3f"),
                fmt(r["mean_diff"], "+.3f")
                + " ("
                + ", ".join(fmt(d, "+.3f") for d in r["diffs"])
                + ")",
                "[" + ", ".join(fmt(x, "+.3f") for x in r["diff_ci95"]) + "]",
                fmt(r["best_hand_seed_sd"], ".3f"),
                r["verdict"],
                fmt(r["prediction_error"], "+.3f"),
            ]
            for r in rows
        ],
    )


def _figure(
    rows: Sequence[dict[str, Any]],
    done: dict[str, dict[str, Any]],
    ids: dict[tuple[str, float, int], str],
    out: Path,
    seeds: Sequence[int],
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lawsearch.schedules import Schedule

    peaks = sorted({r["peak_lr"] for r in rows})
    fig, axes = plt.subplots(2, len(peaks), figsize=(4.2 * len(peaks), 6.4), squeeze=False)
    for j, peak in enumerate(peaks):
        at = [r for r in rows if r["peak_lr"] == peak]
        hand = at[0]["best_hand"]
        lines = [(f"{hand} (best hand)", hand, "0.3", None)]
        lines += [
            (f"proposal ({r['variant']})", r["variant"], f"C{i}", r["schedule"])
            for i, r in enumerate(at)
        ]
        shown: list[float] = []
        for label, key, color, sched in lines:
            if sched is not None:
                lr = Schedule.from_dict(sched).per_step()
                axes[0][j].plot(np.arange(lr.size), lr / peak, color=color, label=label)
            for s in seeds:
                got = done[ids[(key, peak, s)]]["rows"]
                shown.append(min(g["loss"] for g in got))
                axes[1][j].plot(
                    [g["step"] for g in got],
                    [g["loss"] for g in got],
                    color=color,
                    lw=1.0,
                    alpha=0.8,
                    label=label if s == seeds[0] else None,
                )
        hand_rows = done[ids[(hand, peak, FIT_SEED)]]["rows"]
        axes[0][j].plot(
            [g["step"] for g in hand_rows],
            [g["lr"] / peak for g in hand_rows],
            color="0.3",
            label=f"{hand} (best hand)",
        )
        axes[0][j].set_title(f"peak LR {peak:g}: LR / peak")
        axes[0][j].legend(fontsize=7)
        axes[1][j].set_title(
            f"held-out seeds {', '.join(map(str, seeds))}: held-out loss", fontsize=9
        )
        axes[1][j].set_xlabel("step")
        tail = [g["loss"] for g in hand_rows[len(hand_rows) // 3 :]]
        axes[1][j].set_ylim(min(shown) - 0.05, max(tail) + 0.1)
        axes[1][j].legend(fontsize=7)
    save_figure(fig, out / f"{NAME}.png")


if __name__ == "__main__":
    raise SystemExit(main())
