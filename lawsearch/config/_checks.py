"""Cross-field validation of a ``StudyConfig``: every message names the dotted key and the fix."""

from __future__ import annotations

from typing import Any

from lawsearch._errors import did_you_mean
from lawsearch.config._schema import DEVICES, DTYPES, SCHEDULE_FAMILIES, StudyConfig
from lawsearch.mixtures import validate_mixture_bounds
from lawsearch.search._decisions import RANKS
from lawsearch.train._protocol import check_micro_batch

__all__ = ["KEEP_CHECKPOINTS", "PROMOTIONS", "validate"]

PROMOTIONS = ("sync", "async")
KEEP_CHECKPOINTS = ("needed", "all")


def validate(cfg: StudyConfig) -> None:
    """Raise a ``ValueError`` naming the key and the fix for the first problem found."""
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
    if cfg.train.keep_checkpoints not in KEEP_CHECKPOINTS:
        raise ValueError(
            f"`train.keep_checkpoints` must be one of {list(KEEP_CHECKPOINTS)}; got "
            f"{cfg.train.keep_checkpoints!r}"
            + did_you_mean(cfg.train.keep_checkpoints, KEEP_CHECKPOINTS)
        )
    if cfg.train.micro_batch:
        check_micro_batch(cfg.train.micro_batch, cfg.train.batch_size, "train.micro_batch")
    _validate_heartbeat(cfg)
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
    _validate_data(cfg)
    _validate_objective(cfg)
    _validate_space(cfg)
    _validate_budgets(cfg)
    _validate_search(cfg)


def _validate_data(cfg: StudyConfig) -> None:
    from lawsearch.train._sources import FORMATS

    for d in cfg.domains:
        if d.format not in FORMATS:
            raise ValueError(
                f"`domains.{d.name}.format` must be one of {FORMATS}; got {d.format!r}"
                + did_you_mean(d.format, FORMATS)
            )
    if cfg.tokenizer.sample_bytes < 1024:
        raise ValueError(
            f"`tokenizer.sample_bytes` must be >= 1024; got {cfg.tokenizer.sample_bytes}."
        )
    if cfg.corpus.num_proc < 1 or cfg.corpus.held_out_documents < 0:
        raise ValueError(
            "`corpus.num_proc` must be >= 1 and `corpus.held_out_documents` >= 0 (0: no cap); "
            f"got {cfg.corpus.num_proc} and {cfg.corpus.held_out_documents}."
        )


def _validate_objective(cfg: StudyConfig) -> None:
    o, names = cfg.objective, cfg.domain_names
    if o.multi:
        raise ValueError(
            "`objective.multi` = true is not supported yet: the search (RetrievalRerank) "
            "ranks one value per trial, so a Pareto front over per-domain losses cannot be "
            "ranked honestly; remove `multi`, and use `objective.weights` to trade domains off."
        )
    if o.domain and o.weights:
        raise ValueError(
            "`objective.domain` and `objective.weights` exclude each other; give one (a "
            "single domain is weights = {NAME = 1.0})."
        )
    if o.domain and o.domain not in names:
        raise ValueError(
            f"`objective.domain` = {o.domain!r} is not a domain; choose one of {list(names)}"
            + did_you_mean(o.domain, names)
        )
    for name, w in o.weights.items():
        if name not in names:
            raise ValueError(
                f"`objective.weights.{name}` is not a domain; choose from {list(names)}"
                + did_you_mean(name, names)
            )
        if isinstance(w, bool) or not isinstance(w, int | float) or not w >= 0:
            raise ValueError(f"`objective.weights.{name}` must be a number >= 0; got {w!r}.")
    if o.weights and abs(sum(o.weights.values()) - 1.0) > 1e-6:
        total = sum(o.weights.values())
        raise ValueError(f"`objective.weights` must sum to 1 (got {total:.6g}); normalise them.")
    if cfg.law.name == "temporal" and cfg.pruner.enabled:
        raise ValueError(
            "`law.name` = 'temporal' needs `pruner.enabled = false`: the pruner fits the "
            "scalar curve while a trial trains, and the temporal law fits the per-position "
            "losses that the search reads when a trial finishes a rung."
        )


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
        raise ValueError(
            f"`search_space.peak_lr` must be > 0 (it is searched on a log scale); got "
            f"{list(ss.peak_lr)}; give a positive range such as [1e-4, 1e-2]."
        )
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


