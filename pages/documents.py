"""Documents: upload files, watch them being indexed in the background, manage the library."""

from __future__ import annotations

import time
from enum import StrEnum

import pandas as pd
import streamlit as st

from pages import common, formatting, shell
from rag.errors import RagError
from rag.ingestion.folders import import_folder, scan_folder
from rag.ingestion.jobs import FileState, JobView
from rag.ingestion.ocr import ocr_note
from rag.ingestion.readers import SUPPORTED_EXTENSIONS, SUPPORTED_TYPES
from rag.ingestion.sources import ETA_MIN_FRACTION, ETA_MIN_SECONDS, Source
from rag.ingestion.uploads import find_upload, remove_upload, safe_file_name, save_upload
from rag.status import DocStatus, FileStatus, JobState
from rag.storage.catalog import DocumentRecord
from rag.storage.listing import PAGE_SIZE, LibraryPage, SortKey, browse, file_types

shell.require_shell()

STATUS_COLORS = {DocStatus.INDEXED: "#1e7b3a", DocStatus.INDEXING: "#a86400", DocStatus.FAILED: "#c62828"}
FILE_ICONS = {  # the words are the statuses' own (`FileStatus.label`)
    FileStatus.WAITING: ":material/schedule:",
    FileStatus.INDEXING: ":material/progress_activity:",
    FileStatus.INDEXED: ":green[:material/check_circle:]",
    FileStatus.REPLACED: ":green[:material/published_with_changes:]",
    FileStatus.UNCHANGED: ":blue[:material/task_alt:]",
    FileStatus.FAILED: ":red[:material/error:]",
    FileStatus.SKIPPED: ":orange[:material/block:]",
}
PROBLEMS = (FileStatus.FAILED, FileStatus.SKIPPED)

MAX_FILE_LINES = 12  # larger jobs list their files in a table
LIBRARY_ROWS = 25  # the library grows with its documents up to this many rows, then scrolls
ROW_PX = 35  # a grid row (and its header) at the default row height

rag = common.get_rag()
jobs = common.get_jobs()
collection = common.active_collection()
max_mb = st.get_option("server.maxUploadSize")


def upload_form() -> None:
    """Several files at once; on submit they are saved and queued, and the page returns at once."""
    with st.form("upload", clear_on_submit=True, border=True):
        files = st.file_uploader(
            "Add documents",
            type=list(SUPPORTED_EXTENSIONS),  # with their dots: a bare "text" would mean any text/* file
            accept_multiple_files=True,
            help="PDF pages are cited by page number; scans and images are read by OCR. Indexing runs in the background.",
        )
        submitted = st.form_submit_button("Upload and index", icon=":material/upload:", type="primary")
    if submitted:
        if files:
            flash(queue_uploads(files))  # a full rerun, so the sidebar follows the new job too
        else:
            st.warning("Choose one or more files first.", icon=":material/upload_file:")


def import_form() -> None:
    """A folder on the server, imported whole; shown only where RAG_IMPORT_ROOT allows it."""
    root = rag.settings.import_root
    if root is None:
        return
    with st.expander("Import a folder from the server", icon=":material/drive_folder_upload:"):
        with st.form("import", border=False):
            name = st.text_input("Folder", key="import_folder", placeholder=f"a folder under {root}",
                                 help="Every supported file under it is indexed; links out of it are not followed.")
            submitted = st.form_submit_button("Import and index", icon=":material/folder_open:")
    if submitted:
        flash(queue_folder(root, name))


def queue_folder(root, name: str) -> list[tuple[Flash, str]]:
    """Check the folder, list its files and queue one job for them; returns what to tell the user."""
    try:
        folder = import_folder(root, name)
        sources = scan_folder(folder, root=root, max_bytes=max_mb * 1024 * 1024)
    except (RagError, OSError) as exc:
        return [(Flash.ERROR, formatting.escape_markdown(str(exc)))]
    if not sources:
        return [(Flash.WARNING, f"**{formatting.escape_markdown(name)}** holds no files of the supported types.")]
    busy = jobs.busy(collection)
    if taken := [s.doc_id for s in sources if s.doc_id in busy]:
        return [(Flash.WARNING, f"**{formatting.escape_markdown(taken[0])}** is being indexed right now: "
                                "import the folder again when that is done.")]
    jobs.submit(sources, collection, label=f"folder {folder.name}")
    return [(Flash.TOAST, f"Importing {len(sources):,} files from {folder.name} in the background")]


