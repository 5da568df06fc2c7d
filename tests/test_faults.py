"""Faults a real deployment meets: Milvus stopping mid-ingestion, the app killed mid-ingestion,
and many questions at once. Real Milvus (Lite and a local server), the real model, real files."""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import re
import select
import signal
import statistics
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rag.answering.events import Answer
from rag.config import Settings
from rag.ingestion.sources import IngestProgress, Source
from rag.options import AskOptions
from rag.service import Rag
from rag.storage.local_server import LocalMilvusServer, milvus_package_version
from tests import docs
from tests.helpers import ROOT, clean_environ, free_port
from tests.milvus_fixtures import milvus_server  # noqa: F401  (fixture)

BATCH = 32  # RAG_EMBED_BATCH_SIZE's default: progress moves in steps of this many chunks
WORDS = (
    "pump valve seal pressure gauge filter inlet outlet bearing shaft motor rotor housing gasket "
    "flange coupling impeller casing nozzle sensor relay switch cable fuse panel meter"
).split()


def write_corpus(folder: Path, files: int, paragraphs: int = 40) -> dict[str, Path]:
    """Plain-text manuals of ~59 chunks each: a document never ends on a batch boundary, so an
    interruption always finds one half-inserted."""
    folder.mkdir(parents=True, exist_ok=True)
    corpus: dict[str, Path] = {}
    for i in range(files):
        paras = [
            f"Manual {i}, section {j}. " + " ".join(f"{WORDS[(i * 7 + j * 3 + k) % len(WORDS)]}{k}" for k in range(120)) + "."
            for j in range(paragraphs)
        ]
        path = folder / f"manual{i}.txt"
        path.write_text("\n\n".join(paras))
        corpus[path.name] = path
    return corpus


def assert_consistent(rag: Rag, collection: str) -> dict[str, int]:
    """No row says "indexing" when nothing is, every indexed row has exactly its chunks, and no
    chunk belongs to a document the library does not list as indexed. Returns chunks per document."""
    records = rag.documents(collection)
    assert [d.doc_id for d in records if d.status == "indexing"] == []
    indexed = {d.doc_id: d.chunks for d in records if d.status == "indexed"}
    for doc_id, chunks in indexed.items():
        assert rag.count_chunks(collection, doc_id) == chunks, f"{doc_id} is listed as indexed with missing or extra chunks"
    assert rag.count_chunks(collection) == sum(indexed.values()), "chunks of documents the library does not list"
    return indexed


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[LocalMilvusServer]:
    """A server of this test's own, to stop and restart (its data stays in its folder)."""
    if milvus_package_version() is None:
        pytest.skip("the local Milvus server needs the `milvus` package (pip install milvus==2.3.5)")
    server = LocalMilvusServer(tmp_path / "milvus-server", port=free_port(), stop_timeout=5)
    server.start()
    yield server
    server.stop()


