"""The Chat page through `AppTest`, on the real core and a temporary Milvus Lite: answers with
their sources, history, refused questions, a source in its document, an unreachable LLM."""

from __future__ import annotations

import html
import re

import pytest

from rag.ingestion.uploads import find_upload
from tests.docs import FACTS
from tests.helpers import PUMP, app_environment, button, free_port, new_app, open_page, plain


def test_chat_retrieval_only_cites_file_and_page(app_indexed):
    at = open_page(new_app(), "chat")
    at.toggle(key="retrieve_only").set_value(True).run()
    at.chat_input[0].set_value(PUMP).run()
    assert not at.exception and not at.error
    answer = at.chat_message[-1]
    assert answer.name == "assistant"
    first = answer.expander[0]
    assert plain(first.label).startswith("[1] manual.pdf · page 2")
    [passage] = first.get("html")
    assert f"<mark>{FACTS['manual.pdf']}" in passage.proto.body, "the answering sentence is marked"
    assert "Retrieval only" in answer.markdown[0].value

    # Several settings changed between two questions: one line says so.
    at.toggle(key="retrieve_only").set_value(False).run()
    at.slider(key="top_k").set_value(2).run()
    at.toggle(key="retrieve_only").set_value(True).run()
    at.slider(key="top_k").set_value(1).run()
    assert sum("Settings changed" in c.value for c in at.caption) == 1
    at.chat_input[0].set_value("Aurora project budget").run()
    assert len(at.chat_message[-1].expander) == 1
    assert sum("Settings changed" in c.value for c in at.caption) == 1


def test_chat_quotes_the_documents_and_keeps_history(app_indexed):
    at = open_page(new_app(), "chat")
    at.chat_input[0].set_value(PUMP).run()
    assert not at.exception and not at.error and not at.warning
    answer = at.chat_message[-1]
    assert plain(answer.markdown[0].value).startswith(FACTS["manual.pdf"]), "the answering sentence first"
    assert re.search(r"\. \[1\]", plain(answer.markdown[0].value)), "a quote with its source number"
    assert plain(answer.expander[0].label).startswith("[1] manual.pdf · page 2")

    at.chat_input[0].set_value("And how often must its seals be replaced?").run()
    assert [m.name for m in at.chat_message] == ["user", "assistant", "user", "assistant"]
    follow_up = at.chat_message[-1]
    assert any(plain(e.label)[4:].startswith("manual.pdf · page 3") for e in follow_up.expander), "the seals' page is cited"
    assert any("also searched for" in c.value and "Zephyr pump" in plain(c.value) for c in follow_up.caption)
    conversation = at.session_state["chats"]["documents"]
    assert [role for role, _ in conversation.session.history] == ["user", "assistant", "user", "assistant"]

    button(at, "New chat").click().run()
    assert len(at.chat_message) == 0 and at.session_state["chats"]["documents"].session.history == []
    assert any(PUMP in str(link.proto) for link in at.get("page_link")), "the old one stays listed"


@pytest.mark.parametrize("question, said", [
    ("   \n\t ", "The question is empty: type a question. Nothing was asked."),
    ("x" * 4001, "The question is 4,001 characters long; the limit is 4,000. Nothing was asked."),
])
def test_questions_the_core_refuses_stay_out_of_the_history(app_indexed, question, said):
    at = open_page(new_app(), "chat")
    at.toggle(key="retrieve_only").set_value(True).run()
    at.chat_input[0].set_value(question).run()
    assert not at.exception and not at.chat_message, "no bubble for a question that was not asked"
    assert [plain(w.value) for w in at.warning] == [said]
    assert at.chat_input[0].proto.max_chars == 0, "the browser takes any paste; the page says what the limit is"
    assert "up to 4,000 characters" in at.chat_input[0].proto.placeholder
    if len(question) > 4000:
        assert at.code[0].value == question, "a long text is kept, to shorten and send again"
    at.chat_input[0].set_value("Aurora project budget").run()
    assert [m.name for m in at.chat_message] == ["user", "assistant"] and not at.warning


