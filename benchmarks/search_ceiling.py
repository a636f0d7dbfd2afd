"""What the recorded grid lets a screen-and-cut search reach: proposals against ranking.

The search target of the search issue (the pick within 0.5% of the grid's best
final loss in >= 90% of 20 seeds, with <= 25% of the compute of training every
grid config, and <= 1/1.5 of the best Optuna baseline's) asks two things of a
search that screens candidates and cuts them: that its candidates contain a
*winner* (a grid config within 0.5%: 3 of the 72) and that its cuts keep one.
This benchmark measures each on ``data/grid`` with ``search_e2e``'s replay (same
search space, budgets, nearest-config mapping and compute accounting), so a
method's shortfall in ``search_e2e`` can be put on one of the two:

1. **Proposals.** The share of seeds whose ``N`` candidates include a winner,
   for the random proposals of ``search_e2e``'s Optuna baselines (``RandomSampler``
   through ``suggest_config`` and the replay's nearest config: the same
   candidates, seed for seed), for Optuna's ``QMCSampler`` (scrambled Sobol), for
   ``LawSampler`` with ``explore_fraction = 1`` (its own Sobol sequence over the
   simplex and the schedule; these do not depend on losses, so they are the
   candidates ``lawsearch run`` trains with that setting, tested) and, exactly,
   for ``N`` distinct grid configs drawn uniformly (``1 - C(72 - w, N) /
   C(72, N)``: a proposer that knew the grid and never repeated a config).
2. **Ranking, in hindsight.** The family of *synchronous last-value cuts*, the
   family of ``random + top-k short`` and successive halving: every candidate
   trains to step ``s0``; those whose loss there is at most a threshold continue
   (optionally cut again the same way at ``s1``); the survivors train to the full
   budget and the lowest final loss is the pick. Per seed whose candidates
   contain a winner, the *hindsight floor* is the least compute of any rule of
   the family that keeps a winner, with ``s0``, ``s1`` and the thresholds chosen
   knowing every final: no rule of the family can do better on those candidates.
3. **Ranking, by a fixed rule.** Rules ``(s0, keep k0[, s1, keep k1])`` over a
   grid of steps and counts, scored on seeds ``0..19``; for each compute cap the
   rule with the most seeds within 0.5% (then the least compute) is chosen there,
   an **in-sample** choice, and measured on the held-out seeds ``20..39``; so are
   the ten best in-sample rules, whose spread held out says how much the choice
   is worth beyond the seeds it was made on.
4. **A study's cuts** (``--study SCREEN,CUT,SURVIVORS``: two rungs, sync
   promotion, ``floor(k / eta)`` kept at each, as ``lawsearch run`` cuts with
   ``[search] rank = "loss"``) on each sampler's candidates, and
   ``search_e2e``'s ``random + top-k short`` (exactly: tested), on both seed
   sets and on ``--more-seeds`` further seeds (default 100: a 20-seed share is
   a coarse estimate, and the study's cuts were chosen on the first two sets).

A duplicate candidate (two proposals mapped to one grid config) costs its steps
and takes a slot at a cut, as it does in ``search_e2e``'s replay. A cut ranks
entries by loss at its step, ties by candidate order.

Run: ``python -m benchmarks.search_ceiling [--tiny] [--candidates 10,20,40,60]
[--seeds 20] [--more-seeds 100] [--caps 0.155,0.25] [--study 24,48,5]``.
"""

from __future__ import annotations

import math
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
from benchmarks.search_e2e import (
    FULL_STEPS,
    SCREEN_STEPS,
    TARGET_REGRET,
    TOKENS_PER_STEP,
    GridReplay,
    study_config,
)

NAME = "search_ceiling"
#: the target's compute cap, and 1/1.5 of the best Optuna baseline's compute at 90% of
#: seeds within 0.5% (random + top-k short at 60 candidates: 23.3%, search_e2e, README)
DEFAULT_CAPS = (0.155, 0.25)
#: the steps a fixed rule may cut at, and the counts it may keep
CUT_STEPS = (6, 12, 18, 24, 36, 48, 72, 96, 144, 192)
KEEP = (1, 2, 3, 4, 6, 8, 10, 12, 16, 20, 24)
#: how many of the best in-sample rules are measured held out (how robust the choice is)
RUNNERS_UP = 10
#: the study cuts measured by default (screen, second cut, survivors): the settings
#: ``search_e2e`` ran lawsearch with at a 24-step screen (README)
STUDY = (24, 48, 5)
#: where candidates come from (``proposals``)
SAMPLERS = ("random", "qmc", "sobol")


