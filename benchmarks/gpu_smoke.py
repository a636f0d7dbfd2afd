"""The GPU smoke test of ``studies/llama_mixture_gpu.toml``: plan it, train 2 candidates, report.

Generates a corpus in the study's documented layout (``data/<domain>/*.parquet``,
``benchmarks._corpus``), writes a copy of the study with budgets of a few hundred
steps (``--steps``) and 2 candidates, plans it as ``lawsearch plan`` does
(``lawsearch.runner.plan_run``, which times real steps on the GPU), then trains
2 candidate mixtures with the study's own trainer (``build_trainer``: bf16
autocast, fused AdamW, ``torch.compile``, the study's eval cadence and
checkpoints) and reports tokens/s and model FLOPs utilisation (MFU:
``(6 N + 12 L d T)`` FLOPs per token, PaLM's count, over the GPU's dense bf16
peak; ``--peak-tflops`` for a GPU not in the table).

``scripts/gpu_smoke.sh`` installs and runs it (<= 10 minutes on one H100/H200).
``--tiny`` runs the same path on CPU with a tiny model (the test).

Run: ``python -m benchmarks.gpu_smoke [--tiny] [--steps N] [--out DIR]``.
"""

from __future__ import annotations

import shutil
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks._common import (
    benchmark_parser,
    environment,
    markdown_table,
    output_dir,
    write_json,
    write_text,
)
from benchmarks._corpus import write_layout

NAME = "gpu_smoke"
STUDY = Path(__file__).resolve().parents[1] / "studies" / "llama_mixture_gpu.toml"
#: dense bf16 peak TFLOP/s by device name fragment (vendor data sheets)
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0}


def _study(root: Path, steps: int, tiny: bool) -> dict[str, Any]:
    data = tomllib.loads(STUDY.read_text())
    tps = data["train"]["batch_size"] * data["train"]["seq_len"]
    if tiny:
        data["model"] = {"hidden_size": 32, "intermediate_size": 64, "num_layers": 1}
        data["model"] |= {"num_heads": 2, "num_kv_heads": 1}
        data["tokenizer"] = {"vocab_size": 512}
        data["train"] |= {"batch_size": 8, "seq_len": 64, "device": "cpu", "dtype": "float32"}
        data["train"] |= {"compile": False, "threads": 1, "eval_tokens": 2048}
        tps = 8 * 64
    data["study"] = {"name": NAME, "dir": str(root / "run")}
    data["budgets"] = {"short_tokens": steps // 3 * tps, "full_tokens": steps * tps}
    data["search"] |= {"candidates": 2, "survivors": 1}
    data["search_space"]["max_epochs"] = 1000.0  # a smoke test repeats its small corpus
    data["train"]["eval_every"] = max(1, steps // 30)
    data["corpus"]["held_out_documents"] = 200
    return data


def _toml(data: dict[str, Any]) -> str:
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return repr(v)

    lines = []
    for section, table in data.items():
        if section == "domains":
            for name, dom in table.items():
                lines.append(f"[domains.{name}]")
                lines += [f"{k} = {value(v)}" for k, v in dom.items()]
            continue
        lines.append(f"[{section}]")
        lines += [f"{k} = {value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def _peak_flops(device: str, given: float | None) -> float | None:
    if given:
        return given * 1e12
    for fragment, tflops in PEAK_TFLOPS.items():
        if fragment in device:
            return tflops * 1e12
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = benchmark_parser(NAME, __doc__)
    parser.add_argument("--steps", type=int, default=None, help="steps per candidate (300)")
    parser.add_argument("--mb-per-domain", type=float, default=None, help="corpus size (40)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the GPU's bf16 peak")
    args = parser.parse_args(argv)
    out = output_dir(args.out, NAME)
    steps = args.steps or (24 if args.tiny else 300)
    mb = args.mb_per_domain or (0.1 if args.tiny else 40.0)

    import torch

    from lawsearch.config import load_study
    from lawsearch.runner import UserError, bad_input, format_plan, plan_run
    from lawsearch.study import build_trainer

    t_start = time.perf_counter()
    root = out / "work"
    shutil.rmtree(root, ignore_errors=True)
    data = _study(root, steps, args.tiny)
    write_layout(root, list(data["domains"]), int(mb * 1e6), shards=4)
    study = root / "gpu_smoke.toml"
    study.write_text(_toml(data))
    t0 = time.perf_counter()
    try:
        with bad_input():
            cfg = load_study(study)
        _, plan = plan_run(cfg, timing=True)
    except UserError as exc:
        raise SystemExit(f"gpu_smoke: the plan refused the study: {exc}") from None
    print(format_plan(cfg, plan))
    plan_s = time.perf_counter() - t0
    trainer = build_trainer(cfg)
    trainer.prepare()
    names = list(trainer.domains)
    candidates = [
        {d: 1.0 / len(names) for d in names},
        {d: (0.4 if i == 0 else 0.6 / (len(names) - 1)) for i, d in enumerate(names)},
    ]
    schedule = {"family": "cosine", "peak_lr": 1e-3, "total_steps": steps, "warmup_steps": 10}
    runs = []
    for i, mixture in enumerate(candidates):
        config = {"mixture": mixture, "schedule": schedule, "seed": i, "run_id": f"smoke-{i}"}
        t0 = time.perf_counter()
        result = trainer.train(config, budget_steps=steps, report=lambda *a: None)
        runs.append(
            {
                "candidate": i,
                "seconds": time.perf_counter() - t0,
                "final_loss": result.final_value,
                "tokens_per_s": result.extras["tokens_per_second"],
            }
        )
    ms = trainer.model_spec
    per_token = 6 * ms.n_params() + 12 * ms.n_layers * ms.d_model * ms.seq_len
    if ms.config:  # a config model: its own sizes
        per_token = 6 * ms.n_params()
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    peak = _peak_flops(device, args.peak_tflops)
    for r in runs:
        r["mfu"] = per_token * r["tokens_per_s"] / peak if peak else None
    payload = {
        "name": NAME,
        "tiny": args.tiny,
        "device": device,
        "steps": steps,
        "tokens_per_step": cfg.train.tokens_per_step,
        "params": ms.n_params(),
        "flops_per_token": per_token,
        "peak_flops": peak,
        "plan_seconds": plan_s,
        "runs": runs,
        "total_seconds": time.perf_counter() - t_start,
        "environment": {**environment(), "torch": torch.__version__},
    }
    write_json(out / f"{NAME}.json", payload)
    table = markdown_table(
        ["candidate", "seconds", "final loss", "tokens/s", "MFU"],
        [
            [
                str(r["candidate"]),
                f"{r['seconds']:.1f}",
                f"{r['final_loss']:.3f}",
                f"{r['tokens_per_s']:,.0f}",
                "-" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%",
            ]
            for r in runs
        ],
    )
    md = (
        f"# GPU smoke\n\n{device}: {steps} steps x {cfg.train.tokens_per_step:,} tokens per "
        f"candidate, {ms.n_params():,} parameters (without embeddings), dtype "
        f"{cfg.train.dtype}, compile {cfg.train.compile}; plan took {plan_s:.0f} s, all "
        f"{payload['total_seconds']:.0f} s.\n\n{table}\n"
    )
    write_text(out / f"{NAME}.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
