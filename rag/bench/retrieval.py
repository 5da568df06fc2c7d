"""`python -m rag bench-ingest --retrieval`: what hybrid search costs and what it finds.

1. Quality: two question sets in a user's words, with evidence phrases: `docs/retrieval-questions.json`
   (30 questions over the pydoc text of 10 standard modules) and `docs/retrieval-questions-debian.json`
   (36 questions over 11 documents Debian installs: PDF manuals, HTML, Markdown, man pages; skipped
   with a note where they are missing), each with 6 questions nothing in them answers ("file":
   null); hit@1/3/5/10 and MRR per mode, one collection per set, with the refusals.
2. Ingestion throughput: the same files through the pipeline into a dense-only collection and
   into one with the BM25 field, alternately, three times each after a warm-up; medians.
3. Latency: dense, hybrid and keyword searches over `--search-chunks` chunks (one collection
   with both fields, so the three modes search the same data).
4. Follow-ups: time to the sources for a fresh question and for a follow-up in the same chat
   (which searches twice: its own words, and with the previous search's context).
Benchmark collections start with `_rag_bench` and are dropped at the end. The CLI prints the
results (`rag.cli`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from contextlib import aclosing
from itertools import cycle, islice
from pathlib import Path
from typing import Any

from llama_index.core.schema import TextNode

from rag.bench.corpus import (
    PREFIX,
    MissingDocuments,
    build_corpus,
    corpus_chunks,
    embed_into,
    ingest_fresh,
    render_docs,
    small_chunks,
    system_docs,
)
from rag.bench.report import percentile
from rag.chats import ChatSession
from rag.config import RetrievalMode, Settings
from rag.errors import RagError
from rag.evaluation import Question, comparison_rows, parse_questions
from rag.options import AskOptions
from rag.service import Rag
from rag.storage.catalog import MilvusStore

Log = Callable[[str], None]

DOCS = Path(__file__).resolve().parents[2] / "docs"
# Question sets in a user's words, with evidence phrases, each over its own documents: the
# pydoc text of 10 standard modules, and 11 documents Debian installs (PDF, HTML, Markdown, man pages).
QUESTION_SETS = {"pydoc": DOCS / "retrieval-questions.json", "debian": DOCS / "retrieval-questions-debian.json"}
MODES = (RetrievalMode.DENSE, RetrievalMode.KEYWORD, RetrievalMode.HYBRID)
COPY_BATCH = 2000  # noisy copies inserted at once
ROUNDS = 3  # ingestions per kind, alternating, after one warm-up; the median is reported
FOLLOW_UPS = (  # (fresh question, follow-up that leans on it)
    ("how do I pretty print json with sorted keys", "and how do I read it back?"),
    ("delete a folder and everything inside it", "what about copying it instead?"),
    ("generate a random token that is safe to put in a URL", "and a hex one?"),
    ("database that only lives in RAM", "how do I undo its changes?"),
    ("get the n biggest items from a list", "and the smallest ones?"),
)


async def measure_quality(rag: Rag, store: MilvusStore, data_dir: Path, log: Log) -> dict[str, Any]:
    """Hit@k and MRR per mode on each question set, and the follow-ups' time to sources (pydoc set)."""
    sets = []
    try:
        for name, questions in QUESTION_SETS.items():
            try:
                sets.append(await _measure_set(rag, store, data_dir, name, questions, log))
            except MissingDocuments as exc:  # not a Debian machine: say so, measure the rest
                log(f"quality, {name}: skipped ({exc})")
                sets.append({"name": name, "skipped": str(exc)})
        follow = await _time_follow_ups(rag, _collection("pydoc"))
    finally:
        for name in QUESTION_SETS:
            await store.adiscard_collection(_collection(name))
    return {"sets": sets, "follow_ups": follow}


def _collection(name: str) -> str:
    return f"{PREFIX}_quality_{name}"


def load_questions(path: Path) -> list[Question]:
    return parse_questions(path.read_text(encoding="utf-8"), path.name)


def question_set_documents(folder: Path, name: str, questions: list[Question]) -> list[Path]:
    """The documents a shipped question set is asked of, written (or copied) under `folder`."""
    files = sorted({q.file for q in questions if q.file})
    if name == "pydoc":
        return render_docs(folder / "quality", [Path(f).stem for f in files])
    return system_docs(folder / name, files)


