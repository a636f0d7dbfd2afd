"""The study's tokenizer: a local pretrained one, or a byte-level BPE trained on a bounded sample.

``load_pretrained_tokenizer(path)`` reads a folder written by
``tokenizer.save_pretrained`` (offline: ``local_files_only=True``).
``load_or_train_tokenizer`` trains a byte-level BPE on the texts it is given
(the trainer passes each domain's first train documents up to
``DataSpec.tokenizer_sample_bytes``, all of them for a small corpus such as the
demo's) and caches it under the hash of those texts.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["EOS", "corpus_hash", "load_or_train_tokenizer", "load_pretrained_tokenizer"]

EOS = "<|endoftext|>"
_VERSION = "bytelevel-bpe/1"


def _texts_of(path: Path, text_field: str = "text") -> list[str]:
    if path.suffix in (".jsonl", ".json"):
        with open(path, encoding="utf-8") as fh:
            return [json.loads(line)[text_field] for line in fh if line.strip()]
    return [path.read_text(encoding="utf-8", errors="replace")]


def corpus_hash(domains: Sequence[Iterable[str]]) -> str:
    """A hash of several text streams that does not depend on their order."""
    per_domain = []
    for texts in domains:
        h = hashlib.sha256()
        for t in texts:
            h.update(t.encode("utf-8"))
            h.update(b"\x00")
        per_domain.append(h.hexdigest())
    return hashlib.sha256("\n".join(sorted(per_domain)).encode()).hexdigest()


def load_or_train_tokenizer(
    sources: Sequence[Path] | Sequence[Sequence[str]],
    *,
    vocab_size: int,
    min_frequency: int = 2,
    cache_dir: str | os.PathLike[str],
) -> Any:
    """A ``PreTrainedTokenizerFast`` (byte-level BPE) for the given texts, cached on disk.

    Args:
        sources: one entry per domain: a JSONL/text file, or a sequence of texts.
        vocab_size: the vocabulary size, special token included.
        min_frequency: minimum pair count for a merge.
        cache_dir: where ``bpe-<corpus hash>-v<vocab>-m<min freq>/tokenizer.json`` lives.

    Returns:
        The tokenizer, with ``<|endoftext|>`` as its eos/bos token.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < 260:
        raise ValueError(f"`vocab_size` must be >= 260 (256 bytes + specials); got {vocab_size}.")
    domains = [_texts_of(s) if isinstance(s, Path) else list(s) for s in sources]
    key = corpus_hash(domains)
    folder = Path(cache_dir) / f"bpe-{key[:20]}-v{vocab_size}-m{min_frequency}"
    file = folder / "tokenizer.json"
    if not file.is_file():
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=[EOS],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        # Train in a fixed order of domains (by content hash) so the merges never
        # depend on how the study happened to list its domains.
        order = sorted(range(len(domains)), key=lambda i: corpus_hash([domains[i]]))
        tok.train_from_iterator((t for i in order for t in domains[i]), trainer=trainer)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".tokenizer.{os.getpid()}.tmp"
        tok.save(str(tmp))
        os.replace(tmp, file)
    return PreTrainedTokenizerFast(
        tokenizer_file=str(file), eos_token=EOS, bos_token=EOS, model_max_length=1 << 30
    )


def tokenizer_version() -> str:
    return _VERSION


def load_pretrained_tokenizer(path: str | os.PathLike[str]) -> Any:
    """A tokenizer saved with ``save_pretrained`` in a local folder (never downloaded).

    Raises:
        ValueError: no such folder, no tokenizer in it, or no eos token (documents
            are separated by eos when packed); the message names ``tokenizer.path``.
    """
    from transformers import AutoTokenizer

    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ValueError(
            f"`tokenizer.path` = {str(path)!r} is not a folder; give a local folder written by "
            "`tokenizer.save_pretrained(...)` (tokenizer.json, tokenizer_config.json, ...)."
        )
    try:
        tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:  # transformers raises OSError/ValueError/KeyError here
        raise ValueError(
            f"`tokenizer.path` = {str(path)!r}: no tokenizer could be loaded from it offline "
            f"({type(exc).__name__}: {str(exc)[:200]}); save one there with "
            "`tokenizer.save_pretrained(folder)`."
        ) from None
    if tok.eos_token_id is None:
        raise ValueError(
            f"`tokenizer.path` = {str(path)!r}: the tokenizer has no eos token, which separates "
            "documents in the packed blocks; set `tokenizer.eos_token = ...` and save it again."
        )
    return tok
