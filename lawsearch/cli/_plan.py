"""``lawsearch plan``: check a study against its data, model and device, and print what it costs.

Validates the study file, reads and packs every domain (cached for ``run``),
builds the model, checks that the domains can supply the mixture at
``search_space.max_epochs``, and prints: steps, trials and tokens per rung;
what each domain must supply at its highest bound against what it holds (epochs
of repetition); 6·N·D FLOPs; a wall time from a few real steps timed on the
configured device; and the checkpoint disk. Nothing is trained or written
under ``runs/``. An infeasible study exits 2 with the fix.

``lawsearch run`` calls ``preflight`` (the same checks, without the timing)
before it starts.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_arguments", "format_plan", "preflight", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lawsearch.cli import add_study_arguments

    add_study_arguments(parser)
    parser.add_argument(
        "--no-timing", action="store_true", help="skip timing a few real training steps"
    )


def preflight(cfg: Any, *, timing: bool = False) -> tuple[Any, Any]:
    """``(trainer, plan)`` of a validated study; a bad source or supply is a ``UserError``.

    Also opens a database storage (PostgreSQL), so an unreachable one is found first, and
    runs ``lawsearch.preflight.check_run`` (run folder, an existing study, its checkpoints).
    """
    from lawsearch.cli import bad_input
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


def run(args: argparse.Namespace) -> int:
    from lawsearch.cli import bad_input
    from lawsearch.config import load_study

    with bad_input():
        cfg = load_study(args.study, run_root=args.root)
    _, plan = preflight(cfg, timing=not args.no_timing)
    print(format_plan(cfg, plan), file=sys.stdout)
    return 0


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


def format_plan(cfg: Any, plan: Any) -> str:
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
    if plan.wall_seconds is None:
        lines.append(f"wall time: {plan.timing_note}")
    else:
        lines.append(
            f"wall time: ~{_duration(plan.wall_seconds)} on one process "
            f"({plan.step_seconds * 1e3:.1f} ms per step, {plan.eval_seconds * 1e3:.0f} ms per "
            f"evaluation, timed on train.device = {cfg.train.device!r})"
        )
    return "\n".join(lines)
