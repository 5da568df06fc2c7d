"""The first seconds of a fresh app in Chromium: only the app's own navigation, deep links that open
their page, and the root URL that routes a newcomer to Documents.

Streamlit starts in its legacy multipage mode because the page files live in `pages/`; until
app.py has run once it listed those files (`app, benchmark, chat, common, documents`) and sent a
deep link through "Page not found". Only the very first visit of a new process takes that path,
so each check here starts its own app.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, LONG, running_app

pytestmark = pytest.mark.browser

FILE_LIST = ("common", "benchmark\nchat")  # Streamlit's automatic page list: file names, lower case


def watch_first_visit(tmp_path: Path, path: str, heading: str) -> tuple[str, list[str]]:
    """Open `path` as the first visitor of a new app; every text shown until `heading` appears."""
    from playwright.sync_api import sync_playwright

    (tmp_path / "data").mkdir()
    with running_app(tmp_path / "data") as (url, _), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{url}/{path}")
        seen: list[str] = []
        deadline = time.monotonic() + LONG / 1000
        while time.monotonic() < deadline:
            seen.append(page.inner_text("body"))
            if page.get_by_role("heading", name=heading).count():
                break
            page.wait_for_timeout(100)
        else:
            pytest.fail(f"{heading} did not open; last seen:\n{seen[-1]}")
        final = page.url.split("?")[0]  # Chat adds the collection and conversation to the address
        browser.close()
    return final.removeprefix(url), seen


@pytest.mark.parametrize("path, heading", [("chat", "Chat"), ("documents", "Documents"), ("benchmark", "Benchmark")])
def test_a_deep_link_opens_its_page_and_nothing_else(tmp_path, path, heading):
    final, seen = watch_first_visit(tmp_path, path, heading)
    assert final == f"/{path}"
    for text in seen:
        assert "Page not found" not in text and "does not seem to exist" not in text, text
        assert not any(entry in text for entry in FILE_LIST), f"Streamlit's file list was shown:\n{text}"


def test_the_root_url_takes_a_newcomer_to_documents(tmp_path):
    final, seen = watch_first_visit(tmp_path, "", "Documents")
    assert final == "/documents"
    for text in seen:
        assert "Page not found" not in text and not any(entry in text for entry in FILE_LIST), text
