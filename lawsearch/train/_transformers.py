"""``TransformersTrainer``: trains a Llama model on a data mixture with a given LR schedule.

One ``train`` call, top to bottom::

    model, optimizer, stream <- fresh (seeded) or from the checkpoint
    for step in [start, stop):
        lr = schedule.lr(step)                      # lawsearch.schedules, set every step
        batch = blocks[stream.take(batch_size)]     # interleave_datasets mixture
        loss = CE(model(batch[:, :-1]), batch[:, 1:]); backward; clip; AdamW step
        every eval_every steps: held-out eval -> report(step, mean loss, extras)
    checkpoint (atomic) -> TrainResult

Only rank 0 reports and writes checkpoints under DDP (``torchrun``); every rank
returns the same ``TrainResult``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lawsearch._errors import did_you_mean
from lawsearch.schedules import Schedule
from lawsearch.train._checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from lawsearch.train._data import (
    DomainBlocks,
    MixedStream,
    check_weights,
    load_domain_texts,
    pack_domain,
)
from lawsearch.train._ddp import Dist, setup_distributed
from lawsearch.train._model import ModelSpec, build_model
from lawsearch.train._protocol import ReportFn, TrainResult
from lawsearch.train._tokenizer import load_or_train_tokenizer

__all__ = ["DataSpec", "ModelSpec", "TrainSpec", "TransformersTrainer"]

DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "bfloat16", "float16")
_CKPT_FORMAT = "lawsearch-checkpoint/1"


@dataclass(frozen=True, kw_only=True)
class DataSpec:
    """The study's domains and how each is split.

    Attributes:
        domains: name -> source, where a source is a path (file or folder), a list of
            paths, a ``datasets`` dataset name already in the local cache, or a mapping
            ``{"train": source, "held_out": source}`` with the split given (as
            ``CorpusManifest.data_domains()`` returns). Files: ``.jsonl``/``.json``
            records with ``text_field``, anything else one document per file.
        held_out_fraction: documents held out per domain when no split is given.
        held_out_size: documents held out per domain (overrides the fraction if > 0).
        text_field: the text field of JSON records and datasets.
        seed: seeds the held-out split.
        min_frequency: minimum pair count of a BPE merge.
        cache_dir: tokenizers and packed blocks (``""``: ``~/.cache/lawsearch``).
    """

    domains: Mapping[str, Any]
    held_out_fraction: float = 0.1
    held_out_size: int = 0
    text_field: str = "text"
    seed: int = 0
    min_frequency: int = 2
    cache_dir: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.domains, Mapping) or not self.domains:
            raise ValueError(
                f"`DataSpec.domains` must map at least one domain name to a source; "
                f"got {self.domains!r}."
            )
        if not 0.0 < self.held_out_fraction < 1.0:
            raise ValueError(
                f"`DataSpec.held_out_fraction` must be in (0, 1); got {self.held_out_fraction!r}."
            )
        if self.held_out_size < 0:
            raise ValueError(f"`DataSpec.held_out_size` must be >= 0; got {self.held_out_size!r}.")

    @classmethod
    def from_manifest(
        cls, manifest: Any, names: Mapping[str, str] | None = None, **options: Any
    ) -> DataSpec:
        """Domains of a demo ``CorpusManifest`` with its recorded held-out split.

        Args:
            manifest: from ``build_demo_corpus`` or ``load_manifest``.
            names: study domain name -> demo domain (default: all, under their names).
            **options: the other ``DataSpec`` fields.
        """
        return cls(domains=manifest.data_domains(names), **options)

    def resolved_cache_dir(self) -> Path:
        if self.cache_dir:
            return Path(self.cache_dir).expanduser()
        base = os.environ.get("LAWSEARCH_CACHE") or Path.home() / ".cache" / "lawsearch"
        return Path(base)


@dataclass(frozen=True, kw_only=True)
class TrainSpec:
    """The training loop shared by every trial.

    Attributes:
        batch_size: sequences per optimizer step, over all DDP ranks.
        eval_every: optimizer steps between held-out evaluations (and reports).
        eval_batches: held-out batches (of ``batch_size`` blocks) per domain.
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
        dtype: ``auto`` (bf16 autocast on CUDA when supported, else fp32), ``float32``,
            ``bfloat16`` (autocast) or ``float16`` (autocast + grad scaler, CUDA only).
        checkpoint_dir: where ``<run id>/step-XXXXXXXX.pt`` go (``""``: no checkpoints).
        checkpoint_every: also checkpoint every that many steps (0: only at the end).
        seed: model initialisation and mixture order (``config["seed"]`` overrides).
        weight_decay: AdamW decoupled weight decay on matrices.
        grad_clip: global gradient-norm clip (0: off).
        betas: AdamW betas.
        threads: ``torch.set_num_threads`` (0: leave torch's default).
        target_domains: domains whose mean held-out loss is the reported value
            (empty: all domains).
    """

    batch_size: int = 8
    eval_every: int = 10
    eval_batches: int = 2
    device: str = "auto"
    dtype: str = "auto"
    checkpoint_dir: str = ""
    checkpoint_every: int = 0
    seed: int = 0
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    betas: tuple[float, float] = (0.9, 0.95)
    threads: int = 0
    target_domains: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for name in ("batch_size", "eval_every", "eval_batches"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"`TrainSpec.{name}` must be a positive integer; got {value!r}.")
        if self.device not in DEVICES:
            raise ValueError(
                f"`TrainSpec.device` must be one of {DEVICES}; got {self.device!r}"
                + did_you_mean(self.device, DEVICES)
            )
        if self.dtype not in DTYPES:
            raise ValueError(
                f"`TrainSpec.dtype` must be one of {DTYPES}; got {self.dtype!r}"
                + did_you_mean(self.dtype, DTYPES)
            )
        if self.checkpoint_every < 0 or self.threads < 0 or self.grad_clip < 0:
            raise ValueError(
                "`TrainSpec.checkpoint_every`, `threads` and `grad_clip` must be >= 0."
            )
        object.__setattr__(self, "target_domains", tuple(self.target_domains))


@dataclass
class _Run:
    """The mutable state of one training run (what a checkpoint holds)."""

    run_id: str
    model: Any
    optimizer: Any
    scaler: Any
    stream: MixedStream
    step: int = 0
    rows_seen: list[int] = field(default_factory=list)
    intrinsic_time: float = 0.0


class TransformersTrainer:
    """Trains a Llama-family model on a weighted mixture of domains (``Trainer`` protocol).

    ``config`` of ``train`` holds ``"mixture"`` (domain -> weight, summing to 1),
    ``"schedule"`` (a ``lawsearch.schedules.Schedule`` or its dict) and optionally
    ``"seed"`` and ``"run_id"``; other keys (e.g. raw Optuna params) are ignored.

    Reports: ``value`` is the mean held-out loss over ``target_domains``; ``extras``
    has ``lr`` (``schedule.lr(step)``, the LR of the next update), ``train_loss``,
    ``intrinsic_time`` (sum of the LRs applied so far), ``tokens``,
    ``tokens_per_step``, ``loss/<d>``, ``tokens/<d>``, ``epochs/<d>`` per domain, and
    ``loss_per_position`` (a list: entry ``i`` is the loss of predicting token
    ``i + 1`` from ``i + 1`` tokens of context, for the Temporal Scaling Law).
    ``TrainResult.compute`` counts the training tokens of the call; its extras add
    ``lrs`` (the LR the optimizer used at each step of the call), ``run_id`` and
    ``tokens_per_second``.

    Resume: ``resume_from`` (a ``TrainResult.checkpoint``) restores model, optimizer,
    RNG states, step, data position and token counts, so N steps straight and
    N/2 + N/2 give the same losses. The mixture, seed, model and data must match the
    checkpoint's (else ``ValueError``); the schedule may differ (a continuation may
    use a longer horizon). Training stops at ``min(budget_steps, total_steps)``.

    DDP: launch with ``torchrun``; ``batch_size`` is split over ranks, evaluation is
    sharded and all-reduced, only rank 0 calls ``report`` and writes checkpoints. An
    exception raised by ``report`` ends the job (the other ranks stop with torchrun).

    Args:
        model: the model sizes.
        data: the domains.
        train: the loop options.
    """

    compute_unit = "tokens"

    def __init__(self, *, model: ModelSpec, data: DataSpec, train: TrainSpec) -> None:
        unknown = [d for d in train.target_domains if d not in data.domains]
        if unknown:
            raise ValueError(
                f"`TrainSpec.target_domains` names unknown domain {unknown[0]!r}; known: "
                f"{list(data.domains)}" + did_you_mean(unknown[0], list(data.domains))
            )
        self.model_spec = model
        self.data_spec = data
        self.train_spec = train
        self._blocks: list[DomainBlocks] | None = None
        self._tokenizer: Any = None
        self._data_key = ""
        self._lock = threading.Lock()

    # ---- data --------------------------------------------------------------------------

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(self.data_spec.domains)

    def prepare(self) -> None:
        """Load, split, tokenise and pack every domain (cached on disk; idempotent)."""
        with self._lock:
            if self._blocks is None:
                self._prepare()

    def _prepare(self) -> None:
        ds, ms = self.data_spec, self.model_spec
        cache = ds.resolved_cache_dir()
        splits = {
            name: load_domain_texts(
                name,
                spec,
                text_field=ds.text_field,
                held_out_fraction=ds.held_out_fraction,
                held_out_size=ds.held_out_size or None,
                seed=ds.seed,
                cache_dir=cache / "datasets",
            )
            for name, spec in ds.domains.items()
        }
        tokenizer = load_or_train_tokenizer(
            [list(train["text"]) for train, _ in splits.values()],
            vocab_size=ms.vocab_size,
            min_frequency=ds.min_frequency,
            cache_dir=cache / "tokenizers",
        )
        if len(tokenizer) > ms.vocab_size:
            raise ValueError(f"tokenizer has {len(tokenizer)} tokens > vocab_size {ms.vocab_size}.")
        key_src = json.dumps(
            {
                "vocab": tokenizer.backend_tokenizer.to_str(),
                "splits": {n: [t._fingerprint, h._fingerprint] for n, (t, h) in splits.items()},
            },
            sort_keys=True,
        )
        self._data_key = hashlib.sha256(key_src.encode()).hexdigest()[:24]
        self._tokenizer = tokenizer
        self._blocks = [
            pack_domain(
                name,
                train,
                held,
                tokenizer,
                seq_len=ms.seq_len,
                cache_dir=cache / "blocks",
                key=self._data_key,
            )
            for name, (train, held) in splits.items()
        ]

    @property
    def tokenizer(self) -> Any:
        """The ``PreTrainedTokenizerFast`` trained on the study's corpus."""
        self.prepare()
        return self._tokenizer

    def tokens_available(self) -> dict[str, int]:
        """Train tokens (predicted positions) per domain in one epoch."""
        self.prepare()
        assert self._blocks is not None
        return {b.name: b.train_tokens for b in self._blocks}

    def held_out_tokens(self) -> dict[str, int]:
        """Held-out tokens per domain used by each evaluation."""
        self.prepare()
        assert self._blocks is not None
        n = self.train_spec.eval_batches * self.train_spec.batch_size
        return {b.name: min(n, b.held_out.shape[0]) * self.model_spec.seq_len for b in self._blocks}

    @property
    def tokens_per_step(self) -> int:
        return self.train_spec.batch_size * self.model_spec.seq_len

    # ---- config ------------------------------------------------------------------------

    def _parse_config(
        self, config: Mapping[str, Any]
    ) -> tuple[dict[str, float], Schedule, int, str | None]:
        if not isinstance(config, Mapping):
            raise ValueError(f"`config` must be a mapping; got {type(config).__name__}.")
        for key in ("mixture", "schedule"):
            if key not in config:
                raise ValueError(
                    f"`config` needs a {key!r} entry; got keys {sorted(config)}"
                    + did_you_mean(key, [str(k) for k in config])
                )
        weights = check_weights(config["mixture"], self.domains)
        sched = config["schedule"]
        schedule = sched if isinstance(sched, Schedule) else Schedule.from_dict(sched)
        seed = int(config.get("seed", self.train_spec.seed))
        run_id = config.get("run_id")
        if run_id is not None:
            run_id = str(run_id)
            if not run_id or "/" in run_id or "\\" in run_id or run_id.startswith("."):
                raise ValueError(f"`config['run_id']` must be a plain folder name; got {run_id!r}.")
        return weights, schedule, seed, run_id

    def _device(self, dist: Dist) -> Any:
        import torch

        want = self.train_spec.device
        if want == "cuda" and not torch.cuda.is_available():
            raise ValueError("`TrainSpec.device` is 'cuda' but no CUDA device is available.")
        if want == "cuda" or (want == "auto" and torch.cuda.is_available()):
            return torch.device("cuda", dist.local_rank)
        return torch.device("cpu")

    def _autocast(self, device: Any) -> tuple[Any, bool]:
        """(autocast dtype or None, use a grad scaler)."""
        import torch

        dtype = self.train_spec.dtype
        if dtype == "auto":
            cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
            return (torch.bfloat16 if cuda_bf16 else None), False
        if dtype == "float16":
            if device.type != "cuda":
                raise ValueError("`TrainSpec.dtype` 'float16' needs CUDA; use 'float32' on CPU.")
            return torch.float16, True
        return (torch.bfloat16 if dtype == "bfloat16" else None), False

    # ---- state -------------------------------------------------------------------------

    def _run_id(self, weights: Mapping[str, float], schedule: Schedule, seed: int) -> str:
        spec = json.dumps(
            {
                "mixture": weights,
                "schedule": schedule.to_dict(),
                "seed": seed,
                "model": asdict(self.model_spec),
                "data": self._data_key,
            },
            sort_keys=True,
        )
        return hashlib.sha256(spec.encode()).hexdigest()[:16]

    def _new_run(
        self, weights: dict[str, float], schedule: Schedule, seed: int, device: Any, scaler: bool
    ) -> _Run:
        import torch

        assert self._blocks is not None
        # The global RNGs seed the initialisation; the lock keeps threads that train
        # several trials at once (Optuna n_jobs) from interleaving their draws.
        with self._lock:
            torch.manual_seed(seed)
            np.random.seed(seed % 2**32)  # noqa: NPY002 (seed user code relying on it)
            model = build_model(self.model_spec, eos_token_id=int(self._tokenizer.eos_token_id))
        model.to(device)
        decay = [p for p in model.parameters() if p.ndim >= 2]
        no_decay = [p for p in model.parameters() if p.ndim < 2]
        ts = self.train_spec
        optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": ts.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=float(schedule.lr(0)),
            betas=ts.betas,
            eps=1e-8,
            fused=device.type == "cuda",
        )
        stream = MixedStream(
            [b.train.shape[0] for b in self._blocks],
            [weights[b.name] for b in self._blocks],
            seed=seed,
        )
        return _Run(
            run_id=self._run_id(weights, schedule, seed),
            model=model,
            optimizer=optimizer,
            scaler=torch.amp.GradScaler("cuda") if scaler else None,
            stream=stream,
            rows_seen=[0] * len(self._blocks),
        )

    def _resume(self, run: _Run, path: str, weights: Mapping[str, float], seed: int) -> None:
        payload = load_checkpoint(path)
        checks = {
            "mixture": (payload["mixture"], weights),
            "seed": (payload["seed"], seed),
            "model_spec": (payload["model_spec"], asdict(self.model_spec)),
            "data_key": (payload["data_key"], self._data_key),
        }
        for name, (theirs, mine) in checks.items():
            if json.dumps(theirs, sort_keys=True) != json.dumps(mine, sort_keys=True):
                raise ValueError(
                    f"`resume_from`: the checkpoint's {name} ({theirs!r}) differs from this "
                    f"run's ({mine!r}); resume with the configuration that wrote it."
                )
        run.model.load_state_dict(payload["model"])
        run.optimizer.load_state_dict(payload["optimizer"])
        if run.scaler is not None and payload.get("scaler"):
            run.scaler.load_state_dict(payload["scaler"])
        run.stream.load_state_dict(payload["stream"])
        run.step = int(payload["step"])
        run.rows_seen = list(payload["rows_seen"])
        run.intrinsic_time = float(payload["intrinsic_time"])
        restore_rng(payload["rng"])

    def _save(
        self, run: _Run, weights: Mapping[str, float], schedule: Schedule, seed: int, dist: Dist
    ) -> str | None:
        ts = self.train_spec
        if not ts.checkpoint_dir:
            return None
        path = Path(ts.checkpoint_dir) / run.run_id / f"step-{run.step:08d}.pt"
        if dist.is_main:
            save_checkpoint(
                path,
                {
                    "format": _CKPT_FORMAT,
                    "run_id": run.run_id,
                    "step": run.step,
                    "model": run.model.state_dict(),
                    "optimizer": run.optimizer.state_dict(),
                    "scaler": run.scaler.state_dict() if run.scaler is not None else None,
                    "stream": run.stream.state_dict(),
                    "rows_seen": list(run.rows_seen),
                    "intrinsic_time": run.intrinsic_time,
                    "rng": capture_rng(),
                    "mixture": dict(weights),
                    "schedule": schedule.to_dict(),
                    "seed": seed,
                    "model_spec": asdict(self.model_spec),
                    "data_key": self._data_key,
                },
            )
        dist.barrier()
        return str(path)

    # ---- evaluation --------------------------------------------------------------------

    def evaluate(self, model: Any, device: Any, autocast: Any, dist: Dist) -> dict[str, Any]:
        """Held-out loss: mean over target domains, per domain, and per token position."""
        import torch
        import torch.nn.functional as F

        assert self._blocks is not None
        ts, L = self.train_spec, self.model_spec.seq_len
        n_eval = ts.eval_batches * ts.batch_size
        sums = torch.zeros(len(self._blocks), L, dtype=torch.float64, device=device)
        counts = torch.zeros(len(self._blocks), dtype=torch.float64, device=device)
        was_training = model.training
        model.eval()
        with torch.no_grad():
            for d, blocks in enumerate(self._blocks):
                held = blocks.held_out[:n_eval][dist.rank :: dist.world]
                for start in range(0, held.shape[0], ts.batch_size):
                    chunk = torch.from_numpy(np.array(held[start : start + ts.batch_size])).to(
                        device, torch.long
                    )
                    with _autocast_ctx(device, autocast):
                        logits = model(input_ids=chunk[:, :-1]).logits
                    ce = F.cross_entropy(
                        logits.float().transpose(1, 2), chunk[:, 1:], reduction="none"
                    )
                    sums[d] += ce.sum(0).double()
                    counts[d] += ce.shape[0]
        model.train(was_training)
        dist.all_reduce_sum(sums)
        dist.all_reduce_sum(counts)
        per_domain = (sums.sum(1) / (counts * L)).cpu().numpy()
        per_position = (sums.sum(0) / counts.sum()).cpu().numpy()
        names = [b.name for b in self._blocks]
        targets = ts.target_domains or tuple(names)
        mean = float(np.mean([per_domain[names.index(t)] for t in targets]))
        return {
            "mean": mean,
            "by_domain": {n: float(v) for n, v in zip(names, per_domain, strict=True)},
            "per_position": [float(v) for v in per_position],
        }

    def intrinsic_dimensions(
        self,
        checkpoint: str | None = None,
        *,
        max_tokens: int = 1024,
        k1: int = 10,
        k2: int = 20,
        metric: str = "euclidean",
    ) -> dict[str, float]:
        """Levina–Bickel intrinsic dimension of each domain's final-layer token embeddings.

        The model is the one saved in ``checkpoint`` (or a freshly initialised one);
        up to ``max_tokens`` held-out positions per domain are embedded by the last
        layer (after the final norm) and passed to ``lawsearch.intrinsic_dim``.

        Returns:
            Domain name -> estimated intrinsic dimension.
        """
        import torch

        from lawsearch.intrinsic_dim import levina_bickel

        self.prepare()
        assert self._blocks is not None
        torch.manual_seed(self.train_spec.seed)
        model = build_model(self.model_spec, eos_token_id=int(self._tokenizer.eos_token_id))
        if checkpoint is not None:
            model.load_state_dict(load_checkpoint(checkpoint)["model"])
        model.eval()
        out: dict[str, float] = {}
        L = self.model_spec.seq_len
        with torch.no_grad():
            for blocks in self._blocks:
                held = blocks.held_out[: max(1, -(-max_tokens // L))]
                x = torch.from_numpy(np.array(held[:, :-1])).long()
                hidden = model(input_ids=x, output_hidden_states=True).hidden_states[-1]
                points = hidden.reshape(-1, hidden.shape[-1])[:max_tokens].double().numpy()
                out[blocks.name] = float(levina_bickel(points, k1=k1, k2=k2, metric=metric))
        return out

    # ---- training ----------------------------------------------------------------------

    def train(
        self,
        config: Mapping[str, Any],
        *,
        budget_steps: int,
        resume_from: str | None = None,
        report: ReportFn,
    ) -> TrainResult:
        """Train ``config`` up to optimizer step ``budget_steps`` (absolute), reporting evals."""
        import torch

        if not isinstance(budget_steps, int | np.integer) or budget_steps < 1:
            raise ValueError(f"`budget_steps` must be a positive integer; got {budget_steps!r}.")
        weights, schedule, seed, run_id = self._parse_config(config)
        ts = self.train_spec
        if ts.threads:
            torch.set_num_threads(ts.threads)
        dist = setup_distributed(
            "cuda" if self.train_spec.device != "cpu" and torch.cuda.is_available() else "cpu"
        )
        if ts.batch_size % dist.world:
            raise ValueError(
                f"`TrainSpec.batch_size` ({ts.batch_size}) must be divisible by the number of "
                f"DDP processes ({dist.world})."
            )
        if dist.is_main:  # rank 0 fills the on-disk caches, the others then read them
            self.prepare()
        dist.barrier()
        self.prepare()
        assert self._blocks is not None
        device = self._device(dist)
        amp_dtype, use_scaler = self._autocast(device)
        run = self._new_run(weights, schedule, seed, device, use_scaler)
        if run_id is not None:
            run.run_id = run_id
        if resume_from is not None:
            self._resume(run, resume_from, weights, seed)
        model = run.model
        if dist.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            model = DistributedDataParallel(
                run.model, device_ids=[device.index] if device.type == "cuda" else None
            )
        model.train()

        stop_at = min(int(budget_steps), schedule.total_steps)
        start_step, lrs = run.step, []
        steps: list[int] = []
        values: list[float] = []
        last_eval: dict[str, Any] = {}
        train_sum = torch.zeros((), dtype=torch.float64, device=device)
        train_n = 0
        stopped = False
        checkpoint: str | None = None
        t0 = time.perf_counter()
        while run.step < stop_at:
            lr = float(schedule.lr(run.step))
            for group in run.optimizer.param_groups:
                group["lr"] = lr
            x = self._next_batch(run, dist, device)
            loss = self._step(model, run, x, amp_dtype)
            lrs.append(float(run.optimizer.param_groups[0]["lr"]))
            run.intrinsic_time += lr
            run.step += 1
            train_sum += loss.detach().double()
            train_n += 1

            if run.step % ts.eval_every == 0 or run.step == stop_at:
                ev = self.evaluate(run.model, device, amp_dtype, dist)
                dist.all_reduce_sum(train_sum)
                extras = self._extras(run, ev, schedule, float(train_sum) / (train_n * dist.world))
                train_sum.zero_()
                train_n = 0
                steps.append(run.step)
                values.append(ev["mean"])
                last_eval = extras
                flag = torch.zeros((), device=device)
                if dist.is_main and report(run.step, ev["mean"], extras):
                    flag += 1
                dist.all_reduce_sum(flag)
                if float(flag) > 0:
                    stopped = True
                    break
            if ts.checkpoint_every and run.step % ts.checkpoint_every == 0 and run.step < stop_at:
                checkpoint = self._save(run, weights, schedule, seed, dist)
        elapsed = time.perf_counter() - t0
        if run.step > start_step or resume_from is None:
            checkpoint = self._save(run, weights, schedule, seed, dist)
        else:
            checkpoint = resume_from
        return self._result(
            run, schedule, start_step, steps, values, lrs, last_eval, checkpoint, stopped, elapsed
        )

    def _next_batch(self, run: _Run, dist: Dist, device: Any) -> Any:
        """This rank's share of the next global batch of the mixed stream (counted)."""
        import torch

        assert self._blocks is not None
        doms, rows = run.stream.take(self.train_spec.batch_size)
        for d in doms:
            run.rows_seen[int(d)] += 1
        local = self.train_spec.batch_size // dist.world
        mine = slice(dist.rank * local, (dist.rank + 1) * local)
        pairs = zip(doms[mine], rows[mine], strict=True)
        batch = np.stack([self._blocks[int(d)].train[int(r)] for d, r in pairs])
        return torch.from_numpy(batch).to(device, torch.long, non_blocking=True)

    def _step(self, model: Any, run: _Run, x: Any, amp_dtype: Any) -> Any:
        """One optimizer step on blocks ``x``: forward, cross-entropy, backward, clip, AdamW."""
        import torch
        import torch.nn.functional as F

        with _autocast_ctx(x.device, amp_dtype):
            logits = model(input_ids=x[:, :-1]).logits
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
        scaler = run.scaler
        if scaler is not None:  # float16 only
            scaler.scale(loss).backward()
            scaler.unscale_(run.optimizer)
        else:
            loss.backward()
        if self.train_spec.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(run.model.parameters(), self.train_spec.grad_clip)
        if scaler is not None:
            scaler.step(run.optimizer)
            scaler.update()
        else:
            run.optimizer.step()
        run.optimizer.zero_grad(set_to_none=True)
        return loss

    def _extras(
        self, run: _Run, ev: Mapping[str, Any], schedule: Schedule, train_loss: float
    ) -> dict[str, Any]:
        assert self._blocks is not None
        L = self.model_spec.seq_len
        extras: dict[str, Any] = {
            "lr": float(schedule.lr(min(run.step, schedule.total_steps - 1))),
            "train_loss": train_loss,
            "intrinsic_time": run.intrinsic_time,
            "tokens": float(sum(run.rows_seen) * L),
            "tokens_per_step": float(self.tokens_per_step),
        }
        for d, blocks in enumerate(self._blocks):
            extras[f"loss/{blocks.name}"] = ev["by_domain"][blocks.name]
            extras[f"tokens/{blocks.name}"] = float(run.rows_seen[d] * L)
            extras[f"epochs/{blocks.name}"] = run.rows_seen[d] / blocks.train.shape[0]
        extras["loss_per_position"] = list(ev["per_position"])
        return extras

    def _result(
        self,
        run: _Run,
        schedule: Schedule,
        start_step: int,
        steps: list[int],
        values: list[float],
        lrs: list[float],
        last_eval: Mapping[str, Any],
        checkpoint: str | None,
        stopped: bool,
        elapsed: float,
    ) -> TrainResult:
        assert self._blocks is not None
        done = run.step - start_step
        extras: dict[str, Any] = {k: v for k, v in last_eval.items() if k != "loss_per_position"}
        L = self.model_spec.seq_len
        for d, blocks in enumerate(self._blocks):
            extras[f"tokens/{blocks.name}"] = float(run.rows_seen[d] * L)
            extras[f"epochs/{blocks.name}"] = run.rows_seen[d] / blocks.train.shape[0]
        extras.update(
            {
                "run_id": run.run_id,
                "start_step": start_step,
                "lrs": lrs,
                "intrinsic_time": run.intrinsic_time,
                "tokens_per_step": float(self.tokens_per_step),
                "seconds": elapsed,
                "tokens_per_second": done * self.tokens_per_step / elapsed if elapsed > 0 else 0.0,
            }
        )
        return TrainResult(
            final_step=run.step,
            final_value=values[-1] if values else math.nan,
            steps=tuple(steps),
            values=tuple(values),
            checkpoint=checkpoint,
            compute=float(done * self.tokens_per_step),
            compute_unit="tokens",
            stopped=stopped,
            exhausted=run.step >= schedule.total_steps,
            extras=extras,
        )


def _autocast_ctx(device: Any, dtype: Any) -> Any:
    import torch

    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
