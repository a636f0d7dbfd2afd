"""The sections of a study file as frozen dataclasses (``StudyConfig`` and its parts).

Defaults live here, once; ``lawsearch.config._load`` fills them from TOML and
``lawsearch.config._checks`` validates the whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lawsearch.laws import Law, get_law

__all__ = [
    "DEVICES",
    "DTYPES",
    "SCHEDULE_FAMILIES",
    "BudgetsConfig",
    "CorpusConfig",
    "DomainConfig",
    "LawConfig",
    "ModelConfig",
    "ObjectiveConfig",
    "PrunerConfig",
    "SearchConfig",
    "SearchSpaceConfig",
    "StudyConfig",
    "StudySection",
    "TokenizerConfig",
    "TrainConfig",
]

DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "bfloat16", "float16")
SCHEDULE_FAMILIES = ("constant", "linear", "cosine", "wsd")


@dataclass(frozen=True, kw_only=True)
class StudySection:
    """``[study]``: identity, seed and where the study lives.

    Attributes:
        name: the Optuna study name; also names the run folder ``runs/<name>``.
        seed: seeds the sampler, data order and model init.
        dir: the run folder (checkpoints, report); default ``runs/<name>``.
        storage: a journal file path (default ``<dir>/journal.log``) or a
            ``postgresql://`` URL. SQLite is refused: it cannot host parallel workers.
        heartbeat_interval: PostgreSQL: seconds between the heartbeats a worker writes
            for the trial it trains.
        grace_period: PostgreSQL: seconds without a heartbeat after which a live
            worker fails the trial (its worker died) and retries it from its last
            checkpoint. Longer than ``heartbeat_interval``; a trial's checkpoint or
            evaluation must not block its process that long.
        reconnect_timeout: PostgreSQL: seconds a worker keeps reconnecting (backoff
            0.5, 1, 2, 4, 8, 8, ... s) after the server went away (a restart), before
            it stops with exit 1 and a message; nothing it wrote is lost or repeated.
    """

    name: str
    seed: int = 0
    dir: str = ""
    storage: str = ""
    heartbeat_interval: int = 60
    grace_period: int = 180
    reconnect_timeout: float = 120.0

    @property
    def is_journal(self) -> bool:
        return "://" not in self.storage


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """``[model]``: the model every trial trains, built from a config (never downloaded).

    The built-in Llama shorthand (the sizes below), or ``config``: a ``config.json``
    of any ``transformers`` causal LM (Llama, Qwen2, Mistral, GPT-NeoX, GPT-2, ...),
    whose sizes and vocabulary are then used. ``init``: a local folder of weights
    (``save_pretrained``) to continue from. Paths are relative to the study file.
    """

    config: str = ""
    init: str = ""
    hidden_size: int = 64
    intermediate_size: int = 0
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 0
    tie_embeddings: bool = True

    @property
    def ffn_size(self) -> int:
        """``intermediate_size``, defaulting to 4 x hidden_size."""
        return self.intermediate_size or 4 * self.hidden_size

    @property
    def kv_heads(self) -> int:
        return self.num_kv_heads or self.num_heads


@dataclass(frozen=True, kw_only=True)
class TokenizerConfig:
    """``[tokenizer]``: a local pretrained tokenizer, or a byte-level BPE trained locally.

    Attributes:
        path: a folder written by ``tokenizer.save_pretrained`` (loaded offline); when
            empty, a byte-level BPE is trained on the study's corpus.
        vocab_size: the BPE's vocabulary and the shorthand model's.
        min_frequency: minimum pair count of a BPE merge.
        sample_bytes: the BPE trains on each domain's first train documents up to
            this many UTF-8 bytes (never on all of a large corpus).
    """

    path: str = ""
    vocab_size: int = 4096
    min_frequency: int = 2
    sample_bytes: int = 16_000_000


@dataclass(frozen=True, kw_only=True)
class CorpusConfig:
    """``[corpus]``: how domains are read and split.

    Attributes:
        max_bytes_per_domain: text kept per builtin demo domain (UTF-8 bytes).
        held_out_fraction: documents held out per domain when no split is given.
        text_field: the text field of JSONL records and ``datasets`` datasets.
        cache_dir: corpus, tokenizer and packed-data cache (``""``: ``~/.cache/lawsearch``
            or ``$LAWSEARCH_CACHE``).
        held_out_documents: at most this many held-out documents per domain (0: no cap).
        num_proc: tokenisation processes (1: in the main process, whose fast tokenizer
            encodes each batch on every core).
    """

    max_bytes_per_domain: int = 1_000_000
    held_out_fraction: float = 0.1
    text_field: str = "text"
    cache_dir: str = ""
    held_out_documents: int = 0
    num_proc: int = 1


@dataclass(frozen=True, kw_only=True)
class DomainConfig:
    """``[domains.NAME]``: one data domain and its mixture bounds.

    Exactly one source: ``builtin`` (a demo domain built from text that installs
    with the project's dependencies), ``paths`` (local files, folders or glob
    patterns such as ``data/web/*.parquet``, relative to the study file: JSONL/JSON,
    Parquet, Arrow, CSV/TSV, plain text, gzip/zstd/bz2/xz-compressed, or a
    ``save_to_disk`` folder) or ``dataset`` (a ``datasets`` name already in the
    local cache; never downloaded). ``held_out`` optionally gives the held-out
    files explicitly (default: every k-th document, k = 1 / held_out_fraction).
    ``format`` forces a format for every file ("auto": by suffix); ``text_field``
    overrides ``corpus.text_field``. ``low``/``high`` default to
    ``search_space.mixture_low/high``.
    """

    name: str
    builtin: str = ""
    paths: tuple[str, ...] = ()
    dataset: str = ""
    held_out: tuple[str, ...] = ()
    format: str = "auto"
    text_field: str = ""
    low: float = -1.0
    high: float = -1.0


@dataclass(frozen=True, kw_only=True)
class SearchSpaceConfig:
    """``[search_space]``: what the sampler may propose.

    Ranges are ``[low, high]`` (or one number to fix the value). ``peak_lr`` is
    sampled on a log scale; ``warmup`` is a fraction of the full budget's steps;
    ``decay_fraction`` is the WSD decay phase; ``final_lr_ratio`` is final/peak LR.
    """

    mixture_low: float = 0.0
    mixture_high: float = 1.0
    max_epochs: float = 0.0
    schedules: tuple[str, ...] = ("cosine",)
    peak_lr: tuple[float, float] = (1e-3, 1e-2)
    warmup: tuple[float, float] = (0.02, 0.02)
    decay_fraction: tuple[float, float] = (0.2, 0.2)
    final_lr_ratio: float = 0.1


@dataclass(frozen=True, kw_only=True)
class BudgetsConfig:
    """``[budgets]``: the short (screening) and full budgets in training tokens."""

    short_tokens: int
    full_tokens: int


@dataclass(frozen=True, kw_only=True)
class LawConfig:
    """``[law]``: the law that extrapolates curves (a name of ``lawsearch.laws.LAWS``)."""

    name: str = "power"
    options: Mapping[str, Any] = field(default_factory=dict)

    def build(self) -> Law:
        """The configured ``Law`` instance."""
        return get_law(self.name, **dict(self.options))


@dataclass(frozen=True, kw_only=True)
class PrunerConfig:
    """``[pruner]``: when a screened candidate is stopped early (``LawPruner``).

    The defaults are ``LawPruner()``'s: the settings that measured best on the
    TaskSet pruning replay (chosen on those tasks, so in-sample; README).

    Attributes:
        enabled: ``false`` trains every candidate for the whole short budget.
        caution: in [0, 1], the one knob of the early stops: 0 (default) prunes the
            most, as measured best; higher keeps more (``keep_fraction`` 0.3 -> 0.6,
            the compared prediction from its point to its 10% quantile).
        quantile: the optimistic quantile, in (0, 0.5), the search's cuts rank
            survivors by, and the report's interval (``1 - 2 * quantile``); 0: 0.1.
            It sets the early stops' quantile too when given (else ``caution`` does).
        min_points: evaluations before the first decision (0: the law's minimum; 2,
            the default, decides on the last value until the law can be fitted).
        keep_fraction: fraction of candidates kept at each rung (0: set by ``caution``).
        rung_factor: geometric spacing of decision rungs (0: decide at every report).
        min_trials: fewest other scored candidates at a rung before pruning.
        warmup_steps: no early stop before this step (0: from the first decision);
            the decision rungs start there (``warmup_steps * rung_factor ** r``). Early
            in a run the loss mostly reflects the peak LR (a higher one falls faster
            first), so early stops there drop low-LR runs that end best (README,
            the search end to end).
    """

    enabled: bool = True
    caution: float = 0.0
    quantile: float = 0.0
    min_points: int = 2
    keep_fraction: float = 0.0
    rung_factor: float = 2.0
    min_trials: int = 4
    warmup_steps: int = 0

    @property
    def search_quantile(self) -> float:
        """The quantile the search's cuts and the report use (``quantile``, or 0.1)."""
        return self.quantile or 0.1


@dataclass(frozen=True, kw_only=True)
class SearchConfig:
    """``[search]``: candidates screened, survivors continued, continuation rungs.

    Every candidate trains for the short budget; the ``survivors`` best (by the
    optimistic end of their predicted final loss) continue from their checkpoints
    to the full budget. ``rungs`` are the budgets survivors continue to, as
    increasing fractions of the full budget ending at 1.0; with several rungs the
    cut is geometric (``(candidates / survivors) ** (1 / len(rungs))`` per rung) so
    that ``survivors`` candidates reach the full budget (at least one continues
    from every rung).

    ``promotion = "sync"`` (the default) cuts a rung once all its trials have
    finished, so exactly the planned number continue; ``"async"`` promotes
    ASHA-style as trials finish (no barrier, better with many workers, but an
    early promotion is never taken back, so more than planned may continue).

    ``max_retries``: how many times a trial that failed (raised, or its worker died)
    is retried, each time from its last checkpoint (``train.checkpoint_every``).
    ``oom_retry``: a trial that runs out of memory is retried from its last checkpoint
    at half its micro-batch (``train.micro_batch``) with twice the gradient accumulation
    (the same effective batch), down to 1; these retries do not count in ``max_retries``.

    ``propose_schedules``: after the screen, a schedule-aware law (``law.name`` =
    ``multipower`` or ``momentum``) fitted jointly on the screened curves proposes, for
    each of this many best screened mixtures, the piecewise LR schedule it predicts to
    end lowest (same peak LR and warmup, ``final_lr_ratio``, monotone decay); each
    proposal predicted below every hand family is an extra candidate that screens and is
    cut like the others (``lawsearch.search._propose``). Once per study; 0 (default): off.

    ``pool_lr_ratio``: a cut's joint refit of a schedule-aware law fits curves together
    only when their peak LRs lie within this factor (sorted by peak LR, a group ends
    where the next peak is more than this times its first); a lone curve joins the
    group nearer in peak LR. One shared exponent cannot follow runs whose loss
    rises with peak LR (``benchmarks/search_e2e.py``, README). 0: one fit of every curve.

    ``explore_fraction``: in [0, 1], the share of candidates after the sampler's
    start-up that take the next point of its space-filling (Sobol) sequence instead
    of a retrieved one (``LawSampler(explore_fraction=)``; 0.5, the default: every
    other one). Retrieval learns from extrapolations of short screens and keeps
    returning to the region that led early: on the recorded grid at 40 candidates,
    retrieval alone trained a config within 0.5% of the grid's best in 45% of
    held-out seeds, half-and-half in 65% (``benchmarks/search_e2e.py``, README).
    0: every candidate retrieved.

    ``rank``: what a cut ranks a rung by: ``"law"`` (default), the optimistic end of each
    candidate's predicted final loss (the joint refit of the law); ``"loss"``, the loss
    observed at the rung's budget, as successive halving does (candidates are still
    extrapolated: the sampler and the report use the predictions).
    """

    candidates: int = 12
    survivors: int = 3
    rungs: tuple[float, ...] = (1.0,)
    promotion: str = "sync"
    max_retries: int = 2
    oom_retry: bool = True
    propose_schedules: int = 0
    pool_lr_ratio: float = 1.5
    explore_fraction: float = 0.5
    rank: str = "law"


@dataclass(frozen=True, kw_only=True)
class ObjectiveConfig:
    """``[objective]``: the held-out loss the search ranks by.

    Default: the mean over all domains. ``domain``: one named domain's held-out
    loss. ``weights``: a weighted mean (domain -> weight, summing to 1; missing
    domains weigh 0). ``multi = true`` (a multi-objective study over per-domain
    losses) is refused at validation: ``RetrievalRerank`` ranks one value.
    """

    domain: str = ""
    weights: Mapping[str, float] = field(default_factory=dict)
    multi: bool = False

    @property
    def kind(self) -> str:
        """``mean``, ``domain`` or ``weighted``."""
        return "domain" if self.domain else "weighted" if self.weights else "mean"


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """``[train]``: the training loop shared by every trial.

    ``threads`` sets ``torch.set_num_threads`` (0: torch's default, one per core).
    ``compile`` wraps the model in ``torch.compile`` (worth it on GPUs for long runs).
    On a CPU shared with other work, small models run far faster with 1: the demo
    measured 240 tokens/s with the default and 10,400 with 1 on a busy 2-core VM.

    ``checkpoint_every``: steps between the checkpoints a trial writes while it trains
    (0: only at its budget); a retry after a crash resumes from the last one.
    ``keep_checkpoints``: ``"needed"`` deletes the checkpoints no continuation or retry
    can use any more (all but the last of each live lineage and the pick's); ``"all"``
    keeps every file.
    ``micro_batch``: sequences per forward/backward pass (0, the default: ``batch_size``);
    each step accumulates the gradients of ``batch_size / micro_batch`` passes.
    """

    batch_size: int = 8
    seq_len: int = 128
    eval_every: int = 10
    eval_tokens: int = 16384
    checkpoint_every: int = 0
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    device: str = "auto"
    dtype: str = "auto"
    threads: int = 0
    compile: bool = False
    keep_checkpoints: str = "needed"
    micro_batch: int = 0

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len


@dataclass(frozen=True, kw_only=True)
class StudyConfig:
    """A whole study, validated. Build it with ``load_study`` or ``parse_study``."""

    study: StudySection
    model: ModelConfig
    tokenizer: TokenizerConfig
    corpus: CorpusConfig
    domains: tuple[DomainConfig, ...]
    search_space: SearchSpaceConfig
    budgets: BudgetsConfig
    law: LawConfig
    pruner: PrunerConfig
    search: SearchConfig
    train: TrainConfig
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    source: str = ""

    @property
    def name(self) -> str:
        return self.study.name

    @property
    def run_dir(self) -> Path:
        return Path(self.study.dir)

    @property
    def report_dir(self) -> Path:
        return self.run_dir / "report"

    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def short_steps(self) -> int:
        return self.budgets.short_tokens // self.train.tokens_per_step

    @property
    def full_steps(self) -> int:
        return self.budgets.full_tokens // self.train.tokens_per_step

    @property
    def rung_steps(self) -> tuple[int, ...]:
        """The continuation budgets in steps (increasing, beyond the short budget)."""
        return tuple(round(r * self.full_steps) for r in self.search.rungs)

    @property
    def budget_steps(self) -> tuple[int, ...]:
        """Every budget in steps: the short one, then each rung (the last is full)."""
        return (self.short_steps, *self.rung_steps)

    @property
    def eta(self) -> float:
        """The promotion ratio per rung that leaves ``survivors`` at the full budget."""
        ratio = self.search.candidates / self.search.survivors
        # shaved so that floor(candidates / eta) is exactly `survivors`, never one less
        return max(ratio ** (1.0 / len(self.search.rungs)) * (1 - 1e-9), 1.0 + 1e-9)

    @property
    def domain_names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.domains)

    @property
    def mixture_bounds(self) -> tuple[dict[str, float], dict[str, float]]:
        """Per-domain ``(low, high)`` with the search-space defaults filled in."""
        ss = self.search_space
        low = {d.name: (ss.mixture_low if d.low < 0 else d.low) for d in self.domains}
        high = {d.name: (ss.mixture_high if d.high < 0 else d.high) for d in self.domains}
        return low, high

    def full_budget_compute(self) -> int:
        """Tokens it would take to train every candidate to the full budget."""
        return self.search.candidates * self.budgets.full_tokens
