"""optuna-dashboard shows the search: figures and notes from the decision records, live figures."""

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

from lawsearch.laws import get_law
from lawsearch.optuna import (
    LawPruner,
    LiveFigures,
    attrs,
    importance_figure,
    save_study_figures,
    save_trial_figure,
    study_figure,
    suggest_mixture,
    trial_figure,
    trial_note,
)
from lawsearch.optuna import _records as records
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
    """A user's own objective with LawPruner (no search, so no decision records)."""
    storage = JournalStorage(JournalFileBackend(str(workdir / "journal.log")))
    pruner = LawPruner(
        target_step=TARGET, warmup_steps=16, min_points=None, min_trials=2, artifact_store=store
    )  # min_points=None: the loser is cut on a law fit (a figure), not on its last value
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


def _gids(fig: Any) -> set[str]:
    return {a.get_gid() for a in fig.findobj() if a.get_gid()}


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
    # a redraw rewrites the same artifact (one figure per trial, never a pile of them)
    assert save_trial_figure(study, best, artifact_store=store, target_step=TARGET) == (
        study_artifact
    )
    assert save_study_figures(study) == []

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
    # the weights under readable names, among the first attrs (before the predictions)
    keys = [a["key"] for a in trials[3]["user_attrs"]]
    assert keys[:3] == [attrs.mixture_weight_key("mix", d) for d in DOMAINS]
    sortable = {a["key"]: a["sortable"] for a in detail["union_user_attrs"]}
    assert sortable[attrs.PREDICTED_FINAL] and sortable[attrs.PREDICTED_LO]
    # the pruner attached the loser's figure while it was still running
    (pruned_figure,) = trials[3]["artifacts"]
    assert pruned_figure["mimetype"] == "image/png"
    assert pruned_figure["filename"] == "trial-3-extrapolation.png"
    # a finished trial's first figure goes to the study
    assert study_artifact in [a["artifact_id"] for a in detail["artifacts"]]
    graphs = {g["id"] for g in detail["plotly_graph_objects"]}
    assert {"lawsearch-estimates", "lawsearch-leaders", "lawsearch-importance"} <= graphs
    for artifact_id in (pruned_figure["artifact_id"], study_artifact):
        with store.open_reader(artifact_id) as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_mixture_weights_have_readable_names() -> None:
    assert attrs.mixture_weight_key("mixture", "code") == "lawsearch:mixture:code"
    assert attrs.mixture_weight_key("mix", "code") == "lawsearch:mixture:mix:code"


def test_trial_figure_draws_the_decision_it_was_ranked_by(
    searched: tuple[Any, Any, str],
) -> None:
    study, _, _ = searched
    cuts = records.read_cuts(study)
    screened = [t for t in study.trials if t.user_attrs.get(attrs.RUNG) == 0]
    for t in screened:
        d = records.decision(t, cuts)
        assert d is not None and d["ranked_by"] == "joint refit"
        fig = trial_figure(t, cuts=cuts)
        assert {"observed", "path", "band", "estimate"} <= _gids(fig)
        title = fig.axes[0].get_title()
        assert f"{d['value']:.4g}" in title and "joint refit" in title
        assert ("kept" if d["kept"] else "cut") in title
        (path,) = [a for a in fig.axes[0].lines if a.get_gid() == "path"]
        assert path.get_xdata()[-1] == d["target"]  # the extrapolation reaches the full budget
    final = next(t for t in study.trials if t.user_attrs.get(attrs.RUNG) == 2)
    fig = trial_figure(final, cuts=cuts)
    assert "observed" in fig.axes[0].get_title() and "estimate" in _gids(fig)


def test_trial_figure_says_why_a_trial_was_ranked_by_its_last_value(
    searched: tuple[Any, Any, str],
) -> None:
    from tests.report._study import distrusted_study

    study = distrusted_study(searched[1])
    t = next(t for t in study.trials if t.user_attrs.get(attrs.RUNG) == 0)
    fig = trial_figure(t, cuts=records.read_cuts(study))
    (missing,) = [a for a in fig.findobj() if a.get_gid() == "missing"]
    assert "ranked by its loss observed at step" in missing.get_text()
    assert "max_trend_ratio" in missing.get_text()
    assert "path" not in _gids(fig)


