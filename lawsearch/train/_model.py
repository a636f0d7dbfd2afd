"""The target model: a Llama ``transformers`` model built from a config (never downloaded)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ModelSpec", "build_model"]


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """Sizes of the Llama model trained by every trial.

    Attributes:
        n_layers: transformer blocks.
        d_model: hidden size.
        n_heads: attention heads (must divide ``d_model``).
        d_ff: MLP intermediate size (0: ``4 * d_model``).
        vocab_size: tokenizer vocabulary (the BPE is trained to this size).
        seq_len: tokens per training sequence.
        n_kv_heads: key/value heads for grouped-query attention (0: ``n_heads``).
        tie_embeddings: share the input embedding and the LM head.
        rope_theta: RoPE base.
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
        d, f = self.d_model, self.d_ff or 4 * self.d_model
        kv = (self.n_kv_heads or self.n_heads) * (d // self.n_heads)
        block = d * d * 2 + d * kv * 2 + 3 * d * f + 2 * d
        emb = self.vocab_size * d * (1 if self.tie_embeddings else 2) if embeddings else 0
        return self.n_layers * block + d + emb


def build_model(spec: ModelSpec, *, eos_token_id: int) -> Any:
    """A freshly initialised ``LlamaForCausalLM`` (initialisation uses torch's global RNG)."""
    from transformers import LlamaConfig, LlamaForCausalLM

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
    return LlamaForCausalLM(LlamaConfig(**options))
