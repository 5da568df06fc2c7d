"""`python -m rag bench-ingest --library DIR`: ingestion and retrieval at the size users bring.

A library of a thousand real documents, not a dozen. When DIR does not exist it is made from the
documentation this machine has installed (`build_library`): the documents of both retrieval
question sets under their own names, then every text, Markdown, HTML and PDF document Debian's
packages install under /usr/share/doc, then pydoc renderings of installed modules until the count
is reached. Each document is there once: a file whose content is already in (sibling packages
install the same NEWS) and a question document in another format (python-policy.txt beside
python-policy.html) are left out, since a passage from a copy is right but counted as a miss.
Any other folder of documents can be named instead (its question sets then find
nothing to ask and are skipped).

Per embedding backend (`--backends`, RAG_EMBED_BACKEND values), in one run:
1. end to end: every file through the pipeline (`Rag.aingest`) into a fresh benchmark
   collection: documents, failures and their reasons, chunks, seconds, chunks/s, peak RSS;
2. embedding only: a random sample of the library's chunks, as the pipeline makes them,
   embedded by the same model (the floor for ingestion);
and once, the reference: the same sample encoded by plain sentence-transformers in float32
(`SentenceTransformer.encode`, batch 32), the rate the README's goals compare against.
Then, per backend, retrieval at that size: both question sets asked in hybrid mode (hit@1/3/5,
MRR, in each mode) and the hybrid search latency of those questions (p50/p95). Collections
start with `_rag_bench_library_` and are dropped at the end (kept with `--keep`, to ask them more).
"""

from __future__ import annotations

import gzip
import hashlib
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rag.bench.corpus import MORE_MODULES, PREFIX, SYSTEM_DOCS, MissingDocuments, render_docs, system_docs
from rag.bench.ingest import RssSampler
from rag.bench.report import percentile
from rag.bench.retrieval import QUESTION_SETS, load_questions
from rag.config import EmbedBackend, RetrievalMode, Settings
from rag.errors import RagError
from rag.ingestion.sources import SUPPORTED_EXTENSIONS, collect_sources
from rag.options import AskOptions
from rag.service import Rag

Log = Callable[[str], None]
DOC_ROOT = Path("/usr/share/doc")
DOC_SUFFIXES = {".txt", ".md", ".markdown", ".rst", ".html", ".htm", ".pdf"}
PLAIN_NAMES = {"README", "NEWS", "TODO", "FAQ", "AUTHORS", "THANKS", "HACKING", "BUGS", "USAGE"}
MIN_BYTES, MAX_BYTES = 2_000, 400_000  # a real document, not a stub, a book or a changelog
SAMPLE = 2000  # chunks embedded for the embedding-only and float32 reference rates


def _library_name(source: Path) -> str | None:
    """The file's name in the library ("package--path--name.ext"), or None when it is not a document."""
    rel = source.relative_to(DOC_ROOT)
    name = source.name
    if name.endswith(".gz"):
        name = name[:-3]
    lowered = name.lower()
    if lowered.startswith(("changelog", "copyright", "license", "copying")) or "changelog" in lowered:
        return None
    suffix = Path(name).suffix.lower()
    if suffix not in DOC_SUFFIXES:
        if Path(name).stem.split(".")[0].upper() not in PLAIN_NAMES:
            return None
        name += ".txt"  # README, NEWS.Debian...: plain text without a suffix
    return "--".join([*rel.parts[:-1], name]).replace(" ", "_")


def _renders_a_question_document(source: Path) -> bool:
    """Whether `source` is one of the debian question set's documents in another form (the same
    name with another suffix in the same folder, or a page of its HTML rendering): a passage from
    it answers the question as well as the original, yet would be counted as a miss."""
    for original in (Path(p) for p in SYSTEM_DOCS.values() if p.startswith("/")):
        stem = original.name.split(".")[0]
        if source == original or (source.parent == original.parent and source.name.split(".")[0] == stem):
            return True
        if source.parent.parent == original.parent and source.parent.name.split(".")[0] == stem:
            return True
    return False


