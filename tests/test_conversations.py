"""Saved conversations in a real Milvus Lite file: written as they happen, read back whole."""

from __future__ import annotations

import json

import pytest

from rag.answering.events import Citation
from rag.config import Settings
from rag.conversations import PART_CHARS, Feedback, SavedTurn, to_markdown
from rag.errors import ConversationNotFound, CoreClosed, RagError
from rag.service import Rag


def turn(question: str, answer: str = "An answer [1].", text: str = "A passage.") -> SavedTurn:
    source = Citation(file="report.docx", page=2, score=0.5, text=text, doc_id="report.docx", page_label="ii",
                      highlights=((0, 2),))
    return SavedTurn(question=question, answer=answer, sources=[source], top_k=4)


def test_a_conversation_is_saved_turn_by_turn_and_read_back(rag: Rag, collection: str):
    info = rag.conversations.new(collection, top_k=4)
    assert info.title == "New chat" and info.turns == 0
    rag.conversations.save_turn(info, turn("What is   the Aurora\nbudget?"))
    rag.conversations.save_turn(info, turn("And the deadline?", answer="March [1]."))
    saved = rag.conversations.get(info.id)
    assert saved.info.title == "What is the Aurora budget?" and saved.info.turns == 2
    assert [t.question for t in saved.turns] == ["What is   the Aurora\nbudget?", "And the deadline?"]
    source = saved.turns[1].sources[0]
    assert (source.file, source.page, source.page_label, source.doc_id) == ("report.docx", 2, "ii", "report.docx")
    assert source.highlights == ((0, 2),) and saved.turns[1].answer == "March [1]."
    assert [c.id for c in rag.conversations.list(collection)] == [info.id]


def test_the_list_is_per_collection_and_newest_first(rag: Rag, collection: str):
    first = rag.conversations.new(collection)
    second = rag.conversations.new(collection)
    other = rag.conversations.new(collection + "x")
    rag.conversations.save_turn(first, turn("later question"))  # the most recent answer comes first
    listed = [c.id for c in rag.conversations.list(collection)]
    assert listed[0] == first.id and set(listed) == {first.id, second.id}
    assert other.id not in listed and other.id in [c.id for c in rag.conversations.list()]


def test_rename_delete_and_feedback(rag: Rag, collection: str):
    info = rag.conversations.new(collection)
    rag.conversations.save_turn(info, turn("q1"))
    assert rag.conversations.rename(info.id, "  Budget   talk ").title == "Budget talk"
    with pytest.raises(RagError, match="cannot be empty"):
        rag.conversations.rename(info.id, "   ")
    rag.conversations.feedback(info.id, 0, Feedback(0, " wrong page "))
    assert rag.conversations.get(info.id).turns[0].feedback.comment == "wrong page"
    rag.conversations.feedback(info.id, 0, Feedback(1))
    assert rag.conversations.get(info.id).turns[0].feedback.score == 1
    with pytest.raises(RagError, match="no turn 5"):
        rag.conversations.feedback(info.id, 4, Feedback(1))
    rag.conversations.delete(info.id)
    assert info.id not in [c.id for c in rag.conversations.list(collection)]
    with pytest.raises(ConversationNotFound):
        rag.conversations.get(info.id)


@pytest.mark.parametrize("bad", ["", "nope", "0" * 31 + '"', "../../etc", 'a" or seq == -1 or id == "b', "f" * 33])
def test_a_tampered_or_unknown_id_is_refused(rag: Rag, bad: str):
    with pytest.raises(ConversationNotFound):
        rag.conversations.get(bad)
    with pytest.raises(ConversationNotFound):
        rag.conversations.get("0" * 32)


def test_a_long_answer_with_long_non_ascii_sources_is_kept_whole(rag: Rag, collection: str):
    info = rag.conversations.new(collection)
    long_text = "Ünïcödé passage — 東京 " * 2000  # ~44k characters, ~3x that in escaped JSON
    answer = "word " * 30_000
    rag.conversations.save_turn(info, turn("long", answer=answer, text=long_text))
    rag.conversations.feedback(info.id, 0, Feedback(1, "ok"))
    saved = rag.conversations.get(info.id).turns[0]
    assert saved.answer == answer and saved.sources[0].text == long_text and saved.feedback.score == 1
    assert len(json.dumps(saved.to_json(), ensure_ascii=True)) > 3 * PART_CHARS


def test_markdown_export_numbers_the_sources(rag: Rag, collection: str):
    info = rag.conversations.new(collection)
    rag.conversations.save_turn(info, turn("What is the budget?", text="The budget is\n3.5 million."))
    rag.conversations.feedback(info.id, 0, Feedback(0, "too short"))
    text = to_markdown(rag.conversations.get(info.id))
    assert text.startswith("# What is the budget?\n")
    assert "## 1. What is the budget?\n\nAn answer [1].\n" in text
    assert "1. **report.docx**, page 2\n\n   > The budget is 3.5 million." in text
    assert "Feedback: 👎: too short" in text


def test_a_question_saved_before_its_answer_is_replaced_by_the_whole_turn(rag: Rag, collection: str):
    info = rag.conversations.new(collection)
    seq = rag.conversations.save_turn(info, SavedTurn(question="q", stopped=True))
    long = turn("q", answer="a" * (3 * PART_CHARS))
    assert rag.conversations.save_turn(info, long, seq) == seq == 0
    assert rag.conversations.get(info.id).turns[0].answer == long.answer
    rag.conversations.save_turn(info, turn("q", answer="short"), seq)  # fewer parts: none of the old ones is left
    [saved] = rag.conversations.get(info.id).turns
    assert saved.answer == "short" and info.turns == 1
    with pytest.raises(RagError, match="no turn 3"):
        rag.conversations.save_turn(info, turn("q"), 2)


def test_a_closed_core_refuses_every_call_with_a_clear_error(tmp_path):
    core = Rag(Settings(RAG_DATA_DIR=tmp_path, RAG_LLM="none", _env_file=None))
    assert core.collections() == []
    core.close()
    for call in (core.collections, core.documents, core.conversations.list, core.chat_session):
        with pytest.raises(CoreClosed, match="this Rag was closed: create a new one to go on"):
            call()
