"""The Documents page: honest indexing progress, a selection that empties after an action, one
list of supported file types, and a library that uses the page.

The progress rules are checked on plain values; the page through `AppTest` of app.py, on a real
Milvus Lite and the real pipeline. A running job is held still, deterministically, by taking the
catalog lock on the app's loop: the pipeline then stops before writing its first document.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import pytest
from streamlit.testing.v1 import AppTest

from rag.ingestion.jobs import JobView
from rag.ingestion.readers import FILE_TYPES, READERS, SUPPORTED_EXTENSIONS, SUPPORTED_TYPES
from rag.ingestion.recovery import catalog_lock
from rag.ingestion.sources import ETA_MIN_SECONDS, IngestProgress, Source
from rag.ingestion.uploads import save_upload
from rag.loop import shared_loop
from tests.helpers import button, new_app, open_page, plain, texts, until, upload

CORPUS = ("manual.pdf", "report.docx", "notes.md")


# The progress rules ------------------------------------------------------------------------------


def _job(**fields) -> JobView:
    """A running job's snapshot, started at t=110 (submitted at t=100)."""
    base = dict(id="job-1", collection="c", label="a.pdf", state="running", files=(),
                progress=IngestProgress(files_total=4), report=None, error="", submitted_at=100.0,
                finished_at=None, started_at=110.0, updated_at=None)
    return JobView(**{**base, **fields})


@pytest.mark.quick
def test_time_left_waits_for_enough_work_and_time():
    assert IngestProgress(files_total=16, bytes_total=1000, bytes_done=50, elapsed=60).eta_seconds is None  # 5 %
    assert IngestProgress(files_total=16, bytes_total=1000, bytes_done=500, elapsed=ETA_MIN_SECONDS - 1).eta_seconds is None
    assert IngestProgress(files_total=16, bytes_total=1000, bytes_done=250, elapsed=20).eta_seconds == pytest.approx(60)
    assert IngestProgress(files_total=4, files_done=1).fraction == 0.25, "no sizes known: by files"


@pytest.mark.quick
def test_elapsed_counts_from_the_job_start_at_render_time():
    job = _job(progress=IngestProgress(files_total=4, elapsed=0.0))  # no report since the start
    assert job.elapsed(now=125.0) == 15.0 and job.elapsed(now=126.0) == 16.0
    assert _job(state="queued", started_at=None).elapsed(now=125.0) == 0.0
    assert _job(state="done", finished_at=150.0).elapsed(now=999.0) == 40.0


@pytest.mark.quick
def test_time_left_counts_down_between_reports():
    half = IngestProgress(files_total=4, bytes_total=100, bytes_done=50, elapsed=30.0)  # 30 s left when reported
    job = _job(progress=half, updated_at=140.0)
    assert [job.eta(now=t) for t in (140.0, 150.0, 200.0)] == [30.0, 20.0, 0.0]
    assert _job(progress=replace(half, bytes_done=5), updated_at=140.0).eta(now=140.0) is None
    assert _job(progress=half, state="done", updated_at=140.0).eta(now=140.0) is None


@pytest.mark.quick
def test_supported_types_are_one_list():
    assert set(READERS) == set(SUPPORTED_EXTENSIONS) == {e for t in FILE_TYPES for e in t.extensions}
    assert SUPPORTED_TYPES == "PDF, Word (.docx), Markdown, plain text, HTML, CSV, JSON, RTF and scanned images (PNG, JPEG, TIFF, WebP)"
    [word] = [t for t in FILE_TYPES if t.label.startswith("Word")]
    assert word.extensions == (".docx",), "Word means .docx: .doc files are refused"


# The real pipeline and the page ------------------------------------------------------------------


def test_the_pipeline_reports_measured_figures(app_rag, corpus):
    seen: list[tuple[int, int, float, int, str]] = []
    sources = [Source(corpus[name], name) for name in CORPUS]
    app_rag.ingest(sources, "progress_check",
                   lambda p: seen.append((p.files_done, p.chunks_done, p.bytes_done, p.bytes_total, p.current)))
    total = sum(s.path.stat().st_size for s in sources)
    assert seen[0] == (0, 0, 0, total, "manual.pdf"), "the first file is reported while it is parsed"
    done = [bytes_done for _, _, bytes_done, _, _ in seen]
    assert done == sorted(done) and done[-1] == total, "bytes done only go forward, to all of them"
    assert seen[-1][0] == len(CORPUS) and {t for *_, t, _ in seen} == {total}


@contextmanager
def catalog_held() -> Iterator[None]:
    """Hold the catalog lock on the app's loop: an ingestion parses, then waits to write."""
    held, release = threading.Event(), threading.Event()

    async def hold() -> None:
        async with catalog_lock():
            held.set()
            await asyncio.to_thread(release.wait, 300)

    future = shared_loop().submit(hold())
    assert held.wait(60), "the catalog lock was not taken"
    try:
        yield
    finally:
        release.set()
        future.result(60)


def _seconds(text: str) -> int:
    """`1 min 05 s elapsed` -> 65."""
    match = re.search(r"(?:(\d+) min )?(\d+) s elapsed", text)
    assert match, text
    return int(match[1] or 0) * 60 + int(match[2])