def build_library(folder: Path, files: int, log: Log) -> list[Path]:
    """`folder` filled with `files` real documents (once; an existing library is used as it is)."""
    existing = [s.path for s in collect_sources([folder])] if folder.is_dir() else []
    if existing:
        return existing
    folder.mkdir(parents=True)
    paths: list[Path] = []
    for name, set_path in QUESTION_SETS.items():
        modules_or_files = sorted({q.file for q in load_questions(set_path) if q.file})
        try:
            paths += render_docs(folder, [Path(f).stem for f in modules_or_files]) if name == "pydoc" \
                else system_docs(folder, modules_or_files)
        except MissingDocuments as exc:
            log(f"library: the {name} question set's documents are missing ({exc})")
    taken = {p.name for p in paths}
    seen = {hashlib.sha256(p.read_bytes()).digest() for p in paths}
    skipped = 0
    for source in sorted(DOC_ROOT.rglob("*")) if DOC_ROOT.is_dir() else []:
        if len(paths) >= files:
            break
        if not source.is_file() or source.is_symlink():
            continue
        name = _library_name(source)
        if name is None or name in taken or not MIN_BYTES <= source.stat().st_size <= MAX_BYTES:
            continue
        if _renders_a_question_document(source):
            skipped += 1
            continue
        data = source.read_bytes()
        if source.name.endswith(".gz"):
            try:
                data = gzip.decompress(data)
            except (OSError, EOFError):
                continue
        if not MIN_BYTES <= len(data) <= MAX_BYTES or (not name.endswith(".pdf") and b"\0" in data[:4096]):
            continue
        digest = hashlib.sha256(data).digest()
        if digest in seen:  # one package's NEWS installed again by its siblings: a library holds it once
            skipped += 1
            continue
        seen.add(digest)
        (folder / name).write_bytes(data)
        taken.add(name)
        paths.append(folder / name)
    log(f"library: {skipped} copies left out (same content, or a question set's document in another format)")
    modules = [m for m in MORE_MODULES if f"{m}.txt" not in taken]
    while len(paths) < files and modules:
        try:
            paths += render_docs(folder, [modules.pop(0)])
        except Exception:  # a module that does not import or render is not documentation
            continue
    log(f"library: {len(paths)} documents written to {folder}")
    return paths


async def measure_library(settings: Settings, folder: Path, *, files: int, backends: Sequence[str],
                          sample: int = SAMPLE, keep: bool = False, log: Log = print) -> dict[str, Any]:
    """Every measurement above, per backend (see the module's docstring)."""
    paths = build_library(folder, files, log)
    documents = len([p for p in paths if p.suffix.lower() in SUPPORTED_EXTENSIONS])
    megabytes = sum(p.stat().st_size for p in paths) / 2**20
    log(f"library: {documents} documents, {megabytes:.1f} MB")
    runs, reference = [], None
    for backend in backends:
        rag = Rag(settings.model_copy(update={"embed_backend": EmbedBackend(backend)}))
        try:
            run = await _measure_backend(rag, folder, backend, keep, log)
            texts = _sample_texts(rag, paths, sample)
            run["embedding_only"] = await _embed_rate(rag, texts)
            if reference is None:
                reference = _float32_rate(settings, texts)
            log(f"{backend}: {run}")
            runs.append(run)
        finally:
            await rag.aclose()
    for run in runs:
        e2e, embed = run["chunks_per_s"], run["embedding_only"]["passages_per_s"]
        run["end_to_end_over_float32_encode"] = round(e2e / reference["passages_per_s"], 2)
        run["embedding_only_over_end_to_end"] = round(embed / e2e, 2)
    return {"backend": settings.milvus_display, "embed_model": settings.embed_model, "library": str(folder),
            "documents": documents, "megabytes": round(megabytes, 1), "float32_encode": reference, "runs": runs}