class Flash(StrEnum):
    """How an action's result is shown on the next run: `st.success`, `st.warning`, `st.error`, or a toast."""

    SUCCESS = "success"
    WARNING = "warning"
    ERROR = "error"
    TOAST = "toast"


def queue_uploads(files: list) -> list[tuple[Flash, str]]:
    """Save the files and queue one job for them; returns what to tell the user."""
    messages, sources, busy = [], {}, jobs.busy(collection)
    for file in files:
        doc_id = safe_file_name(file.name)
        name = formatting.escape_markdown(doc_id)
        if doc_id in busy:
            messages.append((Flash.WARNING, f"**{name}** is being indexed right now: upload it again when that is done."))
            continue
        if file.size > max_mb * 1024 * 1024:  # the browser checks too; this holds for any client
            messages.append((Flash.ERROR, f"**{name}** is {file.size / 2**20:,.1f} MB, over the {max_mb} MB limit: not uploaded."))
            continue
        if doc_id in sources:
            messages.append((Flash.WARNING, f"**{name}** was chosen twice: indexing the last one."))
        try:
            path = save_upload(rag.settings, collection, file.name, file)
        except (RagError, OSError) as exc:
            messages.append((Flash.ERROR, f"Could not save **{name}**: {formatting.escape_markdown(str(exc))}"))
            continue
        sources[path.name] = Source(path, path.name)
    if sources:
        jobs.submit(list(sources.values()), collection)
        count = f"{len(sources)} files" if len(sources) > 1 else "1 file"
        messages.append((Flash.TOAST, f"Indexing {count} in the background"))
    return messages


# Jobs -------------------------------------------------------------------------------------------


def job_panel(job: JobView) -> None:
    """One job: overall metrics and bar while running, per-file outcome always."""
    failed = job.count(FileStatus.FAILED)
    if job.state is JobState.QUEUED:
        label, icon = f"Queued: {job.label}", ":material/schedule:"
    elif job.state is JobState.RUNNING:
        label, icon = f"Indexing {job.label}", ":material/sync:"
    elif job.state is JobState.DONE:
        label, icon = f"{job.label}: {job.summary()}", ":material/error:" if failed else ":material/check_circle:"
    else:
        label, icon = f"{job.label}: {job.state}", ":material/cancel:" if job.state is JobState.CANCELLED else ":material/error:"
    with st.expander(formatting.escape_markdown(label), icon=icon, expanded=job.active or bool(failed)):
        if job.state is JobState.RUNNING:
            job_progress(job)
        elif job.state is JobState.QUEUED:
            st.caption("Starts when the job before it has finished.")
        elif job.report is not None:
            st.caption(f"{job.report.chunks:,} chunks in {formatting.duration(job.report.seconds)}")
        if job.error and job.state is not JobState.DONE:
            st.error(formatting.escape_markdown(job.error))
        if len(job.files) <= MAX_FILE_LINES:
            for file in job.files:
                file_line(file)
        else:
            file_table(job.files)
        if job.active:
            st.button("Cancel", key=f"cancel-{job.id}", icon=":material/cancel:", on_click=jobs.cancel, args=(job.id,))
        else:
            st.button("Dismiss", key=f"dismiss-{job.id}", icon=":material/close:", on_click=jobs.dismiss, args=(job.id,))


def job_progress(job: JobView, now: float | None = None) -> None:
    """Measured figures only: elapsed time from the job's start (it ticks with every refresh),
    files and chunks done, and a time left once it rests on enough work."""
    p, now = job.progress, time.time() if now is None else now
    eta = job.eta(now)
    a, b, c, d = st.columns(4)
    a.metric("Files", f"{p.files_done} / {p.files_total}", help="Files finished: indexed, unchanged or failed")
    b.metric("Chunks", f"{p.chunks_done:,}", help="Chunks embedded and stored so far")
    c.metric("Speed", f"{p.chunks_per_second:.1f} chunks/s")
    d.metric("Time left", formatting.duration(eta) if eta is not None else "estimating…",
             help=f"Estimated from the rate so far, once {ETA_MIN_FRACTION:.0%} of the data (by file size) "
                  f"is done and {ETA_MIN_SECONDS:.0f} s have passed")
    scan = f" · reading {p.current} by OCR: page {p.pages_read} of {p.pages_total}" if p.pages_total else ""
    st.progress(p.fraction, text=f"{p.fraction:.0%} of the data (by file size) · {formatting.duration(job.elapsed(now))} elapsed"
                + formatting.escape_markdown(scan))


