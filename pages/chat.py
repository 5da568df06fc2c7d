"""Chat: questions about the active collection; answers stream in above their cited passages."""

from __future__ import annotations

import json
import re

import streamlit as st

from pages import common, feedback, formatting, shell, sources
from pages.transcript import Conversation, Role, Turn
from rag.answering.events import CUT_OFF, MAX_QUESTION_CHARS, Done, Failure, Sources, Token, clean_question
from rag.config import MIN_TOP_K, LLMMode
from rag.conversations import ConversationInfo, SavedConversation, title_from, to_markdown
from rag.errors import ConversationNotFound, QuestionRefused, QuestionTooLong, RagError
from rag.options import AskOptions

shell.require_shell()

rag = common.get_rag()
collection = common.active_collection()
no_llm = rag.settings.llm_mode is LLMMode.NONE
MAX_SLIDER_K = 20  # more passages than this make an answer slow and no better; the CLI allows up to 100


def conversation(options: AskOptions) -> Conversation:
    """This session's conversation with the active collection; new settings restart its memory."""
    chats: dict[str, Conversation] = st.session_state.setdefault("chats", {})
    conv = chats.get(collection)
    if conv is None:
        conv = chats[collection] = Conversation(rag.chat_session(options))
    elif conv.options != options and not conv.read_only:
        conv.session = rag.chat_session(options)
        if conv.turns:
            answers = "retrieval only" if options.retrieve_only else "with answers"
            notice = Turn(Role.NOTICE, f"Settings changed (top-k {options.top_k}, {answers}): the next question starts a fresh memory.")
            if conv.turns[-1].role == Role.NOTICE:  # several changes between two questions: one line
                conv.turns[-1] = notice
            else:
                conv.turns.append(notice)
    return conv


def reopen(saved: SavedConversation) -> Conversation:
    """A saved conversation, continued where it stopped: its turns on screen and in the memory."""
    info = saved.info
    options = AskOptions(
        collection, top_k=min(info.top_k or st.session_state["top_k"], MAX_SLIDER_K),
        retrieve_only=info.retrieve_only or no_llm,
        mode=st.session_state.get("retrieval_mode", rag.settings.retrieval_mode),
        docs=st.session_state.get(f"scope_{collection}", ()),
    )
    # Its settings become the page's, without a "settings changed" notice.
    st.session_state["top_k"], st.session_state["retrieve_only"] = options.top_k, options.retrieve_only
    session = rag.chat_session(options)
    session.restore(saved.turns)
    turns = [t for seq, saved_turn in enumerate(saved.turns) for t in Turn.pair(seq, saved_turn)]
    conv = Conversation(session, turns, id=info.id, info=info)
    if info.collection != collection:
        conv.read_only = (f"This conversation was with collection {info.collection!r}, which no longer exists: "
                          "it is shown as it was and can be downloaded. Start a new chat to ask more.")
    return conv


def open_conversation(conversation_id: str) -> str:
    """Make a saved conversation the current one; returns why it could not be opened ("" if it was)."""
    try:
        saved = rag.conversations.get(conversation_id)
    except ConversationNotFound as exc:
        return f"{exc}. A new chat is open."
    except RagError as exc:
        return f"Saved conversations cannot be read now ({exc}). A new chat is open."
    if saved.info.collection != collection and saved.info.collection in {c.name for c in rag.collections()}:
        return f"That conversation belongs to collection {saved.info.collection!r}: pick it in the sidebar. A new chat is open."
    st.session_state["chats"][collection] = reopen(saved)
    return ""


def from_address() -> str:
    """A reload, a bookmarked link or an edited address (/chat?collection=...&c=...) opens that conversation.
    An address this session wrote itself is already on screen."""
    address = st.query_params.to_dict()
    if not address or address == st.session_state.get("address"):
        return ""
    st.session_state["address"] = None  # written again at the end of the run: a link's navigation may drop it
    wanted = address.get("c")
    current = st.session_state["chats"].get(collection)
    if not wanted or (current is not None and current.id == wanted):
        return ""
    return open_conversation(wanted)


def to_address(conv: Conversation) -> None:
    """The address names the conversation and the collection, so a reload reopens exactly this chat."""
    wanted = {"collection": collection, **({"c": conv.id} if conv.info is not None else {})}
    if st.session_state.get("address") != wanted or st.query_params.to_dict() != wanted:
        st.session_state["address"] = wanted
        st.query_params.from_dict(wanted)


