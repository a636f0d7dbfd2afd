"""The plan of a study: check it against its data, model and device, and say what it costs.

``plan_run`` validates what ``lawsearch.study.plan_study`` and
``lawsearch.preflight.check_run`` check (every domain read and packed, cached
for the run; the model built; the domains can supply the mixture at
``search_space.max_epochs``; the run folder, a stored study of the same name and
its checkpoints), with an optional wall-time estimate from a few real steps
timed on the configured device. Nothing is trained or written under ``runs/``;
an infeasible study is a ``UserError`` with the fix.

``format_plan`` turns the plan into text: steps, trials and tokens per rung;
what each domain must supply at its highest bound against what it holds (epochs
of repetition); 6·N·D FLOPs; the wall time; and the checkpoint disk.
``lawsearch plan`` prints it; ``run_study`` makes the same checks (without the
timing) before it starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lawsearch._errors import bad_input

if TYPE_CHECKING:
    from lawsearch.config import StudyConfig
    from lawsearch.study import StudyPlan

__all__ = ["format_plan", "plan_run", "prepared_trainer"]


def plan_run(cfg: StudyConfig, *, timing: bool = False) -> tuple[Any, StudyPlan]:
    """``(trainer, plan)`` of a validated study, checked before anything is written.

    Builds and prepares the study's trainer, checks the domains' supply, opens a
    database storage (PostgreSQL, so an unreachable one is found first) and runs
    ``lawsearch.preflight.check_run`` (run folder, an existing study, its checkpoints).

    Args:
        cfg: the study.
        timing: time a few real training steps on ``train.device`` for the wall time.

    Returns:
        The prepared trainer (``run_study`` trains with it) and the plan.

    Raises:
        UserError: a bad data source, model, supply, run folder or stored study
            (the message names the field and the fix).
    """
    from lawsearch.preflight import check_run
    from lawsearch.study import build_trainer, open_study_storage, plan_study

    with bad_input():
        if not cfg.study.is_journal:  # a database must be reachable (a journal is made by run)
            open_study_storage(cfg)
        trainer = build_trainer(cfg)
        plan = plan_study(cfg, trainer, timing=timing)
        # the run folder is writable; a stored study of this name matches; its checkpoints load
        check_run(cfg, trainer)
    return trainer, plan


def prepared_trainer(cfg: StudyConfig) -> Any:
    """The study's trainer with its data prepared (read from the cache when it is there).

    What a follower rank under torchrun needs once rank 0 has run ``plan_run``.
    """
    from lawsearch.study import build_trainer

    with bad_input():
        trainer = build_trainer(cfg)
        trainer.prepare()
    return trainer


def _size(n: float, unit: str = "") -> str:
    for scale, suffix in (
        (1e18, "E"),
        (1e15, "P"),
        (1e12, "T"),
        (1e9, "G"),
        (1e6, "M"),
        (1e3, "k"),
    ):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {suffix}{unit}".rstrip()
    return f"{n:.3g} {unit}".rstrip()


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def format_plan(cfg: StudyConfig, plan: StudyPlan) -> str:
    """The plan as text: the rung table, the domain table and the totals."""
    tps = cfg.train.tokens_per_step
    lines = [
        f"study {cfg.name!r}: {len(cfg.domains)} domains, {cfg.search.candidates} candidates, "
        f"law {cfg.law.name!r}, objective {cfg.objective.kind}",
        f"model: {_size(plan.params)} parameters without embeddings "
        f"({_size(plan.params_total)} with), {tps:,} tokens per step "
        f"({cfg.train.batch_size} x {cfg.train.seq_len})",
        "",
        f"{'budget':>10} {'steps':>10} {'tokens/run':>12} {'trials':>7} {'tokens trained':>15}",
    ]
    for i, r in enumerate(plan.rungs):
        name = "short" if i == 0 else ("full" if i == len(plan.rungs) - 1 else f"rung {i}")
        lines.append(
            f"{name:>10} {r.budget_steps:>10,} {_size(r.budget_steps * tps):>12} "
            f"{r.trials:>7} {_size(r.tokens):>15}"
        )
    lines += [
        "",
        f"{'domain':<16} {'train tokens':>13} {'docs':>9} {'high':>6} {'needs at high':>14} "
        f"{'epochs':>8} {'cap':>7}",
    ]
    for d in plan.domains:
        cap = "-" if d.cap is None else f"{d.cap:.3g}"
        lines.append(
            f"{d.name:<16} {_size(d.available):>13} {d.documents:>9,} {d.high:>6.3g} "
            f"{_size(d.needed):>14} {d.epochs:>8.3g} {cap:>7}"
        )
    share = plan.tokens / max(cfg.full_budget_compute(), 1)
    lines += [
        "",
        f"search: {_size(plan.tokens)} tokens ({100 * share:.1f}% of training every candidate "
        f"fully), 6·N·D = {_size(plan.flops, 'FLOP')}",
        f"checkpoints: {plan.checkpoints} x {_size(plan.checkpoint_bytes, 'B')} = "
        f"{_size(plan.checkpoints * plan.checkpoint_bytes, 'B')} under {cfg.checkpoint_dir}",
    ]
    wall, step_s, eval_s = plan.wall_seconds, plan.step_seconds, plan.eval_seconds
    if wall is None or step_s is None or eval_s is None:  # all three, or none: not timed
        lines.append(f"wall time: {plan.timing_note}")
    else:
        lines.append(
            f"wall time: ~{_duration(wall)} on one process "
            f"({step_s * 1e3:.1f} ms per step, {eval_s * 1e3:.0f} ms per "
            f"evaluation, timed on train.device = {cfg.train.device!r})"
        )
    return "\n".join(lines)
