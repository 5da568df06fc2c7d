"""Feedback on one answer (Chat page): thumbs and a comment, saved with it; and, for a wrong
answer, a test question for `rag eval` made from it (the Benchmark page runs and downloads them)."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from pages import formatting
from pages.transcript import Conversation, Turn
from rag.conversations import Feedback
from rag.errors import RagError
from rag.status import DocStatus

NOT_IN_DOCUMENTS = "(none: nothing in my documents answers it)"
MAX_LISTED_FILES = 2000  # the file picker filters as one types; a larger library is named by its cited files first


def show(rag, collection: str, conv: Conversation, turn: Turn, save: Callable[[Conversation], None]) -> None:
    """Thumbs up or down, and a comment once rated: saved with the answer."""
    if turn.refused:
        return
    key = f"{turn.id}-feedback"
    if f"{key}-score" not in st.session_state and turn.feedback is not None:
        st.session_state[f"{key}-score"] = turn.feedback.score
        st.session_state[f"{key}-comment"] = turn.feedback.comment
    st.feedback("thumbs", key=f"{key}-score", on_change=rate, args=(conv, turn, key, save),
                disabled=bool(conv.read_only))
    score = st.session_state.get(f"{key}-score")
    if score is None:
        return
    st.text_input("Comment (optional)", key=f"{key}-comment", on_change=rate, args=(conv, turn, key, save),
                  placeholder="A comment on this answer (optional)", label_visibility="collapsed",
                  disabled=bool(conv.read_only))
    if score == 0 and not conv.read_only and st.toggle("Make it a test question", key=f"{key}-test",
                                                       help="Name what should have answered it; the Benchmark "
                                                            "page's Retrieval quality part then checks every search against it."):
        test_question_form(rag, collection, conv, turn, key)


def rate(conv: Conversation, turn: Turn, key: str, save: Callable[[Conversation], None]) -> None:
    """Thumbs and comment of one answer, saved with it (a callback)."""
    score = st.session_state.get(f"{key}-score")
    comment = st.session_state.get(f"{key}-comment", "") if score is not None else ""
    turn.feedback = Feedback(score, comment) if score is not None else None
    turn.dirty = True
    save(conv)


def test_question_form(rag, collection: str, conv: Conversation, turn: Turn, key: str) -> None:
    if turn.seq is None or conv.info is None:
        st.caption("This answer is not saved yet: it can become a test question once it is.")
        return
    try:
        names = sorted(d.file_name for d in rag.documents(collection) if d.status is DocStatus.INDEXED)
    except RagError as exc:
        st.error(f"The library cannot be read now: {formatting.escape_markdown(str(exc))}", icon=":material/error:")
        return
    cited = list(dict.fromkeys(c.file for c in turn.citations if c.file in names))
    files = [NOT_IN_DOCUMENTS, *cited, *[n for n in names[:MAX_LISTED_FILES] if n not in cited]]
    with st.form(f"{key}-test-form", border=True):
        question = st.text_input("Question", value=turn.question, key=f"{key}-test-question")
        file = st.selectbox("The file that answers it", files, index=1 if cited else 0, key=f"{key}-test-file",
                            help="Choose the first option when the answer should have been \"not in your documents\".")
        cols = st.columns([1, 3])
        page = cols[0].number_input("Page (0: any)", min_value=0, max_value=100_000, step=1, key=f"{key}-test-page")
        evidence = cols[1].text_input("A phrase the right passage contains (optional)", key=f"{key}-test-evidence",
                                      max_chars=1000)
        if not st.form_submit_button("Save as a test question", icon=":material/fact_check:"):
            return
    row = {"question": question, "file": None if file == NOT_IN_DOCUMENTS else file,
           "page": int(page) or None, "evidence": evidence}
    try:
        rag.conversations.save_question(collection, row, conv.info.id, turn.seq)
        count = len(rag.conversations.questions(collection))
    except RagError as exc:
        st.error(formatting.escape_markdown(str(exc)), icon=":material/error:")
        return
    st.success(f"Saved. This collection has {count} test question{'s' if count != 1 else ''} made from feedback: "
               "run or download them on the Benchmark page, under Retrieval quality.", icon=":material/check:")