def _validate_heartbeat(cfg: StudyConfig) -> None:
    st = cfg.study
    if st.heartbeat_interval < 1:
        raise ValueError(
            f"`study.heartbeat_interval` must be >= 1 second; got {st.heartbeat_interval}."
        )
    if st.grace_period <= st.heartbeat_interval:
        raise ValueError(
            f"`study.grace_period` ({st.grace_period} s) must be longer than "
            f"`study.heartbeat_interval` ({st.heartbeat_interval} s), or live trials are "
            "failed as stale; raise it (3 x the interval is a safe choice)."
        )
    if not st.reconnect_timeout > 0:
        raise ValueError(
            f"`study.reconnect_timeout` must be > 0 seconds; got {st.reconnect_timeout}. It is "
            "how long a worker keeps reconnecting to a restarting database (default 120)."
        )


def _validate_search(cfg: StudyConfig) -> None:
    s, p = cfg.search, cfg.pruner
    if s.max_retries < 0:
        raise ValueError(
            f"`search.max_retries` must be >= 0 (0: a failed trial is not retried); got "
            f"{s.max_retries}."
        )
    if s.pool_lr_ratio != 0 and not s.pool_lr_ratio >= 1:
        raise ValueError(
            f"`search.pool_lr_ratio` must be >= 1 (curves whose peak LRs lie within this "
            f"factor share a joint refit) or 0 (one refit of every curve); got {s.pool_lr_ratio}."
        )
    if not 0 <= s.explore_fraction <= 1:
        raise ValueError(
            f"`search.explore_fraction` must be in [0, 1] (the share of candidates after "
            f"start-up proposed space-filling instead of by retrieval; 0: none); got "
            f"{s.explore_fraction}."
        )
    if s.propose_schedules < 0 or s.propose_schedules > s.candidates:
        raise ValueError(
            f"`search.propose_schedules` must be in [0, search.candidates={s.candidates}] "
            f"(0: off; N: the law proposes a schedule for each of the N best screened "
            f"candidates); got {s.propose_schedules}."
        )
    if s.propose_schedules and not cfg.law.build().uses_lr:
        raise ValueError(
            f"`search.propose_schedules` = {s.propose_schedules} needs a schedule-aware law "
            f"to optimise the LR schedule with; `law.name` = {cfg.law.name!r} ignores it. "
            "Set law.name = 'multipower' or 'momentum', or propose_schedules = 0."
        )
    if s.candidates < 2:
        raise ValueError(f"`search.candidates` must be >= 2; got {s.candidates}.")
    if not 1 <= s.survivors <= s.candidates:
        raise ValueError(
            f"`search.survivors` must be in [1, search.candidates={s.candidates}]; "
            f"got {s.survivors}."
        )
    if s.rank not in RANKS:
        raise ValueError(
            f"`search.rank` must be one of {list(RANKS)} (what a cut ranks candidates by: "
            f"the law's prediction or the observed loss); got {s.rank!r}."
            + did_you_mean(str(s.rank), RANKS)
        )
    if s.promotion not in PROMOTIONS:
        raise ValueError(
            f"`search.promotion` must be one of {list(PROMOTIONS)}; got {s.promotion!r}."
            + did_you_mean(str(s.promotion), PROMOTIONS)
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
    if not 0 <= p.quantile < 0.5:
        raise ValueError(f"`pruner.quantile` must be in (0, 0.5) (or 0 for 0.1); got {p.quantile}.")
    if not 0 <= p.caution <= 1:
        raise ValueError(
            f"`pruner.caution` must be in [0, 1] (0: prune the most, as measured best; "
            f"1: the most careful); got {p.caution}."
        )
    if p.rung_factor != 0 and p.rung_factor <= 1:
        raise ValueError(
            f"`pruner.rung_factor` must be > 1 (or 0 to decide at every report); "
            f"got {p.rung_factor}."
        )
    if p.min_trials < 1:
        raise ValueError(f"`pruner.min_trials` must be >= 1; got {p.min_trials}.")
    if p.warmup_steps < 0:
        raise ValueError(
            f"`pruner.warmup_steps` must be >= 0 (no early stop before this step; 0: none); "
            f"got {p.warmup_steps}."
        )
    if not 0 <= p.keep_fraction <= 1:
        raise ValueError(
            f"`pruner.keep_fraction` must be in (0, 1] (or 0: set by `pruner.caution`); "
            f"got {p.keep_fraction}."
        )
    if p.min_points < 0:
        raise ValueError(
            f"`pruner.min_points` must be >= 0 (0: the law's own); got {p.min_points}."
        )
