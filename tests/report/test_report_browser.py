"""The report in a real browser (Debian's headless Chromium, driven by Playwright): it loads from the file
alone, asks the network for nothing, runs no script from item text, and fits 900 pixels without sideways
scrolling; on a 390-pixel phone the headline metric sits beside each configuration's name, the first column
stays in view while a table scrolls, and figures keep a size their text reads at. Set
MMSETS_SCREENSHOTS=<folder> to keep screenshots of the page."""

import os
import shutil
from pathlib import Path

import pytest

from mmsets.report import build_report

from test_report import EVIL_PLOT, make_manifest, make_run, make_stores

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        if os.environ.get("MMSETS_REQUIRE_BROWSER") == "1":
            pytest.fail("MMSETS_REQUIRE_BROWSER=1 but no chromium: apt-get install chromium (make system)")
        pytest.skip("needs Chromium: apt-get install chromium (make system does it as root)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


def test_report_loads_offline_sends_no_request_and_keeps_scripts_as_text(browser, tmp_path):
    ids = make_manifest(tmp_path / "manifest.parquet")
    stores = make_stores(tmp_path, ids)
    runs = [make_run(tmp_path / "runs", f"dmms-image_plot-{p}-s{s}", p, s, f1)
            for p, f1 in (("max", 0.70), ("sum", 0.66)) for s in (0, 1, 2)]
    report = build_report(tmp_path / "manifest.parquet", runs, stores, tmp_path / "report.html")

    page = browser.new_page(viewport={"width": 900, "height": 1000})
    requests, dialogs, errors = [], [], []
    page.on("request", lambda request: requests.append(request.url))
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(("file:", "data:"))
               else route.abort())
    page.goto(report.as_uri(), wait_until="load")

    outside = [u for u in requests if not u.startswith(("file:", "data:"))]
    assert outside == [] and dialogs == [] and errors == []
    assert [u for u in requests if u.startswith("file:")] == [report.as_uri()]  # nothing beside the file itself
    assert EVIL_PLOT.split(" then")[0] in page.inner_text("body")  # the <script> payload shown as text
    assert page.evaluate("document.querySelectorAll('script').length") == 0
    images = page.evaluate("[...document.images].map(i => [i.complete, i.naturalWidth])")
    assert images and all(done and width > 0 for done, width in images)  # every figure decodes
    assert page.evaluate("document.documentElement.scrollWidth") <= 900  # no sideways scroll at 900 px

    keep = os.environ.get("MMSETS_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(keep) / "report-900px.png"), full_page=True)
    page.close()


def test_report_on_a_phone_keeps_names_and_headline_metric_in_view(browser, tmp_path):
    ids = make_manifest(tmp_path / "manifest.parquet")
    stores = make_stores(tmp_path, ids)
    runs = [make_run(tmp_path / "runs", f"dmms-image_plot-{p}-s{s}", p, s, f1)
            for p, f1 in (("max", 0.70), ("sum", 0.66)) for s in (0, 1, 2)]
    report = build_report(tmp_path / "manifest.parquet", runs, stores, tmp_path / "report.html")
    page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2)
    page.goto(report.as_uri(), wait_until="load")

    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # the page never scrolls sideways
    table = page.locator("#results ~ table.results").first
    first_row = table.locator("tbody tr").first.locator("td")
    name, headline = first_row.nth(0), first_row.nth(1)
    assert table.locator("thead th").nth(1).inner_text().startswith("dev")  # the headline metric comes second
    for cell in (name, headline):
        box = cell.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390, cell.inner_text()
    assert table.evaluate("t => t.scrollWidth > t.clientWidth")  # the other columns scroll inside the table
    keep = os.environ.get("MMSETS_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        table.scroll_into_view_if_needed()
        page.screenshot(path=str(Path(keep) / "report-390px.png"))
    before = name.bounding_box()["x"]
    table.evaluate("t => { t.scrollLeft = t.scrollWidth; }")
    assert abs(name.bounding_box()["x"] - before) <= 1  # sticky first column (less its collapsed border)
    assert headline.bounding_box()["x"] < before - 50  # while the rest moved under it

    # Figures are not shrunk to the screen (their text would be ~5 px); each scrolls inside its own box.
    sizes = page.evaluate("[...document.querySelectorAll('.figure img')].map(i => [i.width, i.naturalWidth])")
    assert sizes and all(width >= natural * 0.99 and width > 390 for width, natural in sizes)
    smallest = page.evaluate("""() => {
        const img = document.querySelector('.figure img');
        const svg = new DOMParser().parseFromString(atob(img.src.split(',')[1]), 'image/svg+xml');
        return img.width / parseFloat(svg.documentElement.getAttribute('width'));
    }""")
    assert smallest >= 1.0  # CSS pixels per SVG point: 9-point text is at least 9 px on the phone
    page.close()
