"""A validated ``StudyConfig`` turned into the objects a search runs with.

``lawsearch run`` and the Python API build a study the same way::

    cfg = lawsearch.load_study("studies/demo.toml")
    storage = open_study_storage(cfg)
    trainer = build_trainer(cfg)                 # TransformersTrainer on the study's data
    study = optuna.create_study(study_name=cfg.name, storage=storage,
                                sampler=build_sampler(cfg), pruner=build_pruner(cfg),
                                load_if_exists=True)
    result = build_search(cfg, trainer=trainer).run(study)

Each builder reads only the config; none of them trains, prints or writes.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from lawsearch.config import StudyConfig
from lawsearch.optuna import LawPruner, LawSampler, suggest_mixture, suggest_schedule
from lawsearch.optuna import _attrs as attrs
from lawsearch.optuna import _compat as compat
from lawsearch.optuna._positions import add_row
from lawsearch.search import RetrievalRerank, sync_keep
from lawsearch.search._faults import Diverged, DivergenceCheck, record_checkpoint
from lawsearch.search._objective import training_config
from lawsearch.search._propose import ScheduleProposer
from lawsearch.storage import open_storage
from lawsearch.train._protocol import Trainer, takes_on_checkpoint

__all__ = [
    "DomainPlan",
    "RungPlan",
    "StudyPlan",
    "build_pruner",
    "build_sampler",
    "build_search",
    "build_trainer",
    "check_supply",
    "data_sources",
    "open_study_storage",
    "plan_rungs",
    "plan_study",
    "planned_steps",
    "suggest_config",
]

#: ``on_start(trial_number, budget_steps, resume_step)`` before a trial trains
OnStart = Callable[[int, int, int], None]
#: ``on_report(trial_number, step, value, tokens trained since the previous report)``
OnReport = Callable[[int, int, float, float], None]


def open_study_storage(
    cfg: StudyConfig, *, must_exist: bool = False, on_event: Callable[[str], None] | None = None
) -> Any:
    """The study's storage: its journal file (created) or its PostgreSQL database.

    Args:
        cfg: the study.
        must_exist: refuse to create a journal file (for ``lawsearch report``).
        on_event: PostgreSQL: receives one line per lost or restored connection.
    """
    return open_storage(
        cfg.study.storage,
        must_exist=must_exist,
        heartbeat_interval=cfg.study.heartbeat_interval,
        grace_period=cfg.study.grace_period,
        max_retry=cfg.search.max_retries,
        reconnect_timeout=cfg.study.reconnect_timeout,
        on_event=on_event,
        hint=f"run `lawsearch run {cfg.source or 'STUDY'}` first (or set `study.storage` to "
        "where it ran)",
    )


def planned_steps(cfg: StudyConfig) -> int:
    """Optimizer steps of the search if nothing is pruned early (``sync`` promotion).

    Every candidate screens for the short budget, then ``sync_keep(n, eta)`` of the
    ``n`` trials of each rung continue to the next.
    """
    return sum(r.tokens for r in plan_rungs(cfg)) // cfg.train.tokens_per_step


# ---- the trainer ------------------------------------------------------------------------------


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
    spec = {
        "domains": sorted({d.builtin for d in cfg.domains if d.builtin}),
        "bytes": cfg.corpus.max_bytes_per_domain,
        "held_out": cfg.corpus.held_out_fraction,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def build_trainer(cfg: StudyConfig) -> Any:
    """The ``TransformersTrainer`` of the study (corpus built, data not yet packed)."""
    from lawsearch.train._transformers import DataSpec, ModelSpec, TrainSpec, TransformersTrainer

    m, t, o = cfg.model, cfg.train, cfg.objective
    model = ModelSpec(
        n_layers=m.num_layers,
        d_model=m.hidden_size,
        n_heads=m.num_heads,
        d_ff=m.ffn_size,
        n_kv_heads=m.kv_heads,
        tie_embeddings=m.tie_embeddings,
        vocab_size=cfg.tokenizer.vocab_size,
        seq_len=t.seq_len,
        config=m.config,
        init=m.init,
    )
    data = DataSpec(
        domains=data_sources(cfg),
        held_out_fraction=cfg.corpus.held_out_fraction,
        held_out_size=cfg.corpus.held_out_documents,
        text_field=cfg.corpus.text_field,
        text_fields={d.name: d.text_field for d in cfg.domains if d.text_field},
        formats={d.name: d.format for d in cfg.domains if d.format != "auto"},
        seed=cfg.study.seed,
        min_frequency=cfg.tokenizer.min_frequency,
        cache_dir=cfg.corpus.cache_dir,
        tokenizer_path=cfg.tokenizer.path,
        tokenizer_sample_bytes=cfg.tokenizer.sample_bytes,
        num_proc=cfg.corpus.num_proc,
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
        target_domains=(o.domain,) if o.domain else (),
        target_weights={k: float(v) for k, v in o.weights.items()},
        compile=t.compile,
        micro_batch=t.micro_batch,
    )
    return TransformersTrainer(model=model, data=data, train=train)


# ---- the Optuna objects -------------------------------------------------------------------------


#: seconds between a pruner's reads of the other trials when several processes share a study
SHARED_SYNC_INTERVAL = 1.0


def build_pruner(cfg: StudyConfig, *, shared: bool = False) -> optuna.pruners.BasePruner:
    """The ``LawPruner`` screening candidates (a ``NopPruner`` when disabled).

    Its defaults are ``LawPruner()``'s (``[pruner]`` overrides them; ``caution`` is
    the one knob). One process (``shared=False``, ``lawsearch run`` alone) reads the
    other trials' scores at every decision, so its decisions do not depend on
    wall-clock timing (cheap at a study's few dozen trials). With several processes
    on one study (``lawsearch worker``, ``shared=True``) decisions depend on which
    trials the others have finished anyway; each then reads the storage at most
    every ``SHARED_SYNC_INTERVAL`` seconds, sparing a shared database.
    """
    p = cfg.pruner
    if not p.enabled:
        return optuna.pruners.NopPruner()
    return LawPruner(
        target_step=cfg.full_steps,
        law=cfg.law.build(),
        caution=p.caution,
        min_points=p.min_points or None,  # 0: the law's minimum (never the last value alone)
        quantile=p.quantile or None,  # 0: set by caution
        rung_factor=p.rung_factor or None,
        keep_fraction=p.keep_fraction or None,  # 0: set by caution
        min_trials=p.min_trials,
        warmup_steps=p.warmup_steps,
        sync_interval=SHARED_SYNC_INTERVAL if shared else 0.0,
        seed=cfg.study.seed,
    )


def build_sampler(cfg: StudyConfig, *, worker: int = 0) -> LawSampler:
    """``LawSampler`` (retrieval over the mixture simplex) around a seeded TPE.

    Args:
        cfg: the study.
        worker: 0 for the first process; each concurrent process needs its own
            number, or seeded samplers that see the same history propose the same
            candidates.
    """
    seed = cfg.study.seed + 7919 * worker
    inner = optuna.samplers.TPESampler(seed=seed)
    return LawSampler(inner, seed=seed, explore_fraction=cfg.search.explore_fraction)


def suggest_config(
    cfg: StudyConfig,
    trial: optuna.trial.BaseTrial,
    *,
    tokens_available: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Suggest one candidate's trainer config (``mixture`` and ``schedule``) on ``trial``.

    Args:
        cfg: the study.
        trial: the Optuna trial.
        tokens_available: train tokens per domain; with ``search_space.max_epochs``
            caps each weight so no domain repeats more than that many epochs.
    """
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
    trainer: Trainer,
    on_start: OnStart | None = None,
    on_report: OnReport | None = None,
) -> RetrievalRerank:
    """The ``RetrievalRerank`` search of the study, training with ``trainer``.

    Each trial suggests its mixture and schedule (``suggest_config``) and trains
    for its budget (resuming the parent's checkpoint for a continuation). While a
    candidate screens, every evaluation goes through the study's pruner, so a
    clear loser stops early and is left PRUNED with its prediction in its attrs;
    it counts among the candidates screened at its rung (``RetrievalRerank``),
    so ``survivors`` continue however many were pruned.

    Args:
        cfg: the study.
        trainer: a ``lawsearch.train.Trainer``.
        on_start: called before a trial trains.
        on_report: called after each evaluation.
    """
    tps = cfg.train.tokens_per_step
    tokens_available: dict[str, float] | None = None
    if cfg.search_space.max_epochs > 0 and hasattr(trainer, "tokens_available"):
        tokens_available = {k: float(v) for k, v in trainer.tokens_available().items()}
    checkpoints = takes_on_checkpoint(trainer)

    def objective(trial: optuna.Trial, budget_steps: int, resume_from: str | None) -> str | None:
        suggested = suggest_config(cfg, trial, tokens_available=tokens_available)
        config = training_config(trial, trainer, suggested)
        frozen = compat.trial_now(trial.study, trial)
        start = int(frozen.user_attrs.get(attrs.RESUME_STEP, 0)) if resume_from else 0
        screening = budget_steps <= cfg.short_steps
        trial.set_user_attr(attrs.TOKENS_PER_STEP, float(tps))
        trial.set_user_attr(attrs.LR, float(config["schedule"]["peak_lr"]))
        if on_start is not None:
            on_start(trial.number, budget_steps, start)
        last = [start]
        pruned = [False]
        # the temporal law reads per-position losses: a bounded matrix, written once below
        per_position: list[Any] = [frozen.user_attrs.get(attrs.LOSS_PER_POSITION)]
        keep_positions = cfg.law.name == "temporal"
        diverged = DivergenceCheck.of(trial.study, frozen)

        def report(step: int, value: float, extras: Mapping[str, Any]) -> bool:
            trial.report(float(value), int(step))
            if diverged(int(step), float(value)):
                return True  # stop now; raised as Diverged once the trainer returns
            if keep_positions and step > 0 and "loss_per_position" in extras:
                per_position[0] = add_row(per_position[0], int(step), extras["loss_per_position"])
            if on_report is not None:
                on_report(trial.number, int(step), float(value), (step - last[0]) * tps)
            last[0] = int(step)
            if screening and trial.should_prune():
                pruned[0] = True
                return True
            return False

        def on_checkpoint(step: int, checkpoint: str) -> None:
            record_checkpoint(trial, step, checkpoint)  # a retry resumes here

        kw: dict[str, Any] = {"on_checkpoint": on_checkpoint} if checkpoints else {}
        try:
            result = trainer.train(
                config, budget_steps=budget_steps, resume_from=resume_from, report=report, **kw
            )
        finally:
            if keep_positions and per_position[0] is not None:
                trial.set_user_attr(attrs.LOSS_PER_POSITION, per_position[0])
        trial.set_user_attr(attrs.COMPUTE_TOKENS, float(result.final_step - start) * tps)
        if diverged.why is not None:
            raise Diverged(diverged.why)
        if pruned[0]:
            raise optuna.TrialPruned(f"pruned at step {last[0]} by {cfg.law.name} extrapolation")
        return result.checkpoint

    return RetrievalRerank(
        budgets=cfg.budget_steps,
        n_candidates=cfg.search.candidates,
        objective=objective,
        eta=cfg.eta,
        law=cfg.law.build(),
        quantile=cfg.pruner.search_quantile,
        promotion=cfg.search.promotion,
        rank=cfg.search.rank,
        pool_lr_ratio=cfg.search.pool_lr_ratio or None,
        max_retries=cfg.search.max_retries,
        oom_retry=cfg.search.oom_retry,
        checkpoint_dir=str(cfg.checkpoint_dir),
        keep_checkpoints=cfg.train.keep_checkpoints,
        propose=(
            ScheduleProposer(
                cfg.search.propose_schedules, final_lr_ratio=cfg.search_space.final_lr_ratio
            )
            if cfg.search.propose_schedules
            else None
        ),
    )


