"""The sidebar of every page: the collection picker, what the app runs on, and live indexing."""

from __future__ import annotations

import streamlit as st

from pages import access, common, formatting
from rag.errors import RagError
from rag.service import Rag
from rag.status import JobState


def collections_or_stop(rag: Rag) -> list[str]:
    """The collections' names. Milvus is first reached here: when it cannot be, the page says so
    and shows nothing else but what the app runs on."""
    try:
        return [c.name for c in rag.collections()]
    except RagError as exc:
        st.error(formatting.escape_markdown(str(exc)), icon=":material/cloud_off:")
        with st.sidebar:
            _system_info(rag)
        st.stop()
        raise AssertionError("unreachable") from None


def show(rag: Rag, names: list[str], *, poll: bool = True) -> None:
    """Collection picker, what the app runs on, and a line about background indexing: live
    where `poll`, else as it stood when the page was drawn."""
    with st.sidebar:
        _collection_picker(rag, names)
        st.divider()
        _system_info(rag)
        if rag.settings.password_required:
            st.button("Sign out", icon=":material/logout:", on_click=access.sign_out, width="stretch")
        _jobs_indicator(poll)


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
            st.error(formatting.escape_markdown(error))


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
    st.toast(f"Collection **{formatting.escape_markdown(info.name)}** created", icon=":material/check_circle:")


def _system_info(rag: Rag) -> None:
    info = rag.info
    st.caption("Running on")
    backend = f":gray[{formatting.escape_markdown(info.embed_backend)}]  \n" if info.embed_backend else ""
    st.markdown(
        f":material/database: **Vector store**  \n{formatting.escape_markdown(info.milvus)}  \n"
        f":material/scatter_plot: **Embeddings**  \n{formatting.escape_markdown(info.embed_model)}  \n{backend}"
        f":material/smart_toy: **Answers**  \n{formatting.escape_markdown(info.llm.label)}"
    )
    if info.llm.note:
        st.info(info.llm.note, icon=":material/info:")


def _jobs_indicator(poll: bool) -> None:
    """While anything is indexed, a small progress line on every page (so Chat shows it too).

    Where `poll` is false (Chat), the line is redrawn with the page, not on a timer: a fragment
    run that follows an answer's run at once can leave `st.chat_input` disabled (its stop mode
    waits to see a whole-page run end) until indexing finishes.
    """
    jobs = common.get_jobs()
    live = bool(jobs.active()) and poll

    @st.fragment(run_every=common.POLL_SECONDS * 2 if live else None)
    def indicator() -> None:
        active = jobs.active()
        if not active:
            if live:
                st.rerun()  # indexing just finished: refresh the page (library, empty states)
            return
        job = next((j for j in active if j.state is JobState.RUNNING), active[0])
        p, eta = job.progress, job.eta()
        left = f" · {formatting.duration(eta)} left" if eta is not None else ""
        queued = f" (+{len(active) - 1} queued)" if len(active) > 1 else ""
        st.divider()
        st.caption(f":material/sync: Indexing into **{formatting.escape_markdown(job.collection)}**{queued}")
        if not poll:  # a frozen bar would mislead: point to where it is live
            st.page_link(common.DOCUMENTS_PAGE, label="Progress on Documents", icon=":material/folder_open:")
            return
        st.progress(p.fraction, text=f"{p.files_done}/{p.files_total} files · {formatting.duration(job.elapsed())} elapsed{left}")

    indicator()