def file_line(file: FileState) -> None:
    icon, words = FILE_ICONS[file.status], file.status.explanation
    name = formatting.escape_markdown(file.doc_id)
    if file.status.stored:
        pages = f", {file.pages} page{'s' * (file.pages != 1)}" if file.pages else ""
        words = f"{words} ({file.chunks} chunk{'s' if file.chunks != 1 else ''}{pages})"
    st.markdown(f"{icon} **{name}**: {words}")
    if file.note:
        st.caption(formatting.escape_markdown(file.note))
    if file.status is FileStatus.FAILED:
        st.error(formatting.escape_markdown(file.error or "unknown reason"))
    elif file.status is FileStatus.SKIPPED:
        st.caption(formatting.escape_markdown(file.error))


def file_table(files: tuple[FileState, ...]) -> None:
    """Per-file state of a large job, as a compact table rather than one line per file."""
    ordered = sorted(files, key=lambda f: f.status not in PROBLEMS)  # problems first
    rows = [{"File": f.doc_id, "Status": f.status.label,
             "Chunks": None if f.status.pending or f.status is FileStatus.SKIPPED else f.chunks, "Reason": f.error}
            for f in ordered]
    frame = pd.DataFrame(rows).astype({"Chunks": "Int64"})
    st.dataframe(
        frame, hide_index=True, width="stretch", height=min(ROW_PX * (len(rows) + 1) + 3, 320),
        placeholder="—",  # a file not done yet has no chunk count, and says so without "None"
        column_config={"File": st.column_config.TextColumn(width=200), "Status": st.column_config.TextColumn(width=110),
                       "Chunks": st.column_config.NumberColumn(width=60), "Reason": st.column_config.TextColumn(width=530)},
    )


# Library -----------------------------------------------------------------------------------------


def library_view(docs: list[DocumentRecord]) -> LibraryPage:
    """Search, filters, order and pages, for a library longer than one screen; else all of it."""
    if len(docs) <= LIBRARY_ROWS:
        return browse(docs)
    search, status, kind, order = st.columns([3, 2, 2, 2], vertical_alignment="bottom")
    query = search.text_input("Search by name", key="library_query", placeholder="part of a file name or folder")
    statuses = status.multiselect("Status", [s.value for s in DocStatus], key="library_status", placeholder="any")
    types = kind.multiselect("Type", file_types(docs), key="library_types", placeholder="any",
                             format_func=str.upper)
    sort = order.selectbox("Order", list(SortKey), key="library_sort")
    view = browse(docs, query=query, statuses=statuses, types=types, sort=sort)
    if view.pages > 1:
        left, right = st.columns([1, 4], vertical_alignment="center")
        # No key: a new number of pages makes a new widget, back on page 1, never past the last.
        page = left.number_input("Page", min_value=1, max_value=view.pages, step=1)
        view = browse(docs, query=query, statuses=statuses, types=types, sort=sort, page=int(page))
        first = (view.page - 1) * PAGE_SIZE + 1
        right.caption(f"{first:,}-{first + len(view.documents) - 1:,} of {view.total:,} matching "
                      f"({len(docs):,} in the collection) · page {view.page} of {view.pages}")
    else:
        st.caption(f"{view.total:,} matching ({len(docs):,} in the collection)")
    return view


def library_figures(docs: list[DocumentRecord]) -> None:
    """The whole collection in four numbers, whatever the table below shows of it."""
    indexed = [d for d in docs if d.status is DocStatus.INDEXED]
    a, b, c, d = st.columns(4)
    a.metric("Documents", f"{len(indexed):,}")
    b.metric("Chunks", f"{sum(x.chunks for x in indexed):,}")
    c.metric("Pages", f"{sum(x.pages or 0 for x in indexed):,}")
    d.metric("Failed", f"{sum(x.status is DocStatus.FAILED for x in docs):,}")