# ---- the plan: what a study will cost, checked before anything trains ---------------------------


@dataclass(frozen=True)
class RungPlan:
    """One budget of the search: the trials that train to it and the tokens they add."""

    budget_steps: int
    trials: int
    tokens: int


@dataclass(frozen=True)
class DomainPlan:
    """One domain: its train tokens, and what its highest mixture weight would draw from it.

    ``needed`` is ``high x budgets.full_tokens``; ``epochs`` how many times the domain
    is repeated at that weight; ``cap`` the highest weight ``search_space.max_epochs``
    allows (``None``: no cap).
    """

    name: str
    available: int
    documents: int
    high: float
    needed: float
    epochs: float
    cap: float | None


@dataclass(frozen=True)
class StudyPlan:
    """What a study will do and cost (``lawsearch plan``); see ``plan_study``."""

    rungs: tuple[RungPlan, ...]
    domains: tuple[DomainPlan, ...]
    params: int
    params_total: int
    tokens: int
    flops: float
    checkpoint_bytes: int
    checkpoints: int
    step_seconds: float | None
    eval_seconds: float | None
    wall_seconds: float | None
    timing_note: str


def plan_rungs(cfg: StudyConfig) -> tuple[RungPlan, ...]:
    """Trials and tokens per budget if nothing is pruned early (``sync`` promotion).

    ``search.propose_schedules`` law-proposed schedules screen with the candidates
    (at most that many: the law may propose fewer) and count in every cut.
    """
    budgets, tps = cfg.budget_steps, cfg.train.tokens_per_step
    n = cfg.search.candidates + (cfg.search.propose_schedules if len(budgets) > 1 else 0)
    out = [RungPlan(budgets[0], n, n * budgets[0] * tps)]
    for lo, hi in itertools.pairwise(budgets):
        n = sync_keep(n, cfg.eta)
        out.append(RungPlan(hi, n, n * (hi - lo) * tps))
    return tuple(out)


