"""Running a configured study from Python: plan it, run it, join it as a worker.

``plan_run(cfg)`` checks a study against its data, model and storage before
anything is written and returns its trainer and plan (``format_plan`` renders
it); ``run_study(cfg)`` runs (or resumes, or with ``worker=True`` joins) its
search and returns a ``RunResult`` read back from the storage. Progress goes to
stderr, one line per event when it is not a terminal (``Progress``). Under
``torchrun`` rank 0 drives the study and the other ranks train each trial with it.

Errors carry the exit code the CLI ends with: ``UserError`` (bad input, nothing
written: 2), ``RunFailed`` (a run that started and failed, with what was kept
and how to resume: 1), both ``StudyError``. ``lawsearch run | worker | plan`` are
this module plus argument parsing and printing.

Example:
    >>> cfg = lawsearch.load_study("studies/demo.toml")  # doctest: +SKIP
    >>> result = lawsearch.run_study(cfg)  # doctest: +SKIP
    >>> result.pick, result.compute_fraction  # doctest: +SKIP
"""

from __future__ import annotations

from lawsearch._errors import RunFailed, StudyError, UserError, bad_input
from lawsearch.runner._plan import format_plan, plan_run
from lawsearch.runner._progress import Progress
from lawsearch.runner._run import RunResult, run_study

__all__ = [
    "Progress",
    "RunFailed",
    "RunResult",
    "StudyError",
    "UserError",
    "bad_input",
    "format_plan",
    "plan_run",
    "run_study",
]
