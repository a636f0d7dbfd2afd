import csv

import numpy as np
import pytest

from lawsearch.examples import EXAMPLE_LAW, example_runs, multi_power_loss, write_example_csv
from lawsearch.fitting import read_curves
from lawsearch.schedules import Schedule


def test_runs_are_deterministic_under_a_seed() -> None:
    a, b, c = example_runs(seed=3), example_runs(seed=3), example_runs(seed=4)
    for ra, rb, rc in zip(a, b, c, strict=True):
        np.testing.assert_array_equal(ra.losses, rb.losses)
        assert not np.array_equal(ra.losses, rc.losses)


def test_noise_free_runs_follow_the_generating_law() -> None:
    for run in example_runs(noise=0.0):
        np.testing.assert_allclose(run.losses, run.clean)
        expected = multi_power_loss(run.schedule.per_step(), run.steps, EXAMPLE_LAW)
        np.testing.assert_allclose(run.losses, expected)
        np.testing.assert_allclose(run.lrs, run.schedule.lr(run.steps))


def test_annealing_lowers_the_final_loss_as_the_multi_power_law_says() -> None:
    final = {r.run_id: r.clean[-1] for r in example_runs(noise=0.0)}
    assert final["wsd_6000"] < final["cosine_6000"] < final["constant_6000"]
    assert final["cosine_6000"] < final["cosine_3000"]


def test_loss_drop_term_vanishes_for_a_constant_schedule() -> None:
    lr = Schedule("constant", peak_lr=1e-3, total_steps=1000, warmup_steps=100).per_step()
    steps = np.arange(100.0, 1000.0, 100.0)
    p = EXAMPLE_LAW
    s1 = np.concatenate([[0.0], np.cumsum(lr)])[steps.astype(int)]
    plain = p["L0"] + p["A"] * (s1 + p["S_W"]) ** (-p["alpha"])
    np.testing.assert_allclose(multi_power_loss(lr, steps), plain)


def test_csv_round_trips_through_the_fitting_reader(tmp_path) -> None:
    path = write_example_csv(tmp_path / "sub" / "curves.csv", seed=1)
    with path.open() as fh:
        assert next(csv.reader(fh)) == ["run_id", "step", "lr", "loss"]
    runs = read_curves(path)
    truth = example_runs(seed=1)
    assert list(runs) == [r.run_id for r in truth]
    for r in truth:
        np.testing.assert_allclose(runs[r.run_id].steps, r.steps)
        np.testing.assert_allclose(runs[r.run_id].losses, r.losses, atol=1e-6)
        np.testing.assert_allclose(runs[r.run_id].lrs, r.lrs, rtol=1e-5)
    assert [p.name for p in path.parent.iterdir()] == ["curves.csv"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"noise": -0.1}, "`noise` must be"), ({"log_every": 0}, "`log_every` must be")],
)
def test_bad_options_are_named(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        example_runs(**kwargs)
