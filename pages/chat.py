"""Chat: questions about the active collection; answers stream in above their cited passages."""

from __future__ import annotations

import html
import uuid
from dataclasses import dataclass, field

import streamlit as st

from pages import common
from rag.answer import CUT_OFF, MAX_QUESTION_CHARS, Citation, Done, Failure, Sources, Token, clean_question
from rag.config import LLMMode
from rag.errors import RagError
from rag.service import ChatSession
from rag.source_view import SourceUnavailable, locate, render_pdf_page, text_context

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
    found: bool = True  # False: nothing retrieved answers the question; citations are the closest passages
    cut_off: bool = False  # the generated answer stops mid-sentence
    stopped: bool = False  # the user pressed Stop while it was written
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])  # widget keys of its sources


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
            mode = "retrieval only" if retrieve_only else "with answers"
            notice = Turn("notice", f"Settings changed (top-k {top_k}, {mode}): the next question starts a fresh memory.")
            if conv.turns[-1].role == "notice":  # several changes between two questions: one line
                conv.turns[-1] = notice
            else:
                conv.turns.append(notice)
    return conv


# Drawing ------------------------------------------------------------------------------------------


def citation_label(number: int, c: Citation) -> str:
    page = ""
    if c.page is not None:
        page = f" · page {c.page}"
        if c.page_label and c.page_label != str(c.page):
            page += f" (printed {common.escape_markdown(c.page_label)})"
    return f"[{number}] {common.escape_markdown(c.file or 'unknown file')}{page} · {c.score_label}"


def marked_html(text: str, spans: tuple[tuple[int, int], ...]) -> str:
    """Passage text as escaped HTML (document text is data: never markdown), answering sentences marked."""
    parts, at = [], 0
    for start, end in sorted(spans):
        parts += [html.escape(text[at:start]), f"<mark>{html.escape(text[start:end])}</mark>"]
        at = end
    parts.append(html.escape(text[at:]))
    return f'<div class="passage" style="white-space: pre-wrap; font-size: 0.9rem">{"".join(parts)}</div>'


def show_sources(turn: Turn, expand_first: bool) -> None:
    citations = turn.citations
    if not citations:
        st.caption("No passages were found for this question.")
        return
    plural = "s" if len(citations) > 1 else ""
    st.caption(f"Sources · {len(citations)} passage{plural}" if turn.found
               else f"Closest passages · {len(citations)}, none of which answers the question")
    for i, citation in enumerate(citations):
        with st.expander(citation_label(i + 1, citation), expanded=expand_first and i == 0, icon=":material/description:"):
            st.html(marked_html(citation.text, citation.highlights))
            if st.toggle("Show in the document", key=f"{turn.id}-view-{i}"):
                show_in_document(citation, f"{turn.id}-view-{i}")


def show_in_document(citation: Citation, key: str) -> None:
    """The passage in its original file: the PDF page, or the surrounding lines; and the file itself."""
    doc_id = citation.doc_id or citation.file
    record = next((d for d in common.library(rag, collection) if d.doc_id == doc_id), None)
    try:
        path = locate(rag.settings, record, collection, doc_id)
        if path.suffix.lower() == ".pdf" and citation.page is not None:
            page = st.number_input("Page", min_value=1, value=citation.page, key=f"{key}-page",
                                   help="Previous and next pages of the document")
            answers = [citation.text[a:b] for a, b in citation.highlights]
            image = render_pdf_page(path, int(page), citation.text if page == citation.page else "",
                                    answers if page == citation.page else [])
            caption = f"Page {image.page} of {image.pages}"
            if page == citation.page:
                caption += " · the passage is marked" if image.marked else " · the passage could not be located on the page"
            st.image(image.png, caption=caption)
        else:
            view = text_context(path, citation.text)
            rows = "".join(
                f'<div style="background:{"#fff3bf" if n in view.marked else "transparent"}">'
                f'<span style="color:#888; display:inline-block; width:3.5em">{n}</span>{html.escape(line)}</div>'
                for n, line in view.lines
            )
            st.html(f'<div class="source-lines" style="font-family: monospace; font-size: 0.8rem; white-space: pre-wrap">{rows}</div>')
        st.download_button("Download the original", path.read_bytes(), file_name=path.name, key=f"{key}-download",
                           icon=":material/download:")
    except SourceUnavailable as exc:
        st.warning(common.escape_markdown(str(exc)), icon=":material/link_off:")


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
    if not turn.found:
        st.info(common.escape_markdown(turn.text), icon=":material/search_off:")
    elif turn.text:
        st.markdown(common.safe_markdown(turn.text))
    elif turn.retrieve_only and not turn.error:
        st.markdown("Retrieval only: the passages closest to your question are below.")
    if turn.stopped:
        st.caption(":material/stop_circle: Stopped: the answer above is what was written until then.")
    elif turn.cut_off:
        st.caption(f":material/content_cut: {CUT_OFF}")
    if turn.error:
        st.warning(f"No generated answer: {common.escape_markdown(turn.error)}. The retrieved passages are below.",
                   icon=":material/warning:")
    if turn.searched:
        st.caption(f":material/manage_search: A follow-up: also searched for “{common.escape_markdown(turn.searched)}”")
    show_sources(turn, expand_first=not turn.text or not turn.found)


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
                    turn.searched, turn.found, turn.cut_off = event.answer.searched, event.answer.found, event.answer.cut_off
        except RagError as exc:
            turn.refused = str(exc)
        except Exception:  # a bug: app.py's safety net reports it
            raise
        except BaseException:  # Stop pressed (or the page left): Streamlit ends the run here; keep what was written
            turn.stopped = True
            conv.turns.append(turn)
            raise
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
                      help="How many passages are retrieved and answered from.")
    retrieve_only = st.toggle("Retrieval only", key="retrieve_only", disabled=no_llm,
                              help="No answer text: show the closest passages only, with the sentences that answer marked.")
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
    submit_mode="stop",  # while an answer is written, the send button stops it
)
if question is not None:
    try:
        clean_question(question)
    except RagError as exc:
        refuse(str(exc), question)
    else:
        hint.empty()
        answer(conv, question)
