"""`python -m rag bench` and `python -m rag bench-ingest`: run a benchmark, print its figures.

Called by `rag.cli`; the measuring itself lives in `engine`, `ingest` and `retrieval`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from rag.errors import RagError


def add_bench_parsers(sub) -> None:
    """The benchmark commands' arguments (`sub`: the CLI's subparsers)."""
    p = sub.add_parser("bench-ingest", help="benchmark ingestion and retrieval (see README)")
    p.add_argument("--chunks", type=int, default=2000, help="minimum corpus size in chunks")
    p.add_argument("--search-chunks", type=int, default=10000, help="collection size for the retrieval latency test")
    p.add_argument("--questions", type=int, default=200)
    p.add_argument("--skip-tutorial", action="store_true", help="skip the tutorial's from_documents baseline")
    p.add_argument("--memory", type=int, metavar="CHUNKS",
                   help="only the memory check: ingest CHUNKS/5 then CHUNKS chunks and report peak RSS (e.g. 10000)")
    p.add_argument("--retrieval", action="store_true",
                   help="only the retrieval benchmark: quality per mode, ingestion with and without BM25, "
                        "latency per mode over --search-chunks chunks, follow-up vs fresh time to sources")
    p.add_argument("--latency", action="store_true",
                   help="only the search latency per mode over --search-chunks chunks, on any Milvus (no BM25: dense)")
    p.add_argument("--embed-chunks", type=int, default=10000,
                   help="with --latency: chunks embedded; the others reuse their vectors with noise (default 10000)")
    p.add_argument("--library", type=Path, metavar="DIR",
                   help="only the large-library benchmark: ingest every document of DIR per backend, then ask both "
                        "question sets of it; DIR is made from this machine's documentation when it does not exist")
    p.add_argument("--files", type=int, default=1000, help="with --library: documents to put in a new DIR (default 1000)")
    p.add_argument("--backends", default="torch,onnx",
                   help="with --library: comma-separated RAG_EMBED_BACKEND values to measure (default torch,onnx)")
    p.add_argument("--keep", action="store_true", help="with --library: keep its collections (_rag_bench_library_*)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("bench", help="benchmark sync vs async Milvus through LlamaIndex (the async tutorial's test)")
    p.add_argument("--counts", default="10,100,1000", help="comma-separated node/query counts (default 10,100,1000)")
    p.add_argument(
        "--consistency", nargs="+", default=["Strong"], metavar="LEVEL",
        help="Strong, Session, Bounded or Eventually; several levels run one after another (default Strong)",
    )
    p.add_argument("--concurrency", help="async calls in flight at most (default: all at once, as the tutorial)")
    p.add_argument("--batch-size", help="nodes per insert in the batched modes (default 100)")
    p.add_argument("--json", action="store_true", help="print one JSON record per measurement")

    p = sub.add_parser("bench-ocr", help="benchmark OCR: character error rate, pages/s, retrieval on scanned copies")
    p.add_argument("--pages", type=int, default=12, help="text PDF pages read at each resolution (default 12)")
    p.add_argument("--dpi", default="150,300", help="comma-separated resolutions (default 150,300)")
    p.add_argument("--skip-retrieval", action="store_true", help="only the character error rate and speed")
    p.add_argument("--library-pages", type=int, default=0,
                   help="also ingest and ask a scanned library of about this many pages (e.g. 300; default: none)")
    p.add_argument("--json", action="store_true")


def cmd_bench_ingest(args, settings) -> int:
    from rag.loop import shared_loop

    if args.chunks < 1 or args.search_chunks < 10 or args.questions < 1 or args.embed_chunks < 10:
        raise RagError("--chunks, --search-chunks, --embed-chunks and --questions must be positive "
                       "(search-chunks and embed-chunks at least 10)")
    log = (lambda *a: None) if args.json else (lambda msg: print(msg, file=sys.stderr, flush=True))
    if args.library is not None:
        result = shared_loop().run(_library_bench(args, settings, log))
        show = _print_library_bench
    elif args.latency:
        from rag.bench.retrieval import measure_search_latency

        result = shared_loop().run(measure_search_latency(
            settings, search_chunks=args.search_chunks, questions=args.questions, embedded=args.embed_chunks, log=log
        ))
        show = lambda r: (print(f"\n{r['backend']}; model {r['embed_model']}"), _print_latency(r["latency"]))  # noqa: E731
    elif args.retrieval:
        from rag.bench.retrieval import measure_retrieval

        result = shared_loop().run(measure_retrieval(
            settings, chunks=args.chunks, search_chunks=args.search_chunks, questions=args.questions, log=log
        ))
        show = _print_retrieval_bench
    elif args.memory is not None:
        if args.memory < 5:
            raise RagError("--memory must be at least 5 chunks")
        from rag.bench.ingest import measure_memory

        result = shared_loop().run(measure_memory(settings, args.memory, log))
        show = _print_memory_bench
    else:
        from rag.bench.ingest import measure_ingestion

        result = shared_loop().run(
            measure_ingestion(
                settings, chunks=args.chunks, search_chunks=args.search_chunks, questions=args.questions,
                tutorial=not args.skip_tutorial, log=log,
            )
        )
        show = _print_ingest_bench
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        show(result)
    return 0


async def _library_bench(args, settings, log) -> dict[str, Any]:
    from rag.bench.library import measure_library
    from rag.config import EmbedBackend

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    wrong = [b for b in backends if b not in set(EmbedBackend) - {EmbedBackend.AUTO}]
    if wrong or not backends:
        raise RagError(f"--backends takes torch, onnx, onnx-int8 or openvino, comma-separated, not {args.backends!r}")
    if args.files < 1:
        raise RagError("--files must be at least 1")
    if args.library.exists() and not args.library.is_dir():
        raise RagError(f"{args.library} is not a folder")
    return await measure_library(settings, args.library, files=args.files, backends=backends, keep=args.keep, log=log)


def _print_library_bench(result: dict[str, Any]) -> None:
    ref = result["float32_encode"]
    print(f"\nMilvus: {result['backend']}; model: {result['embed_model']}; library {result['library']}: "
          f"{result['documents']} documents, {result['megabytes']} MB")
    print(f"plain sentence-transformers float32 encode of {ref['passages']} of its chunks: {ref['passages_per_s']} passages/s")
    print(f"{'backend':10} {'precision':9} {'docs':>5} {'failed':>6} {'chunks':>7} {'seconds':>8} {'chunks/s':>8} "
          f"{'embed-only/s':>12} {'e2e/fp32':>8} {'embed/e2e':>9} {'peak RSS MB':>11}")
    for r in result["runs"]:
        print(f"{r['backend']:10} {r['precision']:9} {r['documents']:5} {len(r['failed']):6} {r['chunks']:7} "
              f"{r['seconds']:8.1f} {r['chunks_per_s']:8.1f} {r['embedding_only']['passages_per_s']:12.1f} "
              f"{r['end_to_end_over_float32_encode']:8.2f} {r['embedding_only_over_end_to_end']:9.2f} "
              f"{r['peak_rss_mb']:11.0f}")
    for r in result["runs"]:
        for q in r["quality"]:
            print(f"{r['backend']}, {q['mode']}, {q['set']} ({q['questions']} questions): hit@1 {q['hit@1']:.2f}, "
                  f"hit@3 {q['hit@3']:.2f}, hit@5 {q['hit@5']:.2f}, MRR {q['mrr']:.3f}")
        if r["latency"]:
            lat = r["latency"]
            print(f"{r['backend']}, hybrid search over {r['chunks']} chunks, top-5: p50 {lat['p50_ms']} ms, "
                  f"p95 {lat['p95_ms']} ms ({lat['questions']} questions)")
        for doc, error in list(r["failed"].items())[:20]:
            print(f"  failed: {doc}: {error}")


def _print_ingest_bench(result: dict[str, Any]) -> None:
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


def _print_memory_bench(result: dict[str, Any]) -> None:
    print(f"\nbackend: {result['backend']}; model: {result['embed_model']}; batch {result['batch_size']}; "
          f"RSS before ingesting: {result['rss_before_mb']:.0f} MB")
    print(f"{'chunks':>7} {'files':>6} {'MB':>6} {'seconds':>8} {'peak RSS MB':>12} {'Milvus Lite MB':>15}")
    for r in result["runs"]:
        print(f"{r['chunks']:7} {r['files']:6} {r['megabytes']:6.1f} {r['seconds']:8.1f} {r['peak_rss_mb']:12.0f} "
              f"{r['milvus_peak_rss_mb']:15.0f}")
    small, large = result["runs"]
    print(f"peak RSS, large over small run: {result['large_over_small_peak']}; above the start: "
          f"{small['above_start_mb']:.0f} MB vs {large['above_start_mb']:.0f} MB")


def _print_retrieval_bench(result: dict[str, Any]) -> None:
    q = result["quality"]
    print(f"\nbackend: {result['backend']}; model: {result['embed_model']}")
    for part in q["sets"]:
        if "skipped" in part:
            print(f"quality, {part['name']}: skipped ({part['skipped']})")
            continue
        print(f"quality, {part['name']}: {part['questions']} questions over {part['files']} files ({part['chunks']} chunks)")
        print(f"{'mode':8} {'top-k':>5} {'hit@1':>6} {'hit@3':>6} {'hit@k':>6} {'MRR':>6}  where misses were lost; refusals")
        for r in part["rows"]:
            lost = (f"  not retrieved {r['not retrieved']}, below k {r['ranked below k']}, fusion {r['lost in fusion']};"
                    if r["not retrieved"] is not None else "  ")
            print(f"{r['mode']:8} {r['top_k']:5} {r['hit@1']:6.2f} {r['hit@3']:6.2f} {r['hit@k']:6.2f} {r['mrr']:6.3f}{lost}"
                  f" declined {r['unanswerable_declined']}/{r['unanswerable_total']} unanswerable, "
                  f"{r['answerable_declined']}/{r['answerable_total']} answerable")
    f = q["follow_ups"]
    print(f"time to sources (hybrid, p50 of {f['questions']}): fresh {f['fresh_p50_ms']} ms, "
          f"follow-up {f['follow_up_p50_ms']} ms ({f['follow_up_over_fresh']}x)")
    i = result["ingestion"]
    print(f"ingestion, {i['chunks']} chunks: dense-only {i['dense_chunks_per_s']} chunks/s, with BM25 "
          f"{i['hybrid_chunks_per_s']} chunks/s ({i['hybrid_over_dense']}x; runs {i['all_runs']})")
    _print_latency(result["latency"])


def _print_latency(lat: dict[str, Any]) -> None:
    modes = [m for m in ("dense", "keyword", "hybrid") if f"{m}_p50_ms" in lat]
    print(f"latency over {lat['chunks']} chunks ({lat['embedded']} embedded), index {lat['index']}, "
          f"{lat['questions']} questions, top-{lat['top_k']}: " + "; ".join(
              f"{m} p50 {lat[f'{m}_p50_ms']} ms / p95 {lat[f'{m}_p95_ms']} ms" for m in modes)
          + (f"; hybrid/dense p50 {lat['hybrid_over_dense_p50']}x" if "hybrid_over_dense_p50" in lat else ""))


def cmd_bench(args, settings) -> int:
    from rag.bench.engine import BenchEngine
    from rag.bench.options import options_from_args
    from rag.bench.report import format_row, format_summary, records_json, summarize, table_header

    options = options_from_args(args.counts, args.consistency, args.concurrency, args.batch_size)
    if args.json:
        status = (lambda message: print(message, file=sys.stderr, flush=True)) if sys.stderr.isatty() else None
        print(records_json(BenchEngine(settings, options, on_status=status).measure()))
        return 0
    print(f"Milvus: {settings.milvus_display}; counts {', '.join(map(str, options.counts))}", flush=True)
    print(table_header(), flush=True)
    records = BenchEngine(settings, options, on_record=lambda record: print(format_row(record), flush=True)).measure()
    print()
    print(format_summary(summarize(records)))
    return 0


def cmd_bench_ocr(args, settings) -> int:
    from rag.bench.ocr import measure_ocr
    from rag.bench.options import parse_counts
    from rag.loop import shared_loop

    log = (lambda *a: None) if args.json else (lambda msg: print(msg, file=sys.stderr, flush=True))
    dpis = list(parse_counts(args.dpi, "--dpi"))
    if args.library_pages < 0:
        raise RagError("--library-pages must be 0 (none) or a number of pages")
    result = shared_loop().run(measure_ocr(settings, pages=args.pages, dpis=dpis, retrieval=not args.skip_retrieval, log=log,
                                           library_pages=args.library_pages))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"\nOCR on {result['cores']} cores, {result['workers']} pages at once, models on {result['runtime']}")
    print(f"{'dpi':>5} {'pages':>6} {'CER':>7} {'median':>7} {'worst':>7} {'as read':>8} {'WER':>7} {'as read':>8} "
          f"{'conf':>6} {'pages/s':>8}")
    for r in result["cer"]:
        print(f"{r['dpi']:>5} {r['pages']:>6} {r['cer']:>7.2%} {r['cer_median_page']:>7.2%} {r['cer_worst_page']:>7.2%} "
              f"{r['cer_as_read']:>8.2%} {r['wer']:>7.2%} {r['wer_as_read']:>8.2%} {r['confidence']:>6.3f} "
              f"{r['pages_per_second']:>8.2f}")
    retrieval = result.get("retrieval")
    if retrieval:
        print(f"\nretrieval, hybrid: {retrieval['questions']} questions over {retrieval['documents']} documents "
              f"({retrieval['pages']} scanned pages)")
        for kind in ("text", "scans"):
            row = next(r for r in retrieval[kind]["rows"] if r["top_k"] == 5)
            print(f"  {kind:6} hit@1 {row['hit@1']:.2f}  hit@3 {row['hit@3']:.2f}  hit@5 {row['hit@k']:.2f}  "
                  f"MRR {row['mrr']:.3f}  ({retrieval[kind]['chunks']} chunks, {retrieval[kind]['seconds']:.0f} s)")
    if library := result.get("library"):
        row = next(r for r in library["rows"] if r["top_k"] == 5)
        print(f"\nscanned library: {library['documents']} documents, {library['pages']} pages, {library['chunks']} chunks in "
              f"{library['seconds']:.0f} s ({library['pages_per_second']:.2f} pages/s end to end), peak {library['peak_rss_mb']} MB")
        print(f"  hit@1 {row['hit@1']:.2f}  hit@3 {row['hit@3']:.2f}  hit@5 {row['hit@k']:.2f}  MRR {row['mrr']:.3f}")
    return 0
