"""The whole search as users run it, replayed on the recorded grid, against Optuna.

``lawsearch run`` with its defaults — ``RetrievalRerank`` proposing with
``LawSampler`` (mixture and schedule), screening with ``LawPruner``, ranking
with the momentum law, continuing survivors — is replayed on the recorded grid
(``data/grid``: 72 configs of the demo model trained to 240 steps). A
proposal trains as the grid config nearest to it (square-root weights, log
peak LR, schedule family and decay; **the mapping is this benchmark's, not the
product's**: lawsearch would train the proposal itself), so a proposal costs
the steps it replays and its loss is that config's recorded curve.

Every method gets the same number of candidates, the same search space (the
demo's five domains, cosine/WSD/linear, peak LR 3e-3..3e-2, WSD decay
10..50%), the same budgets (screen 48 of 240 steps) and the same replay:

* ``lawsearch``: the study wiring of ``lawsearch run`` (``lawsearch.study``:
  sampler, pruner, search; a journal storage, ``sync_interval=0``);
* ``TPE + MedianPruner``, ``TPE + HyperbandPruner``, ``random +
  SuccessiveHalvingPruner``: Optuna, every trial reporting each evaluation to
  the full budget unless pruned;
* ``random + top-k short`` (RegMix-style): screen every candidate at the short
  budget, train the best ``candidates / 10`` (at least 1) to the full budget;
* ``train everything``: every candidate to the full budget.

Regret is the pick's final loss over the grid's best, minus 1; compute is the
steps trained over those of training every grid config to the full budget.
"Best proposed" is the regret of the best grid run any candidate trained as,
the pick a perfect ranking would make: it splits a method's regret into what
its proposals left out and what its cuts lost. Where a method proposed a run
within the target but picked one outside it, "lost at" says how far that run
trained (the most steps of any candidate that trained as it): before the end
of the screen (a pruner stopped it), at the screen's end (the first cut), or
later (a later cut).
Reported over ``--seeds`` study seeds, for ``--candidates`` counts.

Run: ``python -m benchmarks.search_e2e [--tiny] [--seeds 20] [--first-seed 0]
[--candidates 10,20] [--methods lawsearch,...]``.
"""

from __future__ import annotations

import math
import tempfile
import time
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

NAME = "search_e2e"
ROOT = Path(__file__).resolve().parents[1]
#: the WSD decay fraction of each grid schedule label
_DECAY = {"wsd10": 0.1, "wsd30": 0.3, "const_linear": 0.5}
METHODS = (
    "lawsearch",
    "TPE + MedianPruner",
    "TPE + HyperbandPruner",
    "random + SuccessiveHalvingPruner",
    "random + top-k short",
    "train everything",
)
TARGET_REGRET = 0.005
#: the screen (short budget) and the full budget, in steps of 1024 tokens (16 x 64)
SCREEN_STEPS, FULL_STEPS = 48, 240
TOKENS_PER_STEP = 16 * 64


