"""Checks a run makes before it writes anything: the run folder, an existing study, its checkpoints.

``lawsearch run``, ``worker`` and ``plan`` call ``check_run(cfg, trainer)`` after
the study file validated and the data was prepared. Every check only reads (a
probe folder made to test that the run folder is writable is removed at once),
so a refused run leaves the run folder and the storage exactly as they were:

* the run folder (``study.dir``, default ``runs/<name>``) and the journal's folder
  can be created and written;
* a study of the same name already in the storage was searched over the same
  mixture and schedule space as the study file now describes;
* the checkpoints the resumed search will read (queued continuations and retries,
  finished trials a cut may still continue) load and were written by the same
  model and data.

Each failure is a ``ValueError`` whose message names the field and the fix.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from lawsearch.config import StudyConfig
from lawsearch.optuna import _attrs
from lawsearch.optuna._mixture import mixture_specs, schedule_specs
from lawsearch.study import open_study_storage, suggest_config

__all__ = ["check_existing_study", "check_run", "check_writable"]


def check_run(cfg: StudyConfig, trainer: Any = None) -> None:
    """Every check of this module (``trainer``: the prepared trainer, for the checkpoints)."""
    check_writable(cfg)
    check_existing_study(cfg, trainer)


def check_writable(cfg: StudyConfig) -> None:
    """The run folder (and a journal file's folder) can be created and written to."""
    folders = [("study.dir", cfg.run_dir)]
    if cfg.study.is_journal:
        folders.append(("study.storage", Path(cfg.study.storage).parent))
    for key, folder in folders:
        _check_folder(key, folder)


def _check_folder(key: str, folder: Path) -> None:
    folder = folder.absolute()
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(
            f"`{key}`: cannot create the run folder {str(folder)!r}: {str(existing)!r} is a "
            "file, not a folder; point `study.dir` elsewhere or move the file away."
        )
    try:  # os.access is not enough: root passes it on read-only or virtual file systems
        os.rmdir(tempfile.mkdtemp(prefix=".lawsearch-probe-", dir=existing))
    except OSError as exc:
        raise ValueError(
            f"`{key}`: cannot write the run folder {str(folder)!r} ({exc.strerror or exc} in "
            f"{str(existing)!r}); point `study.dir` at a writable folder (or fix the "
            "folder's permissions)."
        ) from None


def check_existing_study(cfg: StudyConfig, trainer: Any = None) -> None:
    """A study of this name already stored must match the study file's search space.

    Also checks the checkpoints the resumed search would read, when ``trainer`` can
    (``check_checkpoint(path)``). Nothing to check when the study is new.
    """
    if cfg.study.is_journal and not Path(cfg.study.storage).is_file():
        return
    storage = open_study_storage(cfg, must_exist=cfg.study.is_journal)
    if cfg.name not in optuna.study.get_all_study_names(storage):
        return
    study = optuna.load_study(
        study_name=cfg.name, storage=storage, sampler=optuna.samplers.RandomSampler(seed=0)
    )
    _check_space(cfg, study, trainer)
    check = getattr(trainer, "check_checkpoint", None)
    if check is not None:
        for path in resumed_checkpoints(study):
            check(path)


def _check_space(cfg: StudyConfig, study: optuna.Study, trainer: Any) -> None:
    """The mixture and schedule specs the study file would register match the stored ones."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "new study created" line
    try:
        probe = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    finally:
        optuna.logging.set_verbosity(verbosity)
    available = None
    if cfg.search_space.max_epochs > 0 and hasattr(trainer, "tokens_available"):
        available = {k: float(v) for k, v in trainer.tokens_available().items()}
    suggest_config(cfg, probe.ask(), tokens_available=available)
    where = f"study {cfg.name!r} in {cfg.study.storage}"
    fix = (
        "give the new search space a new `study.name` (the old study stays as it is), or "
        "restore the study file's {what} to resume the stored study"
    )
    for field, what, stored, wanted in (
        ("domains", "[domains] bounds and `search_space.max_epochs`", mixture_specs(study),
         mixture_specs(probe)),
        ("search_space", "[search_space] schedule settings", schedule_specs(study),
         schedule_specs(probe)),
    ):  # fmt: skip
        for name, now in wanted.items():
            then = stored.get(name)
            if then is not None and then != now:
                raise ValueError(
                    f"`{field}`: {where} was searched over another {name} space (stored: "
                    f"{then.to_dict()}; the study file now gives: {now.to_dict()}); "
                    + fix.format(what=what)
                    + "."
                )


def resumed_checkpoints(study: optuna.Study) -> list[str]:
    """Checkpoint files the search may still resume from (those that exist).

    A WAITING trial's ``lawsearch:checkpoint`` (a queued continuation or retry), a
    RUNNING trial's (retried when its process is gone) and the ``checkpoint_out``
    of a finished trial no continuation started from yet.
    """
    trials = study.get_trials(deepcopy=False)
    parents = {t.user_attrs.get(_attrs.PARENT) for t in trials}
    paths: list[str] = []
    for t in trials:
        if t.state in (TrialState.WAITING, TrialState.RUNNING):
            paths.append(str(t.user_attrs.get(_attrs.CHECKPOINT) or ""))
        elif t.state == TrialState.COMPLETE and t.number not in parents:
            paths.append(str(t.user_attrs.get(_attrs.CHECKPOINT_OUT) or ""))
    return sorted({p for p in paths if p and Path(p).is_file()})
