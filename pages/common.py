"""What every page shares: the one `Rag` and job registry of the process, the active collection,
the sidebar, and the helpers that keep document text from being rendered as markup.
"""

from __future__ import annotations

import html
import logging
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import streamlit as st
from pydantic import ValidationError

from rag.config import RETRIEVAL_MODES, Settings
from rag.errors import CollectionNotFound, RagError
from rag.jobs import IngestJobs
from rag.retrieval import Modes
from rag.service import Rag
from rag.store import DocumentRecord

log = logging.getLogger("rag.app")

DOCUMENTS_PAGE = "pages/documents.py"
CHAT_PAGE = "pages/chat.py"
BENCHMARK_PAGE = "pages/benchmark.py"
POLL_SECONDS = 1.0  # how often live progress refreshes while something is being indexed

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~:$])")


# The shell ---------------------------------------------------------------------------------------

_shell = threading.local()  # one script run is one thread: is app.py's shell running in it?


@contextmanager
def shell_run() -> Iterator[None]:
    _shell.active = True
    try:
        yield
    finally:
        _shell.active = False


def require_shell() -> None:
    """Make sure a page runs inside app.py's shell (sidebar, navigation); called first by each page.

    Because this folder is called `pages/`, Streamlit starts in its legacy mode, where each file
    here is a page of its own, and only leaves it when `st.navigation` is first called. If the
    very first request after start-up is a page URL (`/chat`), that page file runs alone; then
    the shell is run here, which calls `st.navigation` and renders the requested page inside.
    """
    if getattr(_shell, "active", False):
        return
    import app

    app.main()
    st.stop()


# The process-wide core ------------------------------------------------------------------------


@st.cache_resource(show_spinner=False)
def get_settings() -> Settings:
    """The process's settings, read once from the environment and `.env`."""
    return Settings()


@st.cache_resource(show_spinner="Starting the document engine...")
def get_rag() -> Rag:
    """One `Rag` per process: it owns the event loop, the Milvus client and the models."""
    return Rag(get_settings())


@st.cache_resource(show_spinner=False)
def get_jobs() -> IngestJobs:
    """One job registry per process, so every browser tab sees the same indexing progress."""
    return IngestJobs(get_rag().start_ingest)


def settings_or_stop() -> Settings:
    """The settings, or a readable list of what is wrong with them and nothing else on the page."""
    try:
        return get_settings()
    except ValidationError as exc:
        problems = "\n".join(
            f"- {escape_markdown('.'.join(map(str, e['loc'])) or 'settings')}: "
            f"{escape_markdown(e['msg'].removeprefix('Value error, '))}"
            for e in exc.errors()
        )
        st.error(f"The configuration is invalid (environment or `.env`):\n\n{problems}", icon=":material/settings:")
    st.stop()
    raise AssertionError("unreachable")


def rag_or_stop() -> Rag:
    """The core, or a readable error (e.g. a model that cannot be loaded) and nothing else."""
    try:
        return get_rag()
    except RagError as exc:
        st.error(escape_markdown(str(exc)))
    st.stop()
    raise AssertionError("unreachable")


# The optional password ---------------------------------------------------------------------------

FAILED_SIGN_IN_DELAY = 1.0  # seconds: makes guessing slow without bothering a user who mistyped
_failed_sign_ins = threading.Lock()  # one wrong attempt per delay for the whole process, not per session


def require_password(settings: Settings, pages: list) -> None:
    """With `RAG_APP_PASSWORD` set, a session sees nothing but the sign-in form until it gives it.

    The pages are registered, so any page URL resolves (and is shown once signed in), but none
    of them runs before that.
    """
    if not settings.password_required or st.session_state.get("signed_in"):
        return
    st.navigation(pages, position="hidden")
    _sign_in(settings)
    st.stop()


