"""Study files: a TOML study parsed into validated, frozen dataclasses.

``load_study(path)`` reads a study such as ``studies/demo.toml`` and checks
everything that can be checked before any training starts: unknown keys (with
the closest valid key suggested), value types and ranges, mixture bounds that
no point of the simplex satisfies, missing corpus files, a short budget too
short for the law to fit, and storages that cannot host parallel workers.
Every error is a ``ValueError`` whose message starts with the dotted key
(``search.survivors``) and says how to fix it.

Sections::

    [study]        name, seed, storage, dir
    [model]        Llama sizes (hidden_size, num_layers, num_heads, ...)
    [tokenizer]    vocab_size, min_frequency
    [corpus]       max_bytes_per_domain, held_out_fraction, text_field, cache_dir
    [domains.NAME] builtin = "..." | paths = [...]; low, high (mixture bounds)
    [search_space] mixture_low/high, schedules, peak_lr, warmup, decay_fraction, ...
    [budgets]      short_tokens, full_tokens (converted to steps with batch x seq_len)
    [law]          name + the law's own options
    [pruner]       quantile, min_points, keep_fraction
    [search]       candidates, survivors, rungs
    [train]        batch_size, seq_len, eval_every, device, dtype, ...
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import tomllib
import typing
import warnings
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from lawsearch._errors import did_you_mean

__all__ = [
    "BudgetsConfig",
    "CorpusConfig",
    "DomainConfig",
    "LawConfig",
    "ModelConfig",
    "PrunerConfig",
    "SearchConfig",
    "SearchSpaceConfig",
    "StudyConfig",
    "StudySection",
    "TokenizerConfig",
    "TrainConfig",
    "load_study",
    "parse_study",
]

DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "bfloat16", "float16")
SCHEDULE_FAMILIES = ("constant", "linear", "cosine", "wsd")


# ---- sections ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class StudySection:
    """``[study]``: identity, seed and where the study lives.

    Attributes:
        name: the Optuna study name; also names the run folder ``runs/<name>``.
        seed: seeds the sampler, data order and model init.
        dir: the run folder (checkpoints, report); default ``runs/<name>``.
        storage: a journal file path (default ``<dir>/journal.log``) or a
            ``postgresql://`` URL. SQLite is refused: it cannot host parallel workers.
    """

    name: str
    seed: int = 0
    dir: str = ""
    storage: str = ""

    @property
    def is_journal(self) -> bool:
        return "://" not in self.storage


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """``[model]``: a Llama-family model built from a config (never downloaded)."""

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
    """``[tokenizer]``: the byte-level BPE trained locally on the study's corpus."""

    vocab_size: int = 4096
    min_frequency: int = 2


@dataclass(frozen=True, kw_only=True)
class CorpusConfig:
    """``[corpus]``: how domains are read and split.

    Attributes:
        max_bytes_per_domain: text kept per builtin demo domain (UTF-8 bytes).
        held_out_fraction: documents held out per domain when no split is given.
        text_field: the text field of JSONL records and ``datasets`` datasets.
        cache_dir: corpus, tokenizer and packed-data cache (``""``: ``~/.cache/lawsearch``
            or ``$LAWSEARCH_CACHE``).
    """

    max_bytes_per_domain: int = 1_000_000
    held_out_fraction: float = 0.1
    text_field: str = "text"
    cache_dir: str = ""


@dataclass(frozen=True, kw_only=True)
class DomainConfig:
    """``[domains.NAME]``: one data domain and its mixture bounds.

    Exactly one source: ``builtin`` (a demo domain built from text that installs
    with the project's dependencies), ``paths`` (local text/JSONL files or folders,
    relative to the study file) or ``dataset`` (a ``datasets`` name already in the
    local cache). ``held_out`` optionally gives the held-out files explicitly
    (default: a fixed fraction of the documents). ``low``/``high`` default to
    ``search_space.mixture_low/high``.
    """

    name: str
    builtin: str = ""
    paths: tuple[str, ...] = ()
    dataset: str = ""
    held_out: tuple[str, ...] = ()
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

    def build(self) -> Any:
        """The configured ``Law`` instance."""
        from lawsearch.laws import get_law

        return get_law(self.name, **dict(self.options))