def test_questions_are_shown_as_typed(app_indexed):
    at = open_page(new_app(), "chat")
    at.toggle(key="retrieve_only").set_value(True).run()
    typed = "What is **the** `budget`?\n[link](javascript:alert(1)) <b>x</b> & $5"
    at.chat_input[0].set_value(typed).run()
    [shown] = at.chat_message[0].get("html")
    assert shown.proto.body == f'<div class="typed-text" style="white-space: pre-wrap">{html.escape(typed)}</div>'
    assert not at.chat_message[0].markdown, "never parsed as markdown"


def test_a_source_opens_in_its_document(app_rag, app_indexed):
    """The cited PDF page drawn with the passage marked, its neighbours, the original to download;
    a Word passage in its surrounding lines; a damaged original says so and the answer stays."""
    at = open_page(new_app(), "chat")
    at.chat_input[0].set_value(PUMP).run()
    turn = at.session_state["chats"]["documents"].turns[-1]
    at.toggle(key=f"{turn.id}-view-0").set_value(True).run()
    assert not at.exception and not at.warning
    [image] = at.get("image")
    assert image.proto.imgs[0].caption == "Page 2 of 3 · the passage is marked"
    assert "Download the original" in [b.proto.label for b in at.get("download_button")]
    at.number_input(key=f"{turn.id}-view-0-page").set_value(3).run()
    assert at.get("image")[0].proto.imgs[0].caption == "Page 3 of 3", "the next page, unmarked"

    at.chat_input[0].set_value("Aurora project budget").run()
    turn = at.session_state["chats"]["documents"].turns[-1]
    assert turn.citations[0].file == "report.docx"
    at.toggle(key=f"{turn.id}-view-0").set_value(True).run()
    lines = [h.proto.body for h in at.get("html") if "source-lines" in h.proto.body]
    assert lines and html.escape(FACTS["report.docx"]) in lines[0] and "#fff3bf" in lines[0]

    upload_copy = find_upload(app_rag.settings, "documents", "report.docx")
    saved = upload_copy.read_bytes()
    upload_copy.write_bytes(b"not a docx any more")
    try:
        at.run()
        assert not at.exception
        assert any("cannot be read any more" in plain(w.value) for w in at.warning)
        assert plain(at.chat_message[-1].markdown[0].value).startswith(FACTS["report.docx"]), "the answer stays"
    finally:
        upload_copy.write_bytes(saved)


def test_a_question_the_documents_do_not_answer_is_declined_on_the_page(app_indexed):
    at = open_page(new_app(), "chat")
    at.chat_input[0].set_value("What is the population of Tokyo?").run()
    answer = at.chat_message[-1]
    assert [plain(i.value) for i in answer.info][0].startswith("Not in your documents")
    assert any("Closest passages" in c.value for c in answer.caption)
    assert not answer.markdown, "nothing is written as an answer"


@pytest.mark.quick
def test_answer_markup_is_escaped():
    from pages.formatting import escape_markdown, safe_markdown

    shown = safe_markdown("Costs $5 <img src=x onerror=alert(1)> ![t](http://x/y.png)")
    assert "<img" not in shown and "&lt;img" in shown and r"\$5" in shown and r"!\[t]" in shown
    assert escape_markdown("*a*_b_[c](d).md") == r"\*a\*\_b\_\[c\]\(d\)\.md"


# An LLM that cannot be reached ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def broken_llm_rag(tmp_path_factory, corpus, app_rag):
    # Depends on app_rag so its module-wide environment is torn down after this one.
    env = {"RAG_LLM": "openai", "OPENAI_BASE_URL": f"http://127.0.0.1:{free_port()}/v1", "RAG_LLM_TIMEOUT": "5"}
    for rag in app_environment(tmp_path_factory, **env):
        rag.ingest([corpus["manual.pdf"]], "documents")
        yield rag


def test_an_unreachable_llm_is_a_readable_warning_with_the_passages(broken_llm_rag):
    at = open_page(new_app(), "chat")
    assert any("(OpenAI-compatible)" in plain(c.value) for c in at.caption)
    at.chat_input[0].set_value(PUMP).run()
    assert not at.exception and not at.error
    answer = at.chat_message[-1]
    assert any("cannot reach the LLM server" in plain(w.value) for w in answer.warning)
    assert plain(answer.expander[0].label).startswith("[1] manual.pdf · page 2"), "passages are still shown"