@pytest.mark.timeout(600)
@pytest.mark.server
def test_milvus_server_stopped_in_the_middle_of_an_ingestion(
    own_server: LocalMilvusServer, tmp_path: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """The user gets one readable line, soon; once Milvus is back the library is consistent and
    the same ingestion completes without duplicates."""
    corpus = write_corpus(tmp_path / "corpus", files=4)
    settings = Settings(MILVUS_URI=own_server.uri, RAG_DATA_DIR=tmp_path / "data", _env_file=None)
    rag = Rag(settings)
    stopped_at: list[float] = []  # the stop request (SIGTERM; SIGKILL 5 s later), then the process gone

    def stop() -> None:
        own_server.stop()
        stopped_at.append(time.monotonic())

    stopper = threading.Thread(target=stop, daemon=True)

    def stop_on_first_chunks(state: IngestProgress) -> None:  # called on the event loop: must not block it
        if state.chunks_done and not stopped_at:
            stopped_at.append(time.monotonic())
            stopper.start()

    ended_at: list[float] = []
    future = rag.start_ingest([tmp_path / "corpus"], "c", stop_on_first_chunks)
    future.add_done_callback(lambda _: ended_at.append(time.monotonic()))
    try:
        report = future.result(timeout=240)
    finally:
        stopper.join(timeout=60)
        rag.close()
    printed = capfd.readouterr().err
    surfaced, after_exit = ended_at[0] - stopped_at[0], ended_at[0] - stopped_at[1]
    with capfd.disabled():
        print(
            f"\nserver stopped mid-ingestion: the error surfaced {surfaced:.1f} s after the stop request, "
            f"{after_exit:+.1f} s from the server's exit"
        )

    assert report.aborted, f"the ingestion finished before the server stopped: {report.results}"
    assert report.aborted.startswith(f"cannot use Milvus server {own_server.uri}: ")
    assert "Check that Milvus is running" in report.aborted
    assert surfaced < 60
    failed = report.failed
    assert failed and len(failed) + sum(r.status == "indexed" for r in report.results) == len(corpus)
    for text in [report.aborted, *(r.error for r in failed)]:
        assert "\n" not in text and len(text) < 500, text
        assert not any(noise in text for noise in ("StatusCode", "<MilvusException", "debug_error", "Traceback")), text
    assert all(r.error == f"not indexed: {report.aborted}" for r in failed)
    assert "Traceback" not in printed, "a library printed its tracebacks to the terminal"
    assert "never retrieved" not in caplog.text, "an insert was left running behind the undo"

    own_server.start()  # same folder: the chunks written before the stop are still there
    with Rag(settings) as fresh:
        before = assert_consistent(fresh, "c")
        assert set(before) <= set(corpus)

        rerun = fresh.ingest([tmp_path / "corpus"], "c")
        assert {r.doc_id: r.status for r in rerun.results} == {
            name: "unchanged" if name in before else "indexed" for name in corpus
        }
        after = assert_consistent(fresh, "c")
        assert set(after) == set(corpus)

        clean = fresh.ingest([tmp_path / "corpus"], "clean")
        assert {r.doc_id: r.chunks for r in clean.results} == after
        assert fresh.count_chunks("c") == fresh.count_chunks("clean") == clean.chunks


PROGRESS = re.compile(r"(\d+)/(\d+) \[[^\]]*?(\d+)/(\d+) files\]")


def _terminal() -> tuple[int, int]:
    """A pseudo-terminal 200 columns wide: the CLI draws its progress bar only on a terminal."""
    parent, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 200, 0, 0))
    return parent, child


def _read_until_midway(fd: int, proc: subprocess.Popen, timeout: float) -> tuple[int, int, str]:
    """Read the CLI's progress bar until a document is half-inserted; (chunks, files, output)."""
    out = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if not select.select([fd], [], [], 0.5)[0]:
            continue
        try:
            data = os.read(fd, 65536)
        except OSError:  # the terminal closed: the CLI exited
            break
        out += data.decode("utf-8", "replace")
        found = PROGRESS.findall(out[-2000:])
        if found:
            chunks, _, files, total = map(int, found[-1])
            if chunks >= 2 * BATCH and files < total:
                return chunks, files, out
    raise AssertionError(f"the CLI never got mid-way (exit code {proc.poll()}):\n{out[-3000:]}")


def _raw_state(db: Path, collection: str) -> dict[str, tuple[str, int, int]]:
    """doc_id -> (status, chunks in the catalog, chunks in Milvus), read with plain pymilvus."""
    from pymilvus import MilvusClient

    client = MilvusClient(str(db))
    try:
        rows = client.query("_rag_catalog", filter='kind == "document"', output_fields=["info"])
        state = {}
        for row in rows:
            info = row["info"]
            stored = client.query(collection, filter=f'doc_id == "{info["doc_id"]}"', output_fields=["count(*)"])
            state[info["doc_id"]] = (info["status"], info["chunks"], int(stored[0]["count(*)"]))
        return state
    finally:
        client.close()


