"""Upload names made safe, and the background job registry (with a stand-in for
`Rag.start_ingest`): pure logic, no model, no Milvus."""

from __future__ import annotations

import threading
from concurrent.futures import Future

import pytest

from rag.config import Settings
from rag.errors import ConfigError, RagError
from rag.ingestion.jobs import IngestJobs
from rag.ingestion.sources import FileResult, IngestProgress, IngestReport, Source
from rag.ingestion.uploads import MAX_NAME_BYTES, find_upload, safe_file_name, save_upload, stored_path
from tests.helpers import until

# Uploads: safe names, never outside the data folder ------------------------------------------


@pytest.mark.quick
@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("manual.pdf", "manual.pdf"),
        ("../../etc/passwd.txt", "passwd.txt"),
        ("..\\..\\windows\\notes.md", "notes.md"),
        ("/abs/path/report.docx", "report.docx"),
        ("bad\x00na\x1bme\u202e.txt", "badname.txt"),
        ("..", "upload"),
        ("...pdf", "upload.pdf"),
        (".hidden.md", "hidden.md"),
        ("a<b>c:d|e?.csv", "a_b_c_d_e_.csv"),
        ("  spaced   out  .txt", "spaced out.txt"),
    ],
)
def test_upload_names_are_made_safe(raw, safe):
    assert safe_file_name(raw) == safe


@pytest.mark.quick
def test_long_names_are_capped_keeping_the_extension():
    name = safe_file_name("é" * 300 + ".pdf")
    assert name.endswith(".pdf") and len(name.encode()) <= MAX_NAME_BYTES
    assert name[:-4] == "é" * ((MAX_NAME_BYTES - 4) // 2)  # cut between characters, not inside one


@pytest.mark.quick
def test_uploads_stay_in_the_collection_folder(tmp_path):
    settings = Settings(RAG_DATA_DIR=tmp_path, _env_file=None)
    path = save_upload(settings, "docs", "../../../evil.txt", b"hello")
    assert path == (tmp_path / "uploads" / "docs" / "evil.txt").resolve() and path.read_bytes() == b"hello"
    assert find_upload(settings, "docs", "evil.txt") == path
    assert find_upload(settings, "docs", "../../milvus.db") is None
    with pytest.raises(RagError, match="not a valid document name"):
        stored_path(settings, "docs", "../outside.txt")
    with pytest.raises(ConfigError, match="invalid collection name"):
        save_upload(settings, "../x", "a.txt", b"x")
    assert [p.name for p in (tmp_path / "uploads" / "docs").iterdir()] == ["evil.txt"]  # no temp file left


# The job registry, with a stand-in for `Rag.start_ingest` ---------------------------------------


class FakeIngest:
    """Starts 'ingestions' that finish when the test says so, reporting progress like the core."""

    def __init__(self) -> None:
        self.started: list[tuple[list[Source], str]] = []
        self.release: list[threading.Event] = []
        self.futures: list[Future] = []

    def __call__(self, sources, collection, progress):
        future: Future = Future()
        gate = threading.Event()
        self.started.append((list(sources), collection))
        self.release.append(gate)
        self.futures.append(future)

        def run():
            state = IngestProgress(files_total=len(sources))
            state.current = sources[0].name
            progress(state)
            gate.wait(10)
            if future.cancelled():
                return
            results = [FileResult(s.doc_id, "failed", 2, error="bad file") if "bad" in s.doc_id else FileResult(s.doc_id, "indexed", 2)
                       for s in sources]
            state.results.extend(results)
            state.files_done = len(results)
            progress(state)
            future.set_result(IngestReport(collection, results, 0.1))

        threading.Thread(target=run, daemon=True).start()
        return future



@pytest.mark.quick
def test_jobs_run_one_at_a_time_with_live_snapshots(tmp_path):
    fake = FakeIngest()
    jobs = IngestJobs(fake)
    try:
        first = jobs.submit([Source(tmp_path / "a.pdf", "a.pdf"), Source(tmp_path / "bad.txt", "bad.txt")], "c1")
        second = jobs.submit([Source(tmp_path / "b.md", "b.md")], "c2")
        until(lambda: jobs.get(first).files[0].status == "indexing")  # the first progress report
        view = jobs.get(first)
        assert view.state == "running"
        assert [f.status for f in view.files] == ["indexing", "waiting"] and view.label == "a.pdf and 1 more"
        assert jobs.get(second).state == "queued" and len(fake.started) == 1, "jobs are serialised"
        assert jobs.busy("c1") == {"a.pdf", "bad.txt"} and jobs.busy("c2") == {"b.md"}
        fake.release[0].set()
        done = jobs.wait(first, 10)
        assert done.state == "done" and done.summary() == "1 indexed, 1 failed"
        assert done.files[1].error == "bad file" and not done.active
        until(lambda: len(fake.started) == 2)
        assert [v.collection for v in jobs.active()] == ["c2"] and jobs.busy("c1") == set()
        fake.release[1].set()
        assert jobs.wait(second, 10).summary() == "1 indexed"
        jobs.dismiss(first)
        assert [v.id for v in jobs.jobs()] == [second]
    finally:
        for gate in fake.release:
            gate.set()
        jobs.close()


@pytest.mark.quick
def test_jobs_can_be_cancelled_and_failures_are_reported(tmp_path):
    fake = FakeIngest()
    jobs = IngestJobs(fake)
    try:
        running = jobs.submit([Source(tmp_path / "a.pdf", "a.pdf")], "c")
        queued = jobs.submit([Source(tmp_path / "b.pdf", "b.pdf")], "c")
        until(lambda: fake.started)
        assert jobs.cancel(queued) and jobs.get(queued).state == "cancelled"
        assert jobs.cancel(running)
        view = jobs.wait(running, 10)
        assert view.state == "cancelled" and [f.status for f in view.files] == ["skipped"]
        assert len(fake.started) == 1, "a cancelled queued job never starts"

        def refuse(sources, collection, progress):
            raise RagError("collection 'c' was built with another embedding model")

        failing = IngestJobs(refuse)
        job = failing.submit([Source(tmp_path / "a.pdf", "a.pdf")], "c")
        view = failing.wait(job, 10)
        assert view.state == "failed" and "another embedding model" in view.error
        failing.close()
        with pytest.raises(RagError, match="no files"):
            jobs.submit([], "c")
    finally:
        for gate in fake.release:
            gate.set()
        jobs.close()