# ---- the replay ------------------------------------------------------------------------------
class GridReplay:
    """A ``Trainer`` that trains a config as its nearest recorded grid run (see the module doc).

    Args:
        runs: the grid runs a proposal may map to.
        eval_every: report every that many steps (the grid's cadence).
    """

    compute_unit = "steps"

    def __init__(self, runs: Sequence[Any], eval_every: int = 3) -> None:
        self.runs = list(runs)
        self.eval_every = int(eval_every)
        self.compute_used = 0.0
        #: every grid run a proposal trained as, and the most steps any candidate trained it to
        self.reached: dict[str, int] = {}
        self._w = np.sqrt(np.array([list(r.mixture.values()) for r in self.runs]))
        self._lr = np.log10([r.schedule.peak_lr for r in self.runs])
        self._label = [r.schedule_label for r in self.runs]
        self._domains = list(self.runs[0].mixture)

    def nearest(self, mixture: Mapping[str, float], schedule: Mapping[str, Any]) -> Any:
        """The grid run closest to a proposal."""
        w = np.sqrt(np.array([float(mixture[d]) for d in self._domains]))
        d = np.sqrt(((self._w - w) ** 2).sum(axis=1))
        d += np.abs(self._lr - math.log10(float(schedule["peak_lr"])))
        label = _label_of(schedule)
        d += np.array([0.0 if lab == label else 0.5 for lab in self._label])
        return self.runs[int(np.argmin(d))]

    def train(
        self,
        config: Mapping[str, Any],
        *,
        budget_steps: int,
        resume_from: str | None = None,
        report: Any,
    ) -> Any:
        from lawsearch.train._protocol import TrainResult

        run = self.nearest(config["mixture"], config["schedule"])
        self.reached.setdefault(run.run_id, 0)
        start = int(resume_from.rsplit("@", 1)[1]) if resume_from else 0
        stop = min(int(budget_steps), run.full_steps)
        steps, values = [], []
        reached, stopped = start, False
        for s, v in zip(run.steps, run.losses, strict=True):
            if s <= start or s > stop or s % self.eval_every:
                continue
            steps.append(int(s))
            values.append(float(v))
            reached = int(s)
            if report(int(s), float(v), {"grid_run": run.run_id}):
                stopped = True
                break
        self.compute_used += reached - start
        self.reached[run.run_id] = max(self.reached[run.run_id], reached)
        return TrainResult(
            final_step=reached,
            final_value=values[-1] if values else math.nan,
            steps=tuple(steps),
            values=tuple(values),
            checkpoint=f"{run.run_id}@{reached}",
            compute=float(reached - start),
            compute_unit="steps",
            stopped=stopped,
            exhausted=reached >= run.full_steps,
            extras={"grid_run": run.run_id},
        )


def _label_of(schedule: Mapping[str, Any]) -> str:
    family = schedule["family"]
    if family != "wsd":
        return str(family)
    d = float(schedule.get("decay_fraction", 0.2))
    return min(_DECAY, key=lambda k: abs(_DECAY[k] - d))


# ---- the study ---------------------------------------------------------------------------------
def study_config(
    root: Path,
    *,
    seed: int,
    candidates: int,
    name: str | None = None,
    storage: str | None = None,
    rungs: Sequence[float] = (0.4, 1.0),
    settings: Mapping[str, Any] | None = None,
) -> Any:
    """The demo study over the grid's search space (same model, budgets and law).

    ``name`` defaults to ``e2e-<seed>``, ``storage`` to the study's journal file;
    ``rungs`` are the continuation rungs (``(1.0,)``: the best straight to the end);
    ``settings`` are study-file keys to change (``{"search.explore_fraction": 0.5}``).
    """
    study: dict[str, Any] = {"name": name or f"e2e-{seed}", "seed": seed}
    if storage is not None:
        study["storage"] = storage
    from lawsearch.config import parse_study

    builtin = {
        "code": "python_stdlib",
        "licenses": "licenses",
        "python_docs": "python_docs",
        "numpy_docs": "numpy_docs",
        "cpp_headers": "cpp_headers",
    }
    data: dict[str, Any] = {
        "study": study,
        "model": {"hidden_size": 64, "intermediate_size": 192, "num_layers": 2},
        "tokenizer": {"vocab_size": 512},
        "domains": {d: {"builtin": b} for d, b in builtin.items()},
        "search_space": {
            "mixture_low": 0.0,
            "mixture_high": 1.0,
            "schedules": ["cosine", "wsd", "linear"],
            "peak_lr": [3e-3, 3e-2],
            "warmup": 0.02,
            "decay_fraction": [0.1, 0.5],
            "final_lr_ratio": 0.1,
        },
        "budgets": {
            "short_tokens": SCREEN_STEPS * TOKENS_PER_STEP,
            "full_tokens": FULL_STEPS * TOKENS_PER_STEP,
        },
        "law": {"name": "momentum"},
        "search": {
            "candidates": candidates,
            "survivors": 1,
            "rungs": list(rungs),
            "promotion": "sync",
        },
        "train": {"batch_size": 16, "seq_len": 64, "eval_every": 3, "device": "cpu"},
    }
    for key, value in (settings or {}).items():
        section, _, field = key.partition(".")
        data.setdefault(section, {})[field] = value
    return parse_study(data, base_dir=ROOT / "studies", run_root=root)