def save(conv: Conversation) -> None:
    """Write the answers not saved yet. Milvus unreachable: say so and keep them for the next run."""
    if conv.read_only:
        return
    try:
        for turn in conv.turns:
            if turn.role != Role.ASSISTANT or not turn.dirty:
                continue
            if conv.info is None:
                conv.info = rag.conversations.new(
                    collection, top_k=conv.options.top_k, retrieve_only=conv.options.retrieve_only,
                    conversation_id=conv.id,
                )
            turn.seq = rag.conversations.save_turn(conv.info, turn.saved(conv.options.top_k), turn.seq)
            turn.dirty = False
        conv.save_error = ""
        to_address(conv)
    except RagError as exc:
        conv.save_error = str(exc)


# Drawing ------------------------------------------------------------------------------------------


def show_sources(turn: Turn, expand_first: bool) -> None:
    citations = turn.citations
    if not citations:
        st.caption("No passages were found for this question.")
        return
    plural = "s" if len(citations) > 1 else ""
    st.caption(f"Sources · {len(citations)} passage{plural}" if turn.found
               else f"Closest passages · {len(citations)}, none of which answers the question")
    for i, citation in enumerate(citations):
        shown = st.session_state.get(f"{turn.id}-view-{i}", False)  # a source shown in its document stays open
        with st.expander(sources.citation_label(i + 1, citation), expanded=(expand_first and i == 0) or shown,
                         icon=":material/description:"):
            st.html(sources.marked_html(citation.text, citation.highlights))
            if st.toggle("Show in the document", key=f"{turn.id}-view-{i}"):
                sources.show_in_document(rag, collection, citation, f"{turn.id}-view-{i}")


def show_turn(conv: Conversation, turn: Turn) -> None:
    if turn.role == Role.NOTICE:
        st.caption(f":material/info: {turn.text}")
        return
    with st.chat_message(turn.role):
        if turn.role == Role.USER:
            formatting.show_typed(turn.text)  # a question's markup is never rendered
        else:
            show_answer(turn)
            show_feedback(conv, turn)


def show_feedback(conv: Conversation, turn: Turn) -> None:
    feedback.show(rag, collection, conv, turn, save)


def show_answer(turn: Turn) -> None:
    if turn.refused:
        st.error(formatting.escape_markdown(turn.refused), icon=":material/error:")
        return
    if not turn.found:
        st.info(formatting.escape_markdown(turn.text), icon=":material/search_off:")
    elif turn.text:
        st.markdown(formatting.safe_markdown(turn.text))
    elif turn.retrieve_only and not turn.error:
        st.markdown("Retrieval only: the passages closest to your question are below.")
    if turn.stopped:
        st.caption(":material/stop_circle: Stopped: the answer above is what was written until then." if turn.text
                   else ":material/stop_circle: Stopped before an answer was written.")
    elif turn.cut_off:
        st.caption(f":material/content_cut: {CUT_OFF}")
    if turn.error:
        st.warning(f"No generated answer: {formatting.escape_markdown(turn.error)}. The retrieved passages are below.",
                   icon=":material/warning:")
    if turn.searched:
        st.caption(f":material/manage_search: A follow-up: also searched for “{formatting.escape_markdown(turn.searched)}”")
    show_sources(turn, expand_first=not turn.text or not turn.found)


def answer(conv: Conversation, question: str) -> None:
    """Stream one answer into the page, then keep it in the transcript."""
    user = Turn(Role.USER, question)
    # Saved before it is answered (as stopped, until the answer replaces it): a reload mid-answer keeps it.
    turn = Turn(Role.ASSISTANT, retrieve_only=conv.options.retrieve_only, question=question, stopped=True)
    conv.turns += [user, turn]
    save(conv)
    show_turn(conv, user)
    turn.stopped = False
    with st.chat_message(Role.ASSISTANT):
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
                    box.markdown(formatting.safe_markdown(turn.text) + " ▌")
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
            turn.stopped = turn.dirty = True  # saved on the next run
            raise
        turn.dirty = True
        save(conv)
        with box.container():
            show_answer(turn)
            show_feedback(conv, turn)


