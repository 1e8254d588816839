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


def test_the_report_renders_without_errors(browser: Any, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run_simulation(parse_config({**TINY, "output_dir": str(run)}))
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto((run / "report.html").as_uri())
    page.wait_for_load_state("load")
    broken = page.evaluate("[...document.images].filter(i => !i.complete || i.naturalWidth === 0).length")
    images = page.evaluate("document.images.length")
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert errors == []
    assert images >= 2 and broken == 0
    assert "fedavg" in page.inner_text("body").lower()
    pixels = np.asarray(Image.open(tmp_path / "report.png").convert("L"))
    assert pixels.std() > 10  # not a blank page