@dataclass(frozen=True)
class Outcome:
    """One method's search on one seed."""

    method: str
    seed: int
    candidates: int
    pick: str
    regret: float
    steps: float
    #: regret of the best grid run any candidate trained as: the pick of a perfect ranking
    proposed_regret: float = math.nan
    #: the most steps that best proposed run was trained to
    proposed_reached: int = 0
    #: the screen (short budget) of the search, in steps
    screen: int = SCREEN_STEPS


def run_lawsearch(cfg: Any, replay: GridReplay) -> tuple[str, float]:
    """The study wiring of ``lawsearch run`` on the replay: (picked grid run, steps trained)."""
    import optuna

    from lawsearch.study import build_pruner, build_sampler, build_search, open_study_storage

    study = optuna.create_study(
        study_name=cfg.name,
        storage=open_study_storage(cfg),
        direction="minimize",
        sampler=build_sampler(cfg),
        pruner=build_pruner(cfg),
        load_if_exists=True,
    )
    result = build_search(cfg, trainer=replay).run(study)
    best = optuna.load_study(study_name=cfg.name, storage=open_study_storage(cfg))
    params = dict(result.best_params)
    trial = next(t for t in best.get_trials(deepcopy=False) if t.number == result.best_trial)
    from lawsearch.optuna import get_schedule, mixture_from_params, mixture_specs

    bounds = mixture_specs(best)["mixture"]
    mixture = mixture_from_params(params, "mixture", bounds)
    schedule = get_schedule(trial.user_attrs)
    assert mixture is not None and schedule is not None
    return replay.nearest(mixture, schedule.to_dict()).run_id, replay.compute_used