def _sign_in(settings: Settings) -> None:
    st.title(":material/lock: Document chat", anchor=False)
    with st.form("sign-in", clear_on_submit=True, enter_to_submit=True):
        attempt = st.text_input("Password", type="password", placeholder="The password set in RAG_APP_PASSWORD")
        submitted = st.form_submit_button("Sign in", icon=":material/login:", type="primary")
    if not submitted:
        return
    if settings.password_matches(attempt):
        st.session_state["signed_in"] = True
        st.rerun()
    log.warning("a wrong app password was entered (from %s)", st.context.ip_address or "unknown address")
    with _failed_sign_ins:  # many sessions guessing in parallel still wait their turn
        time.sleep(FAILED_SIGN_IN_DELAY)
    st.error("Wrong password.", icon=":material/key_off:")


def _sign_out() -> None:
    for value in list(st.session_state.values()):  # work this session started (a benchmark run) stops
        stop = getattr(value, "stop_event", None)
        if isinstance(stop, threading.Event):
            stop.set()
    for key in list(st.session_state.keys()):  # history and choices go too: the next person starts from nothing
        del st.session_state[key]
    st.session_state["signed_in"] = False


def keep_widget_state(*keys: str) -> None:
    """Keep widget values while the user is on another page (Streamlit drops unrendered widgets' state)."""
    for key in keys:
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]


# The active collection ------------------------------------------------------------------------


def active_collection() -> str:
    """The collection picked in the sidebar (the configured default until then)."""
    return st.session_state.get("collection") or get_rag().settings.collection


def collection_from_address(names: list[str]) -> None:
    """A reload or a bookmarked /chat?collection=NAME takes the collection from the address (before the
    sidebar's picker is drawn), unless the Chat page wrote that address itself. An unknown name is left
    to the page."""
    address = st.query_params.to_dict()
    if not address or address == st.session_state.get("address"):
        return
    wanted = address.get("collection")
    if wanted in names:
        st.session_state["collection"] = wanted


def library(rag: Rag, collection: str) -> list[DocumentRecord]:
    """The collection's documents; a collection nobody has uploaded to yet is simply empty."""
    try:
        return rag.documents(collection)
    except CollectionNotFound:
        return []


def has_indexed(rag: Rag, collection: str) -> bool:
    return any(d.status == "indexed" for d in library(rag, collection))


def indexed_documents(rag: Rag, collection: str) -> list[DocumentRecord]:
    return [d for d in library(rag, collection) if d.status == "indexed"]


def retrieval_modes(rag: Rag, collection: str) -> Modes:
    """What the collection can be searched with; every mode until it exists (it is created hybrid)."""
    try:
        return rag.retrieval_modes(collection)
    except RagError:  # not created yet (it will be, with every mode Milvus has), or unusable: said elsewhere
        return Modes(RETRIEVAL_MODES)


# Text that must stay text ---------------------------------------------------------------------


def escape_markdown(text: str) -> str:
    """Backslash-escape markdown so a file name like `*notes*.md` shows as typed."""
    return _MD_SPECIAL.sub(r"\\\1", text.replace("\n", " "))


def show_typed(text: str) -> None:
    """Show what a user typed exactly as typed: HTML-escaped, never parsed as markdown (where
    even escaped URLs are turned into links), line breaks kept."""
    st.html(f'<div class="typed-text" style="white-space: pre-wrap">{html.escape(text.strip())}</div>')


def safe_markdown(text: str) -> str:
    """Answer text for `st.markdown`: formatting kept, but no HTML, images or LaTeX.

    An answer may echo a document, and a document may hold `<script>`, a remote image that
    would be fetched, or dollar amounts Streamlit would typeset as math.
    """
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("$", r"\$").replace("![", r"!\[")


# Formatting -------------------------------------------------------------------------------------


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def local_time(iso: str) -> datetime | None:
    """A catalog timestamp (UTC, ISO) as naive local time for the table."""
    try:
        return datetime.fromisoformat(iso).astimezone().replace(tzinfo=None) if iso else None
    except ValueError:
        return None