async def _measure_set(rag: Rag, store: MilvusStore, data_dir: Path, name: str, path: Path, log: Log) -> dict[str, Any]:
    """One question set: its documents in one collection (left for the caller to drop), searched in every mode."""
    questions = load_questions(path)
    files = question_set_documents(data_dir / "bench", name, questions)
    collection = _collection(name)
    _, chunks = await ingest_fresh(rag, store, files, collection)
    rows = []
    for mode in MODES:
        rows += comparison_rows(await rag.aevaluate(questions, collection, mode, (1, 3, 5, 10)))
    log(f"quality, {name}: {rows}")
    return {"name": name, "questions": len(questions), "files": len(files), "chunks": chunks, "rows": rows}


async def _to_sources(session: ChatSession, message: str) -> float:
    """Seconds from sending `message` to its `Sources` event."""
    from rag.answering.events import Sources

    started = time.perf_counter()
    async with aclosing(session.astream_chat(message)) as events:
        async for event in events:
            if isinstance(event, Sources):
                return time.perf_counter() - started
    return time.perf_counter() - started


async def _time_follow_ups(rag: Rag, collection: str, rounds: int = 4) -> dict[str, Any]:
    """Time to sources of a fresh question, and of a follow-up in the same chat (two searches)."""
    fresh, follow = [], []
    await _to_sources(rag.chat_session(AskOptions(collection, retrieve_only=True)), "warm-up")
    for _ in range(rounds):
        for first, second in FOLLOW_UPS:
            session = rag.chat_session(AskOptions(collection, retrieve_only=True, mode="hybrid"))
            fresh.append(await _to_sources(session, first))
            follow.append(await _to_sources(session, second))
    ms = lambda v: round(percentile(v, 50) * 1000, 1)  # noqa: E731
    return {"questions": len(fresh), "fresh_p50_ms": ms(fresh), "follow_up_p50_ms": ms(follow),
            "follow_up_over_fresh": round(percentile(follow, 50) / percentile(fresh, 50), 2)}


async def measure_bm25_ingestion(rag: Rag, store: MilvusStore, data_dir: Path, chunks: int, log: Log) -> dict[str, Any]:
    """Chunks per second into a dense-only collection and into one with the BM25 field (medians)."""
    files, per_file = corpus_chunks(rag, data_dir / "bench" / "corpus", chunks)
    total = sum(map(len, per_file))
    rates: dict[str, list[float]] = {"warm-up": [], "dense": [], "hybrid": []}
    for retrieval in ("warm-up", *("dense", "hybrid") * ROUNDS):
        name = f"{PREFIX}_ingest_{retrieval.replace('-', '')}"
        await store.adiscard_collection(name)
        await store.aensure_collection(name, rag.embed_info, "dense" if retrieval == "warm-up" else retrieval)
        started = time.perf_counter()
        report = await rag.aingest(files, name)
        seconds = time.perf_counter() - started
        rates[retrieval].append(report.chunks / seconds)
        log(f"ingest {retrieval}: {report.chunks} chunks in {seconds:.1f} s")
        await store.adiscard_collection(name)
    rates.pop("warm-up")  # the first ingestion pays for warming caches and Milvus Lite up
    median = {k: round(percentile(v, 50), 1) for k, v in rates.items()}
    return {"chunks": total, "files": len(files), "dense_chunks_per_s": median["dense"],
            "hybrid_chunks_per_s": median["hybrid"], "all_runs": {k: [round(x, 1) for x in v] for k, v in rates.items()},
            "hybrid_over_dense": round(median["hybrid"] / median["dense"], 3)}