def run_optuna(cfg: Any, replay: GridReplay, method: str, seed: int) -> tuple[str, float]:
    """An Optuna baseline on the same space and replay: (picked grid run, steps trained)."""
    import optuna

    from lawsearch.study import suggest_config

    n = cfg.search.candidates
    short, full = cfg.short_steps, cfg.full_steps
    if method.startswith("TPE"):
        sampler: optuna.samplers.BaseSampler = optuna.samplers.TPESampler(seed=seed)
    else:
        sampler = optuna.samplers.RandomSampler(seed=seed)
    pruner: optuna.pruners.BasePruner = optuna.pruners.NopPruner()
    if method == "TPE + MedianPruner":
        pruner = optuna.pruners.MedianPruner()
    elif method == "TPE + HyperbandPruner":
        pruner = optuna.pruners.HyperbandPruner(min_resource=short, max_resource=full)
    elif method == "random + SuccessiveHalvingPruner":
        pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=short)
    # HyperbandPruner assigns brackets by a hash of the study name: a fixed name keeps
    # a seed's run reproducible (Optuna's default name is a random UUID)
    study = optuna.create_study(study_name=f"{method}-{seed}-{n}", sampler=sampler, pruner=pruner)
    runs: dict[int, Any] = {}

    def objective(trial: optuna.Trial, budget: int = full) -> float:
        config = suggest_config(cfg, trial)
        runs[trial.number] = replay.nearest(config["mixture"], config["schedule"])

        def report(step: int, value: float, extras: Any) -> bool:
            trial.report(value, step)
            return bool(trial.should_prune())

        res = replay.train(config, budget_steps=budget, report=report)
        if res.stopped:
            raise optuna.TrialPruned()
        return float(res.final_value)

    if method == "random + top-k short":
        study.optimize(lambda t: objective(t, short), n_trials=n)
        k = max(1, n // 10)
        ranked = sorted(study.get_trials(deepcopy=False), key=lambda t: float(t.value or math.inf))
        finals = {}
        for t in ranked[:k]:
            run = runs[t.number]
            res = replay.train(
                {"mixture": run.mixture, "schedule": run.schedule.to_dict()},
                budget_steps=full,
                resume_from=f"{run.run_id}@{short}",
                report=lambda *a: False,
            )
            finals[run.run_id] = res.final_value
        return min(finals, key=lambda r: finals[r]), replay.compute_used
    study.optimize(objective, n_trials=n)
    done = [t for t in study.get_trials(deepcopy=False) if t.value is not None]
    best = min(done, key=lambda t: float(t.value or math.inf))
    return runs[best.number].run_id, replay.compute_used


def search_once(
    method: str,
    runs: Sequence[Any],
    seed: int,
    candidates: int,
    best: float,
    settings: Mapping[str, Any] | None = None,
) -> Outcome:
    """One method, one seed: the pick's regret and the steps it cost.

    ``settings``: study-file keys changed for lawsearch (``study_config``); the
    method is then labelled with them.
    """
    replay = GridReplay(runs)
    with tempfile.TemporaryDirectory(prefix="lawsearch-e2e-") as tmp:
        own = settings if method == "lawsearch" else None  # the baselines keep the demo's
        cfg = study_config(Path(tmp), seed=seed, candidates=candidates, settings=own)
        screen = cfg.short_steps
        if method == "lawsearch":
            pick, steps = run_lawsearch(cfg, replay)
        elif method == "train everything":
            pick, steps = run_optuna(cfg, replay, "random", seed)
        else:
            pick, steps = run_optuna(cfg, replay, method, seed)
    finals = {r.run_id: r.final_loss for r in runs}
    proposed = min(replay.reached, key=lambda r: (finals[r], r))
    if method == "lawsearch" and settings:
        method += " (" + ", ".join(f"{k} = {v}" for k, v in settings.items()) + ")"
    return Outcome(
        method,
        seed,
        candidates,
        pick,
        finals[pick] / best - 1.0,
        steps,
        finals[proposed] / best - 1.0,
        replay.reached[proposed],
        screen,
    )


def lost_at(outcomes: Sequence[Outcome], short: int) -> dict[str, int]:
    """Seeds whose best proposed run was within the target but whose pick was not, by where
    that run stopped: before the screen's end, at it (``short`` steps), or later."""
    lost = [o for o in outcomes if o.proposed_regret <= TARGET_REGRET < o.regret]
    return {
        "in_screen": sum(o.proposed_reached < short for o in lost),
        "at_screen": sum(o.proposed_reached == short for o in lost),
        "later": sum(o.proposed_reached > short for o in lost),
    }


def summarise(outcomes: Sequence[Outcome], grid_steps: float) -> list[dict[str, Any]]:
    """Per method and candidate count: regret and compute over the seeds."""
    rows = []
    keys = sorted(
        {(o.method, o.candidates) for o in outcomes},
        key=lambda k: (k[1], METHODS.index(k[0].split(" (")[0]), k[0]),
    )
    for method, n in keys:
        got = [o for o in outcomes if o.method == method and o.candidates == n]
        regret = np.array([o.regret for o in got])
        compute = np.array([o.steps / grid_steps for o in got])
        proposed = np.array([o.proposed_regret for o in got])
        rows.append(
            {
                "method": method,
                "candidates": n,
                "seeds": len(got),
                "median_regret": float(np.median(regret)),
                "mean_regret": float(np.mean(regret)),
                "within_target": float(np.mean(regret <= TARGET_REGRET)),
                "median_proposed_regret": float(np.median(proposed)),
                "proposed_within_target": float(np.mean(proposed <= TARGET_REGRET)),
                "median_compute": float(np.median(compute)),
                "mean_compute": float(np.mean(compute)),
                "lost_at": lost_at(got, got[0].screen),
            }
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = benchmark_parser(NAME, __doc__)
    parser.add_argument("--grid", default=None, help="grid folder (default: data/grid)")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument(
        "--first-seed", type=int, default=0, help="seeds are first-seed .. first-seed + seeds - 1"
    )
    parser.add_argument("--candidates", default="10,20")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a study-file key for lawsearch's rows, e.g. search.explore_fraction=0.5 "
        "(repeatable; the rows are labelled with them)",
    )
    args = parser.parse_args(argv)
    import optuna

    from lawsearch.recorded.grid import load_grid

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    out = output_dir(args.out, NAME)
    runs = [r for r in load_grid(args.grid, models=("demo",)) if r.block != "seeds"]
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    counts = [int(c) for c in args.candidates.split(",")]
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"--methods: unknown {unknown}; choose from {list(METHODS)}")
    settings = dict(_setting(s) for s in args.set)
    if args.tiny:
        seeds, counts = seeds[:2], [6]
    best = min(r.final_loss for r in runs)
    grid_steps = float(sum(r.full_steps for r in runs))
    outcomes: list[Outcome] = []
    with timer() as clock:
        for n in counts:
            for method in methods:
                start = time.perf_counter()
                for seed in seeds:
                    outcomes.append(search_once(method, runs, seed, n, best, settings))
                print(
                    f"{method:34s} {n:3d} candidates: {time.perf_counter() - start:6.1f} s",
                    flush=True,
                )
    rows = summarise(outcomes, grid_steps)
    table = markdown_table(
        [
            "candidates",
            "method",
            "median regret",
            "mean regret",
            f"seeds within {TARGET_REGRET:.1%}",
            "median compute (of the grid)",
            "best proposed: median regret",
            f"best proposed within {TARGET_REGRET:.1%}",
            "lost in screen / at its cut / later",
        ],
        [
            [
                r["candidates"],
                r["method"],
                fmt(r["median_regret"], ".2%"),
                fmt(r["mean_regret"], ".2%"),
                fmt(r["within_target"], ".0%"),
                fmt(r["median_compute"], ".1%"),
                fmt(r["median_proposed_regret"], ".2%"),
                fmt(r["proposed_within_target"], ".0%"),
                "{in_screen} / {at_screen} / {later}".format(**r["lost_at"]),
            ]
            for r in rows
        ],
    )
    print(table)
    write_json(
        out / f"{NAME}.json",
        {
            "rows": rows,
            "outcomes": [o.__dict__ for o in outcomes],
            "grid_best": best,
            "grid_configs": len(runs),
            "grid_steps": grid_steps,
            "seconds": clock[0],
            "environment": environment(),
        },
    )
    write_text(out / f"{NAME}.md", table)
    _figure(outcomes, grid_steps, out)
    return 0


