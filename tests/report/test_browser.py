"""Checked in a real browser: optuna-dashboard's trial page and ``report.html`` show the search.

A tiny study is searched by ``lawsearch run``'s own code path (journal file,
artifacts), optuna-dashboard is started with the exact command ``lawsearch run``
printed, and headless Chromium (Debian's ``chromium`` and ``chromium-driver``,
driven by Selenium; nothing is downloaded) opens the trial page of the pick and
the HTML report. Skips without Chromium locally; fails when ``CI=true``.

Screenshots go to ``$LAWSEARCH_SCREENSHOTS`` when set (``docs/`` for the README:
``LAWSEARCH_SCREENSHOTS=docs pytest tests/report/test_browser.py``), else to tmp_path.

Known: the dashboard's trial *table* page (``/trialTable``) renders blank in
headless Chromium 156, even for a plain Optuna study; the trial list and detail
page (``/trials?numbers=N``) render, and that is what this test reads.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lawsearch.optuna import _records as records
from tests.conftest import ON_CI

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("LAWSEARCH_CHROMIUM", "/usr/bin/chromium")
DRIVER = os.environ.get("LAWSEARCH_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = (
    "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
    "--disable-background-networking --disable-component-update --disable-sync "
    "--window-size=1200,1500"
).split()


def _missing(reason: str) -> None:
    if ON_CI:
        pytest.fail(f"{reason} (CI=true, so this is a failure, not a skip)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    if not (Path(CHROMIUM).is_file() and Path(DRIVER).is_file()):
        _missing(
            f"no Chromium at {CHROMIUM} / chromedriver at {DRIVER}: "
            "apt-get install -y chromium chromium-driver"
        )
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium is not installed (the [dev] extra)")
        raise
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="lawsearch-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    browser = webdriver.Chrome(options=options, service=Service(DRIVER))
    try:
        yield browser
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def dashboard(searched: tuple[Any, Any, str]) -> Iterator[str]:
    """optuna-dashboard started with the command ``lawsearch run`` printed."""
    pytest.importorskip("optuna_dashboard")
    _, _, printed = searched
    (line,) = [x for x in printed.splitlines() if x.startswith("dashboard: ")]
    command = shlex.split(line.removeprefix("dashboard: "))
    assert Path(command[0]).is_absolute()  # works from a fresh shell, venv not on PATH
    port = _free_port()
    proc = subprocess.Popen(
        [*command, "--port", str(port), "--host", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")},  # a fresh shell
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                with urllib.request.urlopen(f"{base}/api/studies", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None:
                    raise AssertionError(
                        proc.stderr.read().decode() if proc.stderr else ""
                    ) from None
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        if proc.stderr is not None:
            proc.stderr.close()


def _screenshot(driver: Any, tmp_path: Path, name: str) -> Path:
    """Save the window as a small PNG (128 colours) under $LAWSEARCH_SCREENSHOTS or tmp_path."""
    import io

    from PIL import Image

    out = Path(os.environ.get("LAWSEARCH_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    image = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    image.quantize(colors=128).save(out / name, optimize=True)
    return out / name


def _text_when(driver: Any, needle: str, timeout: float = 30.0) -> str:
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = driver.find_element(By.TAG_NAME, "body").text
        if needle in text:
            return str(text)
        time.sleep(0.3)
    raise AssertionError(f"{needle!r} never appeared; the page said:\n{text[:3000]}")


def test_dashboard_trial_page_shows_the_estimate_interval_and_weights(
    driver: Any, dashboard: str, searched: tuple[Any, Any, str], tmp_path: Path
) -> None:
    study, _, _ = searched
    pick = min(
        (t for t in study.trials if records.read_trial_record(t) is not None),
        key=lambda t: (-t.user_attrs["lawsearch:rung"], t.value),
    )
    rec = records.read_trial_record(pick)
    assert rec is not None and rec["ranked_by"] == "observed"
    cut0 = next(t for t in study.trials if t.user_attrs.get("lawsearch:rung") == 0)
    decision = records.decision(cut0, records.read_cuts(study))
    assert decision is not None
    sid = study._study_id
    for trial, d, shot in ((cut0, decision, "dashboard-trial.png"), (pick, rec, None)):
        driver.get(f"{dashboard}/dashboard/studies/{sid}/trials?numbers={trial.number}")
        predicted = d["ranked_by"] in ("law", "joint refit")  # else an observed loss
        head = "Full-budget estimate" if predicted else "Ranked value"
        text = " ".join(_text_when(driver, head).split())
        assert f"{head}: {d['value']:.4f}" in text
        assert ("80% interval" in text) == predicted or "80% interval" in text
        if predicted and d["lo"] is not None and d["lo"] < d["hi"]:
            assert f"[{d['lo']:.4f}, {d['hi']:.4f}]" in text
        for domain, weight in (
            (k.rsplit(":", 1)[-1], v)
            for k, v in trial.user_attrs.items()
            if k.startswith("lawsearch:mixture:")
        ):
            assert f"{domain} {weight:.3f}" in text  # the note lists the weights
        assert f"Ranked by: {d['ranked_by']}" in text
        if shot:
            _text_when(driver, "trial-")  # the figure artifact is listed
            assert _screenshot(driver, tmp_path, shot).stat().st_size > 10_000


def test_html_report_renders_offline(
    driver: Any, searched: tuple[Any, Any, str], tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    _, cfg, _ = searched
    page = cfg.report_dir / "report.html"
    assert "cdn" not in page.read_text(encoding="utf-8").lower()[:2000]  # plotly.js is inline
    driver.get(page.resolve().as_uri())
    text = _text_when(driver, "Ranking")
    assert "80% interval (predictions only)" in text and "value is" in text
    assert "pick: best at the full budget" in text
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        plots = driver.find_elements(By.CSS_SELECTOR, ".js-plotly-plot .main-svg")
        if len(plots) >= 5:
            break
        time.sleep(0.3)
    drawn = driver.find_elements(By.CSS_SELECTOR, ".js-plotly-plot")
    assert len(drawn) == 5, "every section's plotly figure rendered"
    # the cut figure drew its candidates (points) for every cut
    assert driver.find_elements(By.CSS_SELECTOR, ".js-plotly-plot .scatterlayer .point")
    assert _screenshot(driver, tmp_path, "report-html.png").stat().st_size > 10_000