def _progress_text(at: AppTest, sidebar: bool = False) -> str:
    [bar] = (at.sidebar if sidebar else at.main).get("progress")
    return bar.proto.text


def test_a_running_job_shows_measured_figures_and_a_ticking_clock(app_rag, corpus):
    from pages import common

    # A collection of its own: the files are new there, so the job has all of them to write.
    at = open_page(new_app(collection="held_job"), "documents")  # connected (and recovered) before the lock is held
    jobs = common.get_jobs()
    sources = [Source(save_upload(app_rag.settings, "held_job", n, corpus[n].read_bytes()), n) for n in CORPUS]
    with catalog_held():
        job_id = jobs.submit(sources, "held_job")
        until(lambda: jobs.get(job_id).progress.current == CORPUS[-1], 120)  # its last report until the lock goes
        last_report = jobs.get(job_id)
        until(lambda: time.time() - last_report.updated_at >= 2, 30)
        at.run()
        assert not at.exception
        view = jobs.get(job_id)
        assert view.state == "running" and view.updated_at == last_report.updated_at, "no report came meanwhile"
        metrics = {m.label: m.value for m in at.metric}
        assert metrics["Files"] == "0 / 3" and metrics["Chunks"] == "0", "done counts, no guessed total"
        assert metrics["Time left"] == "estimating…"
        since_report = int(last_report.updated_at - last_report.started_at + 2)  # shown in whole seconds
        assert _seconds(_progress_text(at)) >= since_report, "elapsed is read at render time, not at the last report"
        assert _progress_text(at).startswith("0% of the data (by file size)")
        sidebar = _progress_text(at, sidebar=True)
        assert sidebar.startswith("0/3 files · ") and _seconds(sidebar) >= since_report and "left" not in sidebar
        assert "None" not in texts(at)
        # Chat's sidebar names the job and links to its progress, with no timer of its own.
        chat = open_page(new_app(collection="held_job"), "chat")
        assert not chat.exception and not chat.sidebar.get("progress")
        assert "Indexing into **held_job**" in plain(" ".join(c.value for c in chat.sidebar.caption))
        [link] = chat.sidebar.get("page_link")
        assert link.proto.label == "Progress on Documents"
    jobs.wait(job_id, 120)
    at.run()
    assert "3 indexed" in plain(texts(at)) and not at.get("progress")
    jobs.clear_finished()


def test_files_not_done_have_no_chunk_count_rather_than_none(app_rag):
    from pages import common

    at = open_page(new_app(collection="held_memos"), "documents")
    jobs = common.get_jobs()
    names = [f"memo{i:02d}.txt" for i in range(14)]
    sources = [Source(save_upload(app_rag.settings, "held_memos", n, f"Memo {n}: room {i}.".encode()), n)
               for i, n in enumerate(names)]
    with catalog_held():
        job_id = jobs.submit(sources, "held_memos")
        until(lambda: jobs.get(job_id).files[0].status == "indexing", 120)
        at.run()
        table = at.dataframe[0]
        assert list(table.value["File"]) == names and table.value["Chunks"].isna().all()
        assert table.proto.placeholder == "—", "a missing count shows as a dash, not 'None'"
    jobs.wait(job_id, 120)
    at.run()
    assert list(at.dataframe[0].value["Chunks"]) == [1] * 14
    jobs.clear_finished()


def _selection_is_cleared(at: AppTest) -> None:
    """Empty on the server *and* sent to the browser, which otherwise keeps its own copy."""
    selection = at.multiselect(key="selected_docs")
    assert selection.value == [] and selection.proto.set_value and list(selection.proto.raw_values) == []
    assert button(at, "Re-index").disabled


def test_the_selection_is_empty_and_usable_after_a_reindex_or_delete(app_rag, corpus):
    from pages import common

    at = open_page(new_app(), "documents")
    upload(at, {n: corpus[n].read_bytes() for n in CORPUS[:2]})
    at.multiselect(key="selected_docs").set_value(["report.docx"]).run()
    assert not button(at, "Re-index").disabled
    button(at, "Re-index").click().run()
    assert any("Re-indexing 1 document" in s.value for s in at.success)
    _selection_is_cleared(at)
    for job in common.get_jobs().active("documents"):
        common.get_jobs().wait(job.id, 120)
    at.run()

    at.multiselect(key="selected_docs").set_value(["manual.pdf"]).run()
    at.button(key="confirm_delete").click().run()
    assert any("Deleted" in s.value for s in at.success)
    _selection_is_cleared(at)
    assert "manual.pdf" not in at.multiselect(key="selected_docs").options
    at.multiselect(key="selected_docs").set_value(["report.docx"]).run()
    assert not button(at, "Re-index").disabled, "the emptied selection takes a new choice"


def test_the_page_names_the_supported_types_as_the_core_does(app_rag):
    at = open_page(new_app(), "documents")
    assert SUPPORTED_TYPES in plain(at.caption[0].value)
    assert set(at.file_uploader[0].allowed_type) == set(SUPPORTED_EXTENSIONS)
