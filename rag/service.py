"""`Rag`: the one entry point the CLI and the pages call.

Every operation is a pair, `x` / `ax`, like LlamaIndex's `query` / `aquery`. The async method is
the one implementation and always runs on the shared background loop (`rag.loop`), whichever
thread or loop calls it; the sync method blocks on it. Heavy parts (Milvus connection, embedding
model, LLM) are created once, on first use.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from functools import cached_property, wraps
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from llama_index.core import VectorStoreIndex
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.retrievers import BaseRetriever

from rag.answering.engines import ChatEngine, QueryEngine
from rag.answering.events import Answer, Citation, Event, alast_answer, last_answer, with_mode
from rag.answering.grounding import SupportGate, embedder, weigh_nodes
from rag.chats import ChatSession, Conversations
from rag.config import EmbedProvider, LLMMode, RetrievalMode, Settings, validate_collection_name
from rag.conversations import ConversationStore
from rag.errors import ConfigError, CoreClosed, DocumentNotFound, RagError
from rag.evaluation import Question, Report, check_files, document_names, outcome, rank_of, report
from rag.ingestion import recovery
from rag.ingestion.ocr import OcrOptions, forget_scan, scans_dir
from rag.ingestion.pipeline import Ingestor
from rag.ingestion.sources import IngestReport, ProgressCallback, Source, collect_sources
from rag.loop import BackgroundLoop, shared_loop
from rag.models.embeddings import EmbedInfo, build_embed_model, count_tokens, describe_backend, embed_info
from rag.models.llm import LLMInfo, build_llm, llm_info
from rag.options import AskOptions
from rag.retrieval.rerank import LLMReranked
from rag.retrieval.search import (
    FUSION_DEPTH,
    ModeChoice,
    Modes,
    available_modes,
    choose_mode,
    make_retriever,
    resolve_scope,
    scope_filters,
)
from rag.storage.catalog import CollectionInfo, DocumentRecord, MilvusStore, check_embedding

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

CHUNK_MARGIN = 8  # word pieces kept free for the model's special tokens
# Ingestion pauses between embedding batches while a question is answered (both are CPU-bound
# on a small machine), but never longer than this, so a busy chat cannot starve an upload.
MAX_INGEST_PAUSE = 30.0


def on_loop(method: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Make an async method run on the owner's background loop, whoever awaits it."""

    @wraps(method)
    async def wrapper(self: Rag, *args: Any, **kwargs: Any) -> T:
        return await self._loop.hop(method(self, *args, **kwargs))

    return wrapper  # type: ignore[return-value]


@dataclass(frozen=True)
class SystemInfo:
    """What the app runs on, safe to display (no tokens, no keys)."""

    milvus: str
    embed_model: str
    llm: LLMInfo
    embed_backend: str = ""  # what computes a local model's embeddings, and why (empty: a server does)


