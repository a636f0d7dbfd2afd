"""Figures reach optuna-dashboard, and its HTTP API shows the lawsearch: attrs."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import numpy as np
import optuna
import pytest
from optuna.artifacts import FileSystemArtifactStore
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from lawsearch.optuna import (
    LawPruner,
    attrs,
    save_study_figure,
    save_trial_figure,
    study_figure,
    suggest_mixture,
)
from tests.optuna._synthetic import TARGET, curve, objective

optuna_dashboard = pytest.importorskip("optuna_dashboard")
optuna.logging.set_verbosity(optuna.logging.WARNING)

DOMAINS = ["web", "code", "books"]


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dashboard")


@pytest.fixture(scope="module")
def store(workdir: Path) -> FileSystemArtifactStore:
    store_dir = workdir / "artifacts"
    store_dir.mkdir()
    return FileSystemArtifactStore(str(store_dir))


@pytest.fixture(scope="module")
def journal_study(
    workdir: Path, store: FileSystemArtifactStore
) -> tuple[optuna.Study, JournalStorage]:
    storage = JournalStorage(JournalFileBackend(str(workdir / "journal.log")))
    pruner = LawPruner(
        target_step=TARGET, warmup_steps=16, min_trials=2, sync_interval=0.0, artifact_store=store
    )
    study = optuna.create_study(storage=storage, study_name="dash", pruner=pruner)

    def values(trial: optuna.Trial) -> np.ndarray:
        w = suggest_mixture(trial, "mix", DOMAINS)
        return curve(1.0 + 3.0 * w["books"], seed=trial.number)

    for books in (0.0, 0.05, 0.1, 0.9):
        study.enqueue_trial({"mix:stick0": 0.5, "mix:stick1": 1.0 - books})
    study.optimize(objective(values), n_trials=4)
    return study, storage


@pytest.fixture
def server(
    journal_study: tuple[optuna.Study, JournalStorage], store: FileSystemArtifactStore
) -> Iterator[tuple[str, FileSystemArtifactStore]]:
    app = optuna_dashboard.wsgi(journal_study[1], artifact_store=store)
    httpd: WSGIServer = make_server("127.0.0.1", 0, app, handler_class=_Quiet)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}", store
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read().decode())


def test_dashboard_serves_lawsearch_attrs_and_figures(
    journal_study: tuple[optuna.Study, JournalStorage],
    server: tuple[str, FileSystemArtifactStore],
) -> None:
    study, _ = journal_study
    base, store = server
    loser = study.trials[3]
    assert loser.state == optuna.trial.TrialState.PRUNED
    best = study.best_trial
    study_artifact = save_trial_figure(study, best, artifact_store=store, target_step=TARGET)
    graph_id = save_study_figure(study)

    studies = _get(f"{base}/api/studies")["study_summaries"]
    (entry,) = [s for s in studies if s["study_name"] == "dash"]
    detail = _get(f"{base}/api/studies/{entry['study_id']}?after=0")
    trials = {t["number"]: t for t in detail["trials"]}
    assert len(trials) == 4
    shown = {a["key"]: a["value"] for a in trials[3]["user_attrs"]}
    assert float(shown[attrs.PREDICTED_FINAL]) == pytest.approx(
        loser.user_attrs[attrs.PREDICTED_FINAL]
    )
    assert shown[attrs.FIT_STATUS] in ("ok", "degenerate")
    assert shown[attrs.LAW] == "power"
    sortable = {a["key"]: a["sortable"] for a in detail["union_user_attrs"]}
    assert sortable[attrs.PREDICTED_FINAL] and sortable[attrs.PREDICTED_LO]
    # the pruner attached the loser's figure while it was still running
    (pruned_figure,) = trials[3]["artifacts"]
    assert pruned_figure["mimetype"] == "image/png"
    assert pruned_figure["filename"] == "trial-3-extrapolation.png"
    # a finished trial's figure goes to the study
    assert study_artifact in [a["artifact_id"] for a in detail["artifacts"]]
    assert graph_id in [g["id"] for g in detail["plotly_graph_objects"]]
    for artifact_id in (pruned_figure["artifact_id"], study_artifact):
        with store.open_reader(artifact_id) as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_study_figure_shows_predictions_and_leaders(
    journal_study: tuple[optuna.Study, JournalStorage],
) -> None:
    study, _ = journal_study
    fig = study_figure(study, top=3)
    scatter = fig.data[0]
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(scatter.x) == len(completed)
    bars = [tr for tr in fig.data if tr.type == "bar"]
    assert [b.name for b in bars] == DOMAINS
    assert all(len(b.y) == 3 for b in bars)
    stacked = np.sum([b.y for b in bars], axis=0)
    assert np.allclose(stacked, 1.0)


def test_trial_figure_draws_a_fit_that_leaves_the_positive_losses() -> None:
    """A fit whose extrapolation turns negative is drawn as far as it is usable."""
    from optuna.distributions import FloatDistribution

    from lawsearch.optuna._dashboard import trial_figure
    from lawsearch.schedules import Schedule, annealing_momentum, intrinsic_time

    spec = {"family": "cosine", "peak_lr": 0.3, "total_steps": 400, "warmup_steps": 0}
    lrs = Schedule.from_dict(spec).lr(np.arange(401))
    s1, s2 = intrinsic_time(lrs), annealing_momentum(lrs)
    steps = np.arange(10, 121, 10)
    losses = 2.0 + 3.0 * (s1[steps] + 1.0) ** -0.5 - 0.08 * s2[steps]  # < 0 by step 400
    trial = optuna.trial.create_trial(
        state=optuna.trial.TrialState.COMPLETE,
        value=float(losses[-1]),
        params={"x": 0.5},
        distributions={"x": FloatDistribution(0.0, 1.0)},
        intermediate_values={int(s): float(v) for s, v in zip(steps, losses, strict=True)},
        user_attrs={"lawsearch:schedule": spec},
    )
    fig = trial_figure(trial, law="momentum", target_step=400)
    title = fig.axes[0].get_title()
    assert "leaves positive losses after step" in title
    assert fig.axes[0].lines[1].get_xdata().max() < 400  # the fit line stops where it is usable