def _setting(text: str) -> tuple[str, Any]:
    """``section.key=value`` from ``--set``, the value read as TOML."""
    import tomllib

    key, sep, value = text.partition("=")
    if not sep or "." not in key:
        raise SystemExit(f"--set {text!r}: expected section.key=value, e.g. pruner.caution=0.5")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError as exc:
        raise SystemExit(f"--set {text!r}: the value is not TOML ({exc})") from None
    return key.strip(), parsed


def _figure(outcomes: Sequence[Outcome], grid_steps: float, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for i, method in enumerate(dict.fromkeys(o.method for o in outcomes)):
        got = [o for o in outcomes if o.method == method]
        xs = [100 * o.steps / grid_steps for o in got]
        ys = [100 * o.regret for o in got]
        ax.scatter(xs, ys, s=10, alpha=0.6, color=f"C{i}", label=method)
    ax.axhline(100 * TARGET_REGRET, color="0.4", lw=0.8, ls="--", label="0.5% regret")
    ax.set_xlabel("compute (% of training every grid config to the full budget)")
    ax.set_ylabel("regret of the pick (% above the grid's best final loss)")
    ax.set_title("search end to end on the recorded grid (one dot per seed)")
    ax.legend(fontsize=7)
    save_figure(fig, out / f"{NAME}.png")


if __name__ == "__main__":
    raise SystemExit(main())
