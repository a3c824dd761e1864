"""The web view as a person uses it: a real `modelspec serve` process over real builds,
driven by Playwright in Debian's headless Chromium (`/usr/bin/chromium`; never `playwright
install`, which downloads a browser). Few and broad, for they are slow: filter the versions,
page through them, open a version, follow its lineage, read the metric chart, diff two
versions, and no page logs an error in the browser's console. Screenshots are written
beside the test's files (MODELSPEC_SCREENSHOTS names a folder to keep them in)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import missing
from webspace import shared_workspace

CHROMIUM = os.environ.get("MODELSPEC_TEST_CHROMIUM", "/usr/bin/chromium")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = shared_workspace(tmp_path_factory)
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "modelspec", "serve", "--port", str(port)], cwd=root, stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + 60
        while "serving http://127.0.0.1" not in log.read_text():
            assert process.poll() is None, f"modelspec serve exited {process.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"modelspec serve did not start:\n{log.read_text()}"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert "Traceback" not in log.read_text(), log.read_text()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        missing("chromium", f"{CHROMIUM} is not installed (apt-get install chromium; .ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    opened.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    opened.errors = errors
    yield opened
    context.close()
    assert not errors, errors  # a refused style, a failed request, a script: none on any page


def shoot(page: Any, folder: Path, name: str) -> None:
    target = folder / f"{name}.png"
    page.screenshot(path=str(target), full_page=True)
    assert target.stat().st_size > 10_000  # a page, not a blank
    keep = os.environ.get("MODELSPEC_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(target, Path(keep) / target.name)


def test_filter_open_a_version_and_follow_its_lineage(server: str, page: Any, tmp_path: Path) -> None:
    page.goto(f"{server}/")
    assert page.title() == "models · modelspec"
    page.click("text=fraud")
    assert page.locator("table.versions tbody tr").count() == 4
    shoot(page, tmp_path, "versions")
    page.fill("input[name=where]", "auc>0.86")
    page.click("button:has-text('filter')")
    rows = page.locator("table.versions tbody tr")
    assert rows.count() == 2 and "2 versions match" in page.inner_text("p.count")
    page.click("table.versions >> text=1.0.2")
    assert page.url.endswith("/models/fraud/1.0.2")
    lineage = page.locator("svg.lineage")
    assert lineage.is_visible() and lineage.locator("g.node").count() >= 4  # data, code, config, itself, consumer
    assert "<script" not in page.content().split("<main>")[1]  # the tag's payload is text
    assert page.locator("text=note=<script>").count() == 1
    shoot(page, tmp_path, "version")
    page.click("svg.lineage a[href='/models/scorer/1.0.0']")
    assert page.url.endswith("/models/scorer/1.0.0")
    page.click("svg.lineage a[href='/models/fraud/1.0.2']")  # and back upstream
    assert page.url.endswith("/models/fraud/1.0.2")


def test_page_through_versions_and_read_the_charts(server: str, page: Any, tmp_path: Path) -> None:
    page.goto(f"{server}/models/fraud?size=2")
    versions = lambda: page.locator("table.versions tbody td:first-child").all_inner_texts()  # noqa: E731
    assert versions() == ["1.0.3", "1.0.2"]
    page.click("a.next")
    assert versions() == ["1.0.1", "1.0.0"] and page.locator("span.off:has-text('next')").count() == 1
    page.click("a.prev")
    assert versions() == ["1.0.3", "1.0.2"]
    page.click("a.sort:has-text('auc')")
    assert versions() == ["1.0.1", "1.0.2"]  # highest auc first

    page.click("text=metrics over versions")
    chart = page.locator("div.chart svg")
    assert chart.is_visible() and chart.locator("circle").count() == 4 * 2  # a point per version and metric
    assert chart.locator("text=production, staging").count() == 2  # the alias marked on each chart
    shoot(page, tmp_path, "metrics")

    page.click("nav.model-nav >> text=diff")
    page.fill("input[name=a]", "1.0.0")
    page.fill("input[name=b]", "production")
    page.click("button:has-text('diff')")
    assert "fraud@1.0.0 → fraud@1.0.1" in page.inner_text("h2")
    assert "transactions" in page.inner_text("section.diff") and "auc" in page.inner_text("section.diff")
    shoot(page, tmp_path, "diff")

    page.goto(f"{server}/models/fraud/aliases/production")
    page.fill("input[name=at]", "2999-01-01")
    page.click("button:has-text('show')")
    assert "pointed to 1.0.1" in page.inner_text("p.answer")
    page.goto(f"{server}/models/fraud/drift?a=1.0.1&b=1.0.0")
    assert "DATASET DRIFT" in page.inner_text("main")
    shoot(page, tmp_path, "drift")
    page.goto(f"{server}/audit")
    assert "intact" in page.inner_text("p.verdict")
    page.goto(f"{server}/models/fraud/7.7.7")
    assert "no version fraud@7.7.7" in page.inner_text("section.error")
    assert len(page.errors) == 1 and "status of 404 (Not Found)" in page.errors[0]
    page.errors.clear()  # the page's own 404, which the browser logs
