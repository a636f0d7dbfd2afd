"""ReplayTrainer: reports recorded points up to the budget, counts compute once, resumes."""

from __future__ import annotations

import math
import pickle
import threading

import numpy as np
import pytest

from lawsearch.train import ReplayTrainer, Trainer, TrainResult
from lawsearch.train._replay import ReplayCurve


def _trainer() -> ReplayTrainer:
    return ReplayTrainer(
        {
            "a": ReplayCurve.of([10, 20, 30, 40], [4.0, 3.0, 2.5, 2.2], {"lr": [1, 1, 0.5, 0.1]}),
            "b": ([5, 15, 25], [5.0, 4.0, math.nan]),
        },
        config_key="name",
        compute_per_step=2.0,
        compute_unit="tokens",
    )


class _Recorder:
    def __init__(self, stop_at: int | None = None) -> None:
        self.points: list[tuple[int, float, dict]] = []
        self.stop_at = stop_at

    def __call__(self, step: int, value: float, extras) -> bool:
        self.points.append((step, value, dict(extras)))
        return self.stop_at is not None and step >= self.stop_at


def test_is_a_trainer_and_reports_up_to_budget() -> None:
    t = _trainer()
    assert isinstance(t, Trainer)
    rec = _Recorder()
    res = t.train({"name": "a"}, budget_steps=25, report=rec)
    assert isinstance(res, TrainResult)
    assert [p[0] for p in rec.points] == [10, 20]
    assert rec.points[1][2] == {"lr": 1.0}
    assert res.steps == (10, 20) and res.values == (4.0, 3.0)
    # trained to the budget (25), not only to the last recorded point
    assert res.final_step == 25 and res.final_value == 3.0
    assert res.compute == 50.0 and res.compute_unit == "tokens"
    assert not res.stopped and not res.exhausted


def test_resume_continues_without_double_counting() -> None:
    t = _trainer()
    first = t.train({"name": "a"}, budget_steps=25, report=_Recorder())
    rec = _Recorder()
    second = t.train({"name": "a"}, budget_steps=100, resume_from=first.checkpoint, report=rec)
    assert [p[0] for p in rec.points] == [30, 40]
    assert second.final_step == 40 and second.exhausted
    assert second.compute == (40 - 25) * 2.0
    assert t.compute_used == 40 * 2.0 == t.full_compute(["a"])
    # resuming an exhausted run reports nothing and costs nothing
    third = t.train({"name": "a"}, budget_steps=100, resume_from=second.checkpoint, report=rec)
    assert third.compute == 0.0 and third.steps == () and math.isnan(third.final_value)
    assert t.compute_by_key == {"a": 80.0}


def test_report_can_stop_and_compute_stops_there() -> None:
    t = _trainer()
    res = t.train({"name": "a"}, budget_steps=40, report=_Recorder(stop_at=20))
    assert res.stopped and res.final_step == 20 and res.compute == 40.0
    follow = t.train({"name": "a"}, budget_steps=40, resume_from=res.checkpoint, report=_Recorder())
    assert follow.steps == (30, 40)
    assert t.compute_used == 80.0


def test_exception_in_report_propagates_and_counts_what_ran() -> None:
    t = _trainer()

    def boom(step: int, value: float, extras) -> bool:
        if step == 20:
            raise KeyError("pruned")
        return False

    with pytest.raises(KeyError, match="pruned"):
        t.train({"name": "a"}, budget_steps=40, report=boom)
    assert t.compute_used == 40.0


def test_nan_values_are_reported() -> None:
    rec = _Recorder()
    _trainer().train({"name": "b"}, budget_steps=30, report=rec)
    assert math.isnan(rec.points[-1][1])