async def _measure_backend(rag: Rag, folder: Path, backend: str, keep: bool, log: Log) -> dict[str, Any]:
    store = await rag.parts.aopen_store()
    collection = f"{PREFIX}_library_{backend.replace('-', '_')}"
    await store.adiscard_collection(collection)
    last = [0.0]

    def progress(state) -> None:
        if time.monotonic() - last[0] > 30:
            last[0] = time.monotonic()
            log(f"{backend}: {state.files_done}/{state.files_total} files, {state.chunks_done} chunks")

    try:
        with RssSampler() as mem:
            started = time.perf_counter()
            report = await rag.aingest([folder], collection, progress)
            seconds = time.perf_counter() - started
        if report.aborted:
            raise RagError(f"the library ingestion stopped: {report.aborted}")
        chunks = await store.acount_chunks(collection)
        run: dict[str, Any] = {
            "backend": backend, "precision": getattr(rag.embed_model, "precision", "?"),
            "documents": len(report.results), "failed": {r.doc_id: r.error for r in report.failed},
            "chunks": chunks, "seconds": round(seconds, 1), "chunks_per_s": round(chunks / seconds, 1),
            "peak_rss_mb": mem.peak_mb,
        }
        run["quality"], run["latency"] = await _retrieval(rag, collection, log)
    finally:
        if not keep:
            await store.adiscard_collection(collection)
    return run


def _sample_texts(rag: Rag, paths: list[Path], count: int) -> list[str]:
    """`count` chunks of randomly chosen files, as the pipeline makes them (fixed seed)."""
    from llama_index.core.schema import MetadataMode

    texts: list[str] = []
    for path in random.Random(7).sample(paths, len(paths)):
        try:
            texts += [n.get_content(metadata_mode=MetadataMode.EMBED) for n in rag.parts.chunk_file(path, PREFIX)]
        except RagError:
            continue
        if len(texts) >= count:
            break
    return texts[:count]


async def _embed_rate(rag: Rag, texts: list[str]) -> dict[str, Any]:
    batch = rag.settings.embed_batch_size
    await rag.parts.aembed_texts(texts[:batch])  # warm-up
    started = time.perf_counter()
    for i in range(0, len(texts), batch):
        await rag.parts.aembed_texts(texts[i:i + batch])
    seconds = time.perf_counter() - started
    return {"passages": len(texts), "seconds": round(seconds, 1), "passages_per_s": round(len(texts) / seconds, 1)}


def _float32_rate(settings: Settings, texts: list[str]) -> dict[str, Any]:
    """Plain sentence-transformers, float32, batch 32: what "embedding with this model" costs untuned."""
    from rag.models.embeddings import load_embed_model

    model = load_embed_model(settings.embed_model, batch_size=32, offline=settings.hf_offline,
                             precision="float32")._model  # the SentenceTransformer itself, untouched
    model.encode(texts[:32], batch_size=32)
    started = time.perf_counter()
    model.encode(texts, batch_size=32)
    seconds = time.perf_counter() - started
    return {"passages": len(texts), "seconds": round(seconds, 1), "passages_per_s": round(len(texts) / seconds, 1)}


async def _retrieval(rag: Rag, collection: str, log: Log) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Both question sets in hybrid mode (those whose files the library holds), and their search times."""
    known = {d.file_name for d in await rag.adocuments(collection)} | {d.doc_id for d in await rag.adocuments(collection)}
    quality, asked = [], []
    for name, path in QUESTION_SETS.items():
        questions = [q for q in load_questions(path) if q.file in known]
        if not questions:
            log(f"quality, {name}: skipped (the library does not hold its documents)")
            continue
        for mode in (RetrievalMode.DENSE, RetrievalMode.KEYWORD, RetrievalMode.HYBRID):
            [r1, r3, r5] = await rag.aevaluate(questions, collection, mode, (1, 3, 5))
            quality.append({"set": name, "mode": str(mode), "questions": len(questions), "hit@1": r1.overall.hit_at_k,
                            "hit@3": r3.overall.hit_at_k, "hit@5": r5.overall.hit_at_k, "mrr": r5.overall.mrr})
        asked += [q.question for q in questions]
    times = []
    retriever, _ = await rag.parts.aretriever(AskOptions(collection, 5, mode=RetrievalMode.HYBRID))
    for question in asked:
        started = time.perf_counter()
        await retriever.aretrieve(question)
        times.append(time.perf_counter() - started)
    latency = {"questions": len(times), "p50_ms": round(percentile(times, 50) * 1000, 1),
               "p95_ms": round(percentile(times, 95) * 1000, 1)} if times else {}
    return quality, latency
