"""`python -m rag bench-ingest`: is ingestion bound by embedding, and is retrieval near its floor?

In one go, on a corpus of real text (the standard library's documentation, rendered by pydoc,
see `rag.bench.corpus`):
1. embedding-only: the chunks embedded in batches, nothing else: the floor for ingestion;
2. end-to-end: the same files through `Rag.aingest` (parse, chunk, embed, insert, catalog);
3. the tutorial's way: `VectorStoreIndex.from_documents(..., use_async=True)`, same model,
   same splitter, same Milvus;
4. chat while a large upload is indexing: time to the sources and to the first token;
5. retrieval latency over a larger collection, against the floor of query embedding plus a
   NumPy brute-force search over the same vectors.
Peak memory (RSS) is sampled throughout. Benchmark collections start with `_rag_bench` and are
dropped at the end; the user's collections are never touched. The CLI prints the results
(`rag.cli`).

`--memory N` measures only memory instead: the pipeline ingests N/5 chunks, then N chunks, and
reports peak RSS for each (the app's process, and Milvus Lite's server process apart); a
pipeline whose memory is bounded peaks at about the same RSS for both.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.bench.corpus import CHARS_PER_CHUNK, PREFIX, corpus_chunks, embed_into, ingest_fresh, small_chunks
from rag.bench.report import percentile
from rag.config import Settings
from rag.options import AskOptions
from rag.service import Rag
from rag.storage.catalog import MilvusStore

Log = Callable[[str], None]
END_TO_END = "end-to-end ingest"
TUTORIAL = "tutorial from_documents(use_async=True)"


@dataclass
class Phase:
    """One timed part of the ingestion benchmark."""

    name: str
    seconds: float
    chunks: int
    peak_rss_mb: float


class RssSampler:
    """Peak resident memory of this process during a block (sampled every 20 ms)."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()

    @staticmethod
    def rss() -> int:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.rss())

    def __enter__(self) -> RssSampler:
        self.peak = self.rss()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mb(self) -> float:
        return round(self.peak / 2**20, 1)


class ChildrenRssSampler(RssSampler):
    """Peak resident memory of this process's child processes (the Milvus Lite server)."""

    @staticmethod
    def rss() -> int:
        total = 0
        for task in Path("/proc/self/task").iterdir():
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for pid in children:
                try:
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1]) * 1024
                except OSError:  # exited meanwhile
                    pass
        return total


# Ingestion -------------------------------------------------------------------------------------


def _corpus_dir(settings: Settings) -> Path:
    return settings.data_dir / "bench" / "corpus"


async def measure_ingestion(
    settings: Settings, *, chunks: int, search_chunks: int, questions: int, tutorial: bool, log: Log = print
) -> dict[str, Any]:
    """Every part of the ingestion benchmark, in order (see the module's docstring)."""
    rag = Rag(settings)
    store = await rag.parts.aopen_store()
    corpus_dir = _corpus_dir(settings)
    files, per_file = corpus_chunks(rag, corpus_dir, chunks, max(chunks, search_chunks) * CHARS_PER_CHUNK)
    nodes = [node for file_nodes in per_file for node in file_nodes]
    size_mb = sum(p.stat().st_size for p in files) / 2**20
    log(f"corpus: {len(files)} files, {size_mb:.1f} MB, {len(nodes)} chunks")
    tutorial_model = _tutorial_embedder(settings)

    phases = await _time_embedding(rag, nodes, tutorial_model if tutorial else None, log)
    e2e = f"{PREFIX}_ingest"
    phases.append(await _time_end_to_end(rag, store, files, e2e, log))
    if tutorial:
        phases.append(await _time_tutorial(rag, files, tutorial_model, log))
    await store.adiscard_collection(e2e)
    chat = await _chat_under_load(rag, store, files, log)
    # Retrieval latency over `search_chunks` chunks (shorter chunks: same text, more of them).
    search = await _search_benchmark(rag, store, corpus_dir, search_chunks, questions, log)
    await rag.aclose()

    return {
        "backend": settings.milvus_display,
        "embed_model": settings.embed_model,
        "embed_precision": rag.embed_model.precision,
        "batch_size": settings.embed_batch_size,
        "corpus": {"files": len(files), "megabytes": round(size_mb, 2), "chunks": len(nodes)},
        "phases": [asdict(p) for p in phases],
        "ratios": _ratios(phases),
        "chat_while_indexing": chat,
        "retrieval": search,
        "peak_rss_mb": max(p.peak_rss_mb for p in phases),
    }


