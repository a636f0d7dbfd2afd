"""A finished tiny study, searched by ``lawsearch run`` itself, for the report and dashboard tests.

Six candidates over a three-domain mixture and a cosine schedule, screened for
40 of 200 steps, cut to two at 80 steps and one at 200 (``promotion = "sync"``),
on a journal file with optuna-dashboard figures and notes (``execute`` is the
code path of ``lawsearch run``; a synthetic trainer replaces training).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from lawsearch.train import TrainResult


class SyntheticTrainer:
    """Loss = E(mixture, lr) + A (t + 10)^-0.5 (+ noise-free): a power law in steps."""

    TARGET: ClassVar[dict[str, float]] = {"a": 0.5, "b": 0.3, "c": 0.2}
    compute_unit = "steps"

    def __init__(self, eval_every: int) -> None:
        self.eval_every = eval_every

    def loss(self, config: Mapping[str, Any], step: int) -> float:
        w = config["mixture"]
        lr = float(config["schedule"]["peak_lr"])
        e = 2.0 + 4.0 * sum((w[d] - v) ** 2 for d, v in self.TARGET.items())
        e += 0.3 * math.log(lr / 3e-3) ** 2
        # a slower start for some mixtures: the curves cross, so the cuts have work to do
        a = 3.0 + 6.0 * w["c"]
        return e + a * (step + 10.0) ** -0.5

    def train(
        self,
        config: Mapping[str, Any],
        *,
        budget_steps: int,
        resume_from: str | None = None,
        report: Any,
    ) -> TrainResult:
        start = int(resume_from.split(":")[1]) if resume_from else 0
        steps, values = [], []
        step = start
        while step < budget_steps:
            step = min(step + self.eval_every, budget_steps)
            steps.append(step)
            values.append(self.loss(config, step))
            report(step, values[-1], {})
        return TrainResult(
            final_step=step,
            final_value=values[-1],
            steps=tuple(steps),
            values=tuple(values),
            checkpoint=f"synthetic:{step}",
            compute=float(step - start),
            compute_unit="steps",
            stopped=False,
        )


def write_study(folder: Path) -> Path:
    for name in ("a", "b", "c"):
        (folder / f"{name}.txt").write_text(f"domain {name}\n")
    sections = {
        "study": 'name = "tiny"\nseed = 3',
        "domains.a": 'paths = ["a.txt"]',
        "domains.b": 'paths = ["b.txt"]',
        "domains.c": 'paths = ["c.txt"]',
        "search_space": 'schedules = ["cosine"]\npeak_lr = [1e-3, 1e-2]',
        "budgets": "short_tokens = 2560\nfull_tokens = 12800",  # 40 and 200 steps
        "law": 'name = "power"',
        "pruner": "enabled = false\nquantile = 0.1",
        "search": 'candidates = 6\nsurvivors = 1\nrungs = [0.4, 1.0]\npromotion = "sync"',
        "train": "batch_size = 4\nseq_len = 16\neval_every = 5",
    }
    path = folder / "tiny.toml"
    path.write_text("\n".join(f"[{k}]\n{v}\n" for k, v in sections.items()))
    return path


def run_tiny_study(folder: Path) -> tuple[Any, Any, str]:
    """Search the tiny study under ``folder``; return (study, config, printed output)."""
    import optuna

    from lawsearch.cli._run import execute
    from lawsearch.config import load_study
    from lawsearch.study import open_study_storage

    cfg = load_study(write_study(folder), run_root=folder)
    out = io.StringIO()
    assert (
        execute(cfg, trainer=SyntheticTrainer(cfg.train.eval_every), progress=False, out=out) == 0
    )
    study = optuna.load_study(study_name=cfg.name, storage=open_study_storage(cfg, must_exist=True))
    return study, cfg, out.getvalue()


def distrusted_study(cfg: Any, n: int = 4) -> Any:
    """An in-memory study of ``cfg``'s budgets whose extrapolations are all distrusted.

    ``max_trend_ratio`` so small that no fit may rank a trial: every decision is
    "ranked by the last value", with the reason stored.
    """
    return searched_study(cfg, "distrusted", n, max_trend_ratio=1e-9)


def searched_study(cfg: Any, name: str, n: int = 4, **options: Any) -> Any:
    """An in-memory study of ``cfg``'s budgets searched by ``RetrievalRerank(**options)``."""
    import optuna

    from lawsearch.optuna import attrs
    from lawsearch.search import RetrievalRerank
    from lawsearch.study import suggest_config

    def config(trial: optuna.Trial) -> dict[str, Any]:
        trial.set_user_attr(attrs.TOKENS_PER_STEP, float(cfg.train.tokens_per_step))
        return suggest_config(cfg, trial)

    study = optuna.create_study(study_name=name, sampler=optuna.samplers.RandomSampler(seed=0))
    RetrievalRerank(
        budgets=cfg.budget_steps,
        n_candidates=n,
        trainer=SyntheticTrainer(cfg.train.eval_every),
        config=config,
        eta=2.0,
        law="power",
        promotion="sync",
        **options,
    ).run(study)
    return study
