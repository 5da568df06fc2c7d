"""Helpers shared by the test modules: ports, subprocess environments, waiting, and driving the
Streamlit app through `AppTest`. Fixtures built on them live in `tests/conftest.py`."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
TIMEOUT = 180  # seconds for one script run: the first loads the models, chat runs the LLM
PUMP = "At what pressure does the Zephyr pump operate?"
APP_VARIABLES = ("MILVUS_", "RAG_", "OPENAI_")  # prefixes of the app's settings


# Processes ---------------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_environ(**env: str) -> dict[str, str]:
    """The test runner's environment without any of the app's settings, plus `env`: for running the
    CLI or Streamlit as a subprocess that sees only what the test gives it."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(APP_VARIABLES)}
    environ.update(env)
    return environ


def until(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    """Wait until `predicate()` is true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


# The app through AppTest -----------------------------------------------------------------------


def app_environment(tmp_path_factory, start: bool = True, **env: str) -> Iterator:
    """A fresh data folder and environment for the app; yields the core the app will use.

    The app caches its `Rag` and job registry for the process: they are dropped before (so the
    app starts on this environment) and closed after. With `start=False` nothing is created
    (for settings the core refuses) and None is yielded.
    """
    from pages import common

    data = tmp_path_factory.mktemp("app-data")
    with pytest.MonkeyPatch.context() as mp:
        for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "RAG_LLM", "MILVUS_URI", "MILVUS_TOKEN", "RAG_COLLECTION"):
            mp.delenv(name, raising=False)
        mp.setenv("RAG_DATA_DIR", str(data))
        mp.setenv("RAG_MAX_NEW_TOKENS", "48")
        for name, value in env.items():
            mp.setenv(name, value)
        mp.chdir(tmp_path_factory.mktemp("cwd"))  # no stray `.env` from the working directory
        st.cache_resource.clear()
        if not start:
            yield None
            st.cache_resource.clear()
            return
        rag = common.get_rag()
        try:
            yield rag
        finally:
            common.get_jobs().close()
            rag.close()
            st.cache_resource.clear()


def new_app(collection: str | None = None) -> AppTest:
    """A new browser session of app.py; with `collection`, that collection is the active one
    (as if picked in the sidebar), so a test can work in a collection of its own."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    if collection is not None:
        at.session_state["collection"] = collection
    return at


def open_page(at: AppTest, page: str) -> AppTest:
    """Go to a page as the navigation does (a run first: switch_page needs the registered pages)."""
    return at.run().switch_page(f"pages/{page}.py").run()


def upload(at: AppTest, files: dict[str, bytes]) -> str:
    """Choose files in the uploader, submit, and wait for the background job to finish.

    Returns what the page said right after the submit (messages shown once)."""
    from pages import common

    before = {j.id for j in common.get_jobs().jobs()}
    at.file_uploader[0].set_value([(name, data, "application/octet-stream") for name, data in files.items()])
    at.button(key="FormSubmitter:upload-Upload and index").click().run()
    assert not at.exception, at.exception
    said = plain(texts(at))
    for job in common.get_jobs().jobs():
        if job.id not in before:
            common.get_jobs().wait(job.id, 120)
    at.run()
    return said


def texts(at: AppTest) -> str:
    """Everything written on the page, for `in` checks."""
    parts = [e.value for kind in ("markdown", "caption", "info", "warning", "error", "success", "text", "title") for e in getattr(at, kind)]
    parts += [e.label for e in at.expander]
    return "\n".join(str(p) for p in parts)


def plain(text: str) -> str:
    """Text as shown: the app backslash-escapes markdown in names and messages."""
    return text.replace("\\", "")


def button(at: AppTest, label: str):
    """The (first) button with this label."""
    return at.button[[b.label for b in at.button].index(label)]


def library_frame(at: AppTest):
    frames = at.dataframe
    assert frames, "the library table is shown"
    value = frames[-1].value  # after any large job's file table
    return value.data if hasattr(value, "data") else value  # a Styler, or a DataFrame
