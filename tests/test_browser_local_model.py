"""The app in Chromium with `RAG_LLM=local` while the model process dies under an answer.

The model runs in a child process of the app (llama.cpp's server). Here it is frozen with a
question in hand, another user keeps using the app meanwhile, then it is killed: the answer
says so and keeps its sources, and the next question is answered by the restarted model.
"""

from __future__ import annotations

import os
import re
import signal
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from tests.docs import make_corpus
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, LONG, _open, _settle, _shot, _upload, running_app

pytestmark = [pytest.mark.browser, pytest.mark.llm]

CAFETERIA = "When does the staff cafeteria open?"


def model_pid(app_url: str) -> int:
    """The local model process that the app on `app_url` started (a child of that app)."""
    port = str(urlsplit(app_url).port)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
            parent = (proc / "stat").read_text().rsplit(")", 1)[1].split()[1]
            parent_args = Path(f"/proc/{parent}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"rag.models.local_model_server" in args and port.encode() in parent_args:
            return int(proc.name)
    raise AssertionError(f"no local model process under the app on port {port}")


def send(page, question: str) -> None:
    box = page.get_by_test_id("stChatInputTextArea")
    expect(box).to_be_enabled(timeout=LONG)
    box.fill(question)
    box.press("Enter")


def answers(page):
    return page.get_by_test_id("stChatMessage").filter(has=page.get_by_test_id("stChatMessageAvatarAssistant"))


def test_the_app_keeps_serving_while_the_local_model_dies(tmp_path):
    from playwright.sync_api import sync_playwright

    corpus = make_corpus(tmp_path / "corpus")
    (tmp_path / "data").mkdir()
    with running_app(tmp_path / "data", RAG_LLM="local", RAG_MAX_NEW_TOKENS="60") as (url, _), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        asker = browser.new_page(viewport={"width": 1400, "height": 1000})
        other = browser.new_page(viewport={"width": 1400, "height": 1000})  # another user's session
        for tab in (asker, other):
            tab.set_default_timeout(30_000)
        _upload(asker, url, corpus["plain.txt"])
        _open(asker, "Chat")
        send(asker, CAFETERIA)  # the first question starts the model
        answers(asker).nth(0).get_by_text(re.compile(r"^Sources · ")).wait_for(timeout=LONG)
        _settle(asker)

        pid = model_pid(url)
        os.kill(pid, signal.SIGSTOP)
        send(asker, "What does the cafeteria serve?")
        # The other user browses the library while the question waits on the frozen model.
        other.goto(f"{url}/documents")
        expect(other.get_by_test_id("stDataFrame")).to_contain_text("plain.txt", timeout=LONG)
        killer = threading.Timer(1.0, os.kill, (pid, signal.SIGKILL))
        killer.start()
        lost = answers(asker).nth(1)
        expect(lost).to_contain_text("the local model stopped: it was killed by SIGKILL; it is being restarted",
                                     timeout=LONG)
        expect(lost.get_by_text(re.compile(r"^Sources · "))).to_be_visible()
        killer.join()
        _settle(asker)
        _shot(asker, "local-model-restarted.png")

        send(asker, CAFETERIA)
        again = answers(asker).nth(2)
        again.get_by_text(re.compile(r"^Sources · ")).wait_for(timeout=LONG)
        _settle(asker)
        expect(again).not_to_contain_text("No generated answer")
        assert model_pid(url) != pid, "a new model process answered"
        other.reload()
        expect(other.get_by_test_id("stDataFrame")).to_contain_text("plain.txt", timeout=LONG)
        browser.close()
