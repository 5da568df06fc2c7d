"""Saved conversations on the Chat page (AppTest, real Milvus Lite, real model, real files)."""

from __future__ import annotations

import pytest
from pymilvus import DataType, MilvusClient
from streamlit.testing.v1 import AppTest

from rag.conversations import CONVERSATIONS, SavedTurn
from rag.loop import shared_loop
from tests.helpers import PUMP, button, new_app, open_page, plain

BUDGET = "What is the Aurora project budget?"


def open_chat(**params: str) -> AppTest:
    """The Chat page in a new session, then at an address (as a reload or a bookmarked link opens it)."""
    at = open_page(new_app(), "chat")
    if params:
        for name, value in params.items():
            at.query_params[name] = value
        at.run()
    assert not at.exception, at.exception
    return at


def ask(at: AppTest, question: str) -> AppTest:
    at.chat_input[0].set_value(question).run()
    assert not at.exception, at.exception
    return at


def current(at: AppTest):
    return at.session_state["chats"]["documents"]


def test_the_address_names_the_conversation_and_reopens_it_with_its_sources(app_rag, app_indexed):
    at = ask(open_chat(), PUMP)
    conv = current(at)
    assert at.query_params["c"] == conv.id and at.query_params["collection"] == "documents"
    saved = app_rag.conversations.get(conv.id)
    assert saved.info.title == PUMP and saved.turns[0].sources[0].file == "manual.pdf"

    again = open_chat(c=conv.id, collection="documents")  # a reload: a new session, the same address
    assert [m.name for m in again.chat_message] == ["user", "assistant"]
    assert plain(again.chat_message[1].expander[0].label).startswith("[1] manual.pdf · page 2")
    assert current(again).id == conv.id and not again.warning
    ask(again, "And how often must its seals be replaced?")  # the memory came back: a follow-up
    assert any("also searched for" in c.value for c in again.chat_message[-1].caption)
    assert app_rag.conversations.get(conv.id).info.turns == 2


@pytest.mark.parametrize("bad", ["0" * 32, "x'); drop", "../../etc/passwd"])
def test_an_unknown_or_tampered_id_says_so_and_opens_a_new_chat(app_rag, app_indexed, bad):
    at = open_chat(c=bad, collection="documents")
    assert any("A new chat is open" in plain(w.value) for w in at.warning)
    assert not at.chat_message and "c" not in at.query_params
    ask(at, PUMP)
    assert at.chat_message[-1].name == "assistant" and at.query_params["c"] == current(at).id


def test_new_chat_keeps_the_old_one_listed_and_it_reopens(app_rag, app_indexed):
    at = ask(open_chat(), BUDGET)
    old = current(at).id
    button(at, "New chat").click().run()
    assert not at.chat_message and "c" not in at.query_params
    [link] = [link for link in at.get("page_link") if f"c={old}" in link.proto.page or old in str(link.proto)]
    assert plain(link.proto.label).startswith(BUDGET)
    at.query_params["c"] = old  # following the link: a change of address
    at.run()
    assert current(at).id == old and at.query_params["c"] == old
    assert plain(at.chat_message[1].expander[0].label).startswith("[1] report.docx")


def test_rename_and_delete_with_a_confirmation(app_rag, app_indexed):
    at = ask(open_chat(), BUDGET)
    conv_id = current(at).id
    at.text_input(key="conversation_title").set_value("Budget questions").run()
    assert app_rag.conversations.get(conv_id).info.title == "Budget questions"
    button(at, "Delete this conversation").click().run()
    assert app_rag.conversations.get(conv_id), "nothing is deleted before the confirmation"
    at.button(key="delete_cancelled").click().run()
    button(at, "Delete this conversation").click().run()
    at.button(key="delete_confirmed").click().run()
    assert conv_id not in [c.id for c in app_rag.conversations.list("documents")]
    assert not at.chat_message and current(at).id != conv_id


def test_feedback_is_stored_with_the_answer(app_rag, app_indexed):
    at = ask(open_chat(), PUMP)
    conv = current(at)
    key = f"{conv.turns[1].id}-feedback"
    at.feedback(key=f"{key}-score").set_value(0).run()
    assert app_rag.conversations.get(conv.id).turns[0].feedback.score == 0
    at.text_input(key=f"{key}-comment").set_value("wrong page").run()
    saved = app_rag.conversations.get(conv.id).turns[0].feedback
    assert (saved.score, saved.comment) == (0, "wrong page")
    reopened = open_chat(c=conv.id, collection="documents")
    assert reopened.feedback(key=f"{current(reopened).turns[1].id}-feedback-score").value == 0


def test_downloads_offer_markdown_and_json(app_rag, app_indexed):
    at = ask(open_chat(), PUMP)
    labels = [b.label for b in at.get("download_button")]
    assert "Markdown" in labels and "JSON" in labels


