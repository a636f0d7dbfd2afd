"""Gradient accumulation: a step over micro-batches is the full batch's step, and the
search retries a trial that ran out of memory at a smaller micro-batch.

There is no GPU here, so the out-of-memory error comes from a small subclass of the
real ``TransformersTrainer`` that raises a genuine ``torch.OutOfMemoryError`` when a
pass holds more than ``limit`` sequences (as a device with too little memory would);
everything else (model, data, checkpoints, journal study, search) is real.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from lawsearch.optuna import _attrs  # noqa: E402
from lawsearch.search import RetrievalRerank  # noqa: E402
from lawsearch.storage import open_storage  # noqa: E402
from lawsearch.train._transformers import TransformersTrainer  # noqa: E402
from tests.train.test_transformers import (  # noqa: E402
    Recorder,
    _write_domains,
    config,
    make,
)


@pytest.fixture(scope="module")
def domains(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _write_domains(tmp_path_factory.mktemp("domains"))


@pytest.fixture(autouse=True)
def _one_thread(one_thread: None) -> None:
    """Every test here trains on one torch thread."""


def _params(trainer: TransformersTrainer, path: str) -> dict[str, Any]:
    return torch.load(path, weights_only=False)["model"]


def test_micro_batches_give_the_full_batch_step(domains, cache, tmp_path: Path) -> None:
    cfg = config(total_steps=4, warmup_steps=0)
    full = make(domains, cache, tmp_path / "full", batch_size=8)
    res_full = full.train(cfg, budget_steps=1, report=Recorder())
    micro = make(domains, cache, tmp_path / "micro", batch_size=8, micro_batch=2)
    assert micro.accumulation(cfg) == (8, 2)
    res_micro = micro.train(cfg, budget_steps=1, report=Recorder())
    assert res_full.checkpoint and res_micro.checkpoint
    a, b = _params(full, res_full.checkpoint), _params(micro, res_micro.checkpoint)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("micro", [0, 3, -2, 16])
def test_a_micro_batch_that_does_not_divide_the_batch_is_refused(micro: int) -> None:
    from lawsearch.train._specs import TrainSpec

    if micro == 0:
        assert TrainSpec(batch_size=8, micro_batch=0).micro_batch == 0
        return
    with pytest.raises(ValueError, match=r"`TrainSpec.micro_batch` must be .* dividing"):
        TrainSpec(batch_size=8, micro_batch=micro)


class SmallMemoryTrainer(TransformersTrainer):
    """Raises ``torch.OutOfMemoryError`` for a pass over more than ``limit`` sequences
    from optimizer step ``after`` on (a stand-in for a GPU: none here)."""

    limit = 4
    after = 4

    def _backward(self, model: Any, run: Any, x: Any, amp_dtype: Any, passes: int) -> Any:
        if x.shape[0] > self.limit and run.step >= self.after:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super()._backward(model, run, x, amp_dtype, passes)


def test_an_out_of_memory_trial_is_retried_at_half_the_micro_batch(
    domains, cache, tmp_path: Path
) -> None:
    base = make(domains, cache, tmp_path, batch_size=8, checkpoint_every=4)
    trainer = SmallMemoryTrainer(model=base.model_spec, data=base.data_spec, train=base.train_spec)
    storage = open_storage(tmp_path / "journal.log")
    study = optuna.create_study(study_name="oom", storage=storage)
    search = RetrievalRerank(
        budgets=(8,),
        n_candidates=1,
        trainer=trainer,
        config=lambda trial: config(total_steps=8, warmup_steps=0),
    )
    search.run(study)
    trials = study.get_trials()
    first, retry = trials
    assert first.state == optuna.trial.TrialState.FAIL
    assert "OutOfMemoryError" in first.user_attrs[_attrs.ERROR]
    assert first.user_attrs[_attrs.MICRO_BATCH] == 8
    assert first.user_attrs[_attrs.LAST_CHECKPOINT_STEP] == 4
    assert retry.state == optuna.trial.TrialState.COMPLETE
    a = retry.user_attrs
    assert (a[_attrs.MICRO_BATCH], a[_attrs.GRAD_ACCUMULATION], a[_attrs.OOM_RETRIES]) == (4, 2, 1)
    assert a[_attrs.RETRY_OF] == first.number
    assert a.get(_attrs.RETRIES, 0) == 0  # not counted in max_retries
    assert a[_attrs.RESUME_STEP] == 4
    # the curve continues from the checkpoint: the first try's reports up to step 4 are kept
    assert sorted(retry.intermediate_values) == [2, 4, 6, 8]
    assert retry.intermediate_values[4] == first.intermediate_values[4]


def test_out_of_memory_at_micro_batch_one_fails_with_the_fix(
    domains, cache, tmp_path: Path
) -> None:
    base = make(domains, cache, tmp_path, batch_size=2, checkpoint_every=4)
    trainer = SmallMemoryTrainer(model=base.model_spec, data=base.data_spec, train=base.train_spec)
    trainer.limit, trainer.after = 0, 0  # even one sequence does not fit
    study = optuna.create_study(storage=open_storage(tmp_path / "journal.log"))
    search = RetrievalRerank(
        budgets=(4,),
        n_candidates=1,
        trainer=trainer,
        config=lambda trial: config(total_steps=4, warmup_steps=0),
    )
    with pytest.raises(RuntimeError, match="no trial finished"):
        search.run(study)
    micro = [t.user_attrs[_attrs.MICRO_BATCH] for t in study.get_trials()]
    assert micro == [2, 1]
    last = study.get_trials()[-1]
    assert last.state == optuna.trial.TrialState.FAIL
    assert "out of memory at micro_batch 1" in last.user_attrs[_attrs.ERROR]
    assert "`train.batch_size`" in last.user_attrs[_attrs.ERROR]
