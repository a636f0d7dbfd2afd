"""Record a fixed, seeded grid of real training runs: lawsearch's own curves, from step 0.

The laws are measured on public curves that start after warmup; the curves
lawsearch itself produces start at step 0, include the warmup, and on small
models plateau and then descend again. This script trains a fixed grid with the
real ``TransformersTrainer`` on the demo's built-in corpus, every run to its
full budget, evaluating at step 0 and every few steps, and writes:

* ``curves.csv.gz``: one row per evaluation (tidy): ``run_id``, every config
  field (block, model size, seed, mixture weights ``w_<domain>``, schedule
  fields), ``step``, ``tokens``, ``lr`` (the LR at that step), ``loss`` (the
  mean held-out loss over the 5 domains), ``loss_<domain>`` and ``train_loss``;
* ``positions.csv.gz``: ``run_id``, ``step`` and the held-out loss at each
  token position ``p0 .. p{L-2}`` (for the temporal law);
* ``MANIFEST.json``: the command, seeds, commit, machine and wall time.

The grid (``grid_configs``):

* ``core``: 4 mixtures (uniform, one 50/50 edge, two Dirichlet draws) x 5
  schedules (cosine, WSD with a 10% and a 30% linear decay, constant then a
  linear decay over the second half, linear) x 3 peak LRs (3e-3, 1e-2, 3e-2):
  60 runs of the demo's model and budget (240 steps), so every mixture and LR
  has the five schedules side by side;
* ``spread``: 12 more mixtures (2 corners, 4 edges, 6 Dirichlet draws), each
  with one of the 15 schedule x LR pairs in turn: 12 runs;
* ``seeds``: 4 core configs again with seeds 1 and 2 (3 seeds each with the
  core's seed 0): 8 runs, for the seed noise;
* ``large``: a ~4x larger model (hidden 128: 4.0x the non-embedding
  parameters) with a 2x longer budget (480 steps): 2 mixtures x 5 schedules x
  3 peak LRs: 30 runs.

Evaluation every 3 steps (6 for ``large``), so a 10% prefix holds 8 points
besides step 0. Runs are independent processes' work (``--jobs``); finished
runs are kept under ``<out>/parts/`` so an interrupted recording resumes.

Run: ``python -m benchmarks.record_grid [--jobs 2] [--out data/grid]``
(``--tiny``: a seconds-long grid for CI).
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import benchmark_parser, environment, write_json

NAME = "record_grid"
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "data" / "grid"
GRID_SEED = 2026
PEAK_LRS = (3e-3, 1e-2, 3e-2)
#: label -> (family, decay_fraction); WSD decays linearly, as the demo's
SCHEDULES: dict[str, tuple[str, float]] = {
    "cosine": ("cosine", 0.2),
    "wsd10": ("wsd", 0.1),
    "wsd30": ("wsd", 0.3),
    "const_linear": ("wsd", 0.5),
    "linear": ("linear", 0.2),
}
WARMUP = 0.02
FINAL_LR_RATIO = 0.1
#: model sizes: name -> (hidden, layers, ffn, heads, budget multiple, eval_every)
SIZES: dict[str, tuple[int, int, int, int, int, int]] = {
    "demo": (64, 2, 192, 4, 1, 3),
    "x4": (128, 2, 384, 4, 2, 6),
}


@dataclass(frozen=True)
class GridRun:
    """One run of the grid."""

    run_id: str
    block: str
    size: str
    mixture: dict[str, float]
    schedule_label: str
    peak_lr: float
    seed: int
    total_steps: int
    eval_every: int
    schedule: dict[str, Any] = field(default_factory=dict)


def _mixtures(domains: Sequence[str], rng: np.random.Generator) -> dict[str, list[np.ndarray]]:
    k = len(domains)
    eye = np.eye(k)

    def edge(i: int, j: int) -> np.ndarray:  # 50/50 of two domains (indices wrap for small k)
        return 0.5 * (eye[i % k] + eye[j % k])

    core = [np.full(k, 1.0 / k), edge(0, 2)]
    core += [rng.dirichlet(np.ones(k)) for _ in range(2)]
    spread = [eye[0], eye[2 % k]]
    spread += [edge(i, j) for i, j in ((0, 1), (1, 3), (2, 4), (3, 4))]
    spread += [rng.dirichlet(np.ones(k)) for _ in range(6)]
    return {"core": core, "spread": spread}


def _rounded(domains: Sequence[str], w: np.ndarray) -> dict[str, float]:
    """Weights to 6 decimals; if that misses a sum of 1 by more than the trainer's 1e-6
    tolerance, the largest weight absorbs the residual."""
    out = {d: round(float(v), 6) for d, v in zip(domains, w, strict=True)}
    residual = 1.0 - sum(out.values())
    if abs(residual) > 1e-6:
        top = max(out, key=lambda d: out[d])
        out[top] = round(out[top] + residual, 6)
    return out


def _schedule(label: str, peak_lr: float, total: int) -> dict[str, Any]:
    from lawsearch.schedules import Schedule

    family, decay = SCHEDULES[label]
    spec: dict[str, Any] = {
        "family": family,
        "peak_lr": peak_lr,
        "total_steps": total,
        "warmup_steps": round(WARMUP * total),
        "final_lr": peak_lr * FINAL_LR_RATIO,
    }
    if family == "wsd":
        spec["decay_fraction"] = decay
    return Schedule.from_dict(spec).to_dict()


def grid_configs(domains: Sequence[str], full_steps: int, *, tiny: bool = False) -> list[GridRun]:
    """The fixed grid, in recording order (deterministic in ``GRID_SEED``)."""
    rng = np.random.default_rng(GRID_SEED)
    mixes = _mixtures(domains, rng)
    labels = list(SCHEDULES)
    runs: list[GridRun] = []

    def add(block: str, size: str, w: np.ndarray, label: str, lr: float, seed: int = 0) -> None:
        mult, every = SIZES[size][4], SIZES[size][5]
        total = full_steps * mult
        runs.append(
            GridRun(
                run_id=f"{block}{len(runs):03d}",
                block=block,
                size=size,
                mixture=_rounded(domains, w),
                schedule_label=label,
                peak_lr=lr,
                seed=seed,
                total_steps=total,
                eval_every=every if not tiny else 2,
                schedule=_schedule(label, lr, total),
            )
        )

    if tiny:
        for label in ("cosine", "wsd10"):
            for lr in (3e-3, 3e-2):
                add("core", "demo", mixes["core"][0], label, lr)
        add("seeds", "demo", mixes["core"][0], "cosine", 3e-3, seed=1)
        return runs
    for w in mixes["core"]:
        for label in labels:
            for lr in PEAK_LRS:
                add("core", "demo", w, label, lr)
    pairs = [(label, lr) for label in labels for lr in PEAK_LRS]
    for i, w in enumerate(mixes["spread"]):
        label, lr = pairs[(4 * i + 2) % len(pairs)]  # walks all 15 pairs (4 is coprime to 15)
        add("spread", "demo", w, label, lr)
    repeated = [
        (mixes["core"][0], "cosine", 1e-2),
        (mixes["core"][0], "wsd10", 1e-2),
        (mixes["core"][2], "cosine", 3e-3),
        (mixes["core"][1], "linear", 3e-2),
    ]
    for seed in (1, 2):
        for w, label, lr in repeated:
            add("seeds", "demo", w, label, lr, seed=seed)
    for w in (mixes["core"][0], mixes["core"][2]):
        for label in labels:
            for lr in PEAK_LRS:
                add("large", "x4", w, label, lr)
    return runs


# ---- training ------------------------------------------------------------------------------


def _study(tiny: bool, cache: str | None) -> Any:
    """The demo study (or the tiny CI study) the grid trains with."""
    from lawsearch.config import load_study

    if tiny:
        from benchmarks.demo_validation import tiny_study

        return tiny_study(Path(cache or "/tmp/lawsearch-grid-tiny"))
    return load_study(ROOT / "studies" / "demo.toml", run_root=ROOT)


def _trainer(cfg: Any, size: str, tiny: bool) -> Any:
    from lawsearch.study import build_trainer

    if not tiny:
        hidden, layers, ffn, heads = SIZES[size][:4]
        model = dataclasses.replace(
            cfg.model,
            hidden_size=hidden,
            num_layers=layers,
            intermediate_size=ffn,
            num_heads=heads,
        )
        cfg = dataclasses.replace(cfg, model=model)
    trainer = build_trainer(cfg)
    train = dataclasses.replace(
        trainer.train_spec, checkpoint_dir="", checkpoint_every=0, eval_at_start=True
    )
    return type(trainer)(model=trainer.model_spec, data=trainer.data_spec, train=train)


_TRAINERS: dict[str, Any] = {}


def train_run(run: GridRun, tiny: bool, cache: str | None) -> dict[str, Any]:
    """Train one grid run to its full budget; its rows (curves and positions)."""
    cfg = _study(tiny, cache)
    if run.size not in _TRAINERS:
        _TRAINERS[run.size] = _trainer(cfg, run.size, tiny)
    trainer = _TRAINERS[run.size]
    trainer = type(trainer)(
        model=trainer.model_spec,
        data=trainer.data_spec,
        train=dataclasses.replace(trainer.train_spec, eval_every=run.eval_every),
    )
    from lawsearch.schedules import Schedule

    schedule = Schedule.from_dict(run.schedule)
    rows: list[dict[str, Any]] = []
    positions: list[list[float]] = []

    def report(step: int, value: float, extras: Any) -> bool:
        row = {
            "step": int(step),
            "tokens": float(extras["tokens"]),
            "lr": float(schedule.lr(min(step, schedule.total_steps - 1))),
            "loss": float(value),
            **{f"loss_{d}": float(extras[f"loss/{d}"]) for d in run.mixture},
            "train_loss": float(extras.get("train_loss", float("nan"))),
        }
        rows.append(row)
        positions.append([float(v) for v in extras["loss_per_position"]])
        return False

    t0 = time.perf_counter()
    config = {"mixture": run.mixture, "schedule": run.schedule, "seed": run.seed}
    trainer.train(config, budget_steps=run.total_steps, report=report)
    return {"rows": rows, "positions": positions, "seconds": time.perf_counter() - t0}


def _worker(args: tuple[GridRun, bool, str | None]) -> tuple[str, dict[str, Any]]:
    import torch

    torch.set_num_threads(1)
    run, tiny, cache = args
    return run.run_id, train_run(run, tiny, cache)


# ---- files -----------------------------------------------------------------------------------


def config_fields(run: GridRun, n_params: dict[str, int]) -> dict[str, Any]:
    """The config columns repeated on every row of a run (tidy)."""
    hidden, layers, ffn = SIZES[run.size][:3]
    s = run.schedule
    out: dict[str, Any] = {
        "run_id": run.run_id,
        "block": run.block,
        "model": run.size,
        "hidden_size": hidden,
        "num_layers": layers,
        "intermediate_size": ffn,
        "params": n_params.get(run.size, 0),
        "seed": run.seed,
    }
    out.update({f"w_{d}": v for d, v in run.mixture.items()})
    out.update(
        {
            "schedule": run.schedule_label,
            "family": s["family"],
            "peak_lr": s["peak_lr"],
            "warmup_steps": s["warmup_steps"],
            "decay_fraction": s["decay_fraction"] if s["family"] == "wsd" else "",
            "final_lr": s["final_lr"],
            "total_steps": s["total_steps"],
            "eval_every": run.eval_every,
        }
    )
    return out


def _gz_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    tmp = path.with_name(f".{path.name}.tmp")
    # mtime=0: the same runs give byte-identical files
    with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write(buf.getvalue().encode())
    os.replace(tmp, path)


def _num(v: Any) -> Any:
    return f"{v:.6g}" if isinstance(v, float) else v


def write_grid(
    out: Path, runs: Sequence[GridRun], done: dict[str, dict[str, Any]], n_params: dict[str, int]
) -> None:
    """Merge the finished runs into ``curves.csv.gz`` and ``positions.csv.gz``."""
    curve_rows: list[list[Any]] = []
    pos_rows: list[list[Any]] = []
    header: list[str] = []
    n_pos = 0
    for run in runs:
        got = done[run.run_id]
        fixed = config_fields(run, n_params)
        for row, pos in zip(got["rows"], got["positions"], strict=True):
            full = {**fixed, **row}
            if not header:
                header = list(full)
            curve_rows.append([_num(full[h]) for h in header])
            n_pos = len(pos)
            pos_rows.append([run.run_id, row["step"], *(f"{v:.5g}" for v in pos)])
    _gz_csv(out / "curves.csv.gz", header, curve_rows)
    _gz_csv(
        out / "positions.csv.gz", ["run_id", "step", *(f"p{i}" for i in range(n_pos))], pos_rows
    )


def _param_counts(runs: Sequence[GridRun], tiny: bool, cache: str | None) -> dict[str, int]:
    """Non-embedding parameters of each model size, as trained."""
    cfg = _study(tiny, cache)
    return {
        size: _trainer(cfg, size, tiny).model_spec.n_params() for size in {r.size for r in runs}
    }


def _commit() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "lawsearch", "benchmarks/record_grid.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def main(argv: Sequence[str] | None = None) -> int:
    parser = benchmark_parser(NAME, __doc__)
    parser.add_argument("--jobs", type=int, default=2, help="parallel training processes")
    parser.add_argument(
        "--only", default="", help="comma-separated blocks to record (default: all)"
    )
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out is not None else DEFAULT_OUT
    out.mkdir(parents=True, exist_ok=True)
    parts = out / "parts"
    parts.mkdir(exist_ok=True)
    cache = str(out / "cache") if args.tiny else None
    cfg = _study(args.tiny, cache)
    runs = grid_configs(cfg.domain_names, cfg.full_steps, tiny=args.tiny)
    if args.only:
        keep = set(args.only.split(","))
        runs = [r for r in runs if r.block in keep]
    done: dict[str, dict[str, Any]] = {}
    for run in runs:
        f = parts / f"{run.run_id}.json"
        if f.is_file():
            done[run.run_id] = json.loads(f.read_text())
    todo = [r for r in runs if r.run_id not in done]
    # prepare the corpus and tokenizer once, before the workers read the caches
    _trainer(cfg, "demo", args.tiny).prepare()
    t0 = time.perf_counter()
    print(f"record_grid: {len(runs)} runs, {len(done)} already recorded, {len(todo)} to train")
    work = [(r, args.tiny, cache) for r in todo]
    if args.jobs > 1 and len(work) > 1:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        with ctx.Pool(args.jobs, maxtasksperchild=8) as pool:
            results = pool.imap_unordered(_worker, work)
            for run_id, got in results:
                _save_part(parts, run_id, got, done)
    else:
        for item in work:
            run_id, got = _worker(item)
            _save_part(parts, run_id, got, done)
    wall = time.perf_counter() - t0
    write_grid(out, runs, done, _param_counts(runs, args.tiny, cache))
    seconds = [done[r.run_id]["seconds"] for r in runs]
    manifest = {
        "command": "python -m benchmarks.record_grid " + " ".join(argv or sys.argv[1:]),
        "commit": _commit(),
        "grid_seed": GRID_SEED,
        "runs": len(runs),
        "blocks": {
            b: sum(r.block == b for r in runs) for b in dict.fromkeys(r.block for r in runs)
        },
        "domains": list(cfg.domain_names),
        "study": "demo.toml" if not args.tiny else "tiny",
        "sizes": {
            k: dict(
                zip(("hidden", "layers", "ffn", "heads", "budget_x", "eval_every"), v, strict=True)
            )
            for k, v in SIZES.items()
        },
        "train_seconds_sum": sum(seconds),
        "wall_seconds_this_call": wall,
        "jobs": args.jobs,
        "machine": {**environment(), "processor": platform.processor()},
    }
    write_json(out / "MANIFEST.json", manifest)
    print(
        f"record_grid: wrote {out}/curves.csv.gz and positions.csv.gz ({len(runs)} runs; "
        f"training {sum(seconds) / 60:.1f} min summed, {wall / 60:.1f} min wall this call)"
    )
    return 0


def _save_part(parts: Path, run_id: str, got: dict[str, Any], done: dict[str, Any]) -> None:
    tmp = parts / f".{run_id}.json.tmp"
    tmp.write_text(json.dumps(got))
    os.replace(tmp, parts / f"{run_id}.json")
    done[run_id] = got
    print(f"  {run_id}: {len(got['rows'])} evals, {got['seconds']:.0f} s", flush=True)


if __name__ == "__main__":
    sys.exit(main())
