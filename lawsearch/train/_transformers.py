"""``TransformersTrainer``: trains a causal LM on a data mixture with a given LR schedule.

One ``train`` call, top to bottom::

    model, optimizer, stream <- fresh (seeded) or from the checkpoint
    for step in [start, stop):
        lr = schedule.lr(step)                      # lawsearch.schedules, set every step
        batch = blocks[stream.take(batch_size)]     # interleave_datasets mixture
        for micro in split(batch, batch_size / micro_batch):    # gradient accumulation
            loss = CE(model(micro[:, :-1]), micro[:, 1:]) / passes; backward
        clip; AdamW step
        every eval_every steps: held-out eval -> report(step, mean loss, extras)
    checkpoint (atomic) -> TrainResult

Only rank 0 reports and writes checkpoints under DDP (``torchrun``); every rank
returns the same ``TrainResult``.

Over 600 lines for one concept: the training loop above and the state a
checkpoint holds (build, resume, accumulated step, evaluate, save) change
together; split apart, the loop could no longer be read in one place.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lawsearch._errors import did_you_mean
from lawsearch.schedules import Schedule
from lawsearch.train._checkpoint import (
    FORMAT,
    capture_rng,
    check_checkpoint,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from lawsearch.train._data import DomainBlocks, MixedStream, check_weights
from lawsearch.train._ddp import Dist, setup_distributed
from lawsearch.train._evaluate import autocast_ctx, embedding_dimensions, held_out_loss
from lawsearch.train._model import ModelSpec, build_model
from lawsearch.train._pack import prepare_domains
from lawsearch.train._protocol import CheckpointFn, ReportFn, TrainResult, check_micro_batch
from lawsearch.train._specs import DataSpec, TrainSpec

__all__ = ["DataSpec", "ModelSpec", "TrainSpec", "TransformersTrainer"]


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
    """Trains a causal LM (the Llama shorthand or any ``transformers`` config) on a mixture.

    Implements the ``Trainer`` protocol; the data are prepared once
    (``lawsearch.train._pack.prepare_domains``) and read memory-mapped.

    ``config`` of ``train`` holds ``"mixture"`` (domain -> weight, summing to 1),
    ``"schedule"`` (a ``lawsearch.schedules.Schedule`` or its dict) and optionally
    ``"seed"``, ``"run_id"`` and ``"micro_batch"`` (overrides ``TrainSpec.micro_batch``:
    the same step in ``batch_size / micro_batch`` accumulated passes, e.g. to retry
    after running out of memory); other keys (e.g. raw Optuna params) are ignored.

    Reports: ``value`` is the held-out loss weighted by ``target_weights`` (else the
    mean over ``target_domains``, all by default); ``extras``
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
        unknown = [d for d in train.target_weights if d not in data.domains]
        if unknown:
            raise ValueError(
                f"`TrainSpec.target_weights` names unknown domain {unknown[0]!r}; known: "
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
        self._tokenizer, self._blocks, self._data_key = prepare_domains(
            self.data_spec, self.model_spec
        )

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

    def accumulation(self, config: Mapping[str, Any]) -> tuple[int, int]:
        """``(batch_size, micro_batch)`` a ``train(config)`` call uses (checked)."""
        ts = self.train_spec
        micro = config.get("micro_batch") or ts.micro_batch or ts.batch_size
        check_micro_batch(micro, ts.batch_size, "config['micro_batch']")
        return ts.batch_size, int(micro)

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

    def _build_model(self) -> Any:
        return build_model(
            self.model_spec,
            eos_token_id=int(self._tokenizer.eos_token_id),
            vocab_needed=len(self._tokenizer),
        )

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
            model = self._build_model()
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
        check_checkpoint(
            payload,
            {"mixture": dict(weights), "seed": seed, **self.checkpoint_identity()},
            path,
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

    def checkpoint_identity(self) -> dict[str, Any]:
        """What a checkpoint must share with this trainer to resume (model and data)."""
        return {"model_spec": asdict(self.model_spec), "data_key": self._data_key}

    def check_checkpoint(self, path: str) -> None:
        """Raise a ``ValueError`` (with the fix) unless ``path`` loads and fits this trainer."""
        check_checkpoint(load_checkpoint(path, mmap=True), self.checkpoint_identity(), path)

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
                    "format": FORMAT,
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
        assert self._blocks is not None
        ts = self.train_spec
        return held_out_loss(
            model,
            self._blocks,
            n_blocks=ts.eval_batches * ts.batch_size,
            batch_size=ts.batch_size,
            targets=ts.target_domains,
            weights=ts.target_weights,
            device=device,
            autocast=autocast,
            dist=dist,
        )

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
        see ``lawsearch.train._evaluate.embedding_dimensions``.

        Returns:
            Domain name -> estimated intrinsic dimension.
        """
        import torch

        self.prepare()
        assert self._blocks is not None
        torch.manual_seed(self.train_spec.seed)
        model = self._build_model()
        if checkpoint is not None:
            model.load_state_dict(load_checkpoint(checkpoint)["model"])
        return embedding_dimensions(
            model, self._blocks, max_tokens=max_tokens, k1=k1, k2=k2, metric=metric
        )

    # ---- training ----------------------------------------------------------------------

    def train(
        self,
        config: Mapping[str, Any],
        *,
        budget_steps: int,
        resume_from: str | None = None,
        report: ReportFn,
        on_checkpoint: CheckpointFn | None = None,
    ) -> TrainResult:
        """Train ``config`` up to optimizer step ``budget_steps`` (absolute), reporting evals.

        ``on_checkpoint(step, path)`` is called (rank 0) after each ``checkpoint_every``
        checkpoint is renamed into place.
        """
        import torch

        if not isinstance(budget_steps, int | np.integer) or budget_steps < 1:
            raise ValueError(f"`budget_steps` must be a positive integer; got {budget_steps!r}.")
        weights, schedule, seed, run_id = self._parse_config(config)
        ts = self.train_spec
        _, micro = self.accumulation(config)
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
        passes = ts.batch_size // micro
        if (ts.batch_size // dist.world) % passes:
            raise ValueError(
                f"micro_batch {micro}: the {ts.batch_size // dist.world} sequences per DDP "
                f"process do not split into {passes} equal passes; use a `micro_batch` that is a "
                f"multiple of the {dist.world} processes."
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
        if ts.compile:
            model = torch.compile(model)
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
        if ts.eval_at_start and run.step == 0 and resume_from is None:
            ev = self.evaluate(run.model, device, amp_dtype, dist)
            extras = self._extras(run, ev, schedule, math.nan)
            del extras["train_loss"]  # nothing trained yet
            steps.append(0)
            values.append(ev["mean"])
            if dist.is_main:
                report(0, ev["mean"], extras)
        while run.step < stop_at:
            lr = float(schedule.lr(run.step))
            for group in run.optimizer.param_groups:
                group["lr"] = lr
            x = self._next_batch(run, dist, device)
            loss = self._step(model, run, x, amp_dtype, passes)
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
                if checkpoint is not None and on_checkpoint is not None and dist.is_main:
                    on_checkpoint(run.step, checkpoint)
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

    def _step(self, model: Any, run: _Run, x: Any, amp_dtype: Any, passes: int = 1) -> Any:
        """One optimizer step on blocks ``x``: ``passes`` accumulated backwards, clip, AdamW.

        Every pass has as many tokens, so the mean of the passes' mean losses is the
        whole batch's loss and the accumulated gradient is the whole batch's.
        """
        import torch

        total = torch.zeros((), device=x.device)
        chunks = x.chunk(passes)
        for i, chunk in enumerate(chunks):
            # DDP: all-reduce the gradients once, on the last pass
            last = i == len(chunks) - 1
            sync = getattr(model, "no_sync", None)
            with contextlib.nullcontext() if last or sync is None else sync():
                total += self._backward(model, run, chunk, amp_dtype, passes).detach()
        scaler = run.scaler
        if scaler is not None:  # float16 only
            scaler.unscale_(run.optimizer)
        if self.train_spec.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(run.model.parameters(), self.train_spec.grad_clip)
        if scaler is not None:
            scaler.step(run.optimizer)
            scaler.update()
        else:
            run.optimizer.step()
        run.optimizer.zero_grad(set_to_none=True)
        return total

    def _backward(self, model: Any, run: _Run, x: Any, amp_dtype: Any, passes: int) -> Any:
        """Forward and backward one micro-batch ``x``; its loss / ``passes`` (accumulated)."""
        import torch.nn.functional as F

        with autocast_ctx(x.device, amp_dtype):
            logits = model(input_ids=x[:, :-1]).logits
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
        loss = loss / passes
        if run.scaler is not None:
            run.scaler.scale(loss).backward()
        else:
            loss.backward()
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
