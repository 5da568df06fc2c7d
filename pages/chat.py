"""Chat: questions about the active collection; answers stream in above their cited passages."""

from __future__ import annotations

from dataclasses import dataclass, field

import streamlit as st

from pages import common
from rag.answer import MAX_QUESTION_CHARS, Citation, Done, Failure, Sources, Token, clean_question
from rag.config import LLMMode
from rag.errors import RagError
from rag.service import ChatSession

common.require_shell()

rag = common.get_rag()
collection = common.active_collection()
no_llm = rag.settings.llm_mode is LLMMode.NONE


@dataclass
class Turn:
    """One message of the transcript, kept in the session so reruns can redraw it."""

    role: str  # user | assistant | notice
    text: str = ""
    citations: list[Citation] = field(default_factory=list)
    error: str = ""  # the LLM failed: readable message, passages kept
    refused: str = ""  # the question was refused (RagError): nothing else to show
    retrieve_only: bool = False
    searched: str = ""  # a follow-up's search with the conversation's context


@dataclass
class Conversation:
    """A collection's chat in this browser session: the core's memory plus what is on screen."""

    session: ChatSession
    options: tuple
    turns: list[Turn] = field(default_factory=list)


def conversation(top_k: int, retrieve_only: bool, mode: str = "hybrid", docs: tuple[str, ...] = ()) -> Conversation:
    """This session's conversation with the active collection; new settings restart its memory."""
    chats: dict[str, Conversation] = st.session_state.setdefault("chats", {})
    options = (top_k, retrieve_only, mode, docs)
    conv = chats.get(collection)
    if conv is None:
        conv = chats[collection] = Conversation(rag.chat_session(collection, top_k, retrieve_only, mode, docs), options)
    elif conv.options != options:
        conv.session, conv.options = rag.chat_session(collection, top_k, retrieve_only, mode, docs), options
        if conv.turns:
            mode = "retrieval only" if retrieve_only else "with the LLM"
            notice = Turn("notice", f"Settings changed (top-k {top_k}, {mode}): the next question starts a fresh memory.")
            if conv.turns[-1].role == "notice":  # several changes between two questions: one line
                conv.turns[-1] = notice
            else:
                conv.turns.append(notice)
    return conv


# Drawing ------------------------------------------------------------------------------------------


def citation_label(c: Citation) -> str:
    page = ""
    if c.page is not None:
        page = f" · page {c.page}"
        if c.page_label and c.page_label != str(c.page):
            page += f" (printed {common.escape_markdown(c.page_label)})"
    return f"{common.escape_markdown(c.file or 'unknown file')}{page} · {c.score_label}"


def show_sources(citations: list[Citation], expand_first: bool) -> None:
    if not citations:
        st.caption("No passages were found for this question.")
        return
    st.caption(f"Sources · {len(citations)} passage{'s' if len(citations) > 1 else ''}")
    for i, citation in enumerate(citations):
        with st.expander(citation_label(citation), expanded=expand_first and i == 0, icon=":material/description:"):
            st.text(citation.text)  # document text is data: never rendered as markdown or HTML


def show_turn(turn: Turn) -> None:
    if turn.role == "notice":
        st.caption(f":material/info: {turn.text}")
        return
    with st.chat_message(turn.role):
        if turn.role == "user":
            common.show_typed(turn.text)  # a question's markup is never rendered
        else:
            show_answer(turn)


def show_answer(turn: Turn) -> None:
    if turn.refused:
        st.error(common.escape_markdown(turn.refused), icon=":material/error:")
        return
    if turn.text:
        st.markdown(common.safe_markdown(turn.text))
    elif turn.retrieve_only and not turn.error:
        st.markdown("Retrieval only: the passages closest to your question are below.")
    if turn.error:
        st.warning(f"No generated answer: {common.escape_markdown(turn.error)}. The retrieved passages are below.",
                   icon=":material/warning:")
    if turn.searched:
        st.caption(f":material/manage_search: A follow-up: also searched for “{common.escape_markdown(turn.searched)}”")
    show_sources(turn.citations, expand_first=not turn.text)


def answer(conv: Conversation, question: str) -> None:
    """Stream one answer into the page, then keep it in the transcript."""
    user = Turn("user", question)
    conv.turns.append(user)
    show_turn(user)
    turn = Turn("assistant", retrieve_only=conv.options[1])
    with st.chat_message("assistant"):
        box = st.empty()
        box.caption(":material/search: Searching the documents…")
        try:
            for event in conv.session.stream_chat(question):
                if isinstance(event, Sources):
                    turn.citations = event.citations
                    if not turn.retrieve_only:
                        box.caption(":material/edit: Writing the answer…")
                elif isinstance(event, Token):
                    turn.text += event.text
                    box.markdown(common.safe_markdown(turn.text) + " ▌")
                elif isinstance(event, Failure):
                    turn.error = event.message
                elif isinstance(event, Done):
                    turn.text = event.answer.answer or turn.text.strip()
                    turn.error = event.answer.error or turn.error
                    turn.searched = event.answer.searched
        except RagError as exc:
            turn.refused = str(exc)
        with box.container():
            show_answer(turn)
    conv.turns.append(turn)


