"""The asynchronous ingestion pipeline: parse, chunk, embed, insert, with each stage overlapped.

Parsing runs in worker threads ahead of the embedder; embedding (CPU-bound) runs in its own
thread so the event loop stays free; each embedded batch is inserted through the async
Milvus client while the next batch is being embedded. A document is indexed all or nothing:
its new chunks are written first, then the previous version's chunks are deleted and the
catalog row is marked indexed; on any failure its new chunks are removed again.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import BaseNode, Document, MetadataMode, NodeRelationship, RelatedNodeInfo

from rag.errors import ParseError, RagError, first_line
from rag.ingestion import recovery
from rag.ingestion.chunks import add_sentence_context, merge_small_chunks
from rag.ingestion.ocr import OcrJob, OcrOptions, ocr_note, save_scan
from rag.ingestion.readers import read_file
from rag.ingestion.sources import FileResult, IngestProgress, IngestReport, ProgressCallback, Source, file_hash
from rag.models.embeddings import EmbedInfo
from rag.status import DocStatus, FileStatus
from rag.storage.catalog import DocumentRecord, MilvusStore, now_iso

log = logging.getLogger(__name__)

NODE_NAMESPACE = uuid.UUID("6f1c5a52-2f7e-4d55-9a53-0d3f1f2b7c11")
# Metadata the embedder sees (the rest would only spend the model's 256 word pieces).
EMBED_METADATA = ("file_name",)
LLM_METADATA = ("file_name", "page_label")

@dataclass
class _Parsed:
    source: Source
    record: DocumentRecord
    nodes: list[BaseNode]
    previous: DocumentRecord | None
    inserted: int = 0


class Ingestor:
    """Runs ingestions for one Milvus store and one embedding model."""

    def __init__(
        self,
        store: MilvusStore,
        *,
        embed_model,
        embed_info: EmbedInfo,
        splitter: SentenceSplitter,
        embed_executor: Executor,
        batch_size: int,
        wait_turn: Callable[[], Awaitable[None]] | None = None,
        file_timeout: float = 300.0,
        ocr: OcrOptions | None = None,
        scans_dir: Path | None = None,
    ) -> None:
        self._store = store
        self._embed_model = embed_model
        self._embed_info = embed_info
        self._splitter = splitter
        self._executor = embed_executor
        self._batch_size = batch_size
        self._wait_turn = wait_turn  # awaited before each batch: lets questions go first
        self._file_timeout = file_timeout  # seconds to read and chunk one file: a stuck file never stalls the rest
        self._ocr = ocr or OcrOptions()  # scanned pages and images (a scan's time limit is per page)
        self._scans_dir = scans_dir  # where the lines and boxes of scans are kept, to mark passages on them

    # Parsing (worker threads) -------------------------------------------------------------

    def parse(
        self, source: Source, collection: str, *, digest: str | None = None, ocr: OcrJob | None = None
    ) -> tuple[DocumentRecord, list[BaseNode]]:
        """Read and chunk one file; blocking, so it runs in a worker thread. `digest`: its
        content hash, when the caller has it already (a large file is not hashed twice); `ocr`:
        the job that reads its scanned pages, if any (progress and cancel)."""
        path = source.path
        digest = digest or file_hash(path)
        ocr = ocr or OcrJob(self._ocr)
        sections = read_file(path, ocr)
        documents = []
        for section in sections:
            meta = {"file_name": source.name, "page": section.page, "page_label": section.page_label}
            documents.append(
                Document(
                    text=section.text,
                    metadata={k: v for k, v in meta.items() if v is not None},
                    excluded_embed_metadata_keys=[k for k in meta if k not in EMBED_METADATA],
                    excluded_llm_metadata_keys=[k for k in meta if k not in LLM_METADATA],
                )
            )
        nodes = self._splitter.get_nodes_from_documents(documents)
        nodes = merge_small_chunks([n for n in nodes if n.get_content().strip()], documents, self._splitter)
        if not nodes:
            raise ParseError(f"{source.name}: no text found in the file")
        add_sentence_context(nodes, documents)
        for i, node in enumerate(nodes):
            node.id_ = str(uuid.uuid5(NODE_NAMESPACE, f"{collection}/{source.doc_id}/{digest}/{i}"))
            node.relationships = {NodeRelationship.SOURCE: RelatedNodeInfo(node_id=source.doc_id)}
            node.metadata["content_hash"] = digest
            node.excluded_embed_metadata_keys.append("content_hash")
            node.excluded_llm_metadata_keys.append("content_hash")
        pages = [s.page for s in sections if s.page is not None]
        record = DocumentRecord(
            collection=collection,
            doc_id=source.doc_id,
            file_name=source.name,
            file_type=path.suffix.lower().lstrip("."),
            size=path.stat().st_size,
            pages=max(pages) if pages else None,
            chunks=len(nodes),
            content_hash=digest,
            source_path=str(path.resolve()),
            ocr=ocr.summary(),
        )
        if ocr.pages and self._scans_dir is not None:
            save_scan(self._scans_dir, digest, ocr.pages)
        return record, nodes

    # The pipeline ----------------------------------------------------------------------------

    async def aingest(
        self, sources: Sequence[Source], collection: str, progress: ProgressCallback | None = None
    ) -> IngestReport:
        duplicates = sorted({s.doc_id for s in sources if sum(t.doc_id == s.doc_id for t in sources) > 1})
        if duplicates:
            raise RagError(f"several files would share the document id {duplicates[0]!r}: ingest them separately")
        info = await self._store.aensure_collection(collection, self._embed_info)
        ingestion = _Ingestion(sources, progress)
        producer = asyncio.create_task(self._produce(ingestion, collection))
        try:
            await self._consume(ingestion, collection, self._store.vector_store(info))
        except asyncio.CancelledError:
            ingestion.aborted = "cancelled"
            raise
        except RagError as exc:
            ingestion.aborted = str(exc)
        except Exception as exc:  # Milvus or embedding failure: stop, undo what is half-done
            ingestion.aborted = f"{type(exc).__name__}: {first_line(exc)}"  # the report shows one line
            log.exception("ingestion stopped")
        finally:
            if ingestion.aborted:
                producer.cancel()
                await asyncio.gather(producer, return_exceptions=True)
                await asyncio.shield(self._undo(ingestion, collection))
            else:
                await producer
        return IngestReport(collection, ingestion.state.results, ingestion.elapsed(), ingestion.aborted)

    async def _produce(self, ingestion: _Ingestion, collection: str) -> None:
        """Parse files ahead of the embedder (bounded by the queue), skipping unchanged ones."""
        try:
            for source in ingestion.sources:
                ingestion.state.current = source.name
                ingestion.emit()  # the file is listed as being indexed while it is parsed
                previous = await self._store.aget_document(collection, source.doc_id)
                if source.refusal:  # listed, with its reason, and never opened
                    ingestion.parsed(source, 0)
                    await self._record_failure(collection, source, previous, source.refusal)
                    ingestion.report(FileResult(source.doc_id, FileStatus.FAILED, error=source.refusal))
                    continue
                try:
                    # An unchanged file is known by its hash alone: a folder synced again is not re-read.
                    digest = await asyncio.to_thread(file_hash, source.path)
                    if previous and previous.status == DocStatus.INDEXED and previous.content_hash == digest:
                        ingestion.parsed(source, 0)
                        ingestion.report(FileResult(source.doc_id, FileStatus.UNCHANGED, previous.chunks, previous.pages))
                        continue
                    record, nodes = await self._parse_watched(ingestion, source, collection, digest)
                except (ParseError, OSError, TimeoutError) as exc:
                    ingestion.parsed(source, 0)
                    reason = self._parse_failure(source, exc)
                    await self._record_failure(collection, source, previous, reason)
                    ingestion.report(FileResult(source.doc_id, FileStatus.FAILED, error=reason))
                    continue
                ingestion.parsed(source, len(nodes))
                await ingestion.queue.put(_Parsed(source, record, nodes, previous))
        finally:
            await ingestion.queue.put(None)

    async def _parse_watched(
        self, ingestion: _Ingestion, source: Source, collection: str, digest: str
    ) -> tuple[DocumentRecord, list[BaseNode]]:
        """`parse` in a worker thread, given up after `file_timeout` seconds without progress (a
        scan makes progress at each page read) or when the ingestion is cancelled; either way the
        thread is told to stop at its next page."""
        loop = asyncio.get_running_loop()
        job = OcrJob(self._ocr, on_page=lambda done, total: loop.call_soon_threadsafe(ingestion.page_read, done, total))
        task = asyncio.ensure_future(asyncio.to_thread(partial(self.parse, source, collection, digest=digest, ocr=job)))
        try:
            while True:
                left = job.last_progress + self._file_timeout - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                done, _ = await asyncio.wait({task}, timeout=left)
                if done:
                    return task.result()
        except BaseException:
            job.cancel()
            task.add_done_callback(lambda t: t.cancelled() or t.exception())  # its outcome is not wanted
            raise
        finally:
            ingestion.page_read(0, 0)

    def _parse_failure(self, source: Source, exc: Exception) -> str:
        if isinstance(exc, ParseError):
            return str(exc)
        if isinstance(exc, TimeoutError):  # its thread stops at its next page; nothing of it is used
            return f"{source.name}: took longer than {self._file_timeout:g} s to read (RAG_FILE_TIMEOUT): skipped"
        return f"{source.name}: cannot read the file ({exc})"

    async def _consume(self, ingestion: _Ingestion, collection: str, vector_store) -> None:
        """Embed batches in the executor; insert each one while the next is embedded."""
        loop = asyncio.get_running_loop()
        batch: list[tuple[_Parsed, BaseNode]] = []
        pending: asyncio.Task | None = None
        producing = True
        try:
            while producing or batch:
                if producing:
                    doc = await ingestion.queue.get()
                    if doc is None:
                        producing = False
                    else:
                        await self._start(ingestion, doc)
                        batch.extend((doc, node) for node in doc.nodes)
                while len(batch) >= self._batch_size or (not producing and batch):
                    items, batch = batch[: self._batch_size], batch[self._batch_size :]
                    texts = [node.get_content(metadata_mode=MetadataMode.EMBED) for _, node in items]
                    if self._wait_turn is not None:
                        await self._wait_turn()
                    vectors = await loop.run_in_executor(self._executor, self._embed_model.get_text_embedding_batch, texts)
                    for (_, node), vector in zip(items, vectors, strict=True):
                        node.embedding = vector
                    if pending is not None:
                        await pending
                    pending = asyncio.create_task(self._insert(ingestion, items, vector_store))
            if pending is not None:
                await pending
        except BaseException:
            # The insert in flight must land or fail before the undo deletes its chunks;
            # otherwise it may land after, and leave chunks of a document nobody lists.
            if pending is not None:
                await asyncio.gather(pending, return_exceptions=True)
            raise

    async def _start(self, ingestion: _Ingestion, doc: _Parsed) -> None:
        """List the document as "indexing" (owned by this process) before any chunk is written."""
        record = doc.record
        async with recovery.catalog_lock():
            recovery.claim(self._store.uri, record.key)
            ingestion.in_flight.append(doc)
            # Leftovers of this very version (an earlier ingestion that died) would be duplicates.
            await self._store.adelete_chunks(record.collection, record.doc_id, only_hash=record.content_hash)
            if doc.previous is not None and doc.previous.status == DocStatus.INDEXED:
                record.previous = asdict(doc.previous)  # lets a restart roll back
            await self._store.aput_document(record)  # status "indexing" until complete

    async def _insert(self, ingestion: _Ingestion, items: list[tuple[_Parsed, BaseNode]], vector_store) -> None:
        await self._store.ainsert(vector_store, [node for _, node in items])
        touched: dict[int, _Parsed] = {}
        for doc, _ in items:
            doc.inserted += 1
            touched[id(doc)] = doc
        ingestion.state.chunks_done += len(items)
        for doc in touched.values():
            if doc.inserted == len(doc.nodes):
                await self._finish(doc)
                ingestion.in_flight.remove(doc)
                indexed_before = doc.previous is not None and doc.previous.status == DocStatus.INDEXED
                status = FileStatus.REPLACED if indexed_before else FileStatus.INDEXED
                ingestion.report(FileResult(doc.record.doc_id, status, len(doc.nodes), doc.record.pages,
                                            note=ocr_note(doc.record.ocr)))
        ingestion.emit()

    async def _finish(self, doc: _Parsed) -> None:
        record = doc.record
        async with recovery.catalog_lock():
            await self._store.adelete_chunks(record.collection, record.doc_id, keep_hash=record.content_hash)
            record.status, record.error, record.indexed_at, record.previous = DocStatus.INDEXED, "", now_iso(), None
            await self._store.aput_document(record)
            recovery.release(self._store.uri, record.key)

    async def _record_failure(self, collection: str, source: Source, previous: DocumentRecord | None, reason: str) -> None:
        """Keep an indexed previous version (noting the error); otherwise list the failure."""
        if previous is not None and previous.status == DocStatus.INDEXED:
            previous.error = reason
            await self._store.aput_document(previous)
            return
        await self._store.aput_document(
            DocumentRecord(
                collection=collection,
                doc_id=source.doc_id,
                file_name=source.name,
                file_type=source.path.suffix.lower().lstrip("."),
                size=source.path.lstat().st_size if source.path.is_symlink() or source.path.exists() else 0,
                status=DocStatus.FAILED,
                error=reason,
            )
        )

    async def _undo(self, ingestion: _Ingestion, collection: str) -> None:
        """Remove half-written documents (best effort: Milvus may be what failed), list the rest as failed.

        A document whose undo fails keeps its "indexing" row; once no longer registered as being
        indexed, recovery rolls it back on the next call that reaches Milvus (see `rag.ingestion.recovery`).
        """
        reachable = True
        for doc in list(ingestion.in_flight):
            async with recovery.catalog_lock():
                if reachable:  # once Milvus failed, each further attempt would only wait for it again
                    try:
                        await self._store.arollback(doc.record, doc.previous)
                    except Exception:
                        reachable = False
                if not reachable:
                    log.warning("could not undo %s yet; it is rolled back once Milvus answers again", doc.record.doc_id)
                recovery.release(self._store.uri, doc.record.key)
            ingestion.in_flight.remove(doc)
        done = {r.doc_id for r in ingestion.state.results}
        for source in ingestion.sources:
            if source.doc_id not in done:
                ingestion.report(FileResult(source.doc_id, FileStatus.FAILED, error=f"not indexed: {ingestion.aborted}"))


class _Ingestion:
    """The mutable state of one ingestion: queue, documents in flight, progress."""

    def __init__(self, sources: Sequence[Source], progress: ProgressCallback | None) -> None:
        self.sources = list(sources)
        self.progress = progress
        self.started = time.perf_counter()
        self.queue: asyncio.Queue[_Parsed | None] = asyncio.Queue(maxsize=4)
        self.in_flight: list[_Parsed] = []
        self.aborted = ""
        self._sizes = {s.doc_id: max(s.path.stat().st_size, 1) if s.path.exists() else 1 for s in self.sources}
        self.state = IngestProgress(files_total=len(self.sources), bytes_total=sum(self._sizes.values()))
        self._bytes_parsed = 0
        self._bytes_finished = 0
        self._chunks_parsed = 0

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def page_read(self, done: int, total: int) -> None:
        """A scan's progress: `done` of `total` pages of the current file read (0, 0: none).
        Reported only when it changes: a file without scans makes no report of its own."""
        if (self.state.pages_read, self.state.pages_total) == (done, total):
            return
        self.state.pages_read, self.state.pages_total = done, total
        self.emit()

    def parsed(self, source: Source, chunks: int) -> None:
        self._bytes_parsed += self._sizes[source.doc_id]
        self._chunks_parsed += chunks

    def report(self, result: FileResult) -> None:
        self.state.results.append(result)
        self.state.files_done += 1
        self._bytes_finished += self._sizes.get(result.doc_id, 0)
        self.emit()

    def emit(self) -> None:
        state = self.state
        state.elapsed = self.elapsed()
        state.bytes_done = self._bytes_finished + sum(
            self._sizes[doc.source.doc_id] * doc.inserted / max(len(doc.nodes), 1) for doc in self.in_flight
        )
        unparsed = sum(self._sizes.values()) - self._bytes_parsed
        per_byte = self._chunks_parsed / self._bytes_parsed if self._bytes_parsed else 0
        state.chunks_total = self._chunks_parsed + round(unparsed * per_byte)
        if self.progress is not None:
            try:
                self.progress(state)
            except Exception:  # a broken progress display must not stop the ingestion
                log.exception("progress callback failed")
