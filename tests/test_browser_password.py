"""The optional app password in a real Chromium: nothing but the sign-in form, by any URL,
until the password is given; each browser session signs in on its own."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.helpers import ROOT
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, _settle, running_app

pytestmark = pytest.mark.browser

PASSWORD = "tide-lantern-4182"
SHOTS = Path(os.environ.get("RAG_TEST_SHOTS", ROOT / "tests" / "artifacts"))


@pytest.fixture(scope="module")
def locked_server(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    with running_app(tmp_path_factory.mktemp("locked-data"), RAG_APP_PASSWORD=PASSWORD) as (url, log):
        yield url, log


def _sign_in_form_only(tab) -> None:
    expect(tab.get_by_label("Password", exact=True)).to_be_visible()
    expect(tab.get_by_role("heading", name="Documents")).to_have_count(0)
    expect(tab.get_by_text("Knowledge base")).to_have_count(0)
    expect(tab.get_by_test_id("stFileUploader")).to_have_count(0)


def test_the_app_asks_for_the_password_first(locked_server):
    from playwright.sync_api import sync_playwright

    url, log = locked_server
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        first = browser.new_context(viewport={"width": 1200, "height": 800}).new_page()
        first.set_default_timeout(60_000)
        first.goto(f"{url}/documents")  # a page URL does not get round the form
        _settle(first)
        _sign_in_form_only(first)
        SHOTS.mkdir(parents=True, exist_ok=True)
        first.screenshot(path=str(SHOTS / "sign-in.png"))

        first.get_by_label("Password", exact=True).fill("wrong guess")
        first.get_by_label("Password", exact=True).press("Enter")
        expect(first.get_by_text("Wrong password.")).to_be_visible()
        _sign_in_form_only(first)

        first.get_by_label("Password", exact=True).fill(PASSWORD)
        first.get_by_role("button", name="Sign in").click()
        expect(first.get_by_role("heading", name="Documents")).to_be_visible(timeout=120_000)
        expect(first.get_by_test_id("stFileUploader")).to_be_visible()
        _settle(first)

        second = browser.new_context().new_page()  # another person: signs in on their own
        second.goto(f"{url}/chat")
        _settle(second)
        _sign_in_form_only(second)

        first.get_by_role("button", name="Sign out").click()
        _settle(first)
        _sign_in_form_only(first)
        browser.close()
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]
    assert PASSWORD not in text and "wrong guess" not in text, "neither the password nor an attempt is logged"
    assert "a wrong app password was entered" in text
