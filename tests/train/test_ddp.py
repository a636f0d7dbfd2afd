"""DDP: two gloo processes on CPU train the same model as one process with the same batch."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from lawsearch.train._transformers import (  # noqa: E402
    DataSpec,
    ModelSpec,
    TrainSpec,
    TransformersTrainer,
)
from tests.train.test_transformers import TINY, _write_domains  # noqa: E402

CONFIG = {
    "mixture": {"prose": 0.4, "numbers": 0.3, "code": 0.3},
    "schedule": {"family": "cosine", "peak_lr": 3e-3, "total_steps": 8, "warmup_steps": 2},
}


def _trainer(domains: dict[str, Any], cache: str, ckpt: str) -> TransformersTrainer:
    return TransformersTrainer(
        model=ModelSpec(**{k: getattr(TINY, k) for k in TINY.__dataclass_fields__}),
        data=DataSpec(domains=domains, cache_dir=cache),
        train=TrainSpec(batch_size=4, eval_every=2, eval_batches=1, threads=1, checkpoint_dir=ckpt),
    )


def _worker(
    rank: int, world: int, port: int, domains: dict[str, Any], cache: str, out: str
) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
    )
    import torch.distributed as dist

    reports: list[Any] = []
    trainer = _trainer(domains, cache, str(Path(out) / "ckpt"))
    try:
        result = trainer.train(
            CONFIG, budget_steps=8, report=lambda s, v, e: reports.append([s, v])
        )
        Path(out, f"rank{rank}.json").write_text(
            json.dumps(
                {
                    "values": list(result.values),
                    "steps": list(result.steps),
                    "reports": reports,
                    "checkpoint": result.checkpoint,
                    "tokens": result.extras["tokens/code"],
                }
            )
        )
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    domains = _write_domains(tmp_path / "domains")
    cache = str(tmp_path / "cache")
    torch.set_num_threads(1)
    single = _trainer(domains, cache, str(tmp_path / "single"))
    single.prepare()  # the children find tokenizer and blocks in the cache
    alone = single.train(CONFIG, budget_steps=8, report=lambda *a: None)

    out = tmp_path / "ddp"
    out.mkdir()
    mp.spawn(_worker, args=(2, _free_port(), domains, cache, str(out)), nprocs=2, join=True)
    r0 = json.loads((out / "rank0.json").read_text())
    r1 = json.loads((out / "rank1.json").read_text())
    assert r0["steps"] == r1["steps"] == [2, 4, 6, 8]
    assert r0["values"] == r1["values"]  # every rank sees the same all-reduced eval
    assert r0["tokens"] == r1["tokens"] == alone.extras["tokens/code"]
    assert len(r0["reports"]) == 4 and r1["reports"] == []  # only rank 0 reports
    assert r0["checkpoint"] == r1["checkpoint"] and Path(r0["checkpoint"]).is_file()
    # 2 x 2 sequences with averaged gradients == 4 sequences on one process
    np.testing.assert_allclose(r0["values"], alone.values, atol=1e-4)


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a machine without GPUs")
def test_more_cuda_processes_than_gpus_is_refused_with_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lawsearch.train._ddp import setup_distributed

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(ValueError, match=r"local rank 1, but this machine has 0 GPU\(s\)"):
        setup_distributed("cuda")