def test_errors_name_the_field() -> None:
    t = _trainer()
    with pytest.raises(ValueError, match="has no 'name' entry"):
        t.train({"config_id": 1}, budget_steps=5, report=_Recorder())
    with pytest.raises(ValueError, match="'zzz' has no recorded curve"):
        t.train({"name": "zzz"}, budget_steps=5, report=_Recorder())
    with pytest.raises(ValueError, match="`budget_steps` must be a positive integer"):
        t.train({"name": "a"}, budget_steps=0, report=_Recorder())
    with pytest.raises(ValueError, match="is not a replay checkpoint"):
        t.train({"name": "a"}, budget_steps=5, resume_from="/tmp/ckpt.pt", report=_Recorder())
    ck = t.train({"name": "b"}, budget_steps=5, report=_Recorder()).checkpoint
    with pytest.raises(ValueError, match="checkpoint of 'b', not of 'a'"):
        t.train({"name": "a"}, budget_steps=50, resume_from=ck, report=_Recorder())
    with pytest.raises(ValueError, match="strictly increasing"):
        ReplayCurve.of([3, 2], [1.0, 1.0])
    with pytest.raises(ValueError, match="`curves` is empty"):
        ReplayTrainer({})


def test_pickle_and_threads() -> None:
    t = pickle.loads(pickle.dumps(_trainer()))

    def run() -> None:
        for _ in range(50):
            t.train({"name": "a"}, budget_steps=40, report=_Recorder())

    threads = [threading.Thread(target=run) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert t.compute_used == 4 * 50 * 40 * 2.0


@pytest.mark.slow
@pytest.mark.shared_data
def test_recorded_sources(shared_data) -> None:
    from lawsearch.recorded.taskset import taskset_tasks

    task = taskset_tasks()[0]
    ts = ReplayTrainer.from_taskset(task)
    assert len(ts.curves) == 1000 and ts.compute_unit == "epochs"
    res = ts.train({"config_id": 811}, budget_steps=51, report=_Recorder())
    assert res.final_step == 51 and abs(res.final_value - 0.1399) < 1e-4  # MANIFEST best
    assert len(ReplayTrainer.from_taskset(task, dpl_filter=True).curves) == 1000 - 248

    mix = ReplayTrainer.from_mixinglaws("5mix", "70M")
    rec = _Recorder()
    res = mix.train({"run_id": "5mix_70M_24"}, budget_steps=30000, report=rec)
    assert abs(res.final_value - 3.0561) < 1e-3  # MANIFEST: lowest 70M Pile loss at 30k
    assert res.compute == 30000 * 4096 * 256 and "loss:Pile-CC" in rec.points[0][2]

    lr = ReplayTrainer.from_lr_schedules(model_params=25_000_000)
    assert (
        all(np.all(c.steps >= 1) for c in lr.curves.values())
        and "lr" in next(iter(lr.curves.values())).extras
    )


def test_step_seconds_sleeps_for_the_steps_trained(monkeypatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr("lawsearch.train._replay.time.sleep", slept.append)
    t = ReplayTrainer({"a": ([10, 20, 30], [3.0, 2.0, 1.5])}, config_key="k", step_seconds=0.01)
    first = t.train({"k": "a"}, budget_steps=20, report=_Recorder())
    assert slept == pytest.approx([0.1, 0.1])  # 0 -> 10 -> 20, before each report
    slept.clear()
    t.train({"k": "a"}, budget_steps=35, resume_from=first.checkpoint, report=_Recorder())
    assert slept == pytest.approx([0.1])  # 20 -> 30; the curve ends at 30
    slept.clear()
    t.train({"k": "a"}, budget_steps=30, report=_Recorder(stop_at=10))
    assert slept == pytest.approx([0.1])  # stopped after the first point: no more sleep
    assert ReplayTrainer({"a": ([1], [1.0])}).step_seconds == 0.0


def test_step_seconds_really_waits() -> None:
    import time

    t = ReplayTrainer({"a": ([1, 2, 3, 4], [4.0, 3.0, 2.0, 1.0])}, step_seconds=0.02)
    start = time.perf_counter()
    t.train({"config_id": "a"}, budget_steps=4, report=_Recorder())
    assert time.perf_counter() - start >= 0.075


@pytest.mark.parametrize("bad", [-0.1, math.nan, math.inf])
def test_step_seconds_must_be_a_duration(bad: float) -> None:
    with pytest.raises(ValueError, match="`step_seconds` must be >= 0"):
        ReplayTrainer({"a": ([1], [1.0])}, step_seconds=bad)
