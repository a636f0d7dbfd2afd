"""Fit a law to the prefixes of loss curves and extrapolate them (what ``lawsearch fit`` runs).

``fit_curves(data, law=..., prefix=..., mode=...)`` reads a tidy table of curves
(``run_id, step, lr, loss``: a CSV path, a mapping of columns, or a DataFrame),
checks every run, fits the law to each prefix alone (``independent``), to all
prefixes together (``pooled``) or with parameters carried over from complete
reference runs (``transfer``), and returns one ``Outcome`` per run: the predicted
loss at the target step, its interval, the truth when the table gives it, and
the fit. Bad input raises ``CurveError`` naming the field and the fix; a fit
that fails is an outcome with ``status == "failed"``.

Modules: ``_curves`` (reading, ``RunCurve``), ``_prefix`` (the prefix fitted and
its checks), ``_outcome`` (``Outcome``), ``_workflow`` (the modes).
"""

from __future__ import annotations

from lawsearch._errors import CurveError
from lawsearch.fitting._curves import REQUIRED, CurvesData, RunCurve, read_curves
from lawsearch.fitting._outcome import JSON_KEYS, Outcome
from lawsearch.fitting._prefix import prefix_rows
from lawsearch.fitting._workflow import MODES, extrapolate, fit_curves, resolve_law

__all__ = [
    "JSON_KEYS",
    "MODES",
    "REQUIRED",
    "CurveError",
    "CurvesData",
    "Outcome",
    "RunCurve",
    "extrapolate",
    "fit_curves",
    "prefix_rows",
    "read_curves",
    "resolve_law",
]
