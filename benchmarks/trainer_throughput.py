"""Tokens/s of ``TransformersTrainer`` against a bare PyTorch loop, side by side.

Both train the same Llama (same sizes, same initial weights), with the same
AdamW (decay on matrices only), gradient clipping, batch size and the *same
batches* (the blocks the trainer's interleaved mixture stream draws). The bare
loop is the nanoGPT minimum: fetch, forward, cross-entropy, backward, clip,
step. The trainer adds what a search needs: the schedule's LR every step, token
accounting per domain, and one held-out evaluation + report at the end of the
run (counted in its time; checkpoints are off). Runs are interleaved
(bare, trainer, trainer, bare, ...) so drifting machine load hits both alike;
the ratio of medians is the figure (target >= 0.90).

The default size is the demo study's (studies/demo.toml): 2 layers, d=64,
d_ff=192, vocab 2048, batch 8 x 128 tokens, on the demo corpus.

Run: ``python benchmarks/trainer_throughput.py [--tiny] [--out DIR] [--repeats N]``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

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


def _setup(tiny: bool, cache: Path, threads: int) -> tuple[Any, dict[str, Any], int]:
    from lawsearch.train._transformers import DataSpec, ModelSpec, TrainSpec, TransformersTrainer
    from lawsearch.train.corpus import build_demo_corpus

    if tiny:
        corpus = build_demo_corpus(
            cache / "corpus", max_bytes_per_domain=20_000, token_vocab_size=None
        )
        model = ModelSpec(n_layers=1, d_model=32, n_heads=2, d_ff=64, vocab_size=320, seq_len=32)
        batch, steps = 4, 20
    else:
        corpus = build_demo_corpus()  # the demo study's corpus (cached)
        model = ModelSpec(n_layers=2, d_model=64, n_heads=4, d_ff=192, vocab_size=2048, seq_len=128)
        batch, steps = 8, 60
    trainer = TransformersTrainer(
        model=model,
        data=DataSpec.from_manifest(corpus, cache_dir=str(cache)),
        train=TrainSpec(
            batch_size=batch,
            eval_every=steps,
            eval_batches=1,
            device="cpu",
            dtype="float32",
            threads=threads,
        ),
    )
    trainer.prepare()
    weights = {d: 1.0 / len(trainer.domains) for d in trainer.domains}
    config = {
        "mixture": weights,
        "schedule": {"family": "constant", "peak_lr": 1e-3, "total_steps": steps},
        "seed": 0,
    }
    return trainer, config, steps


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = benchmark_parser(NAME, __doc__)
    parser.add_argument("--repeats", type=int, default=None, help="timed runs of each (default 5)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    out = output_dir(args.out, NAME)
    repeats = args.repeats or (2 if args.tiny else 5)

    import torch

    torch.set_num_threads(args.threads)
    cache_root = Path(os.environ.get("LAWSEARCH_CACHE", Path.home() / ".cache" / "lawsearch"))
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) if args.tiny else cache_root
        trainer, config, steps = _setup(args.tiny, cache, args.threads)
        tokens = steps * trainer.tokens_per_step
        _bare_loop(trainer, config, 2)  # warm-up: imports, allocator, kernels
        _trainer_run(trainer, config, 2)
        bare, mine = [], []
        for r in range(repeats):
            pair = [("bare", _bare_loop), ("trainer", _trainer_run)]
            for name, fn in pair if r % 2 == 0 else pair[::-1]:
                seconds = fn(trainer, config, steps)
                (bare if name == "bare" else mine).append(tokens / seconds)
    bare_tps, trainer_tps = float(np.median(bare)), float(np.median(mine))
    ratio = trainer_tps / bare_tps
    ms = trainer.model_spec
    payload = {
        "name": NAME,
        "tiny": args.tiny,
        "model": {
            "n_layers": ms.n_layers,
            "d_model": ms.d_model,
            "d_ff": ms.d_ff,
            "vocab_size": ms.vocab_size,
            "seq_len": ms.seq_len,
            "params": ms.n_params(embeddings=True),
        },
        "batch_size": trainer.train_spec.batch_size,
        "steps_per_run": steps,
        "repeats": repeats,
        "threads": args.threads,
        "bare_tokens_per_s": bare,
        "trainer_tokens_per_s": mine,
        "bare_median": bare_tps,
        "trainer_median": trainer_tps,
        "trainer_steps_per_s": trainer_tps / trainer.tokens_per_step,
        "ratio": ratio,
        "target": TARGET,
        "met": ratio >= TARGET,
        "environment": {**environment(), "torch": torch.__version__},
    }
    write_json(out / f"{NAME}.json", payload)
    table = markdown_table(
        ["loop", "median tokens/s", "steps/s", "runs (tokens/s)"],
        [
            [
                "bare PyTorch",
                fmt(bare_tps, ".0f"),
                fmt(bare_tps / trainer.tokens_per_step, ".2f"),
                ", ".join(fmt(v, ".0f") for v in bare),
            ],
            [
                "TransformersTrainer",
                fmt(trainer_tps, ".0f"),
                fmt(trainer_tps / trainer.tokens_per_step, ".2f"),
                ", ".join(fmt(v, ".0f") for v in mine),
            ],
        ],
    )
    verdict = (
        f"trainer / bare = {ratio:.3f} (target >= {TARGET:.2f}: "
        f"{'met' if ratio >= TARGET else 'NOT met'})"
    )
    md = (
        f"# Trainer throughput\n\nModel {ms.n_layers}x{ms.d_model} (vocab {ms.vocab_size}, "
        f"seq {ms.seq_len}), batch {trainer.train_spec.batch_size}, {steps} steps per run, "
        f"{repeats} interleaved runs each, {args.threads} thread(s).\n\n{table}\n\n"
        f"## Verdict\n\n{verdict}\n"
    )
    write_text(out / f"{NAME}.md", md)
    _plot(out / f"{NAME}.png", bare, mine)
    print(md)
    return 0


def _plot(path: Path, bare: list[float], mine: list[float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(range(1, len(bare) + 1), bare, "o-", label="bare PyTorch loop")
    ax.plot(range(1, len(mine) + 1), mine, "s-", label="TransformersTrainer")
    ax.set_xlabel("repeat")
    ax.set_ylabel("tokens / s")
    ax.set_ylim(bottom=0)
    ax.legend()
    save_figure(fig, path)


if __name__ == "__main__":
    raise SystemExit(main())
