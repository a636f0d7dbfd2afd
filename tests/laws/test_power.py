from typing import ClassVar

import numpy as np
import pytest

from lawsearch.laws import PowerLaw, get_law
from lawsearch.schedules import Schedule
from tests.laws.conformance import LawConformance


class TestPowerLawSteps(LawConformance):
    law = PowerLaw()
    truth: ClassVar[dict[str, float]] = {"E": 2.0, "A": 5.0, "alpha": 0.4, "t0": 100.0}
    steps = np.arange(100.0, 5000.0, 50.0)
    rtol: ClassVar[dict[str, float]] = {"t0": 0.5}


class TestPowerLawIntrinsic(LawConformance):
    law = PowerLaw(time="intrinsic")
    truth: ClassVar[dict[str, float]] = {"E": 2.5, "A": 1.0, "alpha": 0.5, "t0": 0.1}
    lrs = Schedule("cosine", peak_lr=1e-3, total_steps=6000, warmup_steps=100).per_step()
    steps = np.arange(200.0, 6000.0, 60.0)
    rtol: ClassVar[dict[str, float]] = {"t0": 0.5}


def test_unknown_law_name_suggests_the_closest() -> None:
    with pytest.raises(ValueError, match="did you mean 'power'"):
        get_law("powr")


def test_unknown_time_option() -> None:
    with pytest.raises(ValueError, match="`time` must be one of"):
        PowerLaw(time="tokens")


def test_a_prediction_below_zero_is_an_error_not_an_answer() -> None:
    from lawsearch._errors import FitError

    steps = np.arange(100.0, 5000.0, 50.0)
    fit = PowerLaw().fit(steps, 2.0 + 5.0 * (steps + 100.0) ** -0.4)
    # a parameter vector whose extrapolation goes negative must not be returned as a value
    broken = type(fit)(**{**fit.__dict__, "params": {**fit.params, "E": -5.0}})
    with pytest.raises(FitError, match="cannot extrapolate that far"):
        broken.predict([1e6])
    with pytest.raises(FitError, match="predicts a loss of"):
        broken.interval([1e6])