MODE_LABELS = {"hybrid": "Hybrid (words + meaning)", "dense": "Dense (meaning)", "keyword": "Keyword (BM25)"}


def pick_documents() -> tuple[str, ...]:
    """The documents to ask about (none chosen: the whole collection); searched through a Milvus filter."""
    names = [d.doc_id for d in common.indexed_documents(rag, collection)]
    key = f"scope_{collection}"
    if key in st.session_state:  # a document deleted meanwhile leaves the choice
        st.session_state[key] = [n for n in st.session_state[key] if n in names]
    picked = st.multiselect("Only these documents", names, key=key, placeholder="All documents",
                            help="Answers use passages from the chosen documents only.")
    return tuple(picked)


# The page ---------------------------------------------------------------------------------------

st.session_state.setdefault("top_k", min(rag.settings.top_k, 20))
st.session_state.setdefault("retrieve_only", no_llm)
st.session_state.setdefault("retrieval_mode", rag.settings.retrieval_mode)
st.title(":material/forum: Chat", anchor=False)
toolbar = st.container(horizontal=True, vertical_alignment="center")
new_chat = toolbar.button("New chat", icon=":material/add_comment:", help="Forget this conversation and start over")
with toolbar.popover("Settings", icon=":material/tune:"):
    top_k = st.slider("Passages per answer (top-k)", 1, 20, key="top_k",
                      help="How many passages are retrieved and given to the LLM.")
    retrieve_only = st.toggle("Retrieval only", key="retrieve_only", disabled=no_llm,
                              help="Skip the LLM: show the closest passages only. Fast, and never wrong about what the documents say.")
    modes = common.retrieval_modes(rag, collection)
    if st.session_state.retrieval_mode not in modes.modes:
        st.session_state.retrieval_mode = "dense"
    mode = st.selectbox("Search mode", modes.modes, key="retrieval_mode", format_func=MODE_LABELS.get,
                        help="Hybrid finds exact terms and meaning (its scores are rank scores, not similarities); "
                             "dense searches by meaning; keyword by words (BM25).")
    docs = pick_documents()
conv = conversation(top_k, retrieve_only or no_llm, mode, docs)
if modes.why_not:
    st.caption(f":material/info: Searching by meaning only: {common.escape_markdown(modes.why_not)}. "
               f"For hybrid and keyword search, {common.escape_markdown(modes.fix)}.")
if new_chat:
    conv.session.reset()
    conv.turns.clear()

llm = "retrieval only" if conv.options[1] else rag.info.llm.label
st.caption(f"Answers from collection **{common.escape_markdown(collection)}** · {common.escape_markdown(llm)}")

ready = common.has_indexed(rag, collection)
if not ready:
    if common.get_jobs().active(collection):
        st.info("Your documents are being indexed. You can ask as soon as the first one is done.", icon=":material/hourglass_top:")
    else:
        st.info(f"There are no documents in **{common.escape_markdown(collection)}** yet: upload some first.",
                icon=":material/folder_off:")
    st.page_link(common.DOCUMENTS_PAGE, label="Go to Documents to upload files", icon=":material/upload_file:")
hint = st.empty()  # cleared as soon as the first question is sent
if ready and not conv.turns:
    hint.caption("Ask anything about your documents. Each answer lists the passages it is based on, with file and page.")

for turn in conv.turns:
    show_turn(turn)

def refuse(message: str, text: str) -> None:
    """A question that cannot be asked stays out of the history; a long one is kept to copy."""
    st.warning(common.escape_markdown(message[:1].upper() + message[1:]) + ". Nothing was asked.", icon=":material/warning:")
    if len(text) > MAX_QUESTION_CHARS:
        with st.expander(f"Your text ({len(text):,} characters), to shorten and send again", icon=":material/content_copy:"):
            st.code(text, language=None, wrap_lines=True, height=240)


# No length limit in the browser: over it, pasting did nothing at all. The core checks the length.
question = st.chat_input(
    f"Ask a question about your documents (up to {MAX_QUESTION_CHARS:,} characters)" if ready
    else "Upload documents to start chatting",
    disabled=not ready,
)
if question is not None:
    try:
        clean_question(question)
    except RagError as exc:
        refuse(str(exc), question)
    else:
        hint.empty()
        answer(conv, question)
