"""Every figure draws what its title promises, or says on it what it could not draw and why."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pytest

from lawsearch.report import _views as views
from lawsearch.report import collect
from lawsearch.report._figures import FIGURES, draw
from lawsearch.report._html import figures, write_html
from tests.report._study import distrusted_study


@pytest.fixture(scope="module")
def report(searched: tuple[Any, Any, str]) -> Any:
    study, cfg, _ = searched
    return collect(study, cfg)


def _gids(fig: Any) -> set[str]:
    return {a.get_gid() for a in fig.findobj() if a.get_gid()}


def _texts(fig: Any, prefix: str) -> list[str]:
    return [a.get_text() for a in fig.findobj() if (a.get_gid() or "").startswith(prefix)]


def test_curves_draw_each_extrapolation_band_and_estimate(report: Any) -> None:
    fig = draw(report, "curves.png")
    gids = _gids(fig)
    for lin in report.lineages:
        n = lin.number
        assert f"observed:{n}" in gids
        for d in lin.decisions:
            if d.ranked_by == "observed":
                assert f"final:{n}" in gids  # the observed final, not an extrapolation
                continue
            for kind in ("path", "band", "estimate"):
                assert f"{kind}:{n}:{d.rung}" in gids, (kind, n, d.rung)
    assert not _texts(fig, "missing:")  # nothing was left out
    assert "80% interval" in fig._suptitle.get_text()
    plt.close(fig)


def test_curves_say_what_they_could_not_draw(searched: tuple[Any, Any, str]) -> None:
    _, cfg, _ = searched
    rep = collect(distrusted_study(cfg), cfg, n_candidates=4)
    fig = draw(rep, "curves.png")
    screened = [lin for lin in rep.lineages if lin.decision.rung == 0]
    for lin in screened:
        (text,) = _texts(fig, f"missing:{lin.number}")
        assert "ranked by the last value" in text and "max_trend_ratio" in text
        assert f"path:{lin.number}:0" not in _gids(fig)
    plt.close(fig)


def test_cuts_draw_every_candidate_interval_and_the_cut_line(report: Any) -> None:
    fig = draw(report, "cuts.png")
    gids = _gids(fig)
    assert len(report.cuts) == 2
    for cut in report.cuts:
        assert f"cut-line:{cut['rung']}:{cut['keep']}" in gids
        for c, kind in zip(cut["candidates"], views.candidate_kinds(report, cut), strict=True):
            assert f"candidate:{cut['rung']}:{c['trial']}:{kind.kind}" in gids
            # an interval is drawn for a prediction only (an observed loss has none)
            has_bar = f"interval:{cut['rung']}:{c['trial']}" in gids
            assert has_bar == (kind.predicted and c["lo"] is not None)
    (line,) = [a for a in fig.findobj() if a.get_gid() == "cut-line:0:2"]
    assert line.get_xdata()[0] == report.cuts[0]["line"]
    plt.close(fig)


def test_estimates_checks_and_leaders(report: Any) -> None:
    fig = draw(report, "estimates.png")
    gids = _gids(fig)
    assert {f"trajectory:{lin.number}" for lin in report.lineages} <= gids
    assert {"cut-line:0:2", "cut-line:1:1"} <= gids
    plt.close(fig)
    fig = draw(report, "predicted_vs_observed.png")
    # the pick was predicted at 40 and 80 steps, the runner-up at 40: 3 + 1 checks
    assert {"checks:0", "checks:1", "diagonal"} <= _gids(fig)
    assert "4 of 4 inside the 80% interval" in fig.axes[0].get_title()
    plt.close(fig)
    fig = draw(report, "leaders.png")
    gids = _gids(fig)
    assert {"mixture:a", "mixture:b", "mixture:c"} <= gids
    assert {f"schedule:{lin.number}" for lin in report.lineages} <= gids
    plt.close(fig)


def _ranked_by_observed(report: Any) -> Any:
    """``report`` as if every cut had ranked by observed losses: no cut path, own fits kept."""
    import dataclasses

    lineages = tuple(
        dataclasses.replace(
            lin, decisions=tuple(dataclasses.replace(d, path=None) for d in lin.decisions)
        )
        for lin in report.lineages
    )
    return dataclasses.replace(report, lineages=lineages)


def test_checks_fall_back_to_each_trials_own_fit(report: Any) -> None:
    # where a cut ranked by observed losses, what the trial's own fit said is still checked
    ranked = views.checks(report)
    own = views.checks(_ranked_by_observed(report))
    assert ranked and all(c.ranked for c in ranked)
    assert len(own) == len(ranked) and not any(c.ranked for c in own)
    assert {(c.number, c.rung, c.at) for c in own} == {(c.number, c.rung, c.at) for c in ranked}
    fig = draw(_ranked_by_observed(report), "predicted_vs_observed.png")
    assert {"checks:0:own", "checks:1:own"} <= _gids(fig)
    assert f"{len(own)} of them own fits a cut did not rank by" in fig.axes[0].get_title()
    assert not _texts(fig, "missing:checks")
    plt.close(fig)


def test_every_figure_is_written(report: Any, tmp_path: Path) -> None:
    from lawsearch.report._figures import write_figures

    paths = write_figures(report, tmp_path)
    assert [p.name for p in paths] == list(FIGURES)
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)


def test_html_page_is_self_contained_with_the_same_views(report: Any, tmp_path: Path) -> None:
    pytest.importorskip("plotly")
    page = write_html(report, tmp_path / "report.html").read_text(encoding="utf-8")
    # offline: plotly.js inline (its bundle only names a CDN for geo maps, never loaded here)
    assert "<script src=" not in page and 'src="http' not in page
    assert "plotly.js v" in page
    assert page.count("Plotly.newPlot") == 5
    assert "80% interval (predictions only)" in page
    sections = figures(report)
    curves = sections["Curves and the law's extrapolations"][0]
    bands = [tr for tr in curves.data if tr.fill == "toself"]
    drawn = sum(1 for lin in report.lineages for d in lin.decisions if d.ranked_by != "observed")
    assert len(bands) == drawn
    cuts = sections["Each cut: the ranked candidates and who was kept"][0]
    assert sum(len(tr.x) for tr in cuts.data) == sum(len(c["candidates"]) for c in report.cuts)
    assert len(cuts.layout.shapes) == len(report.cuts)  # the cut lines


def test_curves_draw_the_pruners_prediction_for_a_candidate_it_stopped(
    searched: tuple[Any, Any, str],
) -> None:
    """A pruned candidate finished no rung; its panel shows the prediction that stopped it
    (the square with its interval at the full budget), and says the pruner stores no path."""
    import optuna
    from optuna.trial import TrialState

    from lawsearch.optuna import _compat as compat
    from lawsearch.optuna import attrs

    study, cfg, _ = searched
    copy = optuna.create_study(direction=study.direction)
    system = compat.storage(study).get_study_system_attrs(compat.study_id(study))
    for k, v in system.items():
        compat.storage(copy).set_study_system_attr(compat.study_id(copy), k, v)
    for k, v in study.user_attrs.items():
        copy.set_user_attr(k, v)
    copy.add_trials(study.get_trials())
    source = study.get_trials()[0]
    copy.add_trial(
        optuna.trial.create_trial(
            state=TrialState.PRUNED,
            params=source.params,
            distributions=source.distributions,
            intermediate_values={4: 6.0, 8: 5.9},
            user_attrs={
                attrs.TOKENS_PER_STEP: float(cfg.train.tokens_per_step),
                attrs.RUNG: 0,
                attrs.PREDICTED_FINAL: 5.5,
                attrs.PREDICTED_LO: 5.2,
                attrs.PREDICTED_HI: 6.4,
                attrs.FIT_STATUS: "ok",
            },
        )
    )
    rep = collect(copy, cfg)
    (lin,) = [lin for lin in rep.lineages if lin.state == "PRUNED"]
    fig = draw(rep, "curves.png")
    n = lin.number
    assert f"estimate:{n}:0" in _gids(fig)
    (bars,) = [a for a in fig.findobj() if a.get_gid() == f"estimate:{n}:0"]
    assert list(bars.get_ydata()) == [5.5]
    (text,) = _texts(fig, f"missing:{n}")
    text = " ".join(text.split())  # the note is wrapped
    assert "the pruner's latest prediction" in text and "nothing was extrapolated" not in text
    plt.close(fig)
