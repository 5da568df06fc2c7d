"""Saved conversations in a real Chromium: reload, New chat and the list, export, two tabs, a restart.

The documents are indexed with the CLI first (same Milvus Lite file, given in MILVUS_URI), then the
app is started on them; at the end it is stopped and started again on the same file.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.docs import make_corpus
from tests.helpers import ROOT, clean_environ
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, LONG, PUMP, _ask, _settle, running_app

pytestmark = pytest.mark.browser

BUDGET = "What is the Aurora project budget?"


def _ingest(data: Path, *files: Path) -> None:
    environ = clean_environ(RAG_DATA_DIR=str(data), MILVUS_URI=str(data / "app.db"))
    result = subprocess.run([sys.executable, "-m", "rag", "ingest", *map(str, files)], cwd=ROOT, env=environ,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr


def _chat(page, url: str) -> None:
    page.goto(url)
    page.get_by_role("heading", name="Chat").wait_for(timeout=LONG)
    _settle(page)


def _conversation_id(page) -> str:
    match = re.search(r"[?&]c=([0-9a-f]{32})", page.url)
    assert match, page.url
    return match.group(1)


def _shows(page, question: str, source: str) -> None:
    """The page shows this conversation: the question, its answer and its first source."""
    messages = page.get_by_test_id("stChatMessage")
    expect(messages.first).to_contain_text(question, timeout=LONG)
    expect(messages.nth(1).get_by_test_id("stExpander").first).to_contain_text(f"[1] {source}")


def _menu(page):
    """The Conversations popover, opened (a click on an open one would close it)."""
    body = page.get_by_test_id("stPopoverBody").filter(has_text="newest first")
    if not body.is_visible():
        page.get_by_test_id("stPopover").filter(has_text="Conversations").get_by_role("button").first.click()
    body.wait_for()
    return body


def test_conversations_survive_reloads_tabs_and_restarts(tmp_path):
    from playwright.sync_api import sync_playwright

    corpus = make_corpus(tmp_path / "corpus")
    data = tmp_path / "data"
    data.mkdir()
    _ingest(data, corpus["manual.pdf"], corpus["report.docx"])
    with running_app(data) as (url, _), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM,
                                     args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        page = context.new_page()
        page.set_default_timeout(30_000)
        _chat(page, f"{url}/chat")

        # A question survives a reload: the address names the conversation.
        _ask(page, PUMP)
        first = _conversation_id(page)
        assert "collection=documents" in page.url
        page.reload()
        _settle(page)
        _shows(page, PUMP, "manual.pdf")
        assert _conversation_id(page) == first

        # New chat: the old conversation is listed and reopens with its sources.
        page.get_by_role("button", name="New chat").click()
        _settle(page)
        expect(page.get_by_test_id("stChatMessage")).to_have_count(0)
        assert "c=" not in page.url
        _menu(page).get_by_test_id("stPageLink").filter(has_text=PUMP).click()
        _settle(page)
        _shows(page, PUMP, "manual.pdf")
        assert _conversation_id(page) == first

        # The export downloads.
        menu = _menu(page)
        with page.expect_download() as download:
            menu.get_by_role("button", name=re.compile("Markdown")).click()
        text = Path(download.value.path()).read_text(encoding="utf-8")
        assert f"## 1. {PUMP}" in text and "1. **manual.pdf**, page 2" in text, text
        page.keyboard.press("Escape")

        # Two tabs keep separate conversations.
        other = context.new_page()
        other.set_default_timeout(30_000)
        _chat(other, f"{url}/chat")
        expect(other.get_by_test_id("stChatMessage")).to_have_count(0)
        _ask(other, BUDGET)
        second = _conversation_id(other)
        assert second != first
        page.reload()
        _settle(page)
        _shows(page, PUMP, "manual.pdf")
        expect(page.get_by_test_id("stChatMessage")).to_have_count(2)
        addresses = {first: page.url, second: other.url}
        browser.close()

    # An app restart keeps them all.
    with running_app(data) as (url, _), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)
        for conv_id, question, source in ((first, PUMP, "manual.pdf"), (second, BUDGET, "report.docx")):
            _chat(page, re.sub(r"^http://127\.0\.0\.1:\d+", url, addresses[conv_id]))
            _shows(page, question, source)
            assert _conversation_id(page) == conv_id
        listed = _menu(page).get_by_test_id("stPageLink")
        expect(listed).to_have_count(2)
        browser.close()


def test_a_thumbs_down_becomes_a_test_question_run_on_the_benchmark_page(tmp_path):
    from playwright.sync_api import sync_playwright

    from tests.test_browser import _shot, _switch_on

    corpus = make_corpus(tmp_path / "corpus")
    data = tmp_path / "data"
    data.mkdir()
    _ingest(data, corpus["manual.pdf"], corpus["report.docx"])
    with running_app(data) as (url, _), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        page = context.new_page()
        page.set_default_timeout(30_000)
        _chat(page, f"{url}/chat")
        answer = _ask(page, PUMP)
        answer.get_by_test_id("stFeedbackButton").nth(1).click()  # thumbs down
        _settle(page)
        _switch_on(page, answer, "Make it a test question")
        form = answer.get_by_test_id("stForm")
        form.get_by_label("Page (0: any)").fill("2")
        form.get_by_label("A phrase the right passage contains (optional)").fill("42 bar")
        form.get_by_role("button", name="Save as a test question").click()
        _settle(page)
        expect(answer).to_contain_text("This collection has 1 test question made from feedback")
        _shot(page, "test-question.png")

        page.goto(f"{url}/benchmark")
        page.get_by_text("Retrieval quality").first.wait_for(timeout=LONG)
        _settle(page)
        expect(page.get_by_text("using the 1 test question made from feedback")).to_be_visible()
        page.get_by_text("Test questions from feedback · 1").click()
        with page.expect_download() as download:
            page.get_by_role("button", name=re.compile("Download as a question file")).click()
        saved = Path(download.value.path()).read_text(encoding="utf-8")
        browser.close()
    # The download is what `rag eval` reads: run it as a user would, on the app's own data.
    environ = clean_environ(RAG_DATA_DIR=str(data), MILVUS_URI=str(data / "app.db"))
    questions = tmp_path / "feedback-questions.json"
    questions.write_text(saved, encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "rag", "eval", str(questions), "--json"], cwd=ROOT, env=environ,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert '"hit@k": 1.0' in result.stdout, result.stdout
