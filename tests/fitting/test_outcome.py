import dataclasses
import json

import pytest

from lawsearch._fit import MAX_TREND_RATIO
from lawsearch.examples import example_runs
from lawsearch.fitting import JSON_KEYS, Outcome
from lawsearch.laws import PowerLaw


@pytest.fixture(scope="module")
def sound() -> Outcome:
    """A power law fitted to half of a smooth example run, predicting its end."""
    run = example_runs(seed=0)[0]
    half = run.steps.size // 2
    fit = PowerLaw().fit(run.steps[:half], run.losses[:half])
    return Outcome(
        run_id=run.run_id,
        law="power",
        mode="independent",
        prefix=0.5,
        n_prefix=half,
        target_step=int(run.steps[-1]),
        predicted_final=float(fit.predict([run.steps[-1]])[0]),
        predicted_lo=None,
        predicted_hi=None,
        true_final=float(run.losses[-1]),
        status="ok",
        fit=fit,
    )


def test_a_prediction_in_line_with_the_curves_trend_is_plausible(sound: Outcome) -> None:
    assert sound.trend_ratio is not None and abs(sound.trend_ratio) < MAX_TREND_RATIO
    assert not sound.implausible


def test_a_prediction_far_beyond_the_trend_is_flagged(sound: Outcome) -> None:
    assert sound.fit is not None and sound.fit.curve is not None
    last = float(sound.fit.curve.losses[-1])
    absurd = dataclasses.replace(sound, predicted_final=0.05 * last)
    assert absurd.trend_ratio is not None and absurd.trend_ratio > MAX_TREND_RATIO
    assert absurd.implausible


def test_without_a_fit_there_is_no_trend_ratio(sound: Outcome) -> None:
    failed = dataclasses.replace(sound, fit=None, predicted_final=None, status="failed")
    assert failed.trend_ratio is None and not failed.implausible


def test_error_and_coverage_need_the_truth(sound: Outcome) -> None:
    o = dataclasses.replace(sound, predicted_final=2.2, predicted_lo=2.0, predicted_hi=2.4)
    o = dataclasses.replace(o, true_final=2.0)
    assert o.error == pytest.approx(0.1) and o.covered is True
    assert dataclasses.replace(o, true_final=1.9).covered is False
    unknown = dataclasses.replace(o, true_final=None)
    assert unknown.error is None and unknown.covered is None


def test_json_record_is_plain_and_complete(sound: Outcome) -> None:
    record = sound.to_json()
    assert tuple(record) == JSON_KEYS
    assert json.loads(json.dumps(record, allow_nan=False)) == record
    assert type(record["prefix"]) is float and type(record["target_step"]) is int
