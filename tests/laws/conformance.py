"""One conformance suite for every law: subclass ``LawConformance`` per law.

A subclass sets ``law`` (the options), ``truth`` (true parameter values),
``steps`` and, for schedule-aware laws, ``lrs`` (full per-step schedule), and
optionally ``rtol`` (per-parameter relative tolerance for recovery).
"""

from __future__ import annotations

import pickle
from typing import Any, ClassVar

import numpy as np
import pytest

from lawsearch.laws import Law


class LawConformance:
    law: ClassVar[Law]
    truth: ClassVar[dict[str, float]]
    steps: ClassVar[np.ndarray]
    lrs: ClassVar[np.ndarray | None] = None
    noise: ClassVar[float] = 1e-3
    #: relative tolerance per parameter name (default 0.15), for recovery
    rtol: ClassVar[dict[str, float]] = {}
    #: parameters not checked for recovery (weakly identified by design)
    unchecked: ClassVar[tuple[str, ...]] = ()

    def true_losses(self) -> np.ndarray:
        theta = np.array([self.truth[n] for n in self.law.param_names])
        from lawsearch.laws import LRTrack

        track = LRTrack(self.lrs) if self.lrs is not None else None
        return self.law.predict_from(theta, self.steps, track)

    def noisy_losses(self, seed: int = 0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        clean = self.true_losses()
        return clean * np.exp(rng.normal(0.0, self.noise, size=clean.shape))

    def fit_kwargs(self) -> dict[str, Any]:
        return {"lrs": self.lrs} if self.lrs is not None else {}

    def test_recovers_known_parameters(self) -> None:
        result = self.law.fit(self.steps, self.noisy_losses(), **self.fit_kwargs())
        assert result.status in ("ok", "degenerate"), result.message
        for name, value in self.truth.items():
            if name in self.unchecked:
                continue
            tol = self.rtol.get(name, 0.15)
            assert result.params[name] == pytest.approx(value, rel=tol, abs=1e-9), name

    def test_predict_at_observed_steps_matches_fit(self) -> None:
        y = self.noisy_losses()
        result = self.law.fit(self.steps, y, **self.fit_kwargs())
        pred = result.predict(self.steps)
        clean = self.true_losses()
        # the fit explains the data to within a few noise sd
        assert np.max(np.abs(np.log(pred / clean))) < 6 * self.noise

    def test_does_not_mutate_inputs(self) -> None:
        steps = self.steps.copy()
        y = self.noisy_losses()
        y_copy = y.copy()
        kwargs = self.fit_kwargs()
        lrs_copy = None if self.lrs is None else self.lrs.copy()
        self.law.fit(steps, y, **kwargs)
        np.testing.assert_array_equal(steps, self.steps)
        np.testing.assert_array_equal(y, y_copy)
        if lrs_copy is not None:
            np.testing.assert_array_equal(kwargs["lrs"], lrs_copy)

    def test_pickles(self) -> None:
        result = self.law.fit(self.steps, self.noisy_losses(), **self.fit_kwargs())
        clone = pickle.loads(pickle.dumps(result))
        assert clone.params == result.params
        np.testing.assert_allclose(clone.predict(self.steps), result.predict(self.steps))
        assert pickle.loads(pickle.dumps(self.law)) == self.law

    def test_deterministic(self) -> None:
        a = self.law.fit(self.steps, self.noisy_losses(), **self.fit_kwargs())
        b = self.law.fit(self.steps, self.noisy_losses(), **self.fit_kwargs())
        assert a.params == b.params
        lo_a, hi_a = a.interval(self.steps[-1:])
        lo_b, hi_b = b.interval(self.steps[-1:])
        np.testing.assert_array_equal(lo_a, lo_b)
        np.testing.assert_array_equal(hi_a, hi_b)

    def test_interval_contains_prediction(self) -> None:
        result = self.law.fit(self.steps, self.noisy_losses(), **self.fit_kwargs())
        lo, hi = result.interval(self.steps)
        pred = result.predict(self.steps)
        assert np.all(lo <= pred) and np.all(pred <= hi)

    def test_nan_loss_is_rejected_with_position(self) -> None:
        y = self.noisy_losses()
        y[3] = np.nan
        with pytest.raises(ValueError, match=r"`losses` contains NaN at index 3"):
            self.law.fit(self.steps, y, **self.fit_kwargs())

    def test_non_increasing_steps_are_rejected(self) -> None:
        steps = self.steps.copy()
        steps[2] = steps[1]
        with pytest.raises(ValueError, match="`steps` must increase strictly"):
            self.law.fit(steps, self.noisy_losses(), **self.fit_kwargs())

    def test_too_few_points_are_rejected(self) -> None:
        n = self.law.min_points() - 1
        kwargs = self.fit_kwargs()
        with pytest.raises(ValueError, match="needs at least"):
            self.law.fit(self.steps[:n], self.noisy_losses()[:n], **kwargs)

    def test_negative_lr_is_rejected(self) -> None:
        if not self.law.uses_lr:
            pytest.skip(f"{type(self.law).__name__} does not use the LR schedule")
        lrs = np.array(self.lrs, copy=True)
        lrs[5] = -1.0
        with pytest.raises(ValueError, match="`lrs` must be >= 0"):
            self.law.fit(self.steps, self.noisy_losses(), lrs=lrs)

    def test_lr_length_mismatch_is_rejected(self) -> None:
        if not self.law.uses_lr:
            pytest.skip(f"{type(self.law).__name__} does not use the LR schedule")
        with pytest.raises(ValueError, match="`lrs` has 3 values"):
            self.law.fit(self.steps, self.noisy_losses(), lrs=np.ones(3))

    def test_lrs_at_logged_steps_predict_like_the_per_step_schedule(self) -> None:
        """LRs known only where the loss was logged (warmup unseen) give the same forecast."""
        if not self.law.uses_lr:
            pytest.skip(f"{type(self.law).__name__} does not use the LR schedule")
        assert self.lrs is not None
        y = self.noisy_losses()
        half = int(0.75 * self.steps.size)  # into the decay, so the annealing terms are fitted
        exact = self.law.fit(self.steps[:half], y[:half], lrs=self.lrs)
        logged = self.law.fit(
            self.steps[:half], y[:half], lrs=self.lrs[self.steps[:half].astype(int)]
        )
        assert exact.ok and logged.ok, (exact.message, logged.message)
        future = self.steps[half:]
        a = exact.predict(future)
        b = logged.predict(future, lrs=self.lrs[future.astype(int)])
        np.testing.assert_allclose(b, a, rtol=2e-4)  # measured: <= 1e-5
