"""The optional password, through `AppTest`: nothing shown before it is given, a wrong one
refused, each session signing in on its own; and an open app without one."""

from __future__ import annotations

import pytest

from tests.helpers import app_environment, free_port, new_app, open_page, plain, texts


def test_without_a_password_set_the_app_is_open(app_rag):
    at = new_app().run()
    assert all(t.label != "Password" for t in at.text_input) and at.title[0].value.endswith(("Documents", "Chat"))
    assert at.selectbox(key="collection").value == "documents", "the sidebar is there"
    assert not any(b.label == "Sign out" for b in at.sidebar.button)


# The optional password ---------------------------------------------------------------------------

SECRET = "correct horse battery staple"
TOKEN = "root:tok-3d8e1a"
KEY = "sk-key-6c2b9f"


@pytest.fixture(scope="module")
def locked_app(tmp_path_factory):
    yield from app_environment(tmp_path_factory, RAG_APP_PASSWORD=SECRET, MILVUS_TOKEN=TOKEN, OPENAI_API_KEY=KEY,
                                OPENAI_BASE_URL=f"http://127.0.0.1:{free_port()}/v1")


def test_with_a_password_nothing_is_shown_before_it_is_given(locked_app):
    at = new_app().run()
    assert not at.exception
    assert [t.label for t in at.text_input] == ["Password"]
    assert not at.sidebar.children, "no collection, Milvus or model details before signing in"
    assert "Knowledge base" not in texts(at) and not at.file_uploader and not at.chat_input
    at.switch_page("pages/documents.py").run()  # a page's URL does not get round the form
    assert [t.label for t in at.text_input] == ["Password"] and not at.file_uploader and not at.sidebar.children


def test_a_wrong_password_is_refused_and_the_right_one_opens_the_app(locked_app):
    at = new_app().run()
    at.text_input[0].input("guess")
    at.button[0].click().run()
    assert [e.value for e in at.error] == ["Wrong password."]
    assert not at.sidebar.children and not at.file_uploader
    at.text_input[0].input(SECRET)
    at.button[0].click().run()
    assert not at.exception and not at.error
    assert at.title[0].value.endswith("Documents") and at.file_uploader, "signed in: the app itself"
    for page in ("documents", "benchmark", "chat"):
        shown = texts(open_page(at, page)) + "\n".join(m.value for m in at.sidebar.markdown)
        assert "OpenAI-compatible" in plain(shown) and not at.exception
        assert SECRET not in shown and TOKEN not in shown and KEY not in shown and "tok-3d8e1a" not in shown
    [sign_out] = [b for b in at.sidebar.button if b.label == "Sign out"]
    sign_out.click().run()
    assert [t.label for t in at.text_input] == ["Password"] and not at.file_uploader


def test_each_session_signs_in_on_its_own(locked_app):
    first = new_app().run()
    first.text_input[0].input(SECRET)
    first.button[0].click().run()
    assert first.file_uploader
    second = new_app().run()
    assert [t.label for t in second.text_input] == ["Password"] and not second.file_uploader
