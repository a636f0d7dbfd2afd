"""``lawsearch report``: rebuild a study's report folder from its storage alone.

Reads the trials of the study named in the study file from its storage (no
training, no corpus), prints the ranking table and writes
``runs/<study>/report/`` (tables, summary JSON and PNG plots) again.
"""

from __future__ import annotations

import argparse

from lawsearch.cli import UserError

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lawsearch.cli import add_study_arguments

    add_study_arguments(parser)
    parser.add_argument("--out", default=None, help="report folder (default: runs/<study>/report)")


def run(args: argparse.Namespace) -> int:
    import optuna

    from lawsearch import report as reporting
    from lawsearch.cli import bad_input
    from lawsearch.config import load_study
    from lawsearch.study import open_study_storage

    with bad_input():
        cfg = load_study(args.study, run_root=args.root)
        storage = open_study_storage(cfg, must_exist=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=cfg.name, storage=storage)
    except KeyError:
        names = optuna.study.get_all_study_names(storage)
        raise UserError(
            f"storage {cfg.study.storage!r} holds no study named {cfg.name!r} "
            f"(it has {names}); check `study.name`."
        ) from None
    rep = reporting.collect(study, cfg)
    out = args.out or cfg.report_dir
    files = reporting.write_report(rep, out)
    print(reporting.format_table(rep))
    print(f"\nreport: {out} ({', '.join(p.name for p in files)})")
    from lawsearch.search._retention import checkpoint_disk_usage

    n, size = checkpoint_disk_usage(cfg.checkpoint_dir)
    print(
        f"checkpoints: {n} file(s), {size / 1e6:,.1f} MB in {cfg.checkpoint_dir} "
        f"(train.keep_checkpoints = {cfg.train.keep_checkpoints!r})"
    )
    print("dashboard: " + reporting.dashboard_command(cfg.study.storage, cfg.run_dir / "artifacts"))
    return 0