# The conversation list ----------------------------------------------------------------------------

LISTED = 30  # conversations linked at once; a title filter finds older ones


def start_new_chat() -> None:
    """The current conversation stays saved and listed; the next question starts another."""
    st.session_state["chats"].pop(collection, None)


def rename(conv: Conversation) -> None:
    try:
        conv.info = rag.conversations.rename(conv.id, st.session_state.get("conversation_title", ""))
    except RagError as exc:
        st.session_state["address_error"] = str(exc)


def delete(conv: Conversation) -> None:
    try:
        rag.conversations.delete(conv.id)
    except RagError as exc:
        st.session_state["address_error"] = str(exc)
        return
    start_new_chat()
    st.toast(f"Deleted “{formatting.escape_markdown(conv.info.title)}”", icon=":material/delete:")


def as_saved(conv: Conversation) -> SavedConversation:
    """What is on screen, saved or not: an export works even while Milvus cannot be reached."""
    turns = [t.saved(conv.options.top_k) for t in conv.turns if t.role == Role.ASSISTANT]
    info = conv.info or ConversationInfo(conv.id, collection, title_from(turns[0].question) if turns else "New chat")
    return SavedConversation(info, turns)


def conversations_menu(conv: Conversation) -> None:
    """Newest first, this collection's conversations: open one, rename or delete the current one, download it."""
    try:
        listed = rag.conversations.list(conv.info.collection if conv.info else collection)
    except RagError as exc:
        st.warning(f"Saved conversations cannot be listed now: {formatting.escape_markdown(str(exc))}", icon=":material/cloud_off:")
        listed = []
    st.caption(f"{len(listed)} saved in **{formatting.escape_markdown(collection)}**, newest first" if listed
               else "None saved yet: a conversation is saved with its first question.")
    shown = listed
    if len(listed) > LISTED:
        words = st.text_input("Find by title", key="conversation_filter", placeholder="words of a title").lower().split()
        shown = [c for c in listed if all(w in c.title.lower() for w in words)][:LISTED]
    for c in shown:  # links: opening one is a change of address, as a bookmark is
        when = formatting.local_time(c.updated_at)
        label = f"{c.title} · {when:%Y-%m-%d %H:%M}" if when else c.title
        st.page_link(common.CHAT_PAGE, label=formatting.escape_markdown(label), query_params={"collection": c.collection, "c": c.id},
                     icon=":material/chat:" if c.id != conv.id else ":material/arrow_right:", disabled=c.id == conv.id)
    if conv.info is not None:
        if st.session_state.get("title_of") != (conv.id, conv.info.title):
            st.session_state["title_of"] = (conv.id, conv.info.title)
            st.session_state["conversation_title"] = conv.info.title
        st.text_input("Title", key="conversation_title", on_change=rename, args=(conv,), max_chars=200)
        if st.session_state.get("confirm_delete") != conv.id:
            st.button("Delete this conversation", icon=":material/delete:",
                      on_click=lambda: st.session_state.update(confirm_delete=conv.id))
        else:
            st.warning("Delete this conversation, its answers and its feedback? This cannot be undone.")
            row = st.container(horizontal=True)
            row.button("Delete", type="primary", key="delete_confirmed", on_click=delete, args=(conv,))
            row.button("Cancel", key="delete_cancelled", on_click=lambda: st.session_state.pop("confirm_delete", None))
    export = as_saved(conv)
    name = "chat-" + (re.sub(r"[^A-Za-z0-9]+", "-", export.info.title).strip("-")[:40] or conv.id)
    row = st.container(horizontal=True)
    row.download_button("Markdown", to_markdown(export), file_name=f"{name}.md", mime="text/markdown",
                        icon=":material/download:", disabled=not export.turns)
    row.download_button("JSON", json.dumps(export.to_json(), indent=2, ensure_ascii=False), file_name=f"{name}.json",
                        mime="application/json", icon=":material/download:", disabled=not export.turns)


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

st.session_state.setdefault("top_k", min(rag.settings.top_k, MAX_SLIDER_K))
st.session_state.setdefault("retrieve_only", no_llm)
st.session_state.setdefault("retrieval_mode", rag.settings.retrieval_mode)
st.session_state.setdefault("chats", {})
address_error = from_address() or st.session_state.pop("address_error", "")
st.title(":material/forum: Chat", anchor=False)
toolbar = st.container(horizontal=True, vertical_alignment="center")
toolbar.button("New chat", icon=":material/add_comment:", on_click=start_new_chat,
               help="Start over; this conversation stays saved in Conversations")
