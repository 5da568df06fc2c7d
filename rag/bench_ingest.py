"""`python -m rag bench-ingest`: is ingestion bound by embedding, and is retrieval near its floor?

In one run, on a corpus of real text (the standard library's documentation, rendered by pydoc):
1. embedding-only: the chunks embedded in batches, nothing else: the floor for ingestion;
2. end-to-end: the same files through `Rag.aingest` (parse, chunk, embed, insert, catalog);
3. the tutorial's way: `VectorStoreIndex.from_documents(..., use_async=True)`, same model,
   same splitter, same Milvus;
4. retrieval latency over a larger collection, against the floor of query embedding plus a
   NumPy brute-force search over the same vectors.
Peak memory (RSS) is sampled throughout. Benchmark collections start with `_rag_bench` and are
dropped at the end; the user's collections are never touched.

`--memory N` runs only a memory check instead: the pipeline ingests N/5 chunks, then N chunks,
and reports peak RSS for each (the app's process, and Milvus Lite's server process apart); a
pipeline whose memory is bounded peaks at about the same RSS for both.
"""

from __future__ import annotations

import asyncio
import importlib
import io
import json
import pydoc
import random
import sys
import threading
import time
import warnings
from contextlib import aclosing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.config import Settings

MODULES = (
    "os re json asyncio collections itertools functools pathlib typing datetime decimal fractions statistics "
    "random string textwrap unittest logging argparse subprocess threading socket http.client urllib.request "
    "email.message csv sqlite3 zipfile tarfile shutil tempfile inspect dataclasses enum abc contextlib heapq "
    "bisect array struct io pickle copy pprint operator math cmath hashlib hmac secrets uuid base64 binascii "
    "calendar locale gettext difflib codecs unicodedata xml.etree.ElementTree html.parser configparser queue "
    "sched selectors signal mmap multiprocessing concurrent.futures ssl ftplib smtplib imaplib poplib wave "
    "colorsys pdb timeit trace tracemalloc gc weakref types numbers graphlib zoneinfo ipaddress fnmatch glob "
    "filecmp stat platform errno ctypes doctest zipapp sysconfig builtins warnings traceback atexit ast dis "
    "tokenize keyword symtable compileall py_compile"
).split()

# Past MODULES (about 3,000 chunks): the rest of the standard library, then large packages the
# app already installs, so a 10,000-chunk corpus is still real documentation.
NOT_DOCUMENTED = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "ensurepip", "lib2to3", "pydoc_data"}
MORE_MODULES = tuple(
    name for name in sorted(sys.stdlib_module_names) if not name.startswith("_") and name not in NOT_DOCUMENTED
) + ("numpy", "pandas", "torch", "pydantic", "pymilvus")

PREFIX = "_rag_bench"


@dataclass
class Phase:
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

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.rss())

    def __enter__(self) -> "RssSampler":
        self.peak = self.rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
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


def build_corpus(folder: Path, min_chars: int) -> list[Path]:
    """Plain-text files of real documentation, one per module, until `min_chars` are written."""
    folder.mkdir(parents=True, exist_ok=True)
    files, total = [], 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in dict.fromkeys((*MODULES, *MORE_MODULES)):
            path = folder / f"{name}.txt"
            if not path.exists():
                try:
                    with io.StringIO() as sink, _redirect(sink):
                        text = pydoc.render_doc(importlib.import_module(name), renderer=pydoc.plaintext)
                except (Exception, SystemExit):  # a module missing on this platform (or exiting on import): skip it
                    continue
                path.write_text(text, encoding="utf-8")
            files.append(path)
            total += path.stat().st_size
            if total >= min_chars:
                break
    return files


class _redirect:
    """Silence modules that print on import."""

    def __init__(self, sink: io.StringIO) -> None:
        self._sink = sink

    def __enter__(self) -> None:
        self._old = sys.stdout
        sys.stdout = self._sink

    def __exit__(self, *exc: object) -> None:
        sys.stdout = self._old


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


