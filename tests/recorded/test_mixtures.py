"""RegMix and mixinglaws loaders against the facts in their MANIFEST.md."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from lawsearch.recorded.mixtures import (
    load_mixinglaws,
    load_regmix,
    pile_valid_weights,
)

pytestmark = pytest.mark.shared_data


def test_regmix_facts(shared_data) -> None:
    r1 = load_regmix("1M")
    assert r1.weights.shape == (768, 17) and r1.losses.shape == (768, 13)
    assert "pile_cc" in r1.domains and "pile_cc" in r1.targets
    sums = r1.weights.sum(axis=1)
    assert sums.min() >= 0.996 - 1e-9 and sums.max() <= 1.003 + 1e-9
    train, test = r1.subset("train"), r1.subset("test")
    assert len(train.run_ids) == 512 and len(test.run_ids) == 256
    assert train.run_ids[int(np.argmin(train.loss()))] == "train_203"
    assert test.run_ids[int(np.argmin(test.loss()))] == "test_217"
    r60 = load_regmix("60M")
    assert r60.run_ids == test.run_ids
    np.testing.assert_array_equal(r60.weights, test.weights)
    assert abs(spearmanr(r60.loss(), test.loss())[0] - 0.994) < 0.002


def test_regmix_errors(shared_data) -> None:
    with pytest.raises(ValueError, match="`scale` must be '1M' or '60M'"):
        load_regmix("1B")
    with pytest.raises(ValueError, match="`target` 'books3' is not recorded"):
        load_regmix("1M").loss("books3")
    with pytest.raises(ValueError, match="`split` 'train' has no runs at 60M"):
        load_regmix("60M").subset("train")


def test_mixinglaws_facts(shared_data) -> None:
    assert abs(sum(pile_valid_weights().values()) - 1.0) < 1e-6
    five = load_mixinglaws("5mix")
    assert len(five) == 110
    run = next(r for r in five if r.run_id == "5mix_70M_24")
    assert run.domains == ("academic", "prose", "dialogue", "symbolic", "internet")
    np.testing.assert_allclose(run.weights, [0.25, 0.1875, 0.0625, 0.125, 0.375])
    at = int(np.flatnonzero(run.steps == 30000)[0])
    assert abs(run.overall(pile_valid_weights())[at] - 3.056) < 1e-3
    assert np.all(np.diff(run.steps) > 0)
    assert len(load_mixinglaws("rpj")) == 107 and len(load_mixinglaws("2mix")) == 10
    two = next(r for r in load_mixinglaws("2mix") if r.model_size == "70M" and r.weights[0] == 0.75)
    assert abs(two.losses["Github"][-1] - 1.257) < 1e-3
    with pytest.raises(ValueError, match="`family` must be one of"):
        load_mixinglaws("9mix")