class Rag:
    """Documents in, answers out, over one Milvus deployment."""

    def __init__(self, settings: Settings | None = None, loop: BackgroundLoop | None = None) -> None:
        self.settings = settings or Settings()
        self._loop = loop or shared_loop()
        self._store = MilvusStore(self.settings)
        self._closed = False
        self.conversations = Conversations(
            ConversationStore(self._store), loop=self._loop, connect=self._connect, collection=self._collection,
            documents=self._store.adocuments,
        )
        self.parts = Parts(self)
        self._embed_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rag-embed")
        self._llm: Any = None
        self._llm_loaded = False
        self._answering = 0
        self._quiet = asyncio.Event()  # set while no question is being answered
        self._quiet.set()

    # Lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:
        self._loop.run(self.aclose())

    async def aclose(self) -> None:
        self._closed = True
        await self._loop.hop(self._store.aclose())
        self._embed_executor.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> Rag:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Rag:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # Parts, created on first use ------------------------------------------------------------

    @cached_property
    def embed_model(self):
        return build_embed_model(self.settings)

    @cached_property
    def embed_info(self) -> EmbedInfo:
        return embed_info(self.settings, self.embed_model)

    @cached_property
    def splitter(self) -> SentenceSplitter:
        """Chunks sized in the embedding model's own word pieces, so no chunk is cut off."""
        size = self.embed_info.max_tokens - CHUNK_MARGIN
        overlap = min(self.settings.chunk_overlap, size // 4)
        return SentenceSplitter(chunk_size=size, chunk_overlap=overlap, tokenizer=count_tokens(self.embed_model, size))

    @property
    def llm(self):
        if not self._llm_loaded:
            self._llm = build_llm(self.settings)
            self._llm_loaded = True
        return self._llm

    @property
    def info(self) -> SystemInfo:
        return SystemInfo(
            milvus=self.settings.milvus_display,
            embed_model=self.settings.embed_display,
            llm=llm_info(self.settings),
            embed_backend=describe_backend(self.settings) if self.settings.embed_provider is EmbedProvider.LOCAL else "",
        )

    def _secrets(self) -> tuple[str, ...]:
        return (self.settings.openai_api_key.get_secret_value(), self.settings.milvus_token.get_secret_value())

    def _collection(self, name: str | None) -> str:
        try:
            return validate_collection_name(name or self.settings.collection)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def _check_open(self) -> None:
        if self._closed:
            raise CoreClosed("this Rag was closed: create a new one to go on")

    async def _connect(self) -> MilvusStore:
        self._check_open()  # a closed core refuses, rather than half-reconnecting
        await self._store.aconnect()
        await recovery.arecover_once(self._store)  # before this process reads or ingests anything
        return self._store

    @property
    def _ingest_batch(self) -> int:
        """Texts embedded per step of the pipeline: a server gets enough to fill every request in flight."""
        s = self.settings
        return s.embed_batch_size * (s.embed_concurrency if s.embed_provider is EmbedProvider.OPENAI else 1)

    def _ingestor(self) -> Ingestor:
        return Ingestor(
            self._store, embed_model=self.embed_model, embed_info=self.embed_info, splitter=self.splitter,
            embed_executor=self._embed_executor, batch_size=self._ingest_batch,
            wait_turn=self._wait_for_quiet, file_timeout=self.settings.file_timeout,
            ocr=OcrOptions.from_settings(self.settings), scans_dir=scans_dir(self.settings),
        )

    async def _wait_for_quiet(self) -> None:
        try:
            await asyncio.wait_for(self._quiet.wait(), MAX_INGEST_PAUSE)
        except TimeoutError:
            pass

    @asynccontextmanager
    async def _foreground(self) -> AsyncIterator[None]:
        """Mark a question in progress: background ingestion yields the CPU to it."""
        self._answering += 1
        self._quiet.clear()
        try:
            yield
        finally:
            self._answering -= 1
            if not self._answering:
                self._quiet.set()

    async def _open(self, collection: str | None) -> CollectionInfo:
        store = await self._connect()
        info = await store.aget_collection(self._collection(collection))
        check_embedding(info, self.embed_info)
        return info

    async def _retriever(self, options: AskOptions) -> tuple[BaseRetriever, ModeChoice]:
        """A retriever over a collection, in a mode, limited to some documents, and that mode."""
        top_k = self.settings.top_k if options.top_k is None else options.top_k
        info = await self._open(options.collection)
        choice = choose_mode(options.mode, self.settings.retrieval_mode, info, await self._store.asupports_bm25())
        if not await self._store.ahas_indexed(info.name):
            raise RagError(f"collection {info.name!r} has no indexed documents yet: ingest some first")
        docs = options.docs
        doc_ids = resolve_scope(docs, await self._store.adocuments(info.name), info.name) if docs else []
        index = VectorStoreIndex.from_vector_store(self._store.vector_store(info), embed_model=self.embed_model)
        rerank = 0 if options.retrieve_only else self.settings.llm_rerank  # the LLM's candidates
        retriever = make_retriever(index, self.embed_model, mode=choice.mode, top_k=max(top_k, rerank), filters=scope_filters(doc_ids))
        if rerank:
            retriever = LLMReranked(retriever, await asyncio.to_thread(lambda: self.llm), top_k)
        return retriever, choice

    def retrieval_modes(self, collection: str | None = None) -> Modes:
        return self._loop.run(self.aretrieval_modes(collection))

    @on_loop
    async def aretrieval_modes(self, collection: str | None = None) -> Modes:
        """The modes the collection can be searched in on this Milvus (dense always)."""
        info = await self._open(collection)
        return available_modes(info, await self._store.asupports_bm25())

    def evaluate(self, questions: Sequence[Question], collection: str | None = None, mode: str | None = None,
                 top_ks: Sequence[int] = (5,)) -> list[Report]:
        return self._loop.run(self.aevaluate(questions, collection, mode, top_ks))

    @on_loop
    async def aevaluate(self, questions: Sequence[Question], collection: str | None = None, mode: str | None = None,
                        top_ks: Sequence[int] = (5,)) -> list[Report]:
        """Retrieval quality of a question set: one search per question at the largest k, one
        report per k. Refuses a set that names files the collection lacks, before searching."""
        info = await self._open(collection)
        check_files(questions, document_names(await self._store.adocuments(info.name)), info.name)
        deepest = max(top_ks)
        retriever, choice = await self._retriever(AskOptions(info.name, deepest, mode=mode))
        # A hybrid search's right passage is also looked up in each search's own candidates, as searched (no LLM rerank).
        legs = [(await self._retriever(AskOptions(info.name, max(deepest, FUSION_DEPTH), mode=leg, retrieve_only=True)))[0]
                for leg in ("dense", "keyword")] if choice.mode == RetrievalMode.HYBRID else []
        kind, gate = RetrievalMode(choice.mode).score_kind, embedder(self.embed_model)
        outcomes = []
        for q in questions:
            hits = await retriever.aretrieve(q.question)
            ranks = [rank_of(q, [Citation.from_node(h) for h in await leg.aretrieve(q.question)]) for leg in legs]
            passages = hits[: self.settings.top_k]  # what an answer would weigh
            evidence = await asyncio.get_running_loop().run_in_executor(self._embed_executor, weigh_nodes, q.question, passages, gate)
            outcomes.append(replace(outcome(q, [Citation.from_node(hit, score_kind=kind) for hit in hits]),
                                    dense_rank=ranks[0] if legs else None, keyword_rank=ranks[-1] if legs else None,
                                    legs=bool(legs), declined=not evidence.found))
        return [report(info.name, outcomes, mode=choice.mode, k=k, note=choice.note) for k in top_ks]

    # Collections ----------------------------------------------------------------------------

    def collections(self) -> list[CollectionInfo]:
        return self._loop.run(self.acollections())

    @on_loop
    async def acollections(self) -> list[CollectionInfo]:
        return await (await self._connect()).alist_collections()

    def create_collection(self, name: str) -> CollectionInfo:
        return self._loop.run(self.acreate_collection(name))

    @on_loop
    async def acreate_collection(self, name: str) -> CollectionInfo:
        return await (await self._connect()).aensure_collection(self._collection(name), self.embed_info)

    # Documents --------------------------------------------------------------------------------

    def ingest(
        self, paths: Iterable[str | Path | Source], collection: str | None = None, progress: ProgressCallback | None = None
    ) -> IngestReport:
        return self._loop.run(self.aingest(paths, collection, progress))

    def start_ingest(
        self, paths: Iterable[str | Path | Source], collection: str | None = None, progress: ProgressCallback | None = None
    ) -> Future[IngestReport]:
        """Ingest in the background; the returned future can be polled or cancelled from any thread."""
        return self._loop.submit(self.aingest(paths, collection, progress))

    @on_loop
    async def aingest(
        self, paths: Iterable[str | Path | Source], collection: str | None = None, progress: ProgressCallback | None = None
    ) -> IngestReport:
        name = self._collection(collection)
        items = list(paths)
        sources = [p for p in items if isinstance(p, Source)] + collect_sources(p for p in items if not isinstance(p, Source))
        if not sources:
            raise RagError("no supported files to ingest")
        store = await self._connect()
        try:
            report = await self._ingestor().aingest(sources, name, progress)
        except BaseException:
            recovery.needs_recovery(store.uri)  # the next call that reaches Milvus finishes any failed undo
            raise
        if report.aborted:
            recovery.needs_recovery(store.uri)
        return report

    def documents(self, collection: str | None = None) -> list[DocumentRecord]:
        return self._loop.run(self.adocuments(collection))

    @on_loop
    async def adocuments(self, collection: str | None = None) -> list[DocumentRecord]:
        info = await (await self._connect()).aget_collection(self._collection(collection))
        return await self._store.adocuments(info.name)

    def delete(self, doc_id: str, collection: str | None = None) -> DocumentRecord:
        return self._loop.run(self.adelete(doc_id, collection))

    @on_loop
    async def adelete(self, doc_id: str, collection: str | None = None) -> DocumentRecord:
        store = await self._connect()
        info = await store.aget_collection(self._collection(collection))
        record = await store.aget_document(info.name, doc_id)
        if record is None:
            known = [d.doc_id for d in await store.adocuments(info.name)]
            hint = f"; documents: {', '.join(known[:10])}" if known else "; the collection is empty"
            raise DocumentNotFound(f"no document {doc_id!r} in collection {info.name!r}{hint}")
        await store.adelete_chunks(info.name, doc_id)
        await store.aforget_document(info.name, doc_id)
        if record.ocr:  # its lines and boxes go with it
            forget_scan(scans_dir(self.settings), record.content_hash)
        return record

    def prune(self, folder: str | Path, collection: str | None = None) -> list[DocumentRecord]:
        """Remove the documents indexed from files under `folder` whose files are gone."""
        return self._loop.run(self.aprune(folder, collection))

    @on_loop
    async def aprune(self, folder: str | Path, collection: str | None = None) -> list[DocumentRecord]:
        """Only documents read from `folder` are considered: uploads and other folders are kept."""
        root = Path(folder).resolve()
        store = await self._connect()
        info = await store.aget_collection(self._collection(collection))
        gone = [
            d for d in await store.adocuments(info.name)
            if d.source_path and Path(d.source_path).is_relative_to(root) and not Path(d.source_path).exists()
        ]
        for record in gone:
            await self.adelete(record.doc_id, info.name)
        return gone

    def count_chunks(self, collection: str | None = None, doc_id: str | None = None) -> int:
        """Chunks stored in Milvus itself, not the catalog's figure."""
        return self._loop.run(self._count(collection, doc_id))

    @on_loop
    async def _count(self, collection: str | None, doc_id: str | None) -> int:
        return await (await self._connect()).acount_chunks(self._collection(collection), doc_id)

    # Questions --------------------------------------------------------------------------------

    # Each takes the question and one `AskOptions` (None: every default), checked when it is
    # built, before anything is loaded; the streaming pair yields `Sources`, `Token`s, `Done`.

    def ask(self, question: str, options: AskOptions | None = None) -> Answer:
        return last_answer(self.stream_ask(question, options))

    async def aask(self, question: str, options: AskOptions | None = None) -> Answer:
        return await alast_answer(self.astream_ask(question, options))

    def stream_ask(self, question: str, options: AskOptions | None = None) -> Iterator[Event]:
        return self._loop.iterate(self._astream_ask(question, options or AskOptions()))

    def astream_ask(self, question: str, options: AskOptions | None = None) -> AsyncIterator[Event]:
        return self._loop.hop_iter(self._astream_ask(question, options or AskOptions()))

    async def _answering_parts(self, retrieve_only: bool) -> tuple[Any, SupportGate, bool]:
        """The LLM (None without one), a fresh support gate, and whether answers are quotes."""
        quote = not retrieve_only and self.settings.llm_mode is LLMMode.QUOTE
        llm = None if retrieve_only or quote else await asyncio.to_thread(lambda: self.llm)
        return llm, SupportGate(embedder(self.embed_model)), quote

    async def _astream_ask(self, question: str, options: AskOptions) -> AsyncIterator[Event]:
        async with self._foreground():
            retriever, choice = await self._retriever(options)
            llm, gate, quote = await self._answering_parts(options.retrieve_only)
            engine = QueryEngine(
                retriever, llm, gate, secrets=self._secrets(), quote=quote,
                score_kind=RetrievalMode(choice.mode).score_kind,
            )
            async for event in with_mode(engine.astream(question), choice):
                yield event

    def chat_session(self, options: AskOptions | None = None) -> ChatSession:
        """A conversation with its own memory; its sync and async methods share the core's loop."""
        self._check_open()
        return ChatSession(options or AskOptions(), loop=self._loop, open_engine=self._chat_engine,
                           answering=self._foreground)

    async def _chat_engine(self, options: AskOptions) -> tuple[ChatEngine, ModeChoice]:
        retriever, choice = await self._retriever(options)
        llm, gate, quote = await self._answering_parts(options.retrieve_only)
        engine = ChatEngine(
            retriever, llm, gate, secrets=self._secrets(), quote=quote, score_kind=RetrievalMode(choice.mode).score_kind
        )
        return engine, choice

class Parts:
    """The pieces `Rag`'s operations hide, for the benchmarks that time them one by one
    (`rag.parts`): not part of the app's surface."""

    def __init__(self, rag: Rag) -> None:
        self._rag = rag

    async def aopen_store(self) -> MilvusStore:
        """The connected store, opened as every operation opens it (recovery included)."""
        return await self._rag._connect()

    async def aretriever(self, options: AskOptions) -> tuple[BaseRetriever, ModeChoice]:
        """The retriever a question with these options is answered from, and its mode."""
        return await self._rag._retriever(options)

    def parse(self, source: Source, collection: str) -> tuple[DocumentRecord, list[Any]]:
        """One file read and chunked as ingestion would, neither embedded nor stored: its
        catalog record and its chunks."""
        return self._rag._ingestor().parse(source, collection)

    def chunk_file(self, path: Path, collection: str) -> list[Any]:
        """The chunks of one file (named by its file name), as `parse` makes them."""
        return self.parse(Source(path, path.name), collection)[1]

    async def aembed_texts(self, texts: Sequence[str], model: Any = None) -> list[list[float]]:
        """`texts` embedded on the embedding thread, as ingestion embeds; `model`: the app's by default."""
        embedder = self._rag.embed_model if model is None else model
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._rag._embed_executor, embedder.get_text_embedding_batch, texts)

    async def aload_llm(self) -> None:
        """Load the LLM now, off the loop, so that a timed answer does not include loading it."""
        await self._rag._loop.hop(asyncio.to_thread(lambda: self._rag.llm))