def _tutorial_embedder(settings: Settings) -> Any:
    """The tutorial's embedder: the same model, loaded as the tutorial does (float32, its batch size)."""
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    from rag.models.embeddings import resolve_model_path

    return HuggingFaceEmbedding(model_name=resolve_model_path(settings.embed_model), local_files_only=settings.hf_offline)


async def _time_embedding(rag: Rag, nodes: list[Any], tutorial_model: Any, log: Log) -> list[Phase]:
    """Embedding only, the floor for ingestion: with the app's embedder, and with the tutorial's
    (None: not that one)."""
    from llama_index.core.schema import MetadataMode

    model, batch = rag.embed_model, rag.settings.embed_batch_size
    texts = [n.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
    embedders = [(f"embedding only ({model.precision})", model)]
    if tutorial_model is not None:
        embedders.append(("embedding only (tutorial's, float32)", tutorial_model))
    phases = []
    for label, embedder in embedders:
        with RssSampler() as mem:
            started = time.perf_counter()
            for i in range(0, len(texts), batch):
                await rag.parts.aembed_texts(texts[i : i + batch], embedder)
            seconds = time.perf_counter() - started
        phases.append(Phase(label, seconds, len(texts), mem.peak_mb))
        log(f"{label}: {seconds:.1f} s")
    return phases


async def _time_end_to_end(rag: Rag, store: MilvusStore, files: list[Path], name: str, log: Log) -> Phase:
    """The same files through the real pipeline, into collection `name` (left for the caller to drop)."""
    with RssSampler() as mem:
        seconds, stored = await ingest_fresh(rag, store, files, name)
    log(f"end-to-end: {seconds:.1f} s, {stored} chunks stored")
    return Phase(END_TO_END, seconds, stored, mem.peak_mb)


async def _time_tutorial(rag: Rag, files: list[Path], tutorial_model: Any, log: Log) -> Phase:
    """The tutorial's way: from_documents(use_async=True), run as a user would, off our loop."""
    from llama_index.core import SimpleDirectoryReader, StorageContext, VectorStoreIndex
    from llama_index.vector_stores.milvus import MilvusVectorStore

    settings, name, splitter = rag.settings, f"{PREFIX}_tutorial", rag.splitter

    def tutorial_way() -> tuple[float, int]:
        asyncio.set_event_loop(asyncio.new_event_loop())  # as in a script's main thread
        vector_store = MilvusVectorStore(
            uri=settings.resolved_milvus_uri, token=settings.milvus_token.get_secret_value(),
            collection_name=name, dim=rag.embed_info.dim, overwrite=True,
            consistency_level=settings.consistency_level,
        )
        began = time.perf_counter()
        documents = SimpleDirectoryReader(input_files=[str(p) for p in files]).load_data()
        VectorStoreIndex.from_documents(
            documents,
            storage_context=StorageContext.from_defaults(vector_store=vector_store),
            embed_model=tutorial_model,
            transformations=[splitter],
            use_async=True,
        )
        took = time.perf_counter() - began
        count = vector_store.client.query(name, filter="", output_fields=["count(*)"], consistency_level="Strong")
        vector_store.client.drop_collection(name)
        return took, int(count[0]["count(*)"])

    with RssSampler() as mem:
        seconds, count = await asyncio.to_thread(tutorial_way)
    log(f"tutorial: {seconds:.1f} s, {count} chunks")
    return Phase(TUTORIAL, seconds, count, mem.peak_mb)


def _ratios(phases: list[Phase]) -> dict[str, float]:
    """End to end over embedding only (the app's embedder), and the tutorial's way over end to end."""
    by_name = {p.name: p for p in phases}
    end_to_end = by_name[END_TO_END].seconds
    ratios = {"end_to_end_over_embedding": round(end_to_end / phases[0].seconds, 3)}
    if TUTORIAL in by_name:
        ratios["tutorial_over_end_to_end"] = round(by_name[TUTORIAL].seconds / end_to_end, 3)
    return ratios


# Chat while indexing ---------------------------------------------------------------------------


CHAT_QUESTIONS = (
    "How do I list the files in a directory?",
    "What does a regular expression group return?",
    "How can I read a JSON file?",
    "How do I start a subprocess and wait for it?",
    "What is an ordered dictionary?",
)


async def _first_events(rag: Rag, collection: str, question: str, retrieve_only: bool) -> tuple[float, float | None]:
    """Seconds to the `Sources` event and to the first `Token` (None in retrieval-only mode)."""
    from rag.answering.events import Sources, Token

    session = rag.chat_session(AskOptions(collection, retrieve_only=retrieve_only))
    started = time.perf_counter()
    to_sources = to_token = None
    async with aclosing(session.astream_chat(question)) as events:
        async for event in events:
            if isinstance(event, Sources) and to_sources is None:
                to_sources = time.perf_counter() - started
            if isinstance(event, Token):
                to_token = time.perf_counter() - started
                break
    return to_sources or 0.0, to_token


async def _chat_round(rag: Rag, collection: str) -> dict[str, list[float]]:
    """Every question once for its sources alone, and once for its first token."""
    sources, tokens = [], []
    for question in CHAT_QUESTIONS:
        sources.append((await _first_events(rag, collection, question, True))[0])
        first = (await _first_events(rag, collection, question, False))[1]
        if first is not None:
            tokens.append(first)
    return {"sources": sources, "first_token": tokens}


async def _chat_under_load(rag: Rag, store: MilvusStore, files: list[Path], log: Log) -> dict[str, Any]:
    """The same questions with nothing indexing, then while the whole corpus is being ingested."""
    chat, load = f"{PREFIX}_chat", f"{PREFIX}_load"
    for name in (chat, load):
        await store.adiscard_collection(name)
    await rag.aingest(files[:2], chat)
    await rag.parts.aload_llm()  # before timing
    idle = await _chat_round(rag, chat)
    ingestion = asyncio.ensure_future(rag.aingest(files, load))
    busy: dict[str, list[float]] = {"sources": [], "first_token": []}
    while not ingestion.done():
        round_ = await _chat_round(rag, chat)
        for key in busy:
            busy[key].extend(round_[key])
    await ingestion
    for name in (chat, load):
        await store.adiscard_collection(name)
    ms = lambda v: round(percentile(v, 50) * 1000, 1) if v else None  # noqa: E731
    result = {
        "questions_idle": len(idle["sources"]),
        "questions_busy": len(busy["sources"]),
        "sources_p50_ms_idle": ms(idle["sources"]),
        "sources_p50_ms_busy": ms(busy["sources"]),
        "first_token_p50_ms_idle": ms(idle["first_token"]),
        "first_token_p50_ms_busy": ms(busy["first_token"]),
    }
    if result["sources_p50_ms_idle"] and result["sources_p50_ms_busy"]:
        result["sources_busy_over_idle"] = round(result["sources_p50_ms_busy"] / result["sources_p50_ms_idle"], 2)
    if result["first_token_p50_ms_idle"] and result["first_token_p50_ms_busy"]:
        result["first_token_busy_over_idle"] = round(
            result["first_token_p50_ms_busy"] / result["first_token_p50_ms_idle"], 2
        )
    log(f"chat while indexing: {result}")
    return result


# Retrieval against its floor ------------------------------------------------------------------


async def _search_benchmark(
    rag: Rag, store: MilvusStore, corpus_dir: Path, target: int, questions: int, log: Log
) -> dict[str, Any]:
    """Milvus' retrieval latency against its floor: the query's embedding plus an exact NumPy search."""
    from llama_index.core import VectorStoreIndex

    from rag.storage.catalog import CollectionInfo

    nodes = small_chunks(rag, sorted(corpus_dir.glob("*.txt")), target)
    name = f"{PREFIX}_search"
    await store.adiscard_collection(name)
    info = CollectionInfo(name, rag.embed_info.name, rag.embed_info.dim)
    vector_store = store.vector_store(info)
    seconds = await embed_into(rag, vector_store, nodes)
    log(f"search collection: {len(nodes)} chunks embedded and stored in {seconds:.0f} s")
    await store.acount_chunks(name)  # a Strong read: every insert is visible before timing
    matrix = np.array([n.embedding for n in nodes], dtype=np.float32)

    rng = random.Random(7)
    asked = [" ".join(n.get_content().split()[:12]) for n in rng.sample(nodes, min(questions, len(nodes)))]
    top_k = rag.settings.top_k
    retriever = VectorStoreIndex.from_vector_store(vector_store, embed_model=rag.embed_model).as_retriever(similarity_top_k=top_k)
    await retriever.aretrieve(asked[0])  # warm-up

    milvus, floor, agree = [], [], 0
    for question in asked:
        began = time.perf_counter()
        hits = await retriever.aretrieve(question)
        milvus.append(time.perf_counter() - began)
        began = time.perf_counter()
        query = np.array(rag.embed_model.get_query_embedding(question), dtype=np.float32)
        scores = matrix @ query
        best = np.argpartition(-scores, top_k)[:top_k]
        best = best[np.argsort(-scores[best])]
        floor.append(time.perf_counter() - began)
        agree += nodes[int(best[0])].node_id in {hit.node.node_id for hit in hits}
    await store.adiscard_collection(name)
    ms = lambda v: round(v * 1000, 2)  # noqa: E731
    return {
        "chunks": len(nodes),
        "questions": len(asked),
        "top_k": top_k,
        "milvus_p50_ms": ms(percentile(milvus, 50)),
        "milvus_p95_ms": ms(percentile(milvus, 95)),
        "floor_p50_ms": ms(percentile(floor, 50)),
        "floor_p95_ms": ms(percentile(floor, 95)),
        "p50_over_floor": round(percentile(milvus, 50) / percentile(floor, 50), 2),
        "floor_top1_in_milvus_topk": round(agree / len(asked), 3),
    }


# Memory -----------------------------------------------------------------------------------------


async def measure_memory(settings: Settings, chunks: int, log: Log = print) -> dict[str, Any]:
    """Ingest chunks/5, then `chunks` chunks through the real pipeline; peak RSS of each ingestion."""
    rag = Rag(settings)
    store = await rag.parts.aopen_store()
    files, per_file = corpus_chunks(rag, _corpus_dir(settings), chunks)
    counts = [len(nodes) for nodes in per_file]
    baseline = RssSampler.rss()
    runs = []
    name = f"{PREFIX}_memory"
    try:
        for target in (max(1, chunks // 5), chunks):
            picked = files[: max(1, int(np.searchsorted(np.cumsum(counts), target)) + 1)]
            with RssSampler() as mem, ChildrenRssSampler() as milvus:
                seconds, stored = await ingest_fresh(rag, store, picked, name)
            runs.append({
                "chunks": stored, "files": len(picked), "megabytes": round(sum(p.stat().st_size for p in picked) / 2**20, 2),
                "seconds": round(seconds, 1), "peak_rss_mb": mem.peak_mb, "milvus_peak_rss_mb": milvus.peak_mb,
                "above_start_mb": round(mem.peak_mb - baseline / 2**20, 1),  # what ingesting added to the models' memory
            })
            log(f"{stored} chunks in {seconds:.0f} s: peak RSS {mem.peak_mb:.0f} MB (Milvus Lite {milvus.peak_mb:.0f} MB)")
    finally:
        await store.adiscard_collection(name)
        await rag.aclose()
    return {
        "backend": settings.milvus_display,
        "embed_model": settings.embed_model,
        "batch_size": settings.embed_batch_size,
        "rss_before_mb": round(baseline / 2**20, 1),
        "runs": runs,
        "large_over_small_peak": round(runs[1]["peak_rss_mb"] / runs[0]["peak_rss_mb"], 3),
    }