async def measure_latency(
    rag: Rag, store: MilvusStore, data_dir: Path, target: int, questions: int, log: Log,
    *, modes: Sequence[RetrievalMode] = MODES, embedded: int | None = None,
) -> dict[str, Any]:
    """Search times per mode over one collection with every field the modes need (p50, p95).

    `embedded`: at most that many chunks are embedded; the others (for a collection of 100,000 on a
    machine that embeds ~30 chunks/s) reuse an embedded chunk's vector with noise added, so that
    every vector is distinct. What a search costs depends on how many vectors and words there are,
    not on which; quality is measured elsewhere, on real vectors only.
    """
    from llama_index.core import VectorStoreIndex

    from rag.retrieval.search import make_retriever
    from rag.storage.catalog import CollectionInfo

    nodes = small_chunks(rag, build_corpus(data_dir / "bench" / "corpus", min_chars=target * 400), target)
    nodes += [TextNode(text=n.text, metadata=n.metadata) for n in islice(cycle(nodes), target - len(nodes))]
    name = f"{PREFIX}_search"
    await store.adiscard_collection(name)
    retrieval = "hybrid" if set(modes) - {RetrievalMode.DENSE} else "dense"
    vector_store = store.vector_store(CollectionInfo(name, rag.embed_info.name, rag.embed_info.dim, retrieval=retrieval))
    real = nodes[: embedded or len(nodes)]
    seconds = await embed_into(rag, vector_store, real)
    log(f"search collection: {len(real)} chunks embedded in {seconds:.0f} s")
    await _insert_noisy_copies(vector_store, real, nodes[len(real):], log)
    if rag.settings.is_milvus_server:
        await store.await_indexed(name)
    await store.acount_chunks(name)  # a Strong read: every insert is visible before timing
    rng = random.Random(7)
    asked = [" ".join(n.get_content().split()[:12]) for n in rng.sample(nodes, min(questions, len(nodes)))]
    index = VectorStoreIndex.from_vector_store(vector_store, embed_model=rag.embed_model)
    retrievers = {m: make_retriever(index, rag.embed_model, mode=m, top_k=rag.settings.top_k) for m in modes}
    for retriever in retrievers.values():
        await retriever.aretrieve(asked[0])  # warm-up
    times: dict[str, list[float]] = {m: [] for m in modes}
    for question in asked:  # modes interleaved, so machine noise hits them alike
        for mode, retriever in retrievers.items():
            began = time.perf_counter()
            await retriever.aretrieve(question)
            times[mode].append(time.perf_counter() - began)
    index_kind = await store.adense_index(name)
    await store.adiscard_collection(name)
    ms = lambda v, q: round(percentile(v, q) * 1000, 2)  # noqa: E731
    result: dict[str, Any] = {"chunks": len(nodes), "embedded": len(real), "questions": len(asked),
                              "top_k": rag.settings.top_k, "index": index_kind}
    for mode in modes:
        result[f"{mode}_p50_ms"], result[f"{mode}_p95_ms"] = ms(times[mode], 50), ms(times[mode], 95)
    if {"hybrid", "dense"} <= set(times):
        result["hybrid_over_dense_p50"] = round(percentile(times["hybrid"], 50) / percentile(times["dense"], 50), 2)
    log(f"latency: {result}")
    return result


async def _insert_noisy_copies(vector_store: Any, real: list[Any], copies: list[Any], log: Log) -> None:
    """Give each copy a real chunk's vector plus noise (cosine ~0.95 to it), and insert them."""
    if not copies:
        return
    import numpy as np

    rng = np.random.default_rng(7)
    base = np.asarray([n.embedding for n in real], dtype=np.float32)
    started = time.perf_counter()
    for i in range(0, len(copies), COPY_BATCH):
        part = copies[i : i + COPY_BATCH]
        vectors = base[rng.integers(0, len(base), len(part))]
        vectors = vectors + rng.normal(0, 0.3 / np.sqrt(base.shape[1]), vectors.shape).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        for node, vector in zip(part, vectors.tolist(), strict=True):
            node.embedding = vector
        await vector_store.async_add(part)
    log(f"search collection: {len(copies)} more chunks with noisy vectors in {time.perf_counter() - started:.0f} s")


async def measure_search_latency(
    settings: Settings, *, search_chunks: int, questions: int, embedded: int, log: Log = print
) -> dict[str, Any]:
    """Only the latency part, at any size and on any Milvus: the modes it can do (no BM25: dense)."""
    rag = Rag(settings)
    store = await rag.parts.aopen_store()
    modes = MODES if await store.asupports_bm25() else (RetrievalMode.DENSE,)
    try:
        latency = await measure_latency(rag, store, settings.data_dir, search_chunks, questions, log,
                                        modes=modes, embedded=embedded)
    finally:
        await rag.aclose()
    return {"backend": settings.milvus_display, "embed_model": settings.embed_model, "latency": latency}


async def measure_retrieval(
    settings: Settings, *, chunks: int, search_chunks: int, questions: int, log: Log = print
) -> dict[str, Any]:
    """Every part of the retrieval benchmark, in order (see the module's docstring)."""
    rag = Rag(settings)
    store = await rag.parts.aopen_store()
    if not await store.asupports_bm25():
        raise RagError(f"{settings.milvus_display} has no BM25 (Milvus 2.5+ needed): nothing to compare")
    try:
        result = {"backend": settings.milvus_display, "embed_model": settings.embed_model,
                  "quality": await measure_quality(rag, store, settings.data_dir, log),
                  "ingestion": await measure_bm25_ingestion(rag, store, settings.data_dir, chunks, log),
                  "latency": await measure_latency(rag, store, settings.data_dir, search_chunks, questions, log)}
    finally:
        await rag.aclose()
    return result