# The sidebar ------------------------------------------------------------------------------------


def collections_or_stop(rag: Rag) -> list[str]:
    """The collections' names. Milvus is first reached here: when it cannot be, the page says so
    and shows nothing else but what the app runs on."""
    try:
        return [c.name for c in rag.collections()]
    except RagError as exc:
        st.error(escape_markdown(str(exc)), icon=":material/cloud_off:")
        with st.sidebar:
            _system_info(rag)
        st.stop()
        raise AssertionError("unreachable") from None


def sidebar(rag: Rag, names: list[str]) -> None:
    """Collection picker, what the app runs on, and a live line about background indexing."""
    with st.sidebar:
        _collection_picker(rag, names)
        st.divider()
        _system_info(rag)
        if rag.settings.password_required:
            st.button("Sign out", icon=":material/logout:", on_click=_sign_out, width="stretch")
        _jobs_indicator()


def _collection_picker(rag: Rag, names: list[str]) -> None:
    st.subheader(":material/library_books: Knowledge base", anchor=False)
    if not st.session_state.get("collection"):
        st.session_state["collection"] = rag.settings.collection
    options = sorted({*names, rag.settings.collection, st.session_state["collection"]})
    st.selectbox(
        "Collection",
        options,
        key="collection",
        help="Each collection is a separate set of documents. Chat answers from the active one.",
    )
    with st.popover("New collection", icon=":material/add:", width="stretch"):
        st.text_input(
            "Name", key="new_collection_name", placeholder="e.g. contracts_2025",
            help="Letters, digits and underscores, starting with a letter.",
        )
        st.button("Create", key="create_collection", type="primary", on_click=_create_collection, args=(rag,))
        if error := st.session_state.pop("create_collection_error", ""):
            st.error(escape_markdown(error))


def _create_collection(rag: Rag) -> None:
    """Create and switch to a collection (a callback: it may set the selectbox's value)."""
    name = (st.session_state.get("new_collection_name") or "").strip()
    try:
        info = rag.create_collection(name)
    except RagError as exc:
        st.session_state["create_collection_error"] = str(exc)
        return
    st.session_state["collection"] = info.name
    st.session_state["new_collection_name"] = ""
    st.toast(f"Collection **{escape_markdown(info.name)}** created", icon=":material/check_circle:")


def _system_info(rag: Rag) -> None:
    info = rag.info
    st.caption("Running on")
    st.markdown(
        f":material/database: **Vector store**  \n{escape_markdown(info.milvus)}  \n"
        f":material/scatter_plot: **Embeddings**  \n{escape_markdown(info.embed_model)}  \n"
        f":material/smart_toy: **Answers**  \n{escape_markdown(info.llm.label)}"
    )
    if info.llm.note:
        st.info(info.llm.note, icon=":material/info:")


def _jobs_indicator() -> None:
    """While anything is indexed, a small progress line on every page (so Chat shows it too)."""
    jobs = get_jobs()
    live = bool(jobs.active())

    @st.fragment(run_every=POLL_SECONDS * 2 if live else None)
    def indicator() -> None:
        active = jobs.active()
        if not active:
            if live:
                st.rerun()  # indexing just finished: refresh the page (library, empty states)
            return
        job = next((j for j in active if j.state == "running"), active[0])
        p, eta = job.progress, job.eta()
        left = f" · {duration(eta)} left" if eta is not None else ""
        queued = f" (+{len(active) - 1} queued)" if len(active) > 1 else ""
        st.divider()
        st.caption(f":material/sync: Indexing into **{escape_markdown(job.collection)}**{queued}")
        st.progress(p.fraction, text=f"{p.files_done}/{p.files_total} files · {duration(job.elapsed())} elapsed{left}")

    indicator()


if __name__ == "__main__":  # opened as a page in Streamlit's legacy mode (see require_shell)
    require_shell()
