"""The HTML report renders in a real browser (headless Chromium driven by Playwright): no
console error, no failed image, and a screenshot that is not blank. Chromium comes from the
system (Debian's ``chromium``; ``.ci/run`` installs it, and says so in its log when it cannot);
without it the test is skipped."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from builders import tiny_simulation
from PIL import Image

from medfed.config.loading import parse_config
from medfed.orchestration.metrics_log import MetricRow, Split
from medfed.report.html import DeploymentRun, write_report
from medfed.simulator import run_simulation

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TINY = tiny_simulation(federation={"rounds": 2}, baselines={"local": True})


@pytest.fixture(scope="module")
def browser() -> Any:
    if CHROMIUM is None:
        pytest.skip("no Chromium on this machine (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield launched
        launched.close()


def _open(browser: Any, report: Path, screenshot: Path) -> tuple[Any, list[str], int]:
    """The report opened in Chromium, its console errors and its number of broken images."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(report.as_uri())
    page.wait_for_load_state("load")
    broken = page.evaluate("[...document.images].filter(i => !i.complete || i.naturalWidth === 0).length")
    page.screenshot(path=str(screenshot), full_page=True)
    pixels = np.asarray(Image.open(screenshot).convert("L"))
    assert pixels.std() > 10  # not a blank page
    return page, errors, broken


def test_the_report_renders_without_errors(browser: Any, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run_simulation(parse_config({**TINY, "output_dir": str(run)}))
    page, errors, broken = _open(browser, run / "report.html", tmp_path / "report.png")
    assert errors == []
    assert page.evaluate("document.images.length") >= 2 and broken == 0
    text = page.inner_text("body")
    assert "fedavg" in text.lower()
    assert "hd95 (last round)" in text and "Training loss per round" in text
    assert "dp_sgd" not in text and "accountant" not in text  # no privacy settings: none is on


def test_a_deployed_jobs_report_renders_without_errors(browser: Any, tmp_path: Path) -> None:
    rows = [
        MetricRow("job", round, site, split, metric, value)
        for round in (1, 2)
        for site in ("a", "b")
        for split, metric, value in (
            (Split.EVAL, "dice", 0.3 * round),
            (Split.EVAL, "hd95", 5.0 / round),
            (Split.TRAIN, "loss", 1 / round),
        )
    ]
    rows.append(MetricRow("job", 2, "c", Split.PARTICIPATION, "rejected", 1.0))
    run = DeploymentRun(
        job="job", job_yaml="name: job", rounds_done=2, rounds_planned=3, rejections={"c": "round 2: <NaN>"}
    )
    write_report(tmp_path / "report.html", rows=rows, metric="dice", run=run)
    page, errors, broken = _open(browser, tmp_path / "report.html", tmp_path / "report.png")
    assert errors == [] and broken == 0 and page.evaluate("document.images.length") == 3
    text = page.inner_text("body")
    assert "unfinished: 2 of 3 rounds done" in text and "round 2: <NaN>" in text
