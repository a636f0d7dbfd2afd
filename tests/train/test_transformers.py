"""TransformersTrainer on a tiny Llama: exact resume, mixture realised, LR per step, errors."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("datasets")

from lawsearch.schedules import Schedule  # noqa: E402
from lawsearch.train import Trainer, TransformersTrainer  # noqa: E402
from lawsearch.train._data import MixedStream  # noqa: E402
from lawsearch.train._transformers import DataSpec, ModelSpec, TrainSpec  # noqa: E402

TINY = ModelSpec(n_layers=1, d_model=32, n_heads=2, d_ff=64, vocab_size=320, seq_len=32)
WORDS = "the law of data loss scales with compute tokens model mixture rate step".split()


def _write_domains(root: Path) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    prose = root / "prose.jsonl"
    with open(prose, "w") as fh:
        for i in range(40):
            words = rng.choice(WORDS, size=150)
            fh.write(json.dumps({"text": " ".join(words) + ".", "id": i}) + "\n")
    numbers = root / "numbers.jsonl"
    with open(numbers, "w") as fh:
        for _ in range(40):
            a, b = rng.integers(0, 999, size=(2, 60))
            fh.write(
                json.dumps(
                    {"text": " ".join(f"{x}+{y}={x + y};" for x, y in zip(a, b, strict=True))}
                )
            )
            fh.write("\n")
    code = root / "code"
    code.mkdir(exist_ok=True)
    for i in range(30):
        lines = [f"def f{i}_{j}(x):\n    return x * {j} + {i}\n" for j in range(25)]
        (code / f"mod{i:02d}.py").write_text("".join(lines))
    return {"prose": str(prose), "numbers": [str(numbers)], "code": str(code)}


@pytest.fixture(scope="module")
def domains(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _write_domains(tmp_path_factory.mktemp("domains"))


@pytest.fixture(autouse=True)
def _one_thread(one_thread: None) -> None:
    """Every test here trains on one torch thread."""


def make(domains, cache, tmp_path: Path | None = None, **train: Any) -> TransformersTrainer:
    opts: dict[str, Any] = {"batch_size": 4, "eval_every": 2, "eval_batches": 1}
    if tmp_path is not None:
        opts["checkpoint_dir"] = str(tmp_path / "ckpt")
    opts.update(train)
    return TransformersTrainer(
        model=TINY,
        data=DataSpec(domains=domains, cache_dir=cache, held_out_fraction=0.1),
        train=TrainSpec(**opts),
    )


def config(**schedule: Any) -> dict[str, Any]:
    spec = {"family": "cosine", "peak_lr": 3e-3, "total_steps": 40, "warmup_steps": 3}
    spec.update(schedule)
    return {"mixture": {"prose": 0.5, "numbers": 0.3, "code": 0.2}, "schedule": spec}


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[int, float, dict[str, Any]]] = []

    def __call__(self, step: int, value: float, extras: Any) -> None:
        self.calls.append((step, value, dict(extras)))


def test_is_a_trainer_and_reports_rich_extras(domains, cache, tmp_path: Path) -> None:
    trainer = make(domains, cache, tmp_path)
    assert isinstance(trainer, Trainer)
    rec = Recorder()
    result = trainer.train(config(), budget_steps=6, report=rec)
    assert [c[0] for c in rec.calls] == [2, 4, 6] == list(result.steps)
    _, value, extras = rec.calls[-1]
    assert value == result.final_value == result.values[-1]
    losses = [extras[f"loss/{d}"] for d in ("prose", "numbers", "code")]
    assert value == pytest.approx(np.mean(losses))
    assert len(extras["loss_per_position"]) == TINY.seq_len
    assert all(math.isfinite(v) for v in extras["loss_per_position"])
    assert extras["tokens"] == 6 * 4 * TINY.seq_len == result.compute
    assert sum(extras[f"tokens/{d}"] for d in ("prose", "numbers", "code")) == extras["tokens"]
    json.dumps(extras)  # plain JSON values only
    assert result.compute_unit == "tokens" and not result.stopped and not result.exhausted
    assert Path(result.checkpoint).is_file()
    assert not list(Path(result.checkpoint).parent.glob(".*tmp"))  # nothing half written
    # learning happens: the held-out loss falls from ln(V)-ish
    assert rec.calls[-1][1] < rec.calls[0][1] < math.log(TINY.vocab_size) + 1


def test_resume_is_exact(domains, cache, tmp_path: Path) -> None:
    cfg = config(total_steps=12, warmup_steps=2)
    straight = Recorder()
    make(domains, cache, tmp_path / "a").train(cfg, budget_steps=12, report=straight)
    first, second = Recorder(), Recorder()
    trainer = make(domains, cache, tmp_path / "b")
    half = trainer.train(cfg, budget_steps=6, report=first)
    assert half.final_step == 6
    rest = make(domains, cache, tmp_path / "b").train(
        cfg, budget_steps=12, resume_from=half.checkpoint, report=second
    )
    assert [c[0] for c in second.calls] == [8, 10, 12]  # only the new steps are reported
    resumed = first.calls + second.calls
    assert [c[0] for c in resumed] == [c[0] for c in straight.calls]
    np.testing.assert_allclose([c[1] for c in resumed], [c[1] for c in straight.calls], atol=1e-6)
    for (_, _, a), (_, _, b) in zip(resumed, straight.calls, strict=True):
        assert a["tokens/numbers"] == b["tokens/numbers"]
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-6)
    assert rest.compute == 6 * 4 * TINY.seq_len  # this call only
    assert rest.exhausted  # the schedule ends at 12


def test_each_checkpoint_is_announced_once_whole_and_a_crash_resumes_from_the_last(
    domains, cache, tmp_path: Path
) -> None:
    cfg = config(total_steps=12, warmup_steps=2)
    straight = Recorder()
    make(domains, cache, tmp_path / "a").train(cfg, budget_steps=12, report=straight)
    seen: list[tuple[int, str]] = []

    def on_checkpoint(step: int, path: str) -> None:
        assert Path(path).is_file()  # renamed into place before it is announced
        seen.append((step, path))

    def crash(step: int, value: float, extras: Any) -> None:
        if step == 10:
            raise RuntimeError("killed")  # after the checkpoint of step 8, before 12

    trainer = make(domains, cache, tmp_path / "b", checkpoint_every=4)
    with pytest.raises(RuntimeError, match="killed"):
        trainer.train(cfg, budget_steps=12, report=crash, on_checkpoint=on_checkpoint)
    assert [s for s, _ in seen] == [4, 8]
    rest = Recorder()
    make(domains, cache, tmp_path / "b").train(
        cfg, budget_steps=12, resume_from=seen[-1][1], report=rest
    )
    assert [c[0] for c in rest.calls] == [10, 12]  # one checkpoint interval repeated at most
    np.testing.assert_allclose(
        [c[1] for c in rest.calls], [c[1] for c in straight.calls[-2:]], atol=1e-6
    )


def test_lr_at_every_step_is_the_schedule(domains, cache) -> None:
    schedule = Schedule(
        family="wsd",
        peak_lr=2e-3,
        total_steps=10,
        warmup_steps=3,
        decay_fraction=0.4,
        final_lr=1e-4,
    )
    rec = Recorder()
    result = make(domains, cache, eval_every=1).train(
        {"mixture": {"code": 1.0}, "schedule": schedule}, budget_steps=9, report=rec
    )
    steps = np.array([c[0] for c in rec.calls])
    np.testing.assert_array_equal(steps, np.arange(1, 10))
    np.testing.assert_allclose([c[2]["lr"] for c in rec.calls], schedule.lr(steps), rtol=1e-12)
    # the LR the optimizer actually used at steps 0..8, and the intrinsic time S1
    np.testing.assert_allclose(result.extras["lrs"], schedule.lr(np.arange(9)), rtol=1e-12)
    assert result.extras["intrinsic_time"] == pytest.approx(schedule.lr(np.arange(9)).sum())


def test_mixture_weights_are_realised(domains, cache) -> None:
    weights = {"prose": 0.6, "numbers": 0.1, "code": 0.3}
    trainer = make(domains, cache, batch_size=8, eval_every=50)
    result = trainer.train(
        {
            "mixture": weights,
            "schedule": {"family": "constant", "peak_lr": 1e-3, "total_steps": 100},
        },
        budget_steps=50,
        report=lambda *a: None,
    )
    rows = 50 * 8
    available = trainer.tokens_available()
    for name, w in weights.items():
        seen = result.extras[f"tokens/{name}"] / TINY.seq_len
        sigma = math.sqrt(rows * w * (1 - w))
        assert abs(seen - rows * w) < 4 * sigma, (name, seen, rows * w)
        epochs = result.extras[f"epochs/{name}"]
        assert epochs == pytest.approx(seen * TINY.seq_len / available[name])


def test_mixed_stream_is_interleaved_with_the_weights_and_resumable() -> None:
    weights = [0.5, 0.3, 0.2, 0.0]
    sizes = [500, 200, 70, 30]
    stream = MixedStream(sizes, weights, seed=3)
    doms, rows = stream.take(6000)  # spans several cycles
    counts = np.bincount(doms, minlength=4) / doms.size
    np.testing.assert_allclose(counts, weights, atol=4 * math.sqrt(0.25 / 6000))
    assert counts[3] == 0  # a zero weight is never drawn
    for d, size in enumerate(sizes[:3]):
        assert set(rows[doms == d]) == set(range(size))  # every block of a domain is used
    a = MixedStream(sizes, weights, seed=3)
    a.take(923)
    b = MixedStream(sizes, weights, seed=3)
    b.load_state_dict(a.state_dict())
    after = b.take(1500)
    np.testing.assert_array_equal(after[0], a.take(1500)[0])
    np.testing.assert_array_equal(after[0], doms[923:2423])  # the same stream as straight
    with pytest.raises(ValueError, match="resume with the same mixture"):
        MixedStream(sizes, [0.4, 0.4, 0.2, 0.0], seed=3).load_state_dict(a.state_dict())


@pytest.mark.parametrize("max_permutation", [1 << 20, 10])  # in memory, and Feistel
def test_mixed_stream_walks_each_domain_epoch_by_epoch(max_permutation: int) -> None:
    sizes = [50, 7]
    stream = MixedStream(sizes, [0.5, 0.5], seed=1, max_permutation=max_permutation)
    doms, rows = stream.take(400)
    for d, size in enumerate(sizes):
        r = rows[doms == d]
        for e in range(len(r) // size):  # each full epoch is a permutation of the blocks
            assert sorted(r[e * size : (e + 1) * size]) == list(range(size))


def test_mixed_stream_with_a_tiny_weight_stays_small() -> None:
    """A near-zero weight must not blow a cycle up to ~size / weight draws (it did: OOM)."""
    stream = MixedStream([5000, 3000, 20], [0.6, 0.4 - 1e-9, 1e-9], seed=0, cycle_draws=1000)
    doms, _ = stream.take(5000)
    assert stream._order is not None and stream._order.size < 3000
    assert np.bincount(doms, minlength=3)[2] == 0


def test_zero_weight_domain_gets_no_tokens_but_is_evaluated(domains, cache) -> None:
    rec = Recorder()
    result = make(domains, cache).train(
        {"mixture": {"prose": 0.0, "numbers": 1.0}, "schedule": config()["schedule"]},
        budget_steps=2,
        report=rec,
    )
    assert result.extras["tokens/prose"] == 0 and result.extras["tokens/code"] == 0
    assert math.isfinite(rec.calls[-1][2]["loss/prose"])


def test_report_can_stop_and_exceptions_propagate(domains, cache, tmp_path: Path) -> None:
    trainer = make(domains, cache, tmp_path)
    cfg = {**config(), "run_id": "trial-7"}
    result = trainer.train(cfg, budget_steps=20, report=lambda s, v, e: s >= 4)
    assert result.stopped and result.final_step == 4
    assert result.checkpoint == str(tmp_path / "ckpt" / "trial-7" / "step-00000004.pt")
    assert Path(result.checkpoint).is_file()
    with pytest.raises(ValueError, match="plain folder name"):
        trainer.train({**cfg, "run_id": "../up"}, budget_steps=2, report=lambda *a: None)

    class Pruned(Exception):
        pass

    def prune(step: int, value: float, extras: Any) -> None:
        raise Pruned

    with pytest.raises(Pruned):
        trainer.train(config(), budget_steps=20, report=prune)
    assert not list((tmp_path / "ckpt").rglob("*.tmp"))


def test_target_domains_define_the_reported_value(domains, cache) -> None:
    rec = Recorder()
    make(domains, cache, target_domains=("code",)).train(config(), budget_steps=2, report=rec)
    _, value, extras = rec.calls[-1]
    assert value == extras["loss/code"]


def test_tokenizer_is_cached_by_corpus_hash(domains, cache) -> None:
    a = make(domains, cache).tokenizer
    files = list(Path(cache, "tokenizers").glob("bpe-*-v320-m2/tokenizer.json"))
    assert len(files) == 1
    mtime = files[0].stat().st_mtime_ns
    b = make(domains, cache).tokenizer
    assert files[0].stat().st_mtime_ns == mtime
    text = "def f(x):\n    return x + 1\n"
    assert a(text)["input_ids"] == b(text)["input_ids"]
    assert a.decode(a(text)["input_ids"]) == text
    assert len(a) <= TINY.vocab_size


def test_demo_manifest_plugs_in(tmp_path: Path, cache) -> None:
    from lawsearch.train.corpus import build_demo_corpus

    manifest = build_demo_corpus(
        tmp_path / "corpus",
        domains=["python_docs", "licenses"],
        max_bytes_per_domain=12_000,
        token_vocab_size=None,
    )
    names = {"python_docs": "python_docs", "legal": "licenses"}
    trainer = TransformersTrainer(
        model=TINY,
        data=DataSpec.from_manifest(manifest, names, cache_dir=cache),
        train=TrainSpec(batch_size=4, eval_every=2, eval_batches=1),
    )
    assert trainer.domains == ("python_docs", "legal")
    rec = Recorder()
    trainer.train(
        {"mixture": {"python_docs": 0.5, "legal": 0.5}, "schedule": config()["schedule"]},
        budget_steps=2,
        report=rec,
    )
    assert set(k for k in rec.calls[0][2] if k.startswith("loss/")) == {
        "loss/python_docs",
        "loss/legal",
    }


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        ({"mixture": {"prose": 0.5, "numbers": 0.3}, "schedule": {}}, "sum to 1 \\(got 0.8"),
        (
            {"mixture": {"prose": 0.5, "nubmers": 0.5}, "schedule": {}},
            "unknown domain 'nubmers'.*'numbers'",
        ),
        ({"mixture": {"prose": 1.5, "numbers": -0.5}, "schedule": {}}, ">= 0"),
        ({"schedule": {}}, "needs a 'mixture'"),
        ({"mixture": {"prose": 1.0}}, "needs a 'schedule'"),
        (
            {
                "mixture": {"prose": 1.0},
                "schedule": {"family": "cosin", "peak_lr": 1e-3, "total_steps": 5},
            },
            "did you mean 'cosine'",
        ),
    ],
)
def test_bad_config_raises(domains, cache, cfg, match) -> None:
    with pytest.raises(ValueError, match=match):
        make(domains, cache).train(cfg, budget_steps=2, report=lambda *a: None)


def test_bad_data_and_specs_raise(domains, cache, tmp_path: Path) -> None:
    missing = TransformersTrainer(
        model=TINY,
        data=DataSpec(domains={"x": str(tmp_path / "nope.jsonl")}, cache_dir=cache),
        train=TrainSpec(),
    )
    with pytest.raises(ValueError, match=r"domains.x.*does not exist"):
        missing.prepare()
    with pytest.raises(ValueError, match="budget_steps"):
        make(domains, cache).train(config(), budget_steps=0, report=lambda *a: None)
    with pytest.raises(ValueError, match=r"d_model.*divisible"):
        ModelSpec(d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="did you mean 'cuda'"):
        TrainSpec(device="cdua")
    with pytest.raises(ValueError, match=r"target_domains.*'code'"):
        make(domains, cache, target_domains=("cod",))
    with pytest.raises(ValueError, match="no checkpoint"):
        make(domains, cache).train(
            config(), budget_steps=2, resume_from=str(tmp_path / "x.pt"), report=lambda *a: None
        )


def test_resume_with_another_mixture_is_refused(domains, cache, tmp_path: Path) -> None:
    trainer = make(domains, cache, tmp_path)
    first = trainer.train(config(), budget_steps=2, report=lambda *a: None)
    other = {"mixture": {"prose": 1.0}, "schedule": config()["schedule"]}
    with pytest.raises(ValueError, match=r"was written with another mixture \(code: 0.2 there"):
        trainer.train(other, budget_steps=4, resume_from=first.checkpoint, report=lambda *a: None)


def test_intrinsic_dimensions_per_domain(domains, cache, tmp_path: Path) -> None:
    trainer = make(domains, cache, tmp_path)
    result = trainer.train(config(), budget_steps=4, report=lambda *a: None)
    dims = trainer.intrinsic_dimensions(result.checkpoint, max_tokens=256)
    assert set(dims) == {"prose", "numbers", "code"}
    for d in dims.values():
        assert 1.0 < d < TINY.d_model  # a manifold inside the 32-D hidden space


def test_saved_datasets_and_text_field(domains, cache, tmp_path: Path) -> None:
    import datasets

    rows = [json.loads(line) for line in Path(domains["prose"]).read_text().splitlines()]
    saved = tmp_path / "saved"
    datasets.Dataset.from_dict({"body": [r["text"] for r in rows]}).save_to_disk(str(saved))
    trainer = TransformersTrainer(
        model=TINY,
        data=DataSpec(domains={"saved": str(saved)}, text_field="body", cache_dir=cache),
        train=TrainSpec(batch_size=4, eval_batches=1),
    )
    assert trainer.tokens_available()["saved"] > 0
    wrong = TransformersTrainer(
        model=TINY,
        data=DataSpec(domains={"saved": str(saved)}, cache_dir=cache),
        train=TrainSpec(),
    )
    with pytest.raises(ValueError, match=r"no column 'text'.*body"):
        wrong.prepare()


def test_bf16_autocast_on_cpu_trains_and_fp16_needs_cuda(domains, cache) -> None:
    rec = Recorder()
    make(domains, cache, dtype="bfloat16").train(config(), budget_steps=2, report=rec)
    assert math.isfinite(rec.calls[-1][1])
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="'float16' needs CUDA"):
            make(domains, cache, dtype="float16").train(
                config(), budget_steps=2, report=lambda *a: None
            )


def test_corpus_and_trainer_share_one_tokenizer(tmp_path: Path) -> None:
    from lawsearch.train.corpus import build_demo_corpus

    cache = tmp_path / "cache"
    manifest = build_demo_corpus(
        tmp_path / "corpus",
        domains=["python_docs", "licenses"],
        max_bytes_per_domain=10_000,
        token_vocab_size=TINY.vocab_size,
        tokenizer_cache_dir=cache / "tokenizers",
    )
    trained = list((cache / "tokenizers").glob("bpe-*/tokenizer.json"))
    assert len(trained) == 1
    trainer = TransformersTrainer(
        model=TINY,
        data=DataSpec.from_manifest(manifest, cache_dir=str(cache)),
        train=TrainSpec(batch_size=4),
    )
    trainer.prepare()
    assert list((cache / "tokenizers").glob("bpe-*/tokenizer.json")) == trained  # reused
    text = Path(manifest.paths("licenses")["held_out"]).read_text().splitlines()[0]
    record = json.loads(text)["text"]
    counted = manifest.data["domains"]["licenses"]["tokens"]["held_out"]
    assert len(trainer.tokenizer(record)["input_ids"]) <= counted


def test_threads_training_at_once_match_sequential(domains, cache) -> None:
    import threading

    trainer = make(domains, cache)
    trainer.prepare()
    configs = [config(peak_lr=3e-3), config(peak_lr=1e-3)]
    alone = [trainer.train(c, budget_steps=4, report=lambda *a: None).values for c in configs]
    together: list[Any] = [None, None]

    def run(i: int) -> None:
        together[i] = trainer.train(configs[i], budget_steps=4, report=lambda *a: None).values

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(alone, together, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
