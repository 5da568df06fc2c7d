"""The Documents page in a real Chromium: what a user sees while a batch is indexed and after.

Live progress shows measured figures only (no guessed chunk total) and the elapsed time ticks;
the library shows every row without an inner scroll box, the note column included; after a
re-index or a delete the selection is empty in the browser, not only on the server.
Screenshots go to the test's temporary folder, to be looked at when this page changes.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.docs import make_bad_files
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, LONG, _make_batch, _metric, _settle, running_app

pytestmark = pytest.mark.browser

BATCH = 16


def _shot(page, path: Path, height: int) -> None:
    page.set_viewport_size({"width": 1400, "height": height})
    page.wait_for_timeout(500)
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": 1400, "height": 1000})


def _chips(page):
    """The chosen documents shown in "Select documents"."""
    return page.get_by_test_id("stMultiSelectTagsContainer").locator("[data-tag]")


def _choose(page, name: str) -> None:
    box = page.get_by_test_id("stMultiSelect").locator("input")
    box.click()
    box.fill(name)  # the list is long: narrow it to the one document
    page.get_by_role("option", name=name).click()
    page.keyboard.press("Escape")
    expect(_chips(page)).to_have_count(1, timeout=LONG)
    _settle(page)  # until the rerun the choice started has replaced the page's buttons


def test_progress_library_and_selection_in_a_browser(tmp_path):
    from playwright.sync_api import sync_playwright

    files = _make_batch(tmp_path / "batch", BATCH - 1) + [make_bad_files(tmp_path / "bad")["scanned.pdf"]]
    data = tmp_path / "data"
    data.mkdir()
    with running_app(data) as (url, _), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)
        page.goto(f"{url}/documents")
        page.get_by_role("heading", name="Documents").wait_for(timeout=LONG)
        _settle(page)

        # While indexing: files and chunks done, no guessed total, and a clock that ticks.
        page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(files)
        page.get_by_test_id("stFileChip").first.wait_for()
        page.get_by_role("button", name="Upload and index").click()
        running = page.get_by_test_id("stExpander").filter(has_text=f"Indexing {files[0].name} and {BATCH - 1} more")
        expect(running).to_be_visible(timeout=LONG)
        expect(_metric(running, "Files")).to_have_text(re.compile(rf"^\d+ / {BATCH}$"))
        expect(_metric(running, "Chunks")).to_have_text(re.compile(r"^[\d,]+$"))
        bar = running.get_by_test_id("stProgress")
        expect(bar).to_contain_text(re.compile(r"of the data \(by file size\) · .* elapsed"))
        shown = bar.inner_text()
        expect(bar).not_to_have_text(shown, timeout=LONG)  # at least the clock moved
        expect(running).not_to_contain_text("None")
        _shot(page, tmp_path / "indexing.png", 1400)

        # Done: the whole library is shown, with its notes, without scrolling inside the table.
        page.get_by_text(f"{files[0].name} and {BATCH - 1} more: {BATCH - 1} indexed, 1 failed").wait_for(timeout=3 * LONG)
        _settle(page)
        grid = page.get_by_role("heading", name="Library", exact=True).locator("xpath=following::*[@data-testid='stDataFrame'][1]")
        expect(grid).to_contain_text("no text layer", timeout=LONG)  # scanned.pdf's note, in full
        _shot(page, tmp_path / "library.png", 1800)
        size = grid.locator(".dvn-scroller").evaluate("el => [el.scrollWidth, el.clientWidth, el.scrollHeight, el.clientHeight]")
        assert size[2] <= size[3] + 1, f"all rows fit, no inner scroll box: {size}"
        assert size[0] <= size[1] + 1, f"all columns fit the page's width: {size}"

        # Re-index, then delete: each time the chip goes and a new choice enables the buttons.
        reindex = page.get_by_role("button", name="Re-index")
        _choose(page, files[1].name)
        expect(reindex).to_be_enabled(timeout=LONG)
        reindex.click()
        page.get_by_text("Re-indexing 1 document(s) in the background.").wait_for(timeout=LONG)
        _settle(page)
        expect(_chips(page)).to_have_count(0, timeout=LONG)
        page.get_by_text(f"re-index {files[1].name}: 1 indexed").wait_for(timeout=LONG)
        _settle(page)
        _choose(page, files[2].name)
        page.get_by_test_id("stPopover").filter(has_text="Delete").get_by_role("button").click()
        page.get_by_role("button", name="Yes, delete").click()
        page.get_by_text(f"Deleted {files[2].name}").wait_for(timeout=LONG)
        _settle(page)
        expect(_chips(page)).to_have_count(0, timeout=LONG)
        expect(reindex).to_be_disabled(timeout=LONG)
        _shot(page, tmp_path / "after-delete.png", 1800)
        _choose(page, files[3].name)
        expect(reindex).to_be_enabled(timeout=LONG)
        browser.close()
