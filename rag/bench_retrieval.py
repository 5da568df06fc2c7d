"""`python -m rag bench-ingest --retrieval`: what hybrid search costs and what it finds.

1. Quality: the question set in `docs/retrieval-questions.json` (30 questions in a user's words,
   with evidence phrases) over the Python documentation of 10 standard modules, rendered by
   pydoc; hit@1/3/5/10 and MRR per mode, on one collection indexed with the BM25 field.
2. Ingestion throughput: the same files through the pipeline into a dense-only collection and
   into one with the BM25 field, alternately, three times each after a warm-up; medians.
3. Latency: dense, hybrid and keyword searches over `--search-chunks` chunks (one collection
   with both fields, so the three modes search the same data).
4. Follow-ups: time to the sources for a fresh question and for a follow-up in the same chat
   (which searches twice: its own words, and with the previous search's context).
Benchmark collections start with `_rag_bench` and are dropped at the end.
"""

from __future__ import annotations

import asyncio
import importlib
import pydoc
import random
import time
from contextlib import aclosing
from pathlib import Path
from typing import Any

from rag.bench_ingest import PREFIX, _drop, _ingest_fresh, build_corpus, percentile
from rag.config import Settings

QUESTIONS = Path(__file__).resolve().parent.parent / "docs" / "retrieval-questions.json"
MODES = ("dense", "keyword", "hybrid")
ROUNDS = 3  # ingestions per kind, alternating, after one warm-up; the median is reported
FOLLOW_UPS = (  # (fresh question, follow-up that leans on it)
    ("how do I pretty print json with sorted keys", "and how do I read it back?"),
    ("delete a folder and everything inside it", "what about copying it instead?"),
    ("generate a random token that is safe to put in a URL", "and a hex one?"),
    ("database that only lives in RAM", "how do I undo its changes?"),
    ("get the n biggest items from a list", "and the smallest ones?"),
)


