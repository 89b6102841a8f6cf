"""index.html in a real headless Chromium: it renders, logs no console errors, the matrix is visible."""

from __future__ import annotations

import shutil

import pytest
from report_fixtures import S, make_doc, with_pictures

from lab.report import write_all

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.mark.timeout(90)
@pytest.mark.skipif(not shutil.which(CHROMIUM), reason="Debian's chromium is not installed")
def test_index_html_renders_in_chromium(tmp_path):
    from playwright.sync_api import sync_playwright

    doc = with_pictures(make_doc(S.default_cells(), flip={"server-nat/tls/pasv"}))
    write_all(doc, tmp_path)
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page()
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
            page.goto((tmp_path / "index.html").as_uri())
            page.wait_for_load_state("load")
            table = page.locator("#matrix-table")
            assert table.is_visible()
            assert table.locator("tbody tr").count() == 8
            assert table.locator("td.pass, td.fail, td.error").count() == 160
            assert table.locator("td.differs").count() == 1
            box = table.bounding_box()
            assert box and box["width"] > 300 and box["height"] > 100
            # Every diagram decoded as an image; a cell's details open from the matrix link.
            sizes = page.eval_on_selector_all("img.diagram", "imgs => imgs.map(i => i.naturalWidth)")
            assert len(sizes) == 8 and all(w > 100 for w in sizes)
            page.locator('#matrix-table a[href="#cell-server-nat_tls_pasv"]').click()
            details = page.locator("#cell-server-nat_tls_pasv")
            details.locator("summary").click()
            assert details.locator("table").first.is_visible()
        finally:
            browser.close()
    assert problems == []
