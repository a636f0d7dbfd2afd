"""What the trainer costs over a bare PyTorch loop, and what preparing a large domain costs.

Part 1, training (``--part train``): the demo study's model, batch and data, built
exactly as ``lawsearch run studies/demo.toml`` builds them (``build_trainer``).
Three loops train the same model (same initial weights) on the *same batches*
(the blocks the trainer's interleaved mixture stream draws), interleaved
(bare, trainer, trainer, bare, ...) so drifting machine load hits all alike:

* **bare**: the nanoGPT minimum: fetch, forward, cross-entropy, backward, clip, step;
* **trainer, one eval**: ``TransformersTrainer`` with one held-out evaluation at the
  end of the run and no checkpoint (the bare step's overhead: LR every step,
  token accounting, reporting);
* **trainer, demo cadence**: the demo's real configuration: an evaluation every 4
  steps over all 5 domains (4,096 held-out tokens each), a report each time, and
  the final checkpoint.

The ratio of median training tokens/s to the bare loop's is the figure
(targets: >= 0.90 for one eval, >= 0.80 for the demo cadence).

Part 2, data (``--part data``): generated JSONL domains of 0.25, 0.5 and 1 GB
(``benchmarks._corpus``, written to a temp dir) are prepared as ``lawsearch run``
prepares a domain (BPE on the bounded sample, then stream, tokenise, pack into
memory-mapped blocks), each in a fresh process that reports its peak resident
memory; then, in another fresh process, prepared again (the cache reused: the
time of that ``prepare``) and trained for 40 steps (step time and memory against
corpus size). Targets: peak <= 2 GB and within
10% from 0.25 to 1 GB; reuse <= 5 s.

Run: ``python -m benchmarks.trainer_throughput [--tiny] [--part train|data|all]``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
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

NAME = "trainer_throughput"
TARGET = 0.90
TARGET_CADENCE = 0.80
TARGET_PEAK_GB = 2.0
TARGET_FLAT = 0.10
TARGET_REUSE_S = 5.0
STUDY = Path(__file__).resolve().parents[1] / "studies" / "demo.toml"


# ---- part 1: training ---------------------------------------------------------------------------


def _setup(tiny: bool, tmp: Path, threads: int) -> tuple[Any, Any, dict[str, Any], int]:
    """(demo-cadence trainer, one-eval trainer, config, steps) of the demo study."""
    from lawsearch.config import load_study
    from lawsearch.study import build_trainer
    from lawsearch.train._transformers import TransformersTrainer

    cfg = load_study(STUDY, run_root=tmp)
    if tiny:  # a small corpus in the temp dir; the rest of the demo study as it is
        corpus = dataclasses.replace(
            cfg.corpus, max_bytes_per_domain=20_000, cache_dir=str(tmp / "cache")
        )
        cfg = dataclasses.replace(cfg, corpus=corpus)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, threads=threads))
    demo = build_trainer(cfg)
    demo.prepare()
    steps = 12 if tiny else cfg.short_steps
    one_eval = TransformersTrainer(
        model=demo.model_spec,
        data=demo.data_spec,
        train=dataclasses.replace(
            demo.train_spec, eval_every=steps, eval_batches=1, checkpoint_dir=""
        ),
    )
    one_eval.prepare()
    weights = {d: 1.0 / len(demo.domains) for d in demo.domains}
    config = {
        "mixture": weights,
        "schedule": {"family": "constant", "peak_lr": 1e-3, "total_steps": steps},
        "seed": 0,
    }
    return demo, one_eval, config, steps


def _bare_loop(trainer: Any, config: dict[str, Any], steps: int) -> float:
    """The minimal loop on the same model, optimizer and batches; returns seconds."""
    import torch
    import torch.nn.functional as F

    from lawsearch.train._data import MixedStream
    from lawsearch.train._model import build_model

    ts, ms = trainer.train_spec, trainer.model_spec
    blocks = trainer._blocks
    t0 = time.perf_counter()
    torch.manual_seed(config["seed"])
    model = build_model(ms, eos_token_id=int(trainer.tokenizer.eos_token_id))
    decay = [p for p in model.parameters() if p.ndim >= 2]
    rest = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": ts.weight_decay}, {"params": rest, "weight_decay": 0}],
        lr=config["schedule"]["peak_lr"],
        betas=ts.betas,
    )
    stream = MixedStream(
        [b.train.shape[0] for b in blocks],
        [config["mixture"][b.name] for b in blocks],
        seed=config["seed"],
    )
    model.train()
    for _ in range(steps):
        doms, rows = stream.take(ts.batch_size)
        x = torch.from_numpy(
            np.stack([blocks[d].train[r] for d, r in zip(doms, rows, strict=True)])
        ).long()
        logits = model(input_ids=x[:, :-1]).logits
        loss = F.cross_entropy(logits.float().reshape(-1, ms.vocab_size), x[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), ts.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def _trainer_run(trainer: Any, config: dict[str, Any], steps: int) -> float:
    t0 = time.perf_counter()
    result = trainer.train(config, budget_steps=steps, report=lambda *a: None)
    elapsed = time.perf_counter() - t0
    assert result.final_step == steps
    return elapsed


def _part_train(tiny: bool, repeats: int, threads: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        demo, one_eval, config, steps = _setup(tiny, Path(tmp), threads)
        tokens = steps * demo.tokens_per_step
        loops = [
            ("bare", lambda: _bare_loop(demo, config, steps)),
            ("one_eval", lambda: _trainer_run(one_eval, config, steps)),
            ("demo_cadence", lambda: _trainer_run(demo, config, steps)),
        ]
        _bare_loop(demo, config, 2)  # warm-up: imports, allocator, kernels
        _trainer_run(one_eval, config, 2)
        runs: dict[str, list[float]] = {name: [] for name, _ in loops}
        for r in range(repeats):
            for name, fn in loops if r % 2 == 0 else loops[::-1]:
                runs[name].append(tokens / fn())
        ts = demo.train_spec
        evals = steps // ts.eval_every
        eval_tokens = (
            evals * len(demo.domains) * ts.eval_batches * ts.batch_size * (demo.model_spec.seq_len)
        )
    med = {k: float(np.median(v)) for k, v in runs.items()}
    return {
        "model": {
            **{k: getattr(demo.model_spec, k) for k in ("n_layers", "d_model", "d_ff")},
            "vocab_size": demo.model_spec.vocab_size,
            "seq_len": demo.model_spec.seq_len,
            "params": demo.model_spec.n_params(embeddings=True),
        },
        "batch_size": demo.train_spec.batch_size,
        "steps_per_run": steps,
        "eval_every": demo.train_spec.eval_every,
        "domains": len(demo.domains),
        "eval_tokens_per_run": eval_tokens,
        "train_tokens_per_run": tokens,
        "tokens_per_s": runs,
        "median": med,
        "ratio_one_eval": med["one_eval"] / med["bare"],
        "ratio_demo_cadence": med["demo_cadence"] / med["bare"],
        # the most the demo cadence can reach if an eval token costs a third of a train token
        "cadence_ceiling": 3 * tokens / (3 * tokens + eval_tokens),
    }


# ---- part 2: data ----------------------------------------------------------------------------


def _maxrss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KB on Linux


def _child(mode: str, file: str, cache: str, vocab: int, num_proc: int) -> dict[str, Any]:
    """Runs in a fresh process: prepare (and in ``train`` mode, train) one file's domain."""
    import datasets  # noqa: F401  (the imports are counted in the baseline)
    import torch
    import transformers  # noqa: F401

    from lawsearch.train._transformers import DataSpec, ModelSpec, TrainSpec, TransformersTrainer

    torch.set_num_threads(1)
    base = _maxrss_gb()
    trainer = TransformersTrainer(
        model=ModelSpec(n_layers=2, d_model=64, n_heads=4, d_ff=192, vocab_size=vocab, seq_len=64),
        data=DataSpec(domains={"web": file}, cache_dir=cache, num_proc=num_proc),
        train=TrainSpec(batch_size=16, eval_every=1000, eval_batches=1, device="cpu"),
    )
    out: dict[str, Any] = {"baseline_gb": base}
    t0 = time.perf_counter()
    if mode == "pack":  # the tokenizer first (timed apart), then stream, tokenise, pack
        from lawsearch.train._pack import SplitRule, train_sample
        from lawsearch.train._tokenizer import load_or_train_tokenizer

        ds = trainer.data_spec
        sample = train_sample(
            "web", file, rule=SplitRule(ds.held_out_fraction), max_bytes=ds.tokenizer_sample_bytes
        )
        load_or_train_tokenizer(
            [sample], vocab_size=vocab, cache_dir=ds.resolved_cache_dir() / "tokenizers"
        )
        del sample
        out["tokenizer_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
    trainer.prepare()
    out["prepare_s"] = time.perf_counter() - t0
    out["train_tokens"] = trainer.tokens_available()["web"]
    if mode == "train":
        config = {
            "mixture": {"web": 1.0},
            "schedule": {"family": "constant", "peak_lr": 1e-3, "total_steps": 40},
        }
        trainer.train(config, budget_steps=5, report=lambda *a: None)  # warm-up
        t0 = time.perf_counter()
        trainer.train(config, budget_steps=40, report=lambda *a: None)
        out["step_s"] = (time.perf_counter() - t0) / 40
    out["peak_gb"] = _maxrss_gb()
    return out


def _run_child(mode: str, file: Path, cache: Path, vocab: int, num_proc: int) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.trainer_throughput", "--child", mode]
    cmd += ["--file", str(file), "--cache", str(cache), "--vocab", str(vocab)]
    cmd += ["--num-proc", str(num_proc)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"child {mode} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _part_data(tiny: bool, sizes: Sequence[float], num_procs: Sequence[int]) -> dict[str, Any]:
    from benchmarks._corpus import write_domain

    vocab = 512 if tiny else 4096
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        for size_gb in sizes:
            for num_proc in num_procs:
                folder = Path(tmp) / f"web-{size_gb:g}-{num_proc}"
                t0 = time.perf_counter()
                (file,) = write_domain(folder, "web", int(size_gb * 1e9), fmt="jsonl")
                written = time.perf_counter() - t0
                nbytes = file.stat().st_size
                cold = _run_child("pack", file, cache, vocab, num_proc)
                train = _run_child("train", file, cache, vocab, num_proc)  # reuses the cache
                rows.append(
                    {
                        "size_gb": nbytes / 1e9,
                        "num_proc": num_proc,
                        "write_s": written,
                        "tokenizer_s": cold["tokenizer_s"],
                        "prepare_s": cold["prepare_s"],
                        "mb_per_s": nbytes / 1e6 / cold["prepare_s"],
                        "train_tokens": cold["train_tokens"],
                        "baseline_gb": cold["baseline_gb"],
                        "peak_gb": cold["peak_gb"],
                        "reuse_s": train["prepare_s"],
                        "step_s": train["step_s"],
                        "train_peak_gb": train["peak_gb"],
                    }
                )
                shutil.rmtree(folder)
                for packed in (cache / "blocks").iterdir():  # one size's blocks at a time on disk
                    shutil.rmtree(packed)
    ones = [r for r in rows if r["num_proc"] == num_procs[0]]
    peaks = [r["peak_gb"] for r in ones]
    return {
        "vocab_size": vocab,
        "rows": rows,
        "peak_max_gb": max(r["peak_gb"] for r in rows),
        "peak_spread": (max(peaks) - min(peaks)) / min(peaks),
        "reuse_max_s": max(r["reuse_s"] for r in rows),
    }


# ---- output -------------------------------------------------------------------------------------


def _markdown(train: dict[str, Any] | None, data: dict[str, Any] | None, threads: int) -> str:
    parts = ["# Trainer throughput\n"]
    if train is not None:
        m, med = train["model"], train["median"]
        rows = []
        for key, label in (
            ("bare", "bare PyTorch"),
            ("one_eval", "TransformersTrainer, one eval"),
            ("demo_cadence", "TransformersTrainer, demo cadence"),
        ):
            rows.append(
                [
                    label,
                    fmt(med[key], ".0f"),
                    fmt(med[key] / med["bare"], ".3f"),
                    ", ".join(fmt(v, ".0f") for v in train["tokens_per_s"][key]),
                ]
            )
        parts.append(
            f"Demo model {m['n_layers']}x{m['d_model']} (vocab {m['vocab_size']}, seq "
            f"{m['seq_len']}), batch {train['batch_size']}, {train['steps_per_run']} steps per "
            f"run, {threads} thread(s). Demo cadence: an eval every {train['eval_every']} steps "
            f"over {train['domains']} domains = {train['eval_tokens_per_run']:,} held-out tokens "
            f"per {train['train_tokens_per_run']:,} training tokens.\n\n"
            + markdown_table(["loop", "median train tokens/s", "of bare", "runs"], rows)
        )
        parts.append(
            f"\none eval / bare = {train['ratio_one_eval']:.3f} (target >= {TARGET:.2f}: "
            f"{'met' if train['ratio_one_eval'] >= TARGET else 'NOT met'}); demo cadence / bare "
            f"= {train['ratio_demo_cadence']:.3f} (target >= {TARGET_CADENCE:.2f}: "
            f"{'met' if train['ratio_demo_cadence'] >= TARGET_CADENCE else 'NOT met'}; ceiling "
            f"if an eval token cost a third of a train token: {train['cadence_ceiling']:.3f})\n"
        )
    if data is not None:
        rows = [
            [
                fmt(r["size_gb"], ".3f"),
                str(r["num_proc"]),
                fmt(r["tokenizer_s"], ".1f"),
                fmt(r["prepare_s"], ".1f"),
                fmt(r["mb_per_s"], ".1f"),
                fmt(r["baseline_gb"], ".2f"),
                fmt(r["peak_gb"], ".2f"),
                fmt(r["reuse_s"], ".2f"),
                fmt(1e3 * r["step_s"], ".1f"),
                fmt(r["train_peak_gb"], ".2f"),
            ]
            for r in data["rows"]
        ]
        parts.append(
            f"\n## Data pipeline (generated JSONL, BPE vocab {data['vocab_size']})\n\n"
            + markdown_table(
                [
                    "GB",
                    "num_proc",
                    "BPE s",
                    "pack s",
                    "MB/s",
                    "imports GB",
                    "peak GB",
                    "reuse s",
                    "ms/step",
                    "train peak GB",
                ],
                rows,
            )
            + f"\n\npeak {data['peak_max_gb']:.2f} GB (target <= {TARGET_PEAK_GB:g}), spread "
            f"{100 * data['peak_spread']:.1f}% (target <= {100 * TARGET_FLAT:.0f}%), reuse "
            f"{data['reuse_max_s']:.2f} s (target <= {TARGET_REUSE_S:g})\n"
        )
    return "\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = benchmark_parser(NAME, __doc__)
    parser.add_argument("--repeats", type=int, default=None, help="timed runs of each (default 5)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--part", choices=("train", "data", "all"), default="all")
    parser.add_argument("--sizes", default=None, help="data sizes in GB (default 0.25,0.5,1)")
    parser.add_argument("--num-procs", default="1", help="tokenisation processes to measure")
    parser.add_argument("--child", default=None, help=argparse_hidden())
    parser.add_argument("--file", default=None, help=argparse_hidden())
    parser.add_argument("--cache", default=None, help=argparse_hidden())
    parser.add_argument("--vocab", type=int, default=512, help=argparse_hidden())
    parser.add_argument("--num-proc", type=int, default=1, help=argparse_hidden())
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, args.file, args.cache, args.vocab, args.num_proc)))
        return 0
    out = output_dir(args.out, NAME)
    repeats = args.repeats or (2 if args.tiny else 5)
    train = data = None
    if args.part in ("train", "all"):
        train = _part_train(args.tiny, repeats, args.threads)
    if args.part in ("data", "all"):
        default = "0.002,0.004" if args.tiny else "0.25,0.5,1"
        sizes = [float(s) for s in (args.sizes or default).split(",")]
        num_procs = [int(n) for n in args.num_procs.split(",")]
        data = _part_data(args.tiny, sizes, num_procs)
    import torch

    payload: dict[str, Any] = {
        "name": NAME,
        "tiny": args.tiny,
        "repeats": repeats,
        "threads": args.threads,
        "train": train,
        "data": data,
        "targets": {
            "one_eval": TARGET,
            "demo_cadence": TARGET_CADENCE,
            "peak_gb": TARGET_PEAK_GB,
            "flat": TARGET_FLAT,
            "reuse_s": TARGET_REUSE_S,
        },
        "environment": {**environment(), "torch": torch.__version__},
    }
    write_json(out / f"{NAME}.json", payload)
    md = _markdown(train, data, args.threads)
    write_text(out / f"{NAME}.md", md)
    _plot(out / f"{NAME}.png", train, data)
    print(md)
    return 0


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


def _plot(path: Path, train: dict[str, Any] | None, data: dict[str, Any] | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3))
    if train is not None:
        for key, runs in train["tokens_per_s"].items():
            axes[0].plot(range(1, len(runs) + 1), runs, "o-", label=key)
        axes[0].set_xlabel("repeat")
        axes[0].set_ylabel("train tokens / s")
        axes[0].set_ylim(bottom=0)
        axes[0].legend(fontsize=7)
    if data is not None:
        rows = data["rows"]
        axes[1].plot([r["size_gb"] for r in rows], [r["peak_gb"] for r in rows], "o-", label="peak")
        axes[1].plot(
            [r["size_gb"] for r in rows], [r["baseline_gb"] for r in rows], "s--", label="imports"
        )
        axes[1].set_xlabel("JSONL domain (GB)")
        axes[1].set_ylabel("resident memory (GB)")
        axes[1].set_ylim(bottom=0)
        axes[1].legend(fontsize=7)
    save_figure(fig, path)


if __name__ == "__main__":
    raise SystemExit(main())