def render_docs(folder: Path, modules: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in modules:
        path = folder / f"{name}.txt"
        if not path.exists():
            path.write_text(pydoc.render_doc(importlib.import_module(name), renderer=pydoc.plaintext), encoding="utf-8")
        paths.append(path)
    return paths


async def quality(rag, store, data_dir: Path, log) -> dict[str, Any]:
    from rag.evaluation import comparison_rows, parse_questions

    questions = parse_questions(QUESTIONS.read_text(encoding="utf-8"), QUESTIONS.name)
    files = render_docs(data_dir / "bench" / "quality", sorted({Path(q.file).stem for q in questions}))
    name = f"{PREFIX}_quality"
    await _ingest_fresh(rag, store, files, name)
    rows = []
    for mode in MODES:
        rows += comparison_rows(await rag.aevaluate(questions, name, mode, (1, 3, 5, 10)))
    log(f"quality: {rows}")
    follow = await _follow_ups(rag, name)
    await _drop(store, name)
    return {"questions": len(questions), "files": len(files), "rows": rows, "follow_ups": follow}


async def _to_sources(session, message: str) -> float:
    from rag.answer import Sources

    started = time.perf_counter()
    async with aclosing(session.astream_chat(message)) as events:
        async for event in events:
            if isinstance(event, Sources):
                return time.perf_counter() - started
    return time.perf_counter() - started


async def _follow_ups(rag, collection: str, rounds: int = 4) -> dict[str, Any]:
    fresh, follow = [], []
    await _to_sources(rag.chat_session(collection, retrieve_only=True), "warm-up")
    for _ in range(rounds):
        for first, second in FOLLOW_UPS:
            session = rag.chat_session(collection, retrieve_only=True, mode="hybrid")
            fresh.append(await _to_sources(session, first))
            follow.append(await _to_sources(session, second))
    ms = lambda v: round(percentile(v, 50) * 1000, 1)  # noqa: E731
    return {"questions": len(fresh), "fresh_p50_ms": ms(fresh), "follow_up_p50_ms": ms(follow),
            "follow_up_over_fresh": round(percentile(follow, 50) / percentile(fresh, 50), 2)}


async def ingestion(rag, store, data_dir: Path, chunks: int, log) -> dict[str, Any]:
    from rag.ingest import Source

    files, total = [], 0
    for path in build_corpus(data_dir / "bench" / "corpus", min_chars=chunks * 1200):
        files.append(path)
        total += len(rag._ingestor().parse(Source(path, path.name), PREFIX)[1])
        if total >= chunks:
            break
    rates: dict[str, list[float]] = {"warm-up": [], "dense": [], "hybrid": []}
    for retrieval in ("warm-up", *("dense", "hybrid") * ROUNDS):
        name = f"{PREFIX}_ingest_{retrieval.replace('-', '')}"
        await _drop(store, name)
        await store.aensure_collection(name, rag.embed_info, "dense" if retrieval == "warm-up" else retrieval)
        started = time.perf_counter()
        report = await rag.aingest(files, name)
        seconds = time.perf_counter() - started
        rates[retrieval].append(report.chunks / seconds)
        log(f"ingest {retrieval}: {report.chunks} chunks in {seconds:.1f} s")
        await _drop(store, name)
    rates.pop("warm-up")  # the first ingestion pays for warming caches and Milvus Lite up
    median = {k: round(percentile(v, 50), 1) for k, v in rates.items()}
    return {"chunks": total, "files": len(files), "dense_chunks_per_s": median["dense"],
            "hybrid_chunks_per_s": median["hybrid"], "all_runs": {k: [round(x, 1) for x in v] for k, v in rates.items()},
            "hybrid_over_dense": round(median["hybrid"] / median["dense"], 3)}


async def latency(rag, store, data_dir: Path, target: int, questions: int, log) -> dict[str, Any]:
    from llama_index.core import VectorStoreIndex
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.core.schema import Document, MetadataMode

    from rag.embeddings import count_tokens
    from rag.retrieval import QUERY_MODES
    from rag.store import CollectionInfo

    splitter = SentenceSplitter(chunk_size=96, chunk_overlap=0, tokenizer=count_tokens(rag.embed_model))
    nodes = []
    for path in build_corpus(data_dir / "bench" / "corpus", min_chars=target * 400):
        nodes.extend(splitter.get_nodes_from_documents([Document(text=path.read_text(encoding="utf-8"),
                                                                  metadata={"file_name": path.name})]))
        if len(nodes) >= target:
            break
    nodes = nodes[:target]
    name = f"{PREFIX}_search"
    await _drop(store, name)
    vector_store = store.vector_store(CollectionInfo(name, rag.embed_info.name, rag.embed_info.dim, retrieval="hybrid"))
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    for i in range(0, len(nodes), 256):
        part = nodes[i : i + 256]
        texts = [n.get_content(metadata_mode=MetadataMode.EMBED) for n in part]
        vectors = await loop.run_in_executor(rag._embed_executor, rag.embed_model.get_text_embedding_batch, texts)
        for node, vector in zip(part, vectors):
            node.embedding = vector
        await vector_store.async_add(part)
    log(f"search collection: {len(nodes)} chunks in {time.perf_counter() - started:.0f} s")
    await store.acount_chunks(name)  # a Strong read: every insert is visible before timing
    rng = random.Random(7)
    asked = [" ".join(n.get_content().split()[:12]) for n in rng.sample(nodes, min(questions, len(nodes)))]
    index = VectorStoreIndex.from_vector_store(vector_store, embed_model=rag.embed_model)
    retrievers = {m: index.as_retriever(similarity_top_k=rag.settings.top_k, vector_store_query_mode=QUERY_MODES[m])
                  for m in MODES}
    for retriever in retrievers.values():
        await retriever.aretrieve(asked[0])  # warm-up
    times: dict[str, list[float]] = {m: [] for m in MODES}
    for question in asked:  # modes interleaved, so machine noise hits them alike
        for mode, retriever in retrievers.items():
            began = time.perf_counter()
            await retriever.aretrieve(question)
            times[mode].append(time.perf_counter() - began)
    await _drop(store, name)
    ms = lambda v, q: round(percentile(v, q) * 1000, 2)  # noqa: E731
    result: dict[str, Any] = {"chunks": len(nodes), "questions": len(asked), "top_k": rag.settings.top_k}
    for mode in MODES:
        result[f"{mode}_p50_ms"], result[f"{mode}_p95_ms"] = ms(times[mode], 50), ms(times[mode], 95)
    result["hybrid_over_dense_p50"] = round(percentile(times["hybrid"], 50) / percentile(times["dense"], 50), 2)
    log(f"latency: {result}")
    return result


async def run(settings: Settings, chunks: int, search_chunks: int, questions: int, log=print) -> dict[str, Any]:
    from rag.service import Rag

    rag = Rag(settings)
    store = await rag._connect()
    if not await store.asupports_bm25():
        from rag.errors import RagError

        raise RagError(f"{settings.milvus_display} has no BM25 (Milvus 2.5+ needed): nothing to compare")
    try:
        result = {"backend": settings.milvus_display, "embed_model": settings.embed_model,
                  "quality": await quality(rag, store, settings.data_dir, log),
                  "ingestion": await ingestion(rag, store, settings.data_dir, chunks, log),
                  "latency": await latency(rag, store, settings.data_dir, search_chunks, questions, log)}
    finally:
        await rag.aclose()
    return result


def print_result(result: dict[str, Any]) -> None:
    q = result["quality"]
    print(f"\nbackend: {result['backend']}; model: {result['embed_model']}")
    print(f"quality: {q['questions']} questions over {q['files']} files")
    print(f"{'mode':8} {'top-k':>5} {'hit@1':>6} {'hit@3':>6} {'hit@k':>6} {'MRR':>6}")
    for r in q["rows"]:
        print(f"{r['mode']:8} {r['top_k']:5} {r['hit@1']:6.2f} {r['hit@3']:6.2f} {r['hit@k']:6.2f} {r['mrr']:6.3f}")
    f = q["follow_ups"]
    print(f"time to sources (hybrid, p50 of {f['questions']}): fresh {f['fresh_p50_ms']} ms, "
          f"follow-up {f['follow_up_p50_ms']} ms ({f['follow_up_over_fresh']}x)")
    i = result["ingestion"]
    print(f"ingestion, {i['chunks']} chunks: dense-only {i['dense_chunks_per_s']} chunks/s, with BM25 "
          f"{i['hybrid_chunks_per_s']} chunks/s ({i['hybrid_over_dense']}x; runs {i['all_runs']})")
    lat = result["latency"]
    print(f"latency over {lat['chunks']} chunks, {lat['questions']} questions, top-{lat['top_k']}: " + "; ".join(
        f"{m} p50 {lat[f'{m}_p50_ms']} ms / p95 {lat[f'{m}_p95_ms']} ms" for m in MODES)
        + f"; hybrid/dense p50 {lat['hybrid_over_dense_p50']}x")