def check_supply(cfg: StudyConfig, available: Mapping[str, float]) -> None:
    """Raise a ``ValueError`` with the fix when the domains cannot supply the mixture.

    With ``search_space.max_epochs`` each weight is capped at
    ``max_epochs x tokens / full_tokens``; the caps (with ``high``) must leave a
    mixture that sums to 1 and meets every ``low``.
    """
    e, full = cfg.search_space.max_epochs, float(cfg.budgets.full_tokens)
    if e <= 0 or len(cfg.domains) < 2:
        return
    low, high = cfg.mixture_bounds
    names = cfg.domain_names

    def supply(epochs: float, total: float) -> float:
        return sum(min(high[d], epochs * available[d] / total) for d in names)

    for d in names:
        if low[d] * full > e * available[d]:
            raise ValueError(
                f"`domains.{d}.low` = {low[d]:g} needs {low[d] * full:,.0f} tokens of {d!r} per "
                f"run but it has {available[d]:,.0f} train tokens, i.e. {e:g} epochs give "
                f"{e * available[d]:,.0f}; add data to {d!r}, lower its `low`, raise "
                f"`search_space.max_epochs`, or lower `budgets.full_tokens`."
            )
    if supply(e, full) >= 1 - 1e-9:
        return
    has = sum(available.values())
    fixes = []
    if sum(high.values()) >= 1:
        lo_e, hi_e = e, 2.0 * e
        while supply(hi_e, full) < 1 - 1e-9:
            lo_e, hi_e = hi_e, 2 * hi_e
        for _ in range(60):
            mid = (lo_e + hi_e) / 2
            lo_e, hi_e = (mid, hi_e) if supply(mid, full) < 1 - 1e-9 else (lo_e, mid)
        fixes.append(f"raise `search_space.max_epochs` to >= {math.ceil(hi_e * 100) / 100:g}")
    lo_f, hi_f = 1.0, full
    for _ in range(80):
        mid = (lo_f + hi_f) / 2
        lo_f, hi_f = (mid, hi_f) if supply(e, mid) >= 1 - 1e-9 else (lo_f, mid)
    fixes.append(f"lower `budgets.full_tokens` to <= {int(lo_f):,}")
    fixes.append(f"add data (the domains hold {has:,.0f} train tokens)")
    raise ValueError(
        f"`search_space.max_epochs` = {e:g}: the domains can supply at most "
        f"{supply(e, full) * full:,.0f} of the {full:,.0f} tokens a full-budget run trains on "
        f"(each weight is capped at max_epochs x its tokens / full_tokens, and by `high`), so "
        f"no mixture sums to 1; " + ", or ".join(fixes) + "."
    )


