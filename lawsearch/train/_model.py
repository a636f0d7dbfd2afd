"""The target model: any ``transformers`` causal LM built from a config (never downloaded).

Either the built-in Llama shorthand (``ModelSpec`` sizes) or a ``config.json``
of any causal-LM family (``AutoModelForCausalLM.from_config``: Llama, Qwen2,
Mistral, GPT-NeoX, GPT-2, ...), optionally initialised from local weights
(``init``: a folder written by ``save_pretrained``) for continued pre-training.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ModelSpec", "build_model", "load_model_config", "max_positions"]


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """The model trained by every trial.

    Attributes:
        n_layers: transformer blocks (Llama shorthand).
        d_model: hidden size (Llama shorthand).
        n_heads: attention heads (must divide ``d_model``).
        d_ff: MLP intermediate size (0: ``4 * d_model``).
        vocab_size: tokenizer vocabulary (the BPE is trained to this size; with a
            ``config`` the config's own vocabulary is used and must hold the tokenizer).
        seq_len: tokens per training sequence.
        n_kv_heads: key/value heads for grouped-query attention (0: ``n_heads``).
        tie_embeddings: share the input embedding and the LM head.
        rope_theta: RoPE base.
        config: a ``config.json`` (or a folder holding one) of any causal LM; when
            given, the sizes above except ``seq_len`` are not used.
        init: a local folder with weights (``save_pretrained``) to start from.
    """

    n_layers: int = 2
    d_model: int = 64
    n_heads: int = 4
    d_ff: int = 0
    vocab_size: int = 4096
    seq_len: int = 64
    n_kv_heads: int = 0
    tie_embeddings: bool = True
    rope_theta: float = 10000.0
    config: str = ""
    init: str = ""

    def __post_init__(self) -> None:
        for name in ("n_layers", "d_model", "n_heads", "vocab_size", "seq_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"`ModelSpec.{name}` must be a positive integer; got {value!r}.")
        if self.d_model % self.n_heads:
            raise ValueError(
                f"`ModelSpec.d_model` ({self.d_model}) must be divisible by "
                f"`n_heads` ({self.n_heads})."
            )
        kv = self.n_kv_heads or self.n_heads
        if self.n_heads % kv:
            raise ValueError(
                f"`ModelSpec.n_kv_heads` ({kv}) must divide `n_heads` ({self.n_heads})."
            )
        if self.vocab_size < 260:
            raise ValueError(
                f"`ModelSpec.vocab_size` must be >= 260 (256 bytes + specials); "
                f"got {self.vocab_size}."
            )

    def n_params(self, *, embeddings: bool = False) -> int:
        """Parameters of the model (without embeddings unless asked)."""
        if self.config:
            return _count_params(self, embeddings=embeddings)
        d, f = self.d_model, self.d_ff or 4 * self.d_model
        kv = (self.n_kv_heads or self.n_heads) * (d // self.n_heads)
        block = d * d * 2 + d * kv * 2 + 3 * d * f + 2 * d
        emb = self.vocab_size * d * (1 if self.tie_embeddings else 2) if embeddings else 0
        return self.n_layers * block + d + emb


def max_positions(config: Any) -> int | None:
    """The longest context a config allows (``max_position_embeddings`` or ``n_positions``)."""
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def load_model_config(spec: ModelSpec, *, vocab_needed: int) -> Any:
    """The ``transformers`` config of ``spec.config``, checked against tokenizer and seq_len.

    Raises:
        ValueError: no such file, not a causal-LM config, a vocabulary smaller than
            the tokenizer, or a context shorter than ``seq_len``; the message names
            ``model.config`` and the fix.
    """
    from transformers import AutoConfig

    path = Path(spec.config).expanduser()
    file = path / "config.json" if path.is_dir() else path
    if not file.is_file():
        raise ValueError(
            f"`model.config` = {spec.config!r}: no such file; give a config.json of a "
            "transformers causal LM (or the folder that holds it)."
        )
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
        model_type = raw.pop("model_type")
        config = AutoConfig.for_model(model_type, **raw)
    except (json.JSONDecodeError, KeyError, ValueError) as exc:
        raise ValueError(
            f"`model.config` = {spec.config!r} is not a transformers config "
            f"({type(exc).__name__}: {exc}); it needs a known `model_type` such as 'llama', "
            "'qwen2', 'mistral', 'gpt_neox' or 'gpt2'."
        ) from None
    if config.vocab_size < vocab_needed:
        raise ValueError(
            f"`model.config`: vocab_size {config.vocab_size} is smaller than the tokenizer's "
            f"{vocab_needed} tokens; raise `vocab_size` in {str(file)!r} to >= {vocab_needed}."
        )
    longest = max_positions(config)
    if longest is not None and longest < spec.seq_len:
        raise ValueError(
            f"`train.seq_len` = {spec.seq_len} is longer than the model's context ({longest} in "
            f"{str(file)!r}); lower `train.seq_len` or raise the config's positions."
        )
    config.use_cache = False
    return config


def _llama_config(spec: ModelSpec, eos_token_id: int) -> Any:
    from transformers import LlamaConfig

    # Passed as a dict: transformers 4.x takes rope_theta, 5.x folds it into rope_parameters.
    options: dict[str, Any] = dict(
        vocab_size=spec.vocab_size,
        hidden_size=spec.d_model,
        intermediate_size=spec.d_ff or 4 * spec.d_model,
        num_hidden_layers=spec.n_layers,
        num_attention_heads=spec.n_heads,
        num_key_value_heads=spec.n_kv_heads or spec.n_heads,
        max_position_embeddings=spec.seq_len,
        tie_word_embeddings=spec.tie_embeddings,
        rope_theta=spec.rope_theta,
        bos_token_id=eos_token_id,
        eos_token_id=eos_token_id,
        use_cache=False,
        attn_implementation="sdpa",
    )
    return LlamaConfig(**options)


def build_model(spec: ModelSpec, *, eos_token_id: int, vocab_needed: int = 0) -> Any:
    """A freshly initialised causal LM (initialisation uses torch's global RNG), or ``init``'s.

    Args:
        spec: the model.
        eos_token_id: the tokenizer's eos (the shorthand Llama's bos/eos).
        vocab_needed: the tokenizer's length (a ``config``'s vocabulary must hold it).
    """
    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    if not spec.config:
        config = _llama_config(spec, eos_token_id)
        if not spec.init:
            return LlamaForCausalLM(config)
    else:
        config = load_model_config(spec, vocab_needed=vocab_needed)
    if spec.init:
        folder = Path(spec.init).expanduser()
        if not folder.is_dir():
            raise ValueError(
                f"`model.init` = {spec.init!r} is not a folder; give a local folder written by "
                "`model.save_pretrained(...)` (weights are never downloaded)."
            )
        try:
            return AutoModelForCausalLM.from_pretrained(
                str(folder), config=config, local_files_only=True
            )
        except (OSError, ValueError, RuntimeError) as exc:
            raise ValueError(
                f"`model.init` = {spec.init!r}: cannot load weights for this config "
                f"({type(exc).__name__}: {str(exc)[:300]}); the folder must hold weights of the "
                "same architecture and sizes as `model.config`."
            ) from None
    return AutoModelForCausalLM.from_config(config)


def _count_params(spec: ModelSpec, *, embeddings: bool) -> int:
    """Parameters of a ``config`` model, counted on the meta device (nothing allocated)."""
    import torch
    from transformers import AutoModelForCausalLM

    config = load_model_config(spec, vocab_needed=0)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    total = sum(p.numel() for p in model.parameters())
    if embeddings:
        return int(total)
    emb = {id(p): p.numel() for p in model.get_input_embeddings().parameters()}
    out = model.get_output_embeddings()
    if out is not None:
        emb.update({id(p): p.numel() for p in out.parameters()})
    return int(total - sum(emb.values()))