@dataclass(frozen=True)
class Grid:
    """The grid's loss at every evaluated step and its final losses."""

    steps: np.ndarray  # (S,) the evaluated steps before the full budget
    losses: np.ndarray  # (runs, S)
    finals: np.ndarray  # (runs,)
    run_ids: tuple[str, ...]

    @property
    def winners(self) -> np.ndarray:
        """Whether each run is within the target of the grid's best final loss."""
        return self.finals / self.finals.min() - 1.0 <= TARGET_REGRET

    @property
    def total(self) -> float:
        """Steps of training every grid config to the full budget."""
        return float(len(self.finals) * FULL_STEPS)

    def column(self, step: int) -> int:
        return int(np.searchsorted(self.steps, step))


def load(runs: Sequence[Any], eval_every: int = 3) -> Grid:
    """The grid at the replay's evaluation cadence (``search_e2e.GridReplay``)."""
    steps = np.array([s for s in runs[0].steps if s % eval_every == 0 and 0 < s < FULL_STEPS])
    losses = np.array(
        [[dict(zip(r.steps, r.losses, strict=True))[int(s)] for s in steps] for r in runs]
    )
    finals = np.array([r.final_loss for r in runs])
    return Grid(steps, losses, finals, tuple(r.run_id for r in runs))


def proposals(runs: Sequence[Any], seed: int, n: int, sampler: str = "random") -> list[int]:
    """The grid runs ``n`` candidates of ``seed`` train as in ``search_e2e``'s replay.

    ``sampler``: ``"random"``, the Optuna baselines' ``RandomSampler``; ``"qmc"``,
    Optuna's ``QMCSampler`` (scrambled Sobol over Optuna's own parameters: the mixture's
    stick-breaking fractions, peak LR, family, decay); ``"sobol"``, lawsearch's
    ``LawSampler`` with ``explore_fraction = 1`` (every candidate the next point of its
    scrambled Sobol sequence over the simplex and the schedule, whatever the losses).
    """
    import optuna

    from lawsearch.study import build_sampler, suggest_config

    if sampler not in SAMPLERS:
        raise ValueError(f"`sampler` must be one of {SAMPLERS}; got {sampler!r}.")
    index = {r.run_id: i for i, r in enumerate(runs)}
    replay = GridReplay(runs)
    out = []
    with tempfile.TemporaryDirectory(prefix="lawsearch-ceiling-") as tmp:
        cfg = study_config(
            Path(tmp), seed=seed, candidates=n, settings={"search.explore_fraction": 1.0}
        )
        chosen: optuna.samplers.BaseSampler = (
            optuna.samplers.RandomSampler(seed=seed)
            if sampler == "random"
            else optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=seed)
            if sampler == "qmc"
            else build_sampler(cfg)
        )
        study = optuna.create_study(sampler=chosen)
        for _ in range(n):
            trial = study.ask()
            config = suggest_config(cfg, trial)
            out.append(index[replay.nearest(config["mixture"], config["schedule"]).run_id])
            study.tell(trial, 0.0)
    return out


def uniform_contains(n_runs: int, n_winners: int, n: int) -> float:
    """P(``n`` distinct configs drawn uniformly from ``n_runs`` include one of ``n_winners``)."""
    if n >= n_runs:
        return 1.0 if n_winners else 0.0
    return 1.0 - math.comb(n_runs - n_winners, n) / math.comb(n_runs, n)


def hindsight_floor(grid: Grid, proposals: Sequence[int]) -> float:
    """The least steps of any synchronous last-value cut rule (at most two cuts) whose
    survivors include a winner, chosen knowing the finals; ``inf`` without a winner.

    Training every candidate to the end (no cut) is a rule of the family.
    """
    p = np.asarray(proposals)
    n = len(p)
    winners = sorted({int(x) for x in p if grid.winners[x]})
    if not winners:
        return math.inf
    steps = grid.steps.astype(float)
    s0, s1 = np.meshgrid(steps, steps, indexing="ij")
    best = n * float(FULL_STEPS)
    for w in winners:
        # (n, S): the entries ahead of w at each step; a cut that keeps w keeps those and
        # one entry of w (its duplicates tie with it and can go)
        ahead = (grid.losses[p] < grid.losses[w]).astype(int)
        once = ahead.sum(axis=0) + 1
        best = min(best, float(np.min(n * steps + once * (FULL_STEPS - steps))))
        twice = ahead.T @ ahead + 1  # (S, S): ahead at both steps, and w
        cost = n * s0 + once[:, None] * (s1 - s0) + twice * (FULL_STEPS - s1)
        best = min(best, float(np.min(np.where(s1 > s0, cost, np.inf))))
    return best