@pytest.mark.timeout(600)
def test_the_app_process_killed_in_the_middle_of_an_ingestion_and_restarted(tmp_path: Path) -> None:
    """SIGKILL leaves a document half-written under an "indexing" row; the next process must
    roll it back before showing the library, and the same ingestion must then complete."""
    corpus = write_corpus(tmp_path / "corpus", files=5)
    data = tmp_path / "data"
    env = clean_environ(RAG_DATA_DIR=str(data), RAG_LLM="none")
    parent, child = _terminal()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rag", "ingest", str(tmp_path / "corpus"), "--collection", "c"],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=child, stderr=child, start_new_session=True,
    )
    os.close(child)
    try:
        chunks, files, _ = _read_until_midway(parent, proc, timeout=240)
        os.killpg(proc.pid, signal.SIGKILL)  # the app and its Milvus Lite child, mid-ingestion
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        os.close(parent)
    print(f"\nkilled the CLI after {chunks} chunks, {files}/{len(corpus)} files")

    left = _raw_state(data / "milvus.db", "c")
    half = {doc_id: s for doc_id, s in left.items() if s[0] == "indexing"}
    assert half, f"nothing was left half-indexed, the test did not interrupt anything: {left}"
    assert any(stored < catalog for _, catalog, stored in half.values()), half

    with Rag(Settings(RAG_DATA_DIR=data, _env_file=None)) as rag:
        survived = assert_consistent(rag, "c")
        assert not set(half) & set(survived)
        expected = {
            name: len(rag.parts.parse(Source(path, name), "c")[1]) for name, path in corpus.items()
        }  # what a clean ingestion indexes

        rerun = rag.ingest([tmp_path / "corpus"], "c")
        assert rerun.failed == [] and not rerun.aborted
        assert {r.doc_id: r.status for r in rerun.results} == {
            name: "unchanged" if name in survived else "indexed" for name in corpus
        }
        assert assert_consistent(rag, "c") == expected


@pytest.mark.timeout(600)
def test_200_concurrent_async_retrievals_against_the_local_server(
    milvus_server: LocalMilvusServer, tmp_path: Path  # noqa: F811
) -> None:
    """Many questions at once through one core: no errors, no answers mixed up, and the latency."""
    corpus = docs.make_corpus(tmp_path / "corpus")
    settings = Settings(MILVUS_URI=milvus_server.uri, RAG_DATA_DIR=tmp_path / "data", _env_file=None)
    asked = [(name, docs.QUESTIONS[name]) for name in docs.QUESTIONS] * 25

    async def timed(question: str) -> tuple[Answer, float]:
        start = time.perf_counter()
        answer = await rag.aask(question, AskOptions("concurrent", top_k=4, retrieve_only=True))
        return answer, time.perf_counter() - start

    async def burst() -> list[tuple[Answer, float] | BaseException]:
        return await asyncio.gather(*(timed(question) for _, question in asked), return_exceptions=True)

    with Rag(settings) as rag:
        rag.ingest(list(corpus.values()), "concurrent")
        start = time.perf_counter()
        results = asyncio.run(burst())
        wall = time.perf_counter() - start

    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == [], errors[:3]
    latencies = sorted(seconds * 1000 for _, seconds in results)  # type: ignore[misc]
    p50, p95 = statistics.median(latencies), statistics.quantiles(latencies, n=20)[-1]
    print(
        f"\n{len(asked)} concurrent retrievals: p50 {p50:.0f} ms, p95 {p95:.0f} ms, "
        f"max {latencies[-1]:.0f} ms, wall {wall:.2f} s"
    )
    for (name, question), (answer, _) in zip(asked, results, strict=True):  # type: ignore[misc]
        assert answer.sources and answer.error == "" and answer.answer is None
        assert answer.sources[0].file == name, question