with toolbar.popover("Settings", icon=":material/tune:"):
    top_k = st.slider("Passages per answer (top-k)", MIN_TOP_K, MAX_SLIDER_K, key="top_k",
                      help="How many passages are retrieved and answered from.")
    retrieve_only = st.toggle("Retrieval only", key="retrieve_only", disabled=no_llm,
                              help="No answer text: show the closest passages only, with the sentences that answer marked.")
    modes = common.retrieval_modes(rag, collection)
    if st.session_state.retrieval_mode not in modes.modes:
        st.session_state.retrieval_mode = "dense"
    mode = st.selectbox("Search mode", modes.modes, key="retrieval_mode", format_func=MODE_LABELS.get,
                        help="Hybrid finds exact terms and meaning (its score adds similarity and BM25, each "
                             "scaled to the best passage: 1.0 is first on both); dense searches by meaning; "
                             "keyword by words (BM25).")
    docs = pick_documents()
conv = conversation(AskOptions(collection, top_k, retrieve_only or no_llm, mode, docs))
if modes.why_not:
    st.caption(f":material/info: Searching by meaning only: {formatting.escape_markdown(modes.why_not)}. "
               f"For hybrid and keyword search, {formatting.escape_markdown(modes.fix)}.")
save(conv)  # what Milvus could not take on an earlier run

llm = "retrieval only" if conv.options.retrieve_only else rag.info.llm.label
st.caption(f"Answers from collection **{formatting.escape_markdown(collection)}** · {formatting.escape_markdown(llm)}")
if address_error:
    st.warning(formatting.escape_markdown(address_error), icon=":material/link_off:")
if conv.read_only:
    st.info(formatting.escape_markdown(conv.read_only), icon=":material/inventory_2:")
save_notice = st.empty()  # filled at the end of the run: an answer may fail to be saved

ready = common.has_indexed(rag, collection)
if not ready:
    if common.get_jobs().active(collection):
        st.info("Your documents are being indexed. You can ask as soon as the first one is done.", icon=":material/hourglass_top:")
    else:
        st.info(f"There are no documents in **{formatting.escape_markdown(collection)}** yet: upload some first.",
                icon=":material/folder_off:")
    st.page_link(common.DOCUMENTS_PAGE, label="Go to Documents to upload files", icon=":material/upload_file:")
hint = st.empty()  # cleared as soon as the first question is sent
if ready and not conv.turns:
    hint.caption("Ask anything about your documents. Each answer lists the passages it is based on, with file and page.")

for turn in conv.turns:
    show_turn(conv, turn)

def refuse(exc: QuestionRefused, text: str) -> None:
    """A question that cannot be asked stays out of the history; a long one is kept to copy."""
    message = str(exc)
    st.warning(formatting.escape_markdown(message[:1].upper() + message[1:]) + ". Nothing was asked.", icon=":material/warning:")
    if isinstance(exc, QuestionTooLong):
        with st.expander(f"Your text ({len(text):,} characters), to shorten and send again", icon=":material/content_copy:"):
            st.code(text, language=None, wrap_lines=True, height=240)


# No length limit in the browser: over it, pasting did nothing at all. The core checks the length.
question = st.chat_input(
    f"Ask a question about your documents (up to {MAX_QUESTION_CHARS:,} characters)" if ready
    else "Upload documents to start chatting",
    disabled=not ready or bool(conv.read_only),
    submit_mode="stop",  # while an answer is written, the send button stops it
)
if question is not None:
    try:
        clean_question(question)
    except QuestionRefused as exc:
        refuse(exc, question)
    else:
        hint.empty()
        answer(conv, question)

# Last, so they show what this run saved: the list, the address, a failed save.
with toolbar.popover("Conversations", icon=":material/history:"):
    conversations_menu(conv)
to_address(conv)
if conv.save_error:
    save_notice.warning(f"Not saved yet: {formatting.escape_markdown(conv.save_error)} This conversation is kept in this "
                        "tab and saved as soon as Milvus answers again.", icon=":material/cloud_off:")