def test_note_puts_the_estimate_and_interval_first(searched: tuple[Any, Any, str]) -> None:
    study, _, _ = searched
    cuts = records.read_cuts(study)
    t = next(t for t in study.trials if t.user_attrs.get(attrs.RUNG) == 0)
    d = records.decision(t, cuts)
    raw = trial_note(study, t, cuts)
    assert max(len(line) for line in raw.splitlines()) <= 97  # the note box does not wrap
    first = raw.splitlines()[0]
    note = " ".join(raw.split())
    assert first.startswith(f"**Full-budget estimate: {d['value']:.4f}**, 80% interval")
    assert f"[{d['lo']:.4f}, {d['hi']:.4f}]" in first
    assert "Ranked by: **joint refit** (power)" in note
    assert f"place {d['position']} of 6" in note
    for k, v in t.user_attrs.items():
        if k.startswith(attrs.MIXTURE_WEIGHT_PREFIX):
            assert f"{k.rsplit(':', 1)[-1]} **{v:.3f}**" in note
    # the objective value (told before the cut) is named when the cut ranked by another number
    assert ("Objective value" in note) == (d["own"]["value"] != d["value"])
    assert t.value == d["own"]["value"]


def test_study_note_names_the_pick_and_each_cut(searched: tuple[Any, Any, str]) -> None:
    from lawsearch.optuna import study_note

    study, _, _ = searched
    raw = study_note(study)
    assert optuna_dashboard.get_note(study) == raw  # published by `lawsearch run`
    note = " ".join(raw.split())
    assert "**Pick: candidate 0**" in note and "80% intervals" in note
    for cut in records.read_cuts(study):
        assert f"Cut at step {cut['budget']}: kept {cut['keep']} of {cut['screened']}" in note


def test_study_figures_show_estimates_cut_lines_and_weights(
    searched: tuple[Any, Any, str],
) -> None:
    study, _, _ = searched
    fig = study_figure(study)
    lines = [tr for tr in fig.data if tr.name.startswith("cut line")]
    assert sorted(tr.y[0] for tr in lines) == sorted(c["line"] for c in records.read_cuts(study))
    candidates = [tr for tr in fig.data if tr.name.startswith("#")]
    assert len(candidates) == 6 and candidates[0].name.startswith("#1 candidate")
    assert len(candidates[0].x) == 3  # the pick was estimated at each of the 3 budgets
    assert candidates[0].x[-1] == 200 * 64  # in tokens
    imp = importance_figure(study)
    (bars,) = imp.data
    assert set(bars.y) <= {"a", "b", "c", "schedule:peak_lr"} and "a" in bars.y
    assert "6 candidates" in imp.layout.title.text


def test_live_figure_is_redrawn_in_place_as_the_trial_reports(tmp_path: Path) -> None:
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "journal.log")))
    store = FileSystemArtifactStore(str(tmp_path))
    study = optuna.create_study(storage=storage, study_name="live")
    trial = study.ask()
    live = LiveFigures(study, artifact_store=store, law="power", target_step=200, every=0.0)
    values = 2.0 + 3.0 * (np.arange(5, 101, 5) + 5.0) ** -0.5
    need = get_law("power").min_points()
    drawn = []
    for i, (s, v) in enumerate(zip(range(5, 101, 5), values, strict=True)):
        trial.report(float(v), s)
        live(trial.number, s, float(v), 0.0)
        artifact = study._storage.get_trial(trial._trial_id).user_attrs.get(attrs.FIGURE_ARTIFACT)
        if i + 1 < need:
            assert artifact is None  # too few points to fit
        elif i + 1 in (need, 20):
            with store.open_reader(artifact) as f:
                drawn.append((artifact, f.read()))
    assert drawn[0][0] == drawn[1][0] and drawn[0][1] != drawn[1][1]
    assert live.problems == []
    (meta,) = [
        v
        for k, v in study._storage.get_trial_system_attrs(trial._trial_id).items()
        if k.startswith("artifacts:")
    ]
    assert json.loads(meta)["artifact_id"] == drawn[0][0]  # shown on the trial's page


def test_trial_figure_draws_a_fit_that_leaves_the_positive_losses() -> None:
    """A refit whose extrapolation turns negative is drawn as far as usable, and says so."""
    from optuna.distributions import FloatDistribution

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
    (missing,) = [a for a in fig.findobj() if a.get_gid() == "missing"]
    assert "no positive loss" in missing.get_text()
    (path,) = [a for a in fig.axes[0].lines if a.get_gid() == "path"]
    assert path.get_xdata().max() < 400  # the fit line stops where it is usable
