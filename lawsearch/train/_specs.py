"""What a ``TransformersTrainer`` trains on and how: ``DataSpec`` and ``TrainSpec``.

(The model's sizes are ``ModelSpec`` in ``lawsearch.train._model``.)
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lawsearch._errors import did_you_mean
from lawsearch.train._protocol import check_micro_batch

__all__ = ["DEVICES", "DTYPES", "DataSpec", "TrainSpec"]

DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass(frozen=True, kw_only=True)
class DataSpec:
    """The study's domains and how each is split.

    Attributes:
        domains: name -> source, where a source is a path (file or folder), a list of
            paths, a ``datasets`` dataset name already in the local cache, or a mapping
            ``{"train": source, "held_out": source}`` with the split given (as
            ``CorpusManifest.data_domains()`` returns). Paths may be glob patterns;
            formats are read by suffix (see ``lawsearch.train._sources``).
        held_out_fraction: documents held out per domain when no split is given
            (every ``round(1 / fraction)``-th document of the stream).
        held_out_size: at most this many held-out documents per domain (0: no cap).
        text_field: the text column of JSON/Parquet/CSV records and datasets.
        text_fields: per-domain ``text_field`` overrides.
        formats: per-domain format overrides (``lawsearch.train._sources.FORMATS``).
        seed: seeds the held-out split.
        min_frequency: minimum pair count of a BPE merge.
        cache_dir: tokenizers and packed blocks (``""``: ``~/.cache/lawsearch``).
        tokenizer_path: a local pretrained tokenizer folder (``""``: train a BPE).
        tokenizer_sample_bytes: the BPE trains on each domain's first train documents
            up to this many UTF-8 bytes (the demo's domains, ~1 MB, fit whole).
        num_proc: tokenisation processes (1: in this process, whose fast tokenizer
            already encodes each batch on every core).
    """

    domains: Mapping[str, Any]
    held_out_fraction: float = 0.1
    held_out_size: int = 0
    text_field: str = "text"
    seed: int = 0
    min_frequency: int = 2
    cache_dir: str = ""
    text_fields: Mapping[str, str] = field(default_factory=dict)
    formats: Mapping[str, str] = field(default_factory=dict)
    tokenizer_path: str = ""
    tokenizer_sample_bytes: int = 16_000_000
    num_proc: int = 1

    def __post_init__(self) -> None:
        from lawsearch.train._sources import FORMATS

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
        for key in ("text_fields", "formats"):
            unknown = [d for d in getattr(self, key) if d not in self.domains]
            if unknown:
                raise ValueError(
                    f"`DataSpec.{key}` names unknown domain {unknown[0]!r}; known: "
                    f"{list(self.domains)}" + did_you_mean(unknown[0], list(self.domains))
                )
        for domain, fmt in self.formats.items():
            if fmt not in FORMATS:
                raise ValueError(
                    f"`domains.{domain}.format` must be one of {FORMATS}; got {fmt!r}"
                    + did_you_mean(fmt, FORMATS)
                )
        if self.tokenizer_sample_bytes < 1024 or self.num_proc < 1:
            raise ValueError(
                "`DataSpec.tokenizer_sample_bytes` must be >= 1024 and `num_proc` >= 1; got "
                f"{self.tokenizer_sample_bytes!r} and {self.num_proc!r}."
            )

    def text_field_of(self, domain: str) -> str:
        return self.text_fields.get(domain, self.text_field)

    def format_of(self, domain: str) -> str:
        return self.formats.get(domain, "auto")

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
        micro_batch: sequences per forward/backward pass (0: ``batch_size``); each step
            accumulates the gradients of ``batch_size / micro_batch`` passes, so the
            step (loss, gradient, update) is the full batch's, in less memory.
            ``config["micro_batch"]`` of a ``train`` call overrides it.
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
        target_weights: domain -> weight of the reported value (a weighted mean of
            held-out losses; overrides ``target_domains`` when given; sums to 1).
        compile: ``torch.compile`` the model (CUDA studies; the first steps compile).
        eval_at_start: also evaluate (and report) at step 0 before a run from
            scratch trains, so the curve starts at the initial loss as many
            users' trainers log it.
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
    eval_at_start: bool = False
    target_weights: Mapping[str, float] = field(default_factory=dict)
    compile: bool = False
    micro_batch: int = 0

    def __post_init__(self) -> None:
        for name in ("batch_size", "eval_every", "eval_batches"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"`TrainSpec.{name}` must be a positive integer; got {value!r}.")
        if self.micro_batch:
            check_micro_batch(self.micro_batch, self.batch_size, "TrainSpec.micro_batch")
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
        weights = dict(self.target_weights)
        if weights and (
            any(not math.isfinite(w) or w < 0 for w in weights.values())
            or abs(sum(weights.values()) - 1.0) > 1e-6
        ):
            raise ValueError(
                f"`TrainSpec.target_weights` must be >= 0 and sum to 1; got {weights!r}; "
                "normalise them."
            )
        object.__setattr__(self, "target_weights", weights)
