"""What every page shares: the one `Rag` and job registry of the process, the active
collection, and reads of its library that a missing collection must not break.
"""

from __future__ import annotations

import streamlit as st
from pydantic import ValidationError

from pages.formatting import escape_markdown
from rag.config import RETRIEVAL_MODES, Settings, setting_problems
from rag.errors import CollectionNotFound, RagError
from rag.ingestion.jobs import IngestJobs
from rag.retrieval.search import Modes
from rag.service import Rag
from rag.status import DocStatus
from rag.storage.catalog import DocumentRecord

DOCUMENTS_PAGE = "pages/documents.py"
CHAT_PAGE = "pages/chat.py"
BENCHMARK_PAGE = "pages/benchmark.py"
POLL_SECONDS = 1.0  # how often live progress refreshes while something is being indexed


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
            f"- {escape_markdown(where)}: {escape_markdown(what)}" for where, what in setting_problems(exc)
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


# Session state ---------------------------------------------------------------------------------


def keep_widget_state(*keys: str) -> None:
    """Keep widget values while the user is on another page (Streamlit drops unrendered widgets' state)."""
    for key in keys:
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]


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
    return any(d.status is DocStatus.INDEXED for d in library(rag, collection))


def indexed_documents(rag: Rag, collection: str) -> list[DocumentRecord]:
    return [d for d in library(rag, collection) if d.status is DocStatus.INDEXED]


def retrieval_modes(rag: Rag, collection: str) -> Modes:
    """What the collection can be searched with; every mode until it exists (it is created hybrid)."""
    try:
        return rag.retrieval_modes(collection)
    except RagError:  # not created yet (it will be, with every mode Milvus has), or unusable: said elsewhere
        return Modes(RETRIEVAL_MODES)