def library_table(shown: list[DocumentRecord]) -> None:
    """The rows of `shown` (one page of the library)."""
    notes = any(doc.error or _scan_problems(doc) for doc in shown)
    scans = any(doc.ocr for doc in shown)
    frame = pd.DataFrame(
        [
            {
                "File": doc.doc_id,
                "Type": doc.file_type.upper(),
                "Pages": str(doc.pages) if doc.pages else "—",
                "Chunks": doc.chunks,
                "Size": doc.size,
                "Indexed at": formatting.local_time(doc.indexed_at),
                "Status": doc.status.value,
                **({"OCR": f"{doc.ocr['confidence']:.0%}" if doc.ocr else None} if scans else {}),
                **({"Note": doc.error.removeprefix(f"{doc.file_name}: ") or _scan_problems(doc)} if notes else {}),
            }
            for doc in shown
        ],
        columns=["File", "Type", "Pages", "Chunks", "Size", "Indexed at", "Status", *(["OCR"] if scans else []),
                 *(["Note"] if notes else [])],
    )
    styled = frame.style.map(
        lambda status: f"color: {STATUS_COLORS.get(status, 'inherit')}; font-weight: 600", subset=["Status"]
    )
    st.dataframe(
        styled,
        hide_index=True,
        width="stretch",
        height=table_height(len(shown)),
        placeholder="—",  # a failed file was never indexed: no time, rather than "None"
        column_config={  # pixels, 935 in all: a 1400 px window with the sidebar; wider pages scale them alike
            "File": st.column_config.TextColumn(width=150),
            "Type": st.column_config.TextColumn(width=45),
            "Pages": st.column_config.TextColumn(width=50, alignment="right"),
            "Chunks": st.column_config.NumberColumn(width=55),
            "Size": st.column_config.NumberColumn(format="bytes", width=65),
            "Indexed at": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm", width=130),
            "Status": st.column_config.TextColumn(width=65),
            "OCR": st.column_config.TextColumn(
                width=45, alignment="right", help="Read by OCR: the mean recognition confidence of its scanned pages"
            ),
            "Note": st.column_config.TextColumn(
                "Reason / note", width=330 if scans else 375,
                help="Why a file failed, why its last update was not applied, or which scanned pages were not indexed",
            ),
        },
    )


def _scan_problems(doc: DocumentRecord) -> str:
    """Scanned pages left out of a document (read with low confidence, or blank), in words."""
    return ocr_note(doc.ocr) if doc.ocr and (doc.ocr.get("flagged") or doc.ocr.get("blank")) else ""


def table_height(rows: int) -> int | str:
    """The whole table up to `LIBRARY_ROWS` rows, rather than the default ten-row scroll box."""
    return "content" if rows <= LIBRARY_ROWS else ROW_PX * (LIBRARY_ROWS + 1) + 3


def library_actions(docs: list[DocumentRecord], view: LibraryPage) -> None:
    """Re-index or delete documents picked by name on this page, or every one that matches."""
    if st.session_state.pop("clear_selection", False):  # set by `flash`, before the widget exists
        st.session_state["selected_docs"] = []
        st.session_state["select_matching"] = False
    every = False
    if view.total > len(view.documents) or view.total < len(docs):
        every = st.toggle(f"Select all {view.total:,} matching documents", key="select_matching")
    if every:
        selected = [d.doc_id for d in view.matching]
    else:
        options = [d.doc_id for d in view.documents]
        kept = [d for d in st.session_state.get("selected_docs", []) if d in options]  # this page's only
        st.session_state["selected_docs"] = kept
        selected = st.multiselect(
            "Select documents", options, key="selected_docs",
            placeholder="Choose documents to re-index or delete",
        )
    left, right, _ = st.columns([1, 1, 4])
    reindex = left.button("Re-index", icon=":material/refresh:", disabled=not selected, width="stretch")
    with right.popover("Delete", icon=":material/delete:", disabled=not selected, width="stretch"):
        st.markdown(f"Delete **{len(selected)}** document(s) and their chunks from **{formatting.escape_markdown(collection)}**?")
        delete = st.button("Yes, delete", type="primary", icon=":material/delete_forever:", key="confirm_delete")
    if reindex:
        flash(reindex_documents(selected, {d.doc_id: d for d in docs}))
    elif delete:
        flash(delete_documents(selected))