async def run(settings: Settings, chunks: int, search_chunks: int, questions: int, tutorial: bool, log=print) -> dict[str, Any]:
    from llama_index.core import SimpleDirectoryReader, StorageContext, VectorStoreIndex
    from llama_index.core.schema import MetadataMode
    from llama_index.vector_stores.milvus import MilvusVectorStore

    from rag.ingest import Source
    from rag.service import Rag

    rag = Rag(settings)
    store = await rag._connect()
    model = rag.embed_model
    corpus_dir = settings.data_dir / "bench" / "corpus"
    phases: list[Phase] = []
    loop = asyncio.get_running_loop()

    # Pick enough files for the target chunk count (chunking only, which is fast).
    files: list[Path] = []
    nodes = []
    for path in build_corpus(corpus_dir, min_chars=max(chunks, search_chunks) * 1200):
        files.append(path)
        nodes.extend(rag._ingestor().parse(Source(path, path.name), PREFIX)[1])
        if len(nodes) >= chunks:
            break
    size_mb = sum(p.stat().st_size for p in files) / 2**20
    log(f"corpus: {len(files)} files, {size_mb:.1f} MB, {len(nodes)} chunks")
    batch = settings.embed_batch_size

    # The tutorial's embedder: the same model, loaded as the tutorial does (float32, its batch size).
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    from rag.embeddings import resolve_model_path

    tutorial_model = HuggingFaceEmbedding(
        model_name=resolve_model_path(settings.embed_model), local_files_only=settings.hf_offline
    )

    # 1. Embedding only: with the app's embedder, and with the tutorial's.
    texts = [n.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
    for label, embedder in ((f"embedding only ({model.precision})", model), ("embedding only (tutorial's, float32)", tutorial_model)):
        if not tutorial and embedder is tutorial_model:
            continue
        with RssSampler() as mem:
            started = time.perf_counter()
            for i in range(0, len(texts), batch):
                await loop.run_in_executor(rag._embed_executor, embedder.get_text_embedding_batch, texts[i : i + batch])
            seconds = time.perf_counter() - started
        phases.append(Phase(label, seconds, len(texts), mem.peak_mb))
        log(f"{label}: {seconds:.1f} s")

    # 2. End to end, through the real pipeline.
    e2e = f"{PREFIX}_ingest"
    with RssSampler() as mem:
        seconds, stored = await _ingest_fresh(rag, store, files, e2e)
    phases.append(Phase("end-to-end ingest", seconds, stored, mem.peak_mb))
    log(f"end-to-end: {seconds:.1f} s, {stored} chunks stored")

    # 3. The tutorial's way: from_documents(use_async=True), run as a user would, off our loop.
    if tutorial:
        name = f"{PREFIX}_tutorial"
        splitter = rag.splitter

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
        phases.append(Phase("tutorial from_documents(use_async=True)", seconds, count, mem.peak_mb))
        log(f"tutorial: {seconds:.1f} s, {count} chunks")
    await _drop(store, e2e)

    # 4. Chat while a large upload is indexing: time to the sources and to the first token.
    chat = await _chat_under_load(rag, store, files, log)

    # 5. Retrieval latency over `search_chunks` chunks (shorter chunks: same text, more of them).
    search = await _search_benchmark(rag, store, corpus_dir, search_chunks, questions, log)

    await rag.aclose()
    by_name = {p.name: p for p in phases}
    by_name["embedding only"] = phases[0]
    result = {
        "backend": settings.milvus_display,
        "embed_model": settings.embed_model,
        "embed_precision": model.precision,
        "batch_size": batch,
        "corpus": {"files": len(files), "megabytes": round(size_mb, 2), "chunks": len(nodes)},
        "phases": [asdict(p) for p in phases],
        "ratios": {
            "end_to_end_over_embedding": round(by_name["end-to-end ingest"].seconds / by_name["embedding only"].seconds, 3),
        },
        "chat_while_indexing": chat,
        "retrieval": search,
        "peak_rss_mb": max(p.peak_rss_mb for p in phases),
    }
    if tutorial:
        tut = by_name["tutorial from_documents(use_async=True)"]
        result["ratios"]["tutorial_over_end_to_end"] = round(tut.seconds / by_name["end-to-end ingest"].seconds, 3)
    return result


async def _ingest_fresh(rag, store, files: list[Path], name: str) -> tuple[float, int]:
    """Ingest `files` into an emptied benchmark collection: (seconds, chunks stored).

    A benchmark over a partial ingestion would measure the wrong thing, so any failure stops it."""
    from rag.errors import RagError

    await _drop(store, name)
    started = time.perf_counter()
    report = await rag.aingest(files, name)
    seconds = time.perf_counter() - started
    if report.aborted or report.failed:
        raise RagError(f"the benchmark ingestion failed: {report.aborted or report.failed[0].error}")
    return seconds, await store.acount_chunks(name)


async def _drop(store, name: str) -> None:
    if await store.client.has_collection(name):
        await store.client.drop_collection(name)
    await store._delete_rows(f'collection == "{name}"')
    store._vector_stores.pop(name, None)  # its MilvusVectorStore would point at the dropped collection


CHAT_QUESTIONS = (
    "How do I list the files in a directory?",
    "What does a regular expression group return?",
    "How can I read a JSON file?",
    "How do I start a subprocess and wait for it?",
    "What is an ordered dictionary?",
)


async def _first_events(rag, collection: str, question: str, retrieve_only: bool) -> tuple[float, float | None]:
    """Seconds to the `Sources` event and to the first `Token` (None in retrieval-only mode)."""
    from rag.answer import Sources, Token

    session = rag.chat_session(collection, retrieve_only=retrieve_only)
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


async def _chat_round(rag, collection: str) -> dict[str, list[float]]:
    sources, tokens = [], []
    for question in CHAT_QUESTIONS:
        sources.append((await _first_events(rag, collection, question, True))[0])
        first = (await _first_events(rag, collection, question, False))[1]
        if first is not None:
            tokens.append(first)
    return {"sources": sources, "first_token": tokens}


async def _chat_under_load(rag, store, files: list[Path], log) -> dict[str, Any]:
    """The same questions with nothing indexing, then while the whole corpus is being ingested."""
    chat, load = f"{PREFIX}_chat", f"{PREFIX}_load"
    for name in (chat, load):
        await _drop(store, name)
    await rag.aingest(files[:2], chat)
    await rag._loop.hop(asyncio.to_thread(lambda: rag.llm))  # load the LLM before timing
    idle = await _chat_round(rag, chat)
    ingestion = asyncio.ensure_future(rag.aingest(files, load))
    busy: dict[str, list[float]] = {"sources": [], "first_token": []}
    while not ingestion.done():
        round_ = await _chat_round(rag, chat)
        for key in busy:
            busy[key].extend(round_[key])
    await ingestion
    for name in (chat, load):
        await _drop(store, name)
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


async def _search_benchmark(rag, store, corpus_dir: Path, target: int, questions: int, log) -> dict[str, Any]:
    from llama_index.core import VectorStoreIndex
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.core.schema import Document, MetadataMode

    from rag.embeddings import count_tokens
    from rag.store import CollectionInfo

    splitter = SentenceSplitter(chunk_size=96, chunk_overlap=0, tokenizer=count_tokens(rag.embed_model))
    nodes = []
    for path in sorted(corpus_dir.glob("*.txt")):
        doc = Document(text=path.read_text(encoding="utf-8"), metadata={"file_name": path.name})
        nodes.extend(splitter.get_nodes_from_documents([doc]))
        if len(nodes) >= target:
            break
    nodes = nodes[:target]
    loop = asyncio.get_running_loop()
    name = f"{PREFIX}_search"
    await _drop(store, name)
    info = CollectionInfo(name, rag.embed_info.name, rag.embed_info.dim)
    vector_store = store.vector_store(info)
    started = time.perf_counter()
    batch = 256
    for i in range(0, len(nodes), batch):
        part = nodes[i : i + batch]
        texts = [n.get_content(metadata_mode=MetadataMode.EMBED) for n in part]
        vectors = await loop.run_in_executor(rag._embed_executor, rag.embed_model.get_text_embedding_batch, texts)
        for node, vector in zip(part, vectors):
            node.embedding = vector
        await vector_store.async_add(part)
    log(f"search collection: {len(nodes)} chunks embedded and stored in {time.perf_counter() - started:.0f} s")
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
    await _drop(store, name)
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


async def memory_run(settings: Settings, chunks: int, log=print) -> dict[str, Any]:
    """Ingest chunks/5, then `chunks` chunks through the real pipeline; peak RSS of each run."""
    from rag.ingest import Source
    from rag.service import Rag

    rag = Rag(settings)
    store = await rag._connect()
    corpus_dir = settings.data_dir / "bench" / "corpus"
    files, counts = [], []
    for path in build_corpus(corpus_dir, min_chars=chunks * 1200):
        files.append(path)
        counts.append(len(rag._ingestor().parse(Source(path, path.name), PREFIX)[1]))
        if sum(counts) >= chunks:
            break
    baseline = RssSampler.rss()
    runs = []
    name = f"{PREFIX}_memory"
    try:
        for target in (max(1, chunks // 5), chunks):
            picked = files[: max(1, int(np.searchsorted(np.cumsum(counts), target)) + 1)]
            with RssSampler() as mem, ChildrenRssSampler() as milvus:
                seconds, stored = await _ingest_fresh(rag, store, picked, name)
            runs.append({
                "chunks": stored, "files": len(picked), "megabytes": round(sum(p.stat().st_size for p in picked) / 2**20, 2),
                "seconds": round(seconds, 1), "peak_rss_mb": mem.peak_mb, "milvus_peak_rss_mb": milvus.peak_mb,
                "above_start_mb": round(mem.peak_mb - baseline / 2**20, 1),  # what ingesting added to the models' memory
            })
            log(f"{stored} chunks in {seconds:.0f} s: peak RSS {mem.peak_mb:.0f} MB (Milvus Lite {milvus.peak_mb:.0f} MB)")
    finally:
        await _drop(store, name)
        await rag.aclose()
    return {
        "backend": settings.milvus_display,
        "embed_model": settings.embed_model,
        "batch_size": settings.embed_batch_size,
        "rss_before_mb": round(baseline / 2**20, 1),
        "runs": runs,
        "large_over_small_peak": round(runs[1]["peak_rss_mb"] / runs[0]["peak_rss_mb"], 3),
    }


def run_cli(args, settings: Settings) -> int:
    from rag.errors import RagError
    from rag.loop import shared_loop

    if args.chunks < 1 or args.search_chunks < 10 or args.questions < 1:
        raise RagError("--chunks, --search-chunks and --questions must be positive (search-chunks at least 10)")
    log = (lambda *a: None) if args.json else (lambda msg: print(msg, file=sys.stderr, flush=True))
    if args.retrieval:
        from rag import bench_retrieval

        result = shared_loop().run(bench_retrieval.run(settings, args.chunks, args.search_chunks, args.questions, log))
        print(json.dumps(result, indent=2)) if args.json else bench_retrieval.print_result(result)
        return 0
    if args.memory is not None:
        if args.memory < 5:
            raise RagError("--memory must be at least 5 chunks")
        result = shared_loop().run(memory_run(settings, args.memory, log))
        if args.json:
            print(json.dumps(result, indent=2))
            return 0
        print(f"\nbackend: {result['backend']}; model: {result['embed_model']}; batch {result['batch_size']}; "
              f"RSS before ingesting: {result['rss_before_mb']:.0f} MB")
        print(f"{'chunks':>7} {'files':>6} {'MB':>6} {'seconds':>8} {'peak RSS MB':>12} {'Milvus Lite MB':>15}")
        for r in result["runs"]:
            print(f"{r['chunks']:7} {r['files']:6} {r['megabytes']:6.1f} {r['seconds']:8.1f} {r['peak_rss_mb']:12.0f} "
                  f"{r['milvus_peak_rss_mb']:15.0f}")
        small, large = result["runs"]
        print(f"peak RSS, large over small run: {result['large_over_small_peak']}; above the start: "
              f"{small['above_start_mb']:.0f} MB vs {large['above_start_mb']:.0f} MB")
        return 0
    result = shared_loop().run(
        run(settings, args.chunks, args.search_chunks, args.questions, not args.skip_tutorial, log)
    )
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"\nbackend: {result['backend']}; model: {result['embed_model']} ({result['embed_precision']}); batch {result['batch_size']}")
    print(f"{'phase':42} {'seconds':>8} {'chunks':>7} {'chunks/s':>9} {'peak RSS MB':>12}")
    for p in result["phases"]:
        print(f"{p['name']:42} {p['seconds']:8.1f} {p['chunks']:7} {p['chunks'] / p['seconds']:9.1f} {p['peak_rss_mb']:12.0f}")
    for key, value in result["ratios"].items():
        print(f"{key}: {value}")
    c = result["chat_while_indexing"]
    print(
        f"chat while a {result['corpus']['chunks']}-chunk upload is indexing (p50): sources "
        f"{c['sources_p50_ms_idle']} ms idle vs {c['sources_p50_ms_busy']} ms busy "
        f"({c.get('sources_busy_over_idle')}x); first token {c['first_token_p50_ms_idle']} ms idle vs "
        f"{c['first_token_p50_ms_busy']} ms busy ({c.get('first_token_busy_over_idle')}x)"
    )
    r = result["retrieval"]
    print(
        f"retrieval over {r['chunks']} chunks, {r['questions']} questions, top-{r['top_k']}: "
        f"Milvus p50 {r['milvus_p50_ms']} ms / p95 {r['milvus_p95_ms']} ms; "
        f"floor p50 {r['floor_p50_ms']} ms / p95 {r['floor_p95_ms']} ms; "
        f"p50/floor {r['p50_over_floor']}; exact top-1 found in Milvus' top-{r['top_k']}: {r['floor_top1_in_milvus_topk']:.0%}"
    )
    return 0