@dataclass(frozen=True, kw_only=True)
class PrunerConfig:
    """``[pruner]``: when a screened candidate is stopped early (``LawPruner``).

    Attributes:
        enabled: ``false`` trains every candidate for the whole short budget.
        quantile: the optimistic quantile of the prediction, in (0, 0.5), compared
            with the k-th best score at the same rung.
        min_points: evaluations before the first decision (0: the law's minimum).
        keep_fraction: fraction of candidates kept at each rung.
        rung_factor: geometric spacing of decision rungs (0: decide at every report).
        min_trials: fewest other scored candidates at a rung before pruning.
    """

    enabled: bool = True
    quantile: float = 0.1
    min_points: int = 0
    keep_fraction: float = 0.5
    rung_factor: float = 2.0
    min_trials: int = 4


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
    """

    candidates: int = 12
    survivors: int = 3
    rungs: tuple[float, ...] = (1.0,)
    promotion: str = "sync"


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """``[train]``: the training loop shared by every trial.

    ``threads`` sets ``torch.set_num_threads`` (0: torch's default, one per core).
    On a CPU shared with other work, small models run far faster with 1: the demo
    measured 240 tokens/s with the default and 10,400 with 1 on a busy 2-core VM.
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

    @property
    def planned_steps(self) -> int:
        """Optimizer steps of the search if nothing is pruned early (``sync`` promotion).

        Every candidate screens for the short budget, then ``sync_keep(n, eta)`` of
        the ``n`` trials of each rung continue to the next.
        """
        from lawsearch.search import sync_keep

        budgets = self.budget_steps
        n = self.search.candidates
        steps = n * budgets[0]
        for lo, hi in itertools.pairwise(budgets):
            n = sync_keep(n, self.eta)
            steps += n * (hi - lo)
        return steps

    def full_budget_compute(self) -> int:
        """Tokens it would take to train every candidate to the full budget."""
        return self.search.candidates * self.budgets.full_tokens


# ---- loading ----------------------------------------------------------------------------

_SECTIONS: dict[str, type] = {
    "study": StudySection,
    "model": ModelConfig,
    "tokenizer": TokenizerConfig,
    "corpus": CorpusConfig,
    "search_space": SearchSpaceConfig,
    "budgets": BudgetsConfig,
    "law": LawConfig,
    "pruner": PrunerConfig,
    "search": SearchConfig,
    "train": TrainConfig,
}
_ALL_SECTIONS = (*_SECTIONS, "domains")
_PROMOTIONS = ("sync", "async")


def load_study(path: str | Path, *, run_root: str | Path | None = None) -> StudyConfig:
    """Read and validate a study TOML file.

    Args:
        path: the study file.
        run_root: the folder ``runs/<name>`` and a relative journal path are resolved
            against (default: the current directory).

    Raises:
        ValueError: the file is missing, is not TOML, or a key is wrong; the message
            names the dotted key and the fix.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"study file {str(p)!r} not found; pass the path to a .toml study.")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{p}: not valid TOML: {exc}") from None
    return parse_study(data, base_dir=p.parent, run_root=run_root, source=str(p))


def parse_study(
    data: Mapping[str, Any],
    *,
    base_dir: str | Path = ".",
    run_root: str | Path | None = None,
    source: str = "",
) -> StudyConfig:
    """Validate a parsed TOML mapping into a ``StudyConfig`` (see ``load_study``)."""
    _check_keys(data, _ALL_SECTIONS, "")
    for required in ("study", "budgets", "domains"):
        if required not in data:
            raise ValueError(
                f"[{required}] is missing; a study needs [study], [budgets] and "
                f"at least one [domains.NAME] table."
            )
    sections: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        table = data.get(name, {})
        if not isinstance(table, Mapping):
            raise ValueError(f"`{name}` must be a table ([{name}]); got {table!r}.")
        if cls is LawConfig:
            sections[name] = _parse_law(table)
        else:
            sections[name] = _build(cls, table, name)
    base = Path(base_dir)
    domains = _parse_domains(data["domains"], base)
    study = _resolve_study(sections["study"], Path(run_root) if run_root else Path.cwd())
    cfg = StudyConfig(
        study=study,
        model=sections["model"],
        tokenizer=sections["tokenizer"],
        corpus=sections["corpus"],
        domains=domains,
        search_space=sections["search_space"],
        budgets=sections["budgets"],
        law=sections["law"],
        pruner=sections["pruner"],
        search=sections["search"],
        train=sections["train"],
        source=source,
    )
    _validate(cfg)
    return cfg


def _check_keys(table: Mapping[str, Any], allowed: tuple[str, ...], prefix: str) -> None:
    for key in table:
        if key not in allowed:
            where = f"{prefix}.{key}" if prefix else key
            raise ValueError(
                f"`{where}` is not a known key"
                + (f" of [{prefix}]" if prefix else "")
                + did_you_mean(key, allowed).rstrip(".")
                + f" (valid: {', '.join(allowed)})."
            )


def _build(cls: type, table: Mapping[str, Any], prefix: str, **extra: Any) -> Any:
    """Build a section dataclass from a TOML table, checking keys and value types."""
    hints = typing.get_type_hints(cls)
    names = tuple(f.name for f in fields(cls) if f.name not in extra)
    _check_keys(table, names, prefix)
    kwargs: dict[str, Any] = dict(extra)
    for f in fields(cls):
        if f.name in extra:
            continue
        key = f"{prefix}.{f.name}"
        if f.name in table:
            kwargs[f.name] = _coerce(table[f.name], hints[f.name], key)
        elif f.default is MISSING and f.default_factory is MISSING:
            raise ValueError(f"`{key}` is required; add `{f.name} = ...` to [{prefix}].")
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"`{key}` must be true or false; got {value!r}.")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"`{key}` must be an integer; got {value!r}.")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"`{key}` must be a number; got {value!r}.")
        if not math.isfinite(value):
            raise ValueError(f"`{key}` must be finite; got {value!r}.")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"`{key}` must be a string; got {value!r}.")
        return value
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            items = value if isinstance(value, list) else [value]
            return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(items))
        # a [low, high] range; one number fixes the value
        items = value if isinstance(value, list) else [value, value]
        if len(items) != len(args):
            raise ValueError(f"`{key}` must be [low, high] or one number; got {value!r}.")
        out = tuple(
            _coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(items, args, strict=True))
        )
        if out[0] > out[1]:
            raise ValueError(f"`{key}` must be [low, high] with low <= high; got {value!r}.")
        return out
    if origin in (dict, Mapping) or hint is Mapping:
        if not isinstance(value, Mapping):
            raise ValueError(f"`{key}` must be a table; got {value!r}.")
        return dict(value)
    raise TypeError(f"unsupported config type {hint!r} for {key}")  # pragma: no cover


def _parse_law(table: Mapping[str, Any]) -> LawConfig:
    from lawsearch.laws import LAWS

    name = table.get("name", "power")
    if not isinstance(name, str):
        raise ValueError(f"`law.name` must be a string; got {name!r}.")
    if name not in LAWS:
        raise ValueError(
            f"`law.name` = {name!r} is not a known law; choose one of {sorted(LAWS)}"
            + did_you_mean(name, LAWS)
        )
    options = {k: v for k, v in table.items() if k != "name"}
    law_cls = LAWS[name]
    valid = tuple(f.name for f in fields(law_cls) if f.init)
    for key in options:
        if key not in valid:
            raise ValueError(
                f"`law.{key}` is not an option of the {name!r} law"
                + did_you_mean(key, valid).rstrip(".")
                + f" (valid: {', '.join(valid)})."
            )
    cfg = LawConfig(name=name, options=options)
    try:
        cfg.build()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"[law] {name!r}: {exc}") from None
    return cfg


def _parse_domains(table: Any, base: Path) -> tuple[DomainConfig, ...]:
    if not isinstance(table, Mapping) or not table:
        raise ValueError(
            "`domains` must hold at least one [domains.NAME] table, e.g. "
            '[domains.code] builtin = "python_stdlib".'
        )
    out = []
    for name, sub in table.items():
        prefix = f"domains.{name}"
        if not isinstance(sub, Mapping):
            raise ValueError(f"`{prefix}` must be a table ([{prefix}]); got {sub!r}.")
        dom = _build(DomainConfig, sub, prefix, name=name)
        given = [k for k in ("builtin", "paths", "dataset") if getattr(dom, k)]
        if len(given) != 1:
            raise ValueError(
                f'`{prefix}` needs exactly one source: `builtin = "..."` (a demo domain), '
                f'`paths = [...]` (local files) or `dataset = "..."` (a cached `datasets` '
                f"name); got " + (" and ".join(given) if given else "neither") + "."
            )
        if dom.builtin:
            _check_builtin(dom.builtin, f"{prefix}.builtin")
        if dom.held_out and not dom.paths:
            raise ValueError(f"`{prefix}.held_out` goes with `paths` (local files) only.")
        resolved = _resolve_paths(dom.paths, base, f"{prefix}.paths")
        held_out = _resolve_paths(dom.held_out, base, f"{prefix}.held_out")
        for bound in ("low", "high"):
            v = getattr(dom, bound)
            if v != -1.0 and not 0.0 <= v <= 1.0:
                raise ValueError(f"`{prefix}.{bound}` must be in [0, 1]; got {v!r}.")
        out.append(_replace(dom, paths=resolved, held_out=held_out))
    return tuple(out)


def _resolve_paths(paths: tuple[str, ...], base: Path, key: str) -> tuple[str, ...]:
    resolved = []
    for i, raw in enumerate(paths):
        path = Path(raw).expanduser()
        path = path if path.is_absolute() else base / path
        if not path.exists():
            raise ValueError(
                f"`{key}[{i}]` = {raw!r}: no such file or folder ({path}); fix the path "
                f"(relative paths are read from the study file's folder)."
            )
        resolved.append(str(path))
    return tuple(resolved)


def builtin_domains() -> tuple[str, ...]:
    """Names of the demo domains the corpus builder ships (empty if unavailable)."""
    try:
        from lawsearch.train import corpus
    except ImportError:
        return ()
    names = getattr(corpus, "DEMO_DOMAINS", None) or getattr(corpus, "BUILTIN_DOMAINS", None)
    return tuple(names) if names else ()


def _check_builtin(name: str, key: str) -> None:
    known = builtin_domains()
    if known and name not in known:
        raise ValueError(
            f"`{key}` = {name!r} is not a builtin demo domain; choose one of {list(known)}"
            + did_you_mean(name, known)
        )


def _replace(obj: Any, **changes: Any) -> Any:
    return dataclasses.replace(obj, **changes)


def _resolve_study(study: StudySection, root: Path) -> StudySection:
    if not study.name or any(c in study.name for c in "/\\") or study.name.startswith("."):
        raise ValueError(
            f"`study.name` must be a non-empty name without slashes; got {study.name!r}."
        )
    run_dir = Path(study.dir).expanduser() if study.dir else Path("runs") / study.name
    if not run_dir.is_absolute():
        run_dir = root / run_dir
    storage = study.storage
    lowered = storage.lower()
    if lowered.startswith("sqlite"):
        raise ValueError(
            f"`study.storage` = {storage!r}: SQLite cannot host parallel workers (it locks the "
            f"whole database); leave `storage` unset for a journal file under {run_dir}, or "
            f"use a PostgreSQL URL such as 'postgresql://user@host/db'."
        )
    if "://" in storage and not lowered.startswith(("postgresql", "postgres")):
        raise ValueError(
            f"`study.storage` = {storage!r} is not supported; use a journal file path or a "
            f"'postgresql://' URL."
        )
    if not storage:
        storage = str(run_dir / "journal.log")
    elif "://" not in storage:
        path = Path(storage).expanduser()
        storage = str(path if path.is_absolute() else root / path)
    return _replace(study, dir=str(run_dir), storage=storage)


# ---- cross-field validation -------------------------------------------------------------


def _validate(cfg: StudyConfig) -> None:
    _positive(cfg.model, "model", ("hidden_size", "num_layers", "num_heads"))
    if cfg.model.hidden_size % cfg.model.num_heads:
        raise ValueError(
            f"`model.hidden_size` ({cfg.model.hidden_size}) must be divisible by "
            f"`model.num_heads` ({cfg.model.num_heads})."
        )
    if cfg.model.num_heads % cfg.model.kv_heads:
        raise ValueError(
            f"`model.num_kv_heads` ({cfg.model.kv_heads}) must divide `model.num_heads` "
            f"({cfg.model.num_heads})."
        )
    if cfg.tokenizer.vocab_size < 260:
        raise ValueError(
            f"`tokenizer.vocab_size` must be >= 260 (256 bytes + special tokens); got "
            f"{cfg.tokenizer.vocab_size}."
        )
    _positive(cfg.train, "train", ("batch_size", "seq_len", "eval_every", "eval_tokens"))
    if cfg.train.checkpoint_every < 0 or cfg.train.threads < 0:
        raise ValueError("`train.checkpoint_every` and `train.threads` must be >= 0 (0: off/auto).")
    c = cfg.corpus
    if c.max_bytes_per_domain < 1024:
        raise ValueError(
            f"`corpus.max_bytes_per_domain` must be >= 1024; got {c.max_bytes_per_domain}."
        )
    if not 0 < c.held_out_fraction < 1:
        raise ValueError(
            f"`corpus.held_out_fraction` must be in (0, 1); got {c.held_out_fraction}."
        )
    if cfg.train.device not in DEVICES:
        raise ValueError(
            f"`train.device` must be one of {DEVICES}; got {cfg.train.device!r}"
            + did_you_mean(cfg.train.device, DEVICES)
        )
    if cfg.train.dtype not in DTYPES:
        raise ValueError(
            f"`train.dtype` must be one of {DTYPES}; got {cfg.train.dtype!r}"
            + did_you_mean(cfg.train.dtype, DTYPES)
        )
    _validate_space(cfg)
    _validate_budgets(cfg)
    _validate_search(cfg)


def _positive(section: Any, prefix: str, names: tuple[str, ...]) -> None:
    for name in names:
        v = getattr(section, name)
        if v <= 0:
            raise ValueError(f"`{prefix}.{name}` must be > 0; got {v!r}.")


def _validate_space(cfg: StudyConfig) -> None:
    ss = cfg.search_space
    for fam in ss.schedules:
        if fam not in SCHEDULE_FAMILIES:
            raise ValueError(
                f"`search_space.schedules` contains {fam!r}; choose from {SCHEDULE_FAMILIES}"
                + did_you_mean(fam, SCHEDULE_FAMILIES)
            )
    if not ss.schedules:
        raise ValueError("`search_space.schedules` must name at least one schedule family.")
    if ss.peak_lr[0] <= 0:
        raise ValueError(f"`search_space.peak_lr` must be > 0; got {list(ss.peak_lr)}.")
    for key, (lo, hi), top in (
        ("warmup", ss.warmup, 0.5),
        ("decay_fraction", ss.decay_fraction, 1.0),
    ):
        if lo < 0 or hi > top:
            raise ValueError(
                f"`search_space.{key}` is a fraction of the full budget in [0, {top}]; "
                f"got {[lo, hi]}."
            )
    if not 0 <= ss.final_lr_ratio <= 1:
        raise ValueError(
            f"`search_space.final_lr_ratio` must be in [0, 1]; got {ss.final_lr_ratio}."
        )
    if ss.max_epochs < 0:
        raise ValueError(
            f"`search_space.max_epochs` must be >= 0 (0: no cap); got {ss.max_epochs}."
        )
    for key in ("mixture_low", "mixture_high"):
        v = getattr(ss, key)
        if not 0 <= v <= 1:
            raise ValueError(f"`search_space.{key}` must be in [0, 1]; got {v!r}.")
    low, high = cfg.mixture_bounds
    _check_mixture_bounds(low, high)
    if len(low) >= 2:
        try:
            from lawsearch.mixtures import validate_mixture_bounds
        except ImportError:  # pragma: no cover - the mixtures module ships with the core
            return
        try:
            validate_mixture_bounds(list(low), low=low, high=high)
        except ValueError as exc:
            raise ValueError(f"`domains.*` mixture bounds: {exc}") from None


def _check_mixture_bounds(low: dict[str, float], high: dict[str, float]) -> None:
    """Some mixture (weights summing to 1) must satisfy every bound."""
    for name in low:
        if low[name] > high[name]:
            raise ValueError(
                f"`domains.{name}`: low = {low[name]:g} is above high = {high[name]:g}; "
                f"swap them or widen the range."
            )
    total_low, total_high = sum(low.values()), sum(high.values())
    if total_low > 1 + 1e-9:
        raise ValueError(
            f"`domains.*.low`: the lower bounds sum to {total_low:g} > 1, so no mixture can "
            f"meet them; lower some of {', '.join(f'{k}={v:g}' for k, v in low.items())}."
        )
    if total_high < 1 - 1e-9:
        raise ValueError(
            f"`domains.*.high`: the upper bounds sum to {total_high:g} < 1, so no mixture can "
            f"meet them; raise some of {', '.join(f'{k}={v:g}' for k, v in high.items())}."
        )


def _validate_budgets(cfg: StudyConfig) -> None:
    b, t = cfg.budgets, cfg.train
    for key in ("short_tokens", "full_tokens"):
        if getattr(b, key) <= 0:
            raise ValueError(f"`budgets.{key}` must be > 0; got {getattr(b, key)!r}.")
    if b.short_tokens >= b.full_tokens:
        raise ValueError(
            f"`budgets.short_tokens` ({b.short_tokens:,}) must be below `budgets.full_tokens` "
            f"({b.full_tokens:,}); the short budget screens candidates cheaply."
        )
    law = cfg.law.build()
    need = max(law.min_points(), cfg.pruner.min_points)
    evals = cfg.short_steps // t.eval_every
    if evals < need:
        need_tokens = need * t.eval_every * t.tokens_per_step
        raise ValueError(
            f"`budgets.short_tokens` = {b.short_tokens:,} gives {cfg.short_steps} steps of "
            f"{t.tokens_per_step} tokens (train.batch_size x train.seq_len), i.e. {evals} "
            f"evaluations every {t.eval_every} steps, but the {cfg.law.name!r} law needs at "
            f"least {need} points to fit; raise `budgets.short_tokens` to >= {need_tokens:,} "
            f"or lower `train.eval_every`."
        )


def _validate_search(cfg: StudyConfig) -> None:
    s, p = cfg.search, cfg.pruner
    if s.candidates < 2:
        raise ValueError(f"`search.candidates` must be >= 2; got {s.candidates}.")
    if not 1 <= s.survivors <= s.candidates:
        raise ValueError(
            f"`search.survivors` must be in [1, search.candidates={s.candidates}]; "
            f"got {s.survivors}."
        )
    if s.promotion not in _PROMOTIONS:
        raise ValueError(
            f"`search.promotion` must be one of {list(_PROMOTIONS)}; got {s.promotion!r}."
            + did_you_mean(str(s.promotion), _PROMOTIONS)
        )
    if not s.rungs or s.rungs[-1] != 1.0:
        raise ValueError(
            f"`search.rungs` must be increasing fractions of the full budget ending at 1.0; "
            f"got {list(s.rungs)}."
        )
    prev = cfg.budgets.short_tokens / cfg.budgets.full_tokens
    for i, r in enumerate(s.rungs):
        if not prev < r <= 1.0:
            raise ValueError(
                f"`search.rungs[{i}]` = {r:g} must be above the previous budget "
                f"({prev:g} of full) and at most 1.0; rungs are increasing fractions of "
                f"`budgets.full_tokens`."
            )
        prev = r
    if not 0 < p.quantile < 0.5:
        raise ValueError(f"`pruner.quantile` must be in (0, 0.5); got {p.quantile}.")
    if p.rung_factor != 0 and p.rung_factor <= 1:
        raise ValueError(
            f"`pruner.rung_factor` must be > 1 (or 0 to decide at every report); "
            f"got {p.rung_factor}."
        )
    if p.min_trials < 1:
        raise ValueError(f"`pruner.min_trials` must be >= 1; got {p.min_trials}.")
    if not 0 < p.keep_fraction <= 1:
        raise ValueError(f"`pruner.keep_fraction` must be in (0, 1]; got {p.keep_fraction}.")
    if p.min_points < 0:
        raise ValueError(
            f"`pruner.min_points` must be >= 0 (0: the law's own); got {p.min_points}."
        )


# ---- wiring: the objects a study runs with ------------------------------------------------


def open_storage(cfg: StudyConfig, *, must_exist: bool = False) -> Any:
    """The study's Optuna storage: a journal file (created) or PostgreSQL.

    PostgreSQL gets heartbeats, so trials of a dead worker are failed and retried
    (from their checkpoint) by Optuna; journal files are recovered by the CLI.

    Args:
        cfg: the study.
        must_exist: refuse to create a journal file (for ``lawsearch report``).
    """
    import optuna

    if cfg.study.is_journal:
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(cfg.study.storage)
        if must_exist and not path.is_file():
            raise ValueError(
                f"no study storage at {str(path)!r}; run `lawsearch run {cfg.source or 'STUDY'}` "
                f"first (or set `study.storage` to where it ran)."
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    import sqlalchemy.exc

    with warnings.catch_warnings():
        # heartbeats and their retry callback are marked experimental by Optuna;
        # we rely on them on purpose, so the notice is not the user's business
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2)
        try:
            return optuna.storages.RDBStorage(
                cfg.study.storage,
                heartbeat_interval=60,
                grace_period=180,
                heartbeat_stale_trial_callback=retry,
            )
        except (sqlalchemy.exc.SQLAlchemyError, ImportError) as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise ValueError(
                f"`study.storage`: cannot open {cfg.study.storage!r} ({reason}). Check that the "
                "database server runs and the URL is right, or remove `study.storage` to use "
                "the default journal file."
            ) from None


def data_sources(cfg: StudyConfig) -> dict[str, Any]:
    """Domain name -> source for ``DataSpec.domains`` (builds the demo corpus if needed)."""
    builtin = {d.name: d.builtin for d in cfg.domains if d.builtin}
    sources: dict[str, Any] = {}
    if builtin:
        from lawsearch.train.corpus import build_demo_corpus

        cache = _cache_dir(cfg)
        manifest = build_demo_corpus(
            None if cache is None else cache / "corpus" / _corpus_key(cfg),
            domains=sorted(set(builtin.values())),
            max_bytes_per_domain=cfg.corpus.max_bytes_per_domain,
            held_out_fraction=cfg.corpus.held_out_fraction,
            token_vocab_size=None,
        )
        files = manifest.data_domains()
    for d in cfg.domains:
        if d.builtin:
            sources[d.name] = files[d.builtin]
        elif d.dataset:
            sources[d.name] = d.dataset
        elif d.held_out:
            sources[d.name] = {"train": list(d.paths), "held_out": list(d.held_out)}
        else:
            sources[d.name] = list(d.paths)
    return sources


def _cache_dir(cfg: StudyConfig) -> Path | None:
    return Path(cfg.corpus.cache_dir).expanduser() if cfg.corpus.cache_dir else None


def _corpus_key(cfg: StudyConfig) -> str:
    import hashlib
    import json

    spec = {
        "domains": sorted({d.builtin for d in cfg.domains if d.builtin}),
        "bytes": cfg.corpus.max_bytes_per_domain,
        "held_out": cfg.corpus.held_out_fraction,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def build_trainer(cfg: StudyConfig) -> Any:
    """The ``TransformersTrainer`` of the study (corpus built, data not yet packed)."""
    from lawsearch.train._transformers import DataSpec, ModelSpec, TrainSpec, TransformersTrainer

    m, t = cfg.model, cfg.train
    model = ModelSpec(
        n_layers=m.num_layers,
        d_model=m.hidden_size,
        n_heads=m.num_heads,
        d_ff=m.ffn_size,
        n_kv_heads=m.kv_heads,
        tie_embeddings=m.tie_embeddings,
        vocab_size=cfg.tokenizer.vocab_size,
        seq_len=t.seq_len,
    )
    data = DataSpec(
        domains=data_sources(cfg),
        held_out_fraction=cfg.corpus.held_out_fraction,
        text_field=cfg.corpus.text_field,
        seed=cfg.study.seed,
        min_frequency=cfg.tokenizer.min_frequency,
        cache_dir=cfg.corpus.cache_dir,
    )
    train = TrainSpec(
        batch_size=t.batch_size,
        eval_every=t.eval_every,
        eval_batches=max(1, math.ceil(t.eval_tokens / t.tokens_per_step)),
        device=t.device,
        dtype=t.dtype,
        checkpoint_dir=str(cfg.checkpoint_dir),
        checkpoint_every=t.checkpoint_every,
        seed=cfg.study.seed,
        weight_decay=t.weight_decay,
        grad_clip=t.grad_clip,
        threads=t.threads,
    )
    return TransformersTrainer(model=model, data=data, train=train)


def build_pruner(cfg: StudyConfig) -> Any:
    """The ``LawPruner`` screening candidates (a ``NopPruner`` when disabled)."""
    import optuna

    p = cfg.pruner
    if not p.enabled:
        return optuna.pruners.NopPruner()
    from lawsearch.optuna import LawPruner

    return LawPruner(
        target_step=cfg.full_steps,
        law=cfg.law.build(),
        min_points=p.min_points or None,  # 0: the law's minimum (never the last value alone)
        quantile=p.quantile,
        rung_factor=p.rung_factor or None,
        keep_fraction=p.keep_fraction,
        min_trials=p.min_trials,
        # read the other trials' scores at every decision: decisions then do not depend
        # on wall-clock timing (cheap at a study's few dozen trials)
        sync_interval=0.0,
        seed=cfg.study.seed,
    )


def build_sampler(cfg: StudyConfig, *, worker: int = 0) -> Any:
    """``LawSampler`` (retrieval over the mixture simplex) around a seeded TPE.

    Args:
        cfg: the study.
        worker: 0 for the first process; each concurrent process needs its own
            number, or seeded samplers that see the same history propose the same
            candidates.
    """
    import optuna

    from lawsearch.optuna import LawSampler

    seed = cfg.study.seed + 7919 * worker
    inner = optuna.samplers.TPESampler(seed=seed)
    return LawSampler(inner, seed=seed)


def suggest_config(
    cfg: StudyConfig, trial: Any, *, tokens_available: Mapping[str, float] | None = None
) -> dict[str, Any]:
    """Suggest one candidate's trainer config (``mixture`` and ``schedule``) on ``trial``.

    Args:
        cfg: the study.
        trial: the Optuna trial.
        tokens_available: train tokens per domain; with ``search_space.max_epochs``
            caps each weight so no domain repeats more than that many epochs.
    """
    from lawsearch.optuna import suggest_mixture, suggest_schedule

    ss = cfg.search_space
    low, high = cfg.mixture_bounds
    names = cfg.domain_names
    if len(names) >= 2:
        cap: dict[str, Any] = {}
        if ss.max_epochs > 0 and tokens_available is not None:
            cap = {
                "tokens_available": dict(tokens_available),
                "max_epochs": ss.max_epochs,
                "total_tokens": float(cfg.budgets.full_tokens),
            }
        mixture = suggest_mixture(trial, "mixture", names, low=low, high=high, **cap)
    else:
        mixture = {names[0]: 1.0}

    def rng(pair: tuple[float, float]) -> float | tuple[float, float]:
        return pair if pair[0] < pair[1] else pair[0]

    schedule = suggest_schedule(
        trial,
        "schedule",
        total_steps=cfg.full_steps,
        families=ss.schedules,
        peak_lr=rng(ss.peak_lr),
        warmup=rng(ss.warmup),
        decay_fraction=rng(ss.decay_fraction),
        final_lr_fraction=ss.final_lr_ratio,
    )
    return {"mixture": mixture, "schedule": schedule.to_dict(), "seed": cfg.study.seed}


def build_search(
    cfg: StudyConfig,
    *,
    trainer: Any,
    on_start: Any = None,
    on_report: Any = None,
) -> Any:
    """The ``RetrievalRerank`` search of the study, training with ``trainer``.

    Each trial suggests its mixture and schedule (``suggest_config``) and trains
    for its budget (resuming the parent's checkpoint for a continuation). While a
    candidate screens, every evaluation goes through the study's pruner, so a
    clear loser stops early and is left PRUNED with its prediction in its attrs.

    Args:
        cfg: the study.
        trainer: a ``lawsearch.train.Trainer``.
        on_start: ``on_start(trial_number, budget_steps, resume_step)`` before training.
        on_report: ``on_report(trial_number, step, value, tokens)`` after each evaluation
            (``tokens``: trained since the previous one).
    """
    import optuna

    from lawsearch.optuna import attrs
    from lawsearch.search import RetrievalRerank

    tps = cfg.train.tokens_per_step
    tokens_available: dict[str, float] | None = None
    if cfg.search_space.max_epochs > 0 and hasattr(trainer, "tokens_available"):
        tokens_available = {k: float(v) for k, v in trainer.tokens_available().items()}

    def objective(trial: optuna.Trial, budget_steps: int, resume_from: str | None) -> str | None:
        config = suggest_config(cfg, trial, tokens_available=tokens_available)
        frozen = trial.study._storage.get_trial(trial._trial_id)
        start = int(frozen.user_attrs.get(attrs.RESUME_STEP, 0)) if resume_from else 0
        screening = budget_steps <= cfg.short_steps
        trial.set_user_attr(attrs.TOKENS_PER_STEP, float(tps))
        trial.set_user_attr(attrs.LR, float(config["schedule"]["peak_lr"]))
        if on_start is not None:
            on_start(trial.number, budget_steps, start)
        last = [start]
        pruned = [False]

        def report(step: int, value: float, extras: Mapping[str, Any]) -> bool:
            trial.report(float(value), int(step))
            if on_report is not None:
                on_report(trial.number, int(step), float(value), (step - last[0]) * tps)
            last[0] = int(step)
            if screening and trial.should_prune():
                pruned[0] = True
                return True
            return False

        # PostgreSQL: beat while training, so a dead worker's trial goes stale and is retried
        from optuna.storages._heartbeat import get_heartbeat_thread

        with get_heartbeat_thread(trial._trial_id, trial.study._storage):
            result = trainer.train(
                config, budget_steps=budget_steps, resume_from=resume_from, report=report
            )
        trial.set_user_attr(attrs.PREFIX + "compute_tokens", float(result.final_step - start) * tps)
        if pruned[0]:
            raise optuna.TrialPruned(f"pruned at step {last[0]} by {cfg.law.name} extrapolation")
        return result.checkpoint

    class StudySearch(RetrievalRerank):
        """Counts candidates the pruner stopped among those screened at rung 0.

        ``RetrievalRerank`` promotes ``floor(n / eta)`` of the ``n`` trials that
        completed a rung; a pruned candidate was screened and lost, so it counts in
        ``n`` too, which keeps ``survivors`` continuing however many were pruned.
        """

        def eligible(self, study: Any) -> list[Any]:
            from optuna.trial import TrialState

            from lawsearch.search import RUNG

            done = pruned = 0
            for t in study.get_trials(
                deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)
            ):
                if t.user_attrs.get(RUNG) == 0:
                    pruned += t.state == TrialState.PRUNED
                    done += t.state == TrialState.COMPLETE
            self.eta = cfg.eta * done / (done + pruned) if done and pruned else cfg.eta
            return list(super().eligible(study))

    return StudySearch(
        budgets=cfg.budget_steps,
        n_candidates=cfg.search.candidates,
        objective=objective,
        eta=cfg.eta,
        law=cfg.law.build(),
        quantile=cfg.pruner.quantile,
        promotion=cfg.search.promotion,
    )
