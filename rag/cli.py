"""`python -m rag`: ingest, ask, list and delete from the command line, over the same `Rag` core."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rag.bench.commands import add_bench_parsers, cmd_bench, cmd_bench_ingest, cmd_bench_ocr
from rag.config import MAX_TOP_K, MIN_TOP_K, RETRIEVAL_MODES, check_top_k
from rag.errors import RagError
from rag.ingestion.ocr import ocr_note
from rag.status import FileStatus


def _top_k(value: str) -> int:
    try:
        k = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"top-k must be a whole number, not {value!r}") from None
    try:
        return check_top_k(k)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rag", description="Chat with your documents over Milvus.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_collection(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--collection", "-c", help="collection (knowledge base); default RAG_COLLECTION or 'documents'")
        return p

    def with_retrieval(p: argparse.ArgumentParser) -> None:
        p.add_argument("--mode", metavar="|".join(RETRIEVAL_MODES),
                       help="hybrid (words and meaning), dense (meaning) or keyword (BM25); default RAG_RETRIEVAL_MODE")

    p = with_collection(sub.add_parser("ingest", help="index files or folders"))
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--sync", action="store_true",
                   help="keep the collection in step with ONE folder: add new files, re-index changed ones "
                        "(by content hash), skip unchanged ones without reading them, and print a summary")
    p.add_argument("--prune", action="store_true",
                   help="with --sync: also remove the documents of files gone from the folder")

    p = with_collection(sub.add_parser("ask", help="ask a question (or --questions-file)"))
    p.add_argument("question", nargs="?")
    p.add_argument("--questions-file", type=Path, help="a JSON list of questions, answered in one process")
    p.add_argument("--top-k", "-k", type=_top_k, help=f"passages to retrieve ({MIN_TOP_K}-{MAX_TOP_K})")
    p.add_argument("--retrieve-only", action="store_true", help="no LLM: answer with the passages")
    with_retrieval(p)
    p.add_argument("--doc", action="append", default=[], metavar="NAME",
                   help="search only this document (id or file name, as `docs` lists it); repeatable")
    p.add_argument("--json", action="store_true", help='print {"answer", "sources", "mode"} as JSON')

    p = with_collection(sub.add_parser("eval", help="measure retrieval on a question file (hit@k, MRR)"))
    p.add_argument("questions", type=Path, metavar="QUESTIONS",
                   help='a JSON list (or CSV) of {"question", "file", "page"?, "evidence"?}')
    with_retrieval(p)
    p.add_argument("--top-k", "-k", type=_top_k, default=5, help="passages retrieved per question (default 5)")
    p.add_argument("--json", action="store_true", help="print hit@1, hit@3, hit@k, mrr, per file and per question")

    p = with_collection(sub.add_parser("docs", help="list a collection's documents"))
    p.add_argument("--json", action="store_true")

    p = with_collection(sub.add_parser("delete", help="delete a document from a collection"))
    p.add_argument("doc", metavar="DOC", help="document id, as `docs` lists it")

    p = sub.add_parser("collections", help="list collections")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("chats", help="list saved conversations, `chats export ID` to print one, or "
                                     "`chats questions` for the test questions made from feedback")
    p.add_argument("--collection", "-c", help="only this collection's conversations (default: all)")
    p.add_argument("--json", action="store_true")
    chats = p.add_subparsers(dest="chats_command", metavar="{export,questions}")
    p = chats.add_parser("export", help="print one conversation: questions, answers and numbered sources")
    p.add_argument("id", metavar="ID", help="conversation id, as `chats` lists it")
    p.add_argument("--format", "-f", choices=("md", "json"), default="md", help="Markdown (default) or JSON")
    p = chats.add_parser("questions", help="print a collection's test questions made from thumbs-down answers, "
                                           "as the question file `eval` reads")
    p.add_argument("--collection", "-c", default=argparse.SUPPRESS,  # before or after `questions`
                   help="collection (knowledge base); default RAG_COLLECTION or 'documents'")

    sub.add_parser("info", help="show the configuration in use")

    p = sub.add_parser("embed-backends", help="measure the local embedding backends on this machine; "
                                              "RAG_EMBED_BACKEND=auto then uses the fastest that passes")
    p.add_argument("--once", action="store_true", help="only if this machine has no measurement yet (set-up uses it)")
    p.add_argument("--json", action="store_true")

    add_bench_parsers(sub)

    p = sub.add_parser("milvus-server", help="run a local Milvus 2.3.5 server (PyPI package `milvus`) until Ctrl-C")
    p.add_argument("--port", default="19530", help="client port (default 19530)")
    p.add_argument("--data", type=Path, help="data folder (default: RAG_DATA_DIR/milvus-server)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_libraries()
    try:
        from pydantic import ValidationError

        from rag.config import Settings

        try:
            settings = Settings()
        except ValidationError as exc:
            raise RagError(_settings_error(exc)) from None
        return COMMANDS[args.command](args, settings)
    except RagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _settings_error(exc: Any) -> str:
    from rag.config import setting_problems

    where, what = setting_problems(exc)[0]
    return f"invalid setting {where}: {what}"


def _rag(settings):
    from rag.service import Rag

    return Rag(settings)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def _print_list(items: Sequence[Any], as_json: bool, empty: str, line: Callable[[Any], str]) -> None:
    """A listing, as JSON or one line per item; with nothing in it, `empty` says how to get something."""
    if as_json:
        _print_json([vars(item) for item in items])
    elif not items:
        print(empty)
    else:
        for item in items:
            print(line(item))


def cmd_ingest(args, settings) -> int:
    from tqdm import tqdm

    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        raise RagError(f"{missing[0]}: no such file or folder")
    if args.prune and not args.sync:
        raise RagError("--prune removes documents whose files are gone from a synced folder: use it with --sync")
    if args.sync and (len(args.paths) != 1 or not Path(args.paths[0]).is_dir()):
        raise RagError("--sync takes exactly one folder")
    rag = _rag(settings)
    bar = tqdm(total=0, unit="chunk", file=sys.stderr, disable=args.json or not sys.stderr.isatty())

    def progress(state) -> None:
        bar.total = max(state.chunks_total, state.chunks_done)
        bar.n = state.chunks_done
        scan = f", OCR of {state.current}: page {state.pages_read}/{state.pages_total}" if state.pages_total else ""
        bar.set_postfix_str(f"{state.files_done}/{state.files_total} files{scan}")
        bar.refresh()

    report = rag.ingest(args.paths, args.collection, progress)
    bar.close()
    # Only after an ingestion that ran to its end: an interrupted sync removes nothing.
    removed = rag.prune(args.paths[0], args.collection) if args.prune and not report.aborted else []
    counts = {status: sum(r.status is status for r in report.results) for status in FileStatus}
    if args.json:
        _print_json(
            {
                "collection": report.collection,
                "seconds": round(report.seconds, 2),
                "chunks": report.chunks,
                "aborted": report.aborted or None,
                "files": [vars(r) for r in report.results],
                **({"removed": [d.doc_id for d in removed]} if args.prune else {}),
            }
        )
    else:
        for r in report.results:
            detail = r.error if r.status is FileStatus.FAILED else f"{r.chunks} chunks" + (f"; {r.note}" if r.note else "")
            print(f"{r.status:9} {r.doc_id}: {detail}")
        for record in removed:
            print(f"{'removed':9} {record.doc_id}: its file is gone")
        print(f"{report.chunks} chunks into {report.collection!r} in {report.seconds:.1f} s")
        if args.sync:
            print(f"sync of {args.paths[0]}: {counts[FileStatus.INDEXED]} new, {counts[FileStatus.REPLACED]} re-indexed, "
                  f"{counts[FileStatus.UNCHANGED]} unchanged, {counts[FileStatus.FAILED]} failed, {len(removed)} removed")
        if report.aborted:
            print(f"stopped early: {report.aborted}", file=sys.stderr)
    return 1 if report.failed else 0


def _questions(args) -> list[str]:
    if args.questions_file and args.question:
        raise RagError("give either a QUESTION or --questions-file, not both")
    if args.questions_file:
        try:
            data = json.loads(args.questions_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RagError(f"{args.questions_file}: no such file") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RagError(f"{args.questions_file}: not a JSON file ({exc})") from None
        if not isinstance(data, list) or not all(isinstance(q, str) for q in data) or not data:
            raise RagError(f"{args.questions_file}: expected a non-empty JSON list of strings")
        return data
    if args.question is None:
        raise RagError("give a QUESTION or --questions-file")
    return [args.question]


def cmd_ask(args, settings) -> int:
    from rag.answering.events import CUT_OFF, Done, Failure, Token
    from rag.options import AskOptions

    options = AskOptions(args.collection, args.top_k, args.retrieve_only, args.mode, args.doc)
    questions = _questions(args)
    rag = _rag(settings)
    answers = []
    for question in questions:
        if args.json:
            answers.append(rag.ask(question, options))
            continue
        if len(questions) > 1:
            print(f"\n## {question}")
        for event in rag.stream_ask(question, options):
            if isinstance(event, Token):
                print(event.text, end="", flush=True)
            elif isinstance(event, Failure):
                print(f"\nerror: {event.message}", file=sys.stderr)
            elif isinstance(event, Done):
                if args.retrieve_only and event.answer.found:
                    print("(retrieval only: the passages below are the answer)", end="")
                print()
                if event.answer.cut_off:
                    print(f"note: {CUT_OFF}", file=sys.stderr)
                _print_sources(event.answer.sources, event.answer.found)
                if event.answer.note and question == questions[-1]:
                    print(f"\nnote: {event.answer.note}", file=sys.stderr)
        answers.append(None)
    if not args.json and not args.retrieve_only and rag.info.llm.note:
        print(f"\nnote: {rag.info.llm.note}", file=sys.stderr)
    if args.json:
        data = [a.to_json() for a in answers]
        _print_json(data if args.questions_file else data[0])
        return 1 if any(a.error for a in answers) else 0
    return 0


def _print_sources(sources, found: bool = True) -> None:
    print("\nSources:" if found else "\nClosest passages:")
    for i, s in enumerate(sources, 1):
        page = f", page {s.page}" if s.page is not None else ""
        snippet = " ".join(s.text.split())[:160]
        print(f"  [{i}] {s.file}{page} ({s.score_label}): {snippet}")


def cmd_eval(args, settings) -> int:
    from rag.evaluation import parse_questions

    try:
        text = args.questions.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RagError(f"{args.questions}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RagError(f"{args.questions}: cannot read it as text ({exc})") from None
    questions = parse_questions(text, str(args.questions))
    result = _rag(settings).evaluate(questions, args.collection, args.mode, (args.top_k,))[0]
    if args.json:
        _print_json(result.to_json())
        return 0
    k = result.top_k
    print(f"collection {result.collection!r}, mode {result.mode}, top-{k}, {result.overall.questions} questions")
    width = max((len(f) for f in result.per_file), default=7)
    print(f"{'':{width}}  {'hit@1':>6} {'hit@3':>6} {f'hit@{k}':>6} {'MRR':>6}  questions")
    for name, fig in [*result.per_file.items(), ("overall", result.overall)]:
        print(f"{name:{width}}  {fig.hit_at_1:6.2f} {fig.hit_at_3:6.2f} {fig.hit_at_k:6.2f} {fig.mrr:6.3f}  {fig.questions}")
    print()
    for o in result.outcomes:
        rank = f"rank {o.rank}" if o.rank else f"miss (top: {o.top or 'nothing'})"
        rank = ("declined" if o.declined else "answered") + " (unanswerable)" if o.question.file is None else rank
        legs = f"  [dense {o.dense_rank or '-'}, BM25 {o.keyword_rank or '-'}: {o.stage(k)}]" if o.stage(k) else ""
        print(f"  {rank:<40} {o.question.question}{legs}")
    if result.losses:
        print("\nright passages: " + ", ".join(f"{stage} {n}" for stage, n in result.losses.items()))
    r = result.refusals
    print(f"declined: {r['unanswerable_declined']} of {r['unanswerable_total']} unanswerable questions, "
          f"{r['answerable_declined']} of {r['answerable_total']} answerable ones")
    if result.note:
        print(f"\nnote: {result.note}", file=sys.stderr)
    return 0


def cmd_docs(args, settings) -> int:
    docs = _rag(settings).documents(args.collection)
    if args.json:
        _print_json([{k: v for k, v in vars(d).items() if k not in ("owner", "previous")} for d in docs])
        return 0
    if not docs:
        print("no documents")
        return 0
    width = max(len(d.doc_id) for d in docs)
    for d in docs:
        extra = "".join(f"  {x}" for x in (d.error, ocr_note(d.ocr)) if x)
        print(f"{d.doc_id:<{width}}  {d.status:8}  {d.chunks:6} chunks{extra}")
    return 0


def cmd_delete(args, settings) -> int:
    record = _rag(settings).delete(args.doc, args.collection)
    print(f"deleted {record.doc_id} ({record.chunks} chunks)")
    return 0


def cmd_collections(args, settings) -> int:
    _print_list(_rag(settings).collections(), args.json, "no collections yet: `python -m rag ingest PATH` creates one",
                lambda c: f"{c.name}  ({c.embed_model}, {c.embed_dim}-d, created {c.created_at})")
    return 0


def cmd_chats(args, settings) -> int:
    rag = _rag(settings)
    if args.chats_command == "export":
        from rag.conversations import to_markdown

        conv = rag.conversations.get(args.id)
        if args.format == "json":
            _print_json(conv.to_json())
        else:
            print(to_markdown(conv), end="")
        return 0
    if args.chats_command == "questions":
        from rag.evaluation import questions_file

        saved = rag.conversations.questions(args.collection or settings.collection)
        if not saved:
            print(f"no test questions in collection {args.collection or settings.collection!r} yet: make one from a "
                  "thumbs-down answer on the Chat page", file=sys.stderr)
        print(questions_file(q for _, q in saved), end="")
        return 0
    _print_list(rag.conversations.list(args.collection), args.json,
                "no saved conversations yet: they are saved as you chat in the app",
                lambda c: f"{c.id}  {c.updated_at}  {c.collection}  {c.turns:3} turns  {c.title}")
    return 0


def cmd_info(args, settings) -> int:
    from rag.config import EmbedProvider
    from rag.models.embeddings import describe_backend
    from rag.models.llm import llm_info

    info = llm_info(settings)
    print(f"Milvus:     {settings.milvus_display}")
    print(f"            index: {settings.vector_index_display}")
    print(f"Embedding:  {settings.embed_display}")
    if settings.embed_provider is EmbedProvider.LOCAL:
        print(f"            backend: {describe_backend(settings)}")
    print(f"Answers:    {info.label}")
    if info.note:
        print(f"            {info.note}")
    print(f"Collection: {settings.collection}")
    print(f"Data:       {settings.data_dir.resolve()}")
    return 0


def cmd_embed_backends(args, settings) -> int:
    from rag.config import EmbedProvider
    from rag.models.embeddings import backend_choice

    if settings.embed_provider is not EmbedProvider.LOCAL:
        raise RagError("RAG_EMBED_PROVIDER=openai: the embeddings are computed by the server, there is nothing to measure here")
    if not args.once:
        print(f"measuring the backends of {settings.embed_model} (a minute at most)...", file=sys.stderr)
    choice = backend_choice(settings, measure=not args.once, assume_auto=True)
    if args.json:
        _print_json(choice.to_json())
        return 0
    print(f"{'backend':<11} {'precision':<9} {'passages/s':>10} {'min cosine':>10}  to float32")
    for t in choice.trials:
        verdict = "passes" if t.passed else t.note
        print(f"{t.backend:<11} {t.precision:<9} {t.passages_per_s:10.1f} {t.min_cosine:10.5f}  {verdict}")
    print(f"auto uses: {choice.chosen} ({choice.reason}) on {choice.machine}")
    if settings.embed_backend != "auto":
        print(f"note: RAG_EMBED_BACKEND={settings.embed_backend} is set, so that backend is used", file=sys.stderr)
    return 0


def cmd_milvus_server(args, settings) -> int:
    from rag.storage.local_server import MilvusServerError, serve

    try:
        port = int(args.port)
    except ValueError:
        raise MilvusServerError(f"--port must be a number, not {args.port!r}") from None
    return serve(args.data or settings.data_dir / "milvus-server", port)


COMMANDS = {
    "ingest": cmd_ingest,
    "ask": cmd_ask,
    "eval": cmd_eval,
    "docs": cmd_docs,
    "delete": cmd_delete,
    "collections": cmd_collections,
    "chats": cmd_chats,
    "info": cmd_info,
    "embed-backends": cmd_embed_backends,
    "bench-ingest": cmd_bench_ingest,
    "bench": cmd_bench,
    "bench-ocr": cmd_bench_ocr,
    "milvus-server": cmd_milvus_server,
}


def _quiet_libraries() -> None:
    import logging
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning, module="milvus_lite")
    warnings.filterwarnings("ignore", message=".*pkg_resources.*")
    for name in ("llama_index", "sentence_transformers", "httpx"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:
        pass