def test_an_unavailable_store_loses_nothing(app_rag, app_indexed):
    at = ask(open_chat(), PUMP)
    conv_id = current(at).id
    loop = shared_loop()
    client = loop.run(app_rag.parts.aopen_store()).client
    # The store breaks under the app: its collection replaced by one that refuses every write.
    loop.run(client.drop_collection(CONVERSATIONS))
    schema = MilvusClient.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vec", DataType.FLOAT_VECTOR, dim=2)
    loop.run(client.create_collection(CONVERSATIONS, schema=schema))
    ask(at, "And how often must its seals be replaced?")
    assert any("Not saved yet" in plain(w.value) for w in at.warning), "said clearly"
    assert [m.name for m in at.chat_message] == ["user", "assistant"] * 2, "the chat still works"
    loop.run(client.drop_collection(CONVERSATIONS))  # repaired: the next write makes it again
    at.run()  # pymilvus keeps the broken collection's schema until a call fails with it: this one
    at.run()  # and the next run writes what is pending
    assert not any("Not saved yet" in plain(w.value) for w in at.warning)
    saved = app_rag.conversations.get(conv_id)
    assert [t.question for t in saved.turns][-1] == "And how often must its seals be replaced?"


def test_a_conversation_of_a_deleted_collection_opens_read_only(app_rag, app_indexed):
    app_rag.create_collection("gone")
    info = app_rag.conversations.new("gone")
    app_rag.conversations.save_turn(info, SavedTurn(question="What was in it?", answer="Something [1]."))
    loop = shared_loop()
    loop.run(loop.run(app_rag.parts.aopen_store()).adrop_collection("gone"))  # the app cannot drop a collection; another client can
    at = open_chat(c=info.id, collection="gone")
    assert any("no longer exists" in plain(i.value) for i in at.info)
    assert [m.name for m in at.chat_message] == ["user", "assistant"] and at.chat_input[0].disabled
    button(at, "New chat").click().run()
    assert not at.chat_input[0].disabled and not at.chat_message
    assert app_rag.conversations.get(info.id).turns[0].answer == "Something [1]."


def test_the_address_comes_back_after_a_visit_to_another_page(app_rag, app_indexed):
    at = ask(open_chat(), PUMP)
    conv_id = current(at).id
    at.switch_page("pages/documents.py").run()
    at.query_params.clear()  # the navigation leaves the page's parameters behind
    at.switch_page("pages/chat.py").run()
    assert current(at).id == conv_id and at.query_params["c"] == conv_id


def test_a_wrong_answer_becomes_a_test_question_that_the_benchmark_page_runs(app_rag, app_indexed):
    at = ask(open_chat(), PUMP)
    conv = current(at)
    key = f"{conv.turns[1].id}-feedback"
    at.feedback(key=f"{key}-score").set_value(0).run()
    at.toggle(key=f"{key}-test").set_value(True).run()
    assert not at.exception, at.exception
    assert at.selectbox(key=f"{key}-test-file").value == "manual.pdf", "the cited file is offered first"
    # Bad input: an empty question is refused with its reason, and nothing is saved.
    at.text_input(key=f"{key}-test-question").set_value("  ")
    button(at, "Save as a test question").click().run()
    assert any("non-empty" in plain(e.value) for e in at.error), [e.value for e in at.error]
    assert app_rag.conversations.questions("documents") == []
    at.text_input(key=f"{key}-test-question").set_value(PUMP)
    at.number_input(key=f"{key}-test-page").set_value(2)
    at.text_input(key=f"{key}-test-evidence").set_value("42 bar")
    button(at, "Save as a test question").click().run()
    assert any("1 test question made from feedback" in plain(s.value) for s in at.success)
    origin, question = app_rag.conversations.questions("documents")[0]
    assert (origin, question.question, question.file, question.page, question.evidence) == (
        f"{conv.id}/0", PUMP, "manual.pdf", 2, "42 bar")
    app_rag.conversations.delete(conv.id)
    assert len(app_rag.conversations.questions("documents")) == 1, "the test outlives its chat"

    bench = open_page(new_app(), "benchmark")
    assert any("1 test question made from feedback" in plain(c.value) for c in bench.caption)
    bench.multiselect(key="quality_modes").set_value(["hybrid"])
    bench.multiselect(key="quality_ks").set_value([5]).run()
    button(bench, "Evaluate retrieval").click().run()
    assert not bench.exception and not bench.error, bench.error
    table = next(frame.value for frame in bench.dataframe if "mode" in frame.value.columns)
    assert list(table["hit@k"]) == [1.0], "the right page of manual.pdf is found"
    bench.multiselect(key="feedback_remove").set_value([origin]).run()
    button(bench, "Remove 1").click().run()
    assert app_rag.conversations.questions("documents") == []


def test_a_test_question_must_name_a_file_of_the_collection(app_rag, app_indexed):
    from rag.errors import RagError
    from rag.evaluation import parse_questions, questions_file

    info = app_rag.conversations.new("documents")
    for row, reason in (({"question": "pump?", "file": "ghost.pdf"}, "does not hold: ghost.pdf"),
                        ({"question": "pump?", "file": "manual.pdf", "page": 0}, "page must be 1 or more"),
                        ({"question": "pump?", "file": "manual.pdf", "evidence": "x" * 1001}, "evidence phrase")):
        with pytest.raises(RagError, match=reason):
            app_rag.conversations.save_question("documents", row, info.id, 0)
    app_rag.conversations.save_question("documents", {"question": "Who won the 1998 cup?", "file": None}, info.id, 0)
    app_rag.conversations.save_question("documents", {"question": "Who won the 1998 cup final?", "file": None}, info.id, 0)
    saved = [q for _, q in app_rag.conversations.questions("documents")]
    assert [q.question for q in saved] == ["Who won the 1998 cup final?"], "saved again from one answer: replaced"
    assert parse_questions(questions_file(saved)) == saved, "the download is a question file `rag eval` reads"
    app_rag.conversations.delete_question("documents", f"{info.id}/0")