@dataclass(frozen=True)
class Rule:
    """Train every candidate to ``s0``, keep the best ``k0`` there; if ``s1``, continue
    those to ``s1`` and keep the best ``k1``; train the survivors to the full budget."""

    s0: int
    k0: int
    s1: int = 0
    k1: int = 0

    def cost(self, n: int) -> float:
        k0 = min(self.k0, n)  # a cut keeps at most the entries it has (as ``pick`` does)
        if not self.s1:
            return float(n * self.s0 + k0 * (FULL_STEPS - self.s0))
        k1 = min(self.k1, k0)
        return float(n * self.s0 + k0 * (self.s1 - self.s0) + k1 * (FULL_STEPS - self.s1))

    def pick(self, grid: Grid, proposals: Sequence[int]) -> int:
        p = list(proposals)
        alive = _best(p, grid.losses[p, grid.column(self.s0)], self.k0)
        if self.s1:
            alive = _best(alive, grid.losses[alive, grid.column(self.s1)], self.k1)
        return min(alive, key=lambda r: (grid.finals[r], r))

    def __str__(self) -> str:
        first = f"keep {self.k0} at {self.s0}"
        return first + (f", {self.k1} at {self.s1}" if self.s1 else "")


def _best(entries: Sequence[int], values: np.ndarray, k: int) -> list[int]:
    order = sorted(range(len(entries)), key=lambda i: (values[i], i))
    return [entries[i] for i in order[:k]]


def rules(n: int) -> list[Rule]:
    """The fixed rules tried at ``n`` candidates (counts below ``n``)."""
    out = []
    for s0 in CUT_STEPS:
        for k0 in (k for k in KEEP if k < n):
            out.append(Rule(s0, k0))
            for s1 in (s for s in CUT_STEPS if s > s0):
                out += [Rule(s0, k0, s1, k1) for k1 in (1, 2, 3) if k1 < k0]
    return out


def within(grid: Grid, rule: Rule, sets: Sequence[Sequence[int]]) -> float:
    """Share of candidate sets whose pick under ``rule`` is within the target."""
    return float(np.mean([grid.winners[rule.pick(grid, p)] for p in sets]))


def choose(grid: Grid, n: int, shares: Mapping[Rule, float], cap: float) -> list[Rule]:
    """The rules within ``cap`` (share of the grid's compute), best first: the most sets
    within the target (``shares``: ``within`` of each rule), then the least compute,
    then the fewest kept."""
    scored = [
        (-share, r.cost(n), r.k0 + r.k1, str(r), r)
        for r, share in shares.items()
        if r.cost(n) <= cap * grid.total
    ]
    return [x[-1] for x in sorted(scored, key=lambda x: x[:-1])]


def study_rule(n: int, screen: int, cut: int, survivors: int) -> Rule:
    """The cuts of a study with ``n`` candidates, two rungs and sync promotion: the
    screen's cut at ``screen`` steps, the next at ``cut``, each keeping what
    ``lawsearch run`` keeps (``StudyConfig.eta``, ``lawsearch.search.sync_keep``)."""
    from lawsearch.search import sync_keep

    settings = {
        "budgets.short_tokens": screen * TOKENS_PER_STEP,
        "search.rungs": [cut / FULL_STEPS, 1.0],
        "search.survivors": survivors,
    }
    with tempfile.TemporaryDirectory(prefix="lawsearch-ceiling-") as tmp:
        cfg = study_config(Path(tmp), seed=0, candidates=n, settings=settings)
    first, second, _ = cfg.budget_steps
    k0 = sync_keep(n, cfg.eta)
    return Rule(first, k0, second, sync_keep(k0, cfg.eta))


