"""The progress of a running search: a tqdm bar on a terminal, one line per event in a log.

The bar shows the stage, the trial, its step and loss, the best value in the
study (labelled ``pred`` or ``observed@<step>``), and compute spent as a share
of training every candidate fully. When the stream is not a terminal
(``nohup``, a scheduler, ``| tee``) it writes one line per event instead (a
trial starts, the stage changes, the search ends), so a log holds no carriage
returns.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from typing import Any, TextIO

__all__ = ["Progress"]


class Progress:
    """A tqdm bar on stderr (or silent counting) with the search's running numbers.

    Shows the stage, the trial, its step and loss, the best value in the study
    with its kind (``best pred``: a prediction at the full budget;
    ``best observed@<step>``: a loss observed at that step, when nothing was
    predicted or the candidate reached the full budget; see
    ``lawsearch.optuna._kinds.best_value``), and compute spent as a share of
    training every candidate fully.

    Args:
        total_tokens: the compute the search is expected to spend (the bar's length).
        full_tokens: the compute of training every candidate to the full budget.
        done_tokens: compute already spent in the study (when resuming).
        enabled: draw the bar.
        study: the study, polled every few seconds for the best value.
        target_step: the full budget in steps (what a prediction is for).
        lines: one line per event (a trial starts, the stage changes) instead of a bar
            redrawn with carriage returns; default: when ``file`` is not a terminal (a log).
        file: where the bar or the lines go (default: stderr).
    """

    def __init__(
        self,
        *,
        total_tokens: float,
        full_tokens: float,
        done_tokens: float = 0.0,
        enabled: bool = True,
        study: Any = None,
        lines: bool | None = None,
        file: TextIO | None = None,
        target_step: int = 0,
    ) -> None:
        self._file = file if file is not None else sys.stderr
        self.full_tokens = float(full_tokens)
        self.target_step = int(target_step)
        self.spent = float(done_tokens)
        self.stage = "screen"
        self.trial = "-"
        self.best = math.nan
        self.best_kind = "pred"  # `ValueKind.short` of ``best``
        self._study = study
        self._polled = -math.inf
        self._lock = threading.Lock()
        self._bar: Any = None
        isatty = getattr(self._file, "isatty", None)
        self._lines = enabled and (not (isatty and isatty()) if lines is None else lines)
        self._last_line: tuple[str, str] | None = None
        if enabled and not self._lines:
            from tqdm import tqdm

            total = max(int(total_tokens), int(done_tokens), 1)
            self._bar = tqdm(
                total=total,
                initial=int(done_tokens),
                unit="tok",
                unit_scale=True,
                file=self._file,
                dynamic_ncols=True,
                smoothing=0.05,
                desc="search",
            )
            self._draw()

    def start(self, *, stage: str, trial: str) -> None:
        with self._lock:
            self.stage, self.trial = stage, trial
            self._poll(force=True)
            self._draw()
            self._line()

    def _line(self, final: bool = False) -> None:
        """Line mode: one line per new (stage, trial), and one at the end."""
        if not self._lines or (not final and self._last_line == (self.stage, self.trial)):
            return
        self._last_line = (self.stage, self.trial)
        share = self.spent / self.full_tokens if self.full_tokens else 0.0
        what = "done" if final else f"{self.stage}, trial {self.trial}"
        print(
            f"search: {what} | {self._best_text()} | compute {100 * share:.1f}% of all-full",
            file=self._file,
            flush=True,
        )

    def on_start(self, trial: int, budget_steps: int, resume_step: int) -> None:
        """``build_search`` hook: a trial starts training towards ``budget_steps``."""
        stage = "screen" if resume_step == 0 else "continue"
        self.start(stage=f"{stage} {resume_step}->{budget_steps}", trial=str(trial))

    def on_report(self, trial: int, step: int, value: float, tokens: float) -> None:
        """``build_search`` hook: an evaluation was reported."""
        self.advance(tokens, step=step, value=value)

    def advance(
        self, tokens: float, *, step: int | None = None, value: float | None = None
    ) -> None:
        with self._lock:
            self.spent += tokens
            if self._bar is not None and tokens:
                if self._bar.n + tokens > self._bar.total:
                    self._bar.total = int(self._bar.n + tokens)
                self._bar.update(int(tokens))
            self._poll()
            self._draw(step=step, value=value)

    def _poll(self, force: bool = False) -> None:
        now = time.monotonic()
        if self._study is None or (not force and now - self._polled < 2.0):
            return
        self._polled = now
        from lawsearch.optuna import _kinds, _records

        got = _kinds.best_value(
            self._study.get_trials(deepcopy=False),
            _records.read_cuts(self._study),
            self.target_step,
        )
        self.best, self.best_kind = (math.nan, "pred") if got is None else (got[0], got[1].short)

    def _best_text(self) -> str:
        """``best pred 5.0398`` or ``best observed@48 5.3120``: a loss is never called a pred."""
        return f"best {self.best_kind} " + ("-" if math.isnan(self.best) else f"{self.best:.4f}")

    def _draw(self, *, step: int | None = None, value: float | None = None) -> None:
        if self._bar is None:
            return
        share = self.spent / self.full_tokens if self.full_tokens else 0.0
        self._bar.set_postfix(
            {
                "stage": self.stage,
                "trial": self.trial,
                "step": "-" if step is None else step,
                "loss": "-" if value is None else f"{value:.4f}",
                f"best {self.best_kind}": "-" if math.isnan(self.best) else f"{self.best:.4f}",
                "compute": f"{100 * share:.1f}% of all-full",
            },
            refresh=True,
        )

    def close(self) -> None:
        if self._lines and self._last_line is not None:
            self._poll(force=True)
            self._line(final=True)
            self._lines = False
        if self._bar is not None:
            self._bar.close()
            self._bar = None