def plan_study(cfg: StudyConfig, trainer: Any, *, timing: bool = True) -> StudyPlan:
    """Check a study against its data and model and say what it will cost.

    Prepares the data (tokenised and packed once, cached for ``run``), checks that
    the domains can supply the mixture (``check_supply``), counts parameters, and,
    with ``timing``, times a few real steps on the configured device for a wall-time
    estimate (skipped with a note when that device is not here).

    Raises:
        ValueError: a data source, the model config or the supply is wrong (the
            message names the field and the fix).
    """
    trainer.prepare()
    available = {k: float(v) for k, v in trainer.tokens_available().items()}
    check_supply(cfg, available)
    high = cfg.mixture_bounds[1]
    full, e = float(cfg.budgets.full_tokens), cfg.search_space.max_epochs
    domains = tuple(
        DomainPlan(
            name=b.name,
            available=int(available[b.name]),
            documents=int((b.documents or {}).get("train", 0)),
            high=high[b.name],
            needed=high[b.name] * full,
            epochs=high[b.name] * full / available[b.name],
            cap=min(1.0, e * available[b.name] / full) if e > 0 else None,
        )
        for b in trainer._blocks
    )
    rungs = plan_rungs(cfg)
    ms = trainer.model_spec
    params, total = ms.n_params(), ms.n_params(embeddings=True)
    tokens = sum(r.tokens for r in rungs)
    checkpoints = sum(r.trials for r in rungs)
    if cfg.train.checkpoint_every:
        checkpoints += sum(r.trials * (r.budget_steps // cfg.train.checkpoint_every) for r in rungs)
    step_s = eval_s = wall = None
    note = ""
    if not timing:
        note = "not timed (--no-timing)"
    elif cfg.train.device == "cuda" and not _cuda_available():
        note = "not timed: train.device = 'cuda' and this machine has no CUDA device"
    else:
        from lawsearch.train._timing import time_steps

        timed = time_steps(trainer)
        step_s, eval_s = timed["step_seconds"], timed["eval_seconds"]
        steps = tokens // cfg.train.tokens_per_step
        wall = steps * step_s + steps / cfg.train.eval_every * eval_s
    return StudyPlan(
        rungs=rungs,
        domains=domains,
        params=params,
        params_total=total,
        tokens=tokens,
        flops=6.0 * params * tokens,
        # fp32 weights and AdamW's two moments, 4 bytes each, per checkpoint
        checkpoint_bytes=12 * total,
        checkpoints=checkpoints,
        step_seconds=step_s,
        eval_seconds=eval_s,
        wall_seconds=wall,
        timing_note=note,
    )


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())