def reindex_documents(doc_ids: list[str], docs: dict[str, DocumentRecord]) -> list[tuple[Flash, str]]:
    """Index the saved uploads again. An indexed copy is deleted first, since an unchanged file
    would otherwise be skipped."""
    messages, sources, busy = [], [], jobs.busy(collection)
    for doc_id in doc_ids:
        path = find_upload(rag.settings, collection, doc_id)
        if doc_id in busy:
            messages.append((Flash.WARNING, f"**{formatting.escape_markdown(doc_id)}** is already being indexed."))
        elif path is None:
            messages.append((Flash.WARNING, f"No uploaded copy of **{formatting.escape_markdown(doc_id)}** is kept "
                             "(it was added from the command line): upload it again to re-index it."))
        else:
            try:
                if docs[doc_id].status is DocStatus.INDEXED:
                    rag.delete(doc_id, collection)
            except RagError as exc:
                messages.append((Flash.ERROR, formatting.escape_markdown(str(exc))))
                continue
            sources.append(Source(path, doc_id))
    if sources:
        more = f" and {len(sources) - 1} more" if len(sources) > 1 else ""
        jobs.submit(sources, collection, label=f"re-index {sources[0].doc_id}{more}")
        messages.append((Flash.SUCCESS, f"Re-indexing {len(sources)} document(s) in the background."))
    return messages


def delete_documents(doc_ids: list[str]) -> list[tuple[Flash, str]]:
    messages, busy, deleted = [], jobs.busy(collection), []
    for doc_id in doc_ids:
        name = formatting.escape_markdown(doc_id)
        if doc_id in busy:
            messages.append((Flash.WARNING, f"**{name}** is being indexed: cancel that first, or wait."))
            continue
        try:
            rag.delete(doc_id, collection)
        except RagError as exc:
            messages.append((Flash.ERROR, formatting.escape_markdown(str(exc))))
            continue
        remove_upload(rag.settings, collection, doc_id)
        deleted.append(name)
    if deleted:
        messages.append((Flash.SUCCESS, f"Deleted {', '.join(f'**{n}**' for n in deleted)}."))
    return messages


def flash(messages: list[tuple[Flash, str]]) -> None:
    """Keep action results for the next run, empty the selection, and refresh everything.

    Deleting the multiselect's key would reset it on the server only: the browser keeps its own
    copy of a widget's value unless the server *sets* one, so the chip would stay while the
    buttons, reading the server's empty value, are disabled. So the next run assigns [] before
    the widget is drawn (too late in this run), and that value is sent to the browser.
    """
    st.session_state["flash"] = messages
    st.session_state["clear_selection"] = True
    st.rerun()


def show_flash() -> None:
    for kind, text in st.session_state.pop("flash", []):
        if kind == Flash.TOAST:
            st.toast(text, icon=":material/sync:")
        else:
            getattr(st, kind)(text)


# The page --------------------------------------------------------------------------------------

st.title(":material/folder_open: Documents", anchor=False)
st.caption(
    f"Collection **{formatting.escape_markdown(collection)}** · {SUPPORTED_TYPES} · up to **{max_mb} MB** per file"
)
intro = st.empty()
upload_form()
import_form()
live = bool(jobs.active(collection))  # after the form: a job it just queued is polled at once
if not live and not common.library(rag, collection):
    intro.info(
        "**Start here:** this collection has no documents yet. Upload a few files below; they are "
        "indexed in the background, and you can ask questions about them on the Chat page.",
        icon=":material/waving_hand:",
    )


@st.fragment(run_every=common.POLL_SECONDS if live else None)
def library_panel() -> None:
    """Jobs and library, refreshed every second while this collection has something indexing."""
    job_list = jobs.jobs(collection)
    if live and not any(j.active for j in job_list):
        st.rerun()  # everything finished: one full refresh, which also stops the polling
    show_flash()
    if job_list:
        title, clear = st.columns([4, 1], vertical_alignment="bottom")
        title.subheader("Indexing", anchor=False)
        if any(not j.active for j in job_list):
            clear.button("Clear finished", icon=":material/clear_all:", width="stretch",
                         on_click=jobs.clear_finished, args=(collection,))
        for job in reversed(job_list):
            job_panel(job)
    try:
        docs = common.library(rag, collection)
    except RagError as exc:  # a fragment rerun is outside app.py's safety net
        st.error(formatting.escape_markdown(str(exc)), icon=":material/error:")
        return
    if docs:
        st.subheader("Library", anchor=False)
        library_figures(docs)
        view = library_view(docs)
        library_table(view.documents)
        library_actions(docs, view)


library_panel()