def main(argv: Sequence[str] | None = None) -> int:
    parser = benchmark_parser(NAME, __doc__)
    parser.add_argument("--grid", default=None, help="grid folder (default: data/grid)")
    parser.add_argument("--seeds", type=int, default=20, help="in-sample seeds 0..seeds-1")
    parser.add_argument(
        "--more-seeds",
        type=int,
        default=100,
        help="a third, larger set of seeds (after the held-out ones) for the study's cuts",
    )
    parser.add_argument("--candidates", default="10,20,40,60")
    parser.add_argument(
        "--caps",
        default=",".join(str(c) for c in DEFAULT_CAPS),
        help="compute caps (shares of the grid) to choose fixed rules under",
    )
    parser.add_argument(
        "--study",
        default=",".join(str(x) for x in STUDY),
        help="SCREEN,CUT,SURVIVORS: a study's sync cuts (two rungs) to measure on both "
        "samplers' candidates",
    )
    args = parser.parse_args(argv)
    import optuna

    from lawsearch.recorded.grid import load_grid

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # QMCSampler
    out = output_dir(args.out, NAME)
    runs = [r for r in load_grid(args.grid, models=("demo",)) if r.block != "seeds"]
    counts = [int(c) for c in args.candidates.split(",")]
    caps = [float(c) for c in args.caps.split(",")]
    screen, cut, survivors = (int(x) for x in args.study.split(","))
    n_seeds, n_more = args.seeds, args.more_seeds
    if args.tiny:
        counts, n_seeds, n_more = [6], 3, 3
    seeds = {
        "in_sample": range(n_seeds),
        "held_out": range(n_seeds, 2 * n_seeds),
        "more": range(2 * n_seeds, 2 * n_seeds + n_more),
    }
    grid = load(runs)
    n_win = int(grid.winners.sum())
    proposal_rows: list[dict[str, Any]] = []
    rule_rows: list[dict[str, Any]] = []
    study_rows: list[dict[str, Any]] = []
    with timer() as clock:
        for n in counts:
            sets = {
                (sampler, part): [proposals(runs, s, n, sampler) for s in seeds[part]]
                for sampler in SAMPLERS
                for part in seeds
            }
            inside, held = sets["random", "in_sample"], sets["random", "held_out"]
            floors = np.array([hindsight_floor(grid, p) for p in inside + held]) / grid.total
            reach = floors[np.isfinite(floors)]
            row: dict[str, Any] = {
                "candidates": n,
                "uniform_distinct_contains": uniform_contains(len(runs), n_win, n),
                "floor_median": float(np.median(reach)) if reach.size else math.nan,
                "floor_max": float(np.max(reach)) if reach.size else math.nan,
                "floors": floors.tolist(),
            }
            for (sampler, part), got in sets.items():
                row[f"{sampler}_contains_{part}"] = float(
                    np.mean([any(grid.winners[p] for p in ps) for ps in got])
                )
            proposal_rows.append(row)
            shares = {r: within(grid, r, inside) for r in rules(n)}
            for cap in caps:
                ranked = choose(grid, n, shares, cap)
                if not ranked:
                    continue
                rule, runners_up = ranked[0], ranked[:RUNNERS_UP]
                rule_rows.append(
                    {
                        "candidates": n,
                        "cap": cap,
                        "rule": str(rule),
                        "compute": rule.cost(n) / grid.total,
                        "within_in_sample": shares[rule],
                        "within_held_out": within(grid, rule, held),
                        "runners_up": [str(r) for r in runners_up],
                        "runners_up_held_out": [within(grid, r, held) for r in runners_up],
                    }
                )
            # the study's cuts on each sampler's candidates, and search_e2e's top-k short
            top_k = Rule(SCREEN_STEPS, max(1, n // 10))
            cuts = [(s, study_rule(n, screen, cut, survivors)) for s in SAMPLERS]
            for sampler, rule in [*cuts, ("random", top_k)]:
                study_rows.append(
                    {
                        "candidates": n,
                        "sampler": sampler,
                        "rule": str(rule),
                        "compute": rule.cost(n) / grid.total,
                        **{
                            f"within_{part}": within(grid, rule, sets[sampler, part])
                            for part in seeds
                        },
                        "contains_more": row[f"{sampler}_contains_more"],
                    }
                )
    last = 2 * n_seeds - 1
    table = markdown_table(
        [
            "candidates",
            f"random proposals contain a winner (seeds 0-{n_seeds - 1} / {n_seeds}-{last})",
            "Optuna QMCSampler (Sobol): same",
            "LawSampler, explore_fraction = 1 (Sobol): same",
            "distinct uniform grid configs (exact)",
            "hindsight floor of last-value cuts, random: median / worst (of the grid)",
        ],
        [
            [
                r["candidates"],
                f"{fmt(r['random_contains_in_sample'], '.0%')} / "
                f"{fmt(r['random_contains_held_out'], '.0%')}",
                f"{fmt(r['qmc_contains_in_sample'], '.0%')} / "
                f"{fmt(r['qmc_contains_held_out'], '.0%')}",
                f"{fmt(r['sobol_contains_in_sample'], '.0%')} / "
                f"{fmt(r['sobol_contains_held_out'], '.0%')}",
                fmt(r["uniform_distinct_contains"], ".1%"),
                f"{fmt(r['floor_median'], '.1%')} / {fmt(r['floor_max'], '.1%')}",
            ]
            for r in proposal_rows
        ],
    )
    rule_table = markdown_table(
        [
            "candidates",
            "compute cap",
            "fixed rule chosen in-sample (random proposals)",
            "compute (of the grid)",
            "within 0.5%: in-sample",
            "held out",
            f"held out, the {RUNNERS_UP} best in-sample rules: min-max",
        ],
        [
            [
                r["candidates"],
                fmt(r["cap"], ".1%"),
                r["rule"],
                fmt(r["compute"], ".1%"),
                fmt(r["within_in_sample"], ".0%"),
                fmt(r["within_held_out"], ".0%"),
                f"{fmt(min(r['runners_up_held_out']), '.0%')}-"
                f"{fmt(max(r['runners_up_held_out']), '.0%')}",
            ]
            for r in rule_rows
        ],
    )
    study_table = markdown_table(
        [
            "candidates",
            f"proposals, the study's cuts (screen {screen}, cut {cut}, survivors {survivors})",
            "compute (of the grid)",
            f"within 0.5%: seeds 0-{n_seeds - 1}",
            f"seeds {n_seeds}-{last}",
            f"seeds {last + 1}-{last + n_more}",
            f"candidates contain a winner, seeds {last + 1}-{last + n_more}",
        ],
        [
            [
                r["candidates"],
                f"{r['sampler']}: {r['rule']}",
                fmt(r["compute"], ".1%"),
                fmt(r["within_in_sample"], ".0%"),
                fmt(r["within_held_out"], ".0%"),
                fmt(r["within_more"], ".0%"),
                fmt(r["contains_more"], ".0%"),
            ]
            for r in study_rows
        ],
    )
    print(table, "", rule_table, "", study_table, sep="\n")
    write_json(
        out / f"{NAME}.json",
        {
            "proposals": proposal_rows,
            "fixed_rules": rule_rows,
            "study_cuts": study_rows,
            "grid_configs": len(runs),
            "grid_winners": n_win,
            "in_sample_seeds": list(seeds["in_sample"]),
            "held_out_seeds": list(seeds["held_out"]),
            "more_seeds": list(seeds["more"]),
            "seconds": clock[0],
            "environment": environment(),
        },
    )
    write_text(out / f"{NAME}.md", "\n\n".join((table, rule_table, study_table)))
    _figure(proposal_rows, rule_rows, study_rows, out)
    return 0


def _figure(
    proposal_rows: Sequence[dict[str, Any]],
    rule_rows: Sequence[dict[str, Any]],
    study_rows: Sequence[dict[str, Any]],
    out: Path,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for i, row in enumerate(proposal_rows):
        n = row["candidates"]
        floors = np.sort(np.array(row["floors"], dtype=float))
        share = np.arange(1, len(floors) + 1) / len(floors)
        ax.step(100 * floors, 100 * share, where="post", color=f"C{i}", label=f"{n}: hindsight")
        got = [r for r in rule_rows if r["candidates"] == n]
        ax.scatter(
            [100 * r["compute"] for r in got],
            [100 * r["within_held_out"] for r in got],
            color=f"C{i}",
            marker="x",
            label=f"{n}: fixed rule, held out",
        )
        sobol = [r for r in study_rows if r["candidates"] == n and r["sampler"] == "sobol"]
        ax.scatter(
            [100 * r["compute"] for r in sobol],
            [100 * r["within_more"] for r in sobol],
            color=f"C{i}",
            marker="^",
            label=f"{n}: the study's cuts, LawSampler (Sobol), more seeds",
        )
    ax.axhline(90, color="0.4", lw=0.8, ls="--")
    ax.set_xlabel("compute (% of training every grid config to the full budget)")
    ax.set_ylabel("seeds with the pick within 0.5% (%)")
    ax.set_title("last-value cuts on the recorded grid (candidates: kind)")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    save_figure(fig, out / f"{NAME}.png")


if __name__ == "__main__":
    raise SystemExit(main())
