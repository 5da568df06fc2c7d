"""Measure quoted answers on real documents: do they hold the evidence, are out-of-scope questions
declined (and in-scope ones not), do the quotes show seams, and how soon do the first words come?

    .venv/bin/python scripts/answer_eval.py [--set answers|pydoc|debian|all] [--top-k 4] [--json]

Question sets (each over its own documents, all available offline):
- `answers` (`scripts/eval/answers.json`): documentation that ships with Debian (man pages of gzip,
  xz, zip, grep and ssh rendered by `man`, base-passwd's users-and-groups guide);
- `pydoc` and `debian`: the retrieval question sets (`docs/retrieval-questions*.json`), held out
  from the tuning of the quotes: the pydoc text of 10 standard modules, and 11 documents Debian
  installs (PDF manuals, HTML, Markdown, man pages).

A question with an evidence phrase is in scope; one without (or with `"file": null`) must be
declined. Seams: a quote that does not end a sentence (cut at a chunk boundary), and a quote that
repeats another (or its start). Documents are ingested into a fresh Milvus Lite file in a temporary
folder; answers use the configured mode (`RAG_LLM`; the offline default quotes the documents).
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rag.bench.corpus import MissingDocuments, render_man_page
from rag.options import AskOptions

ROOT = Path(__file__).resolve().parent.parent
SETS = ("answers", "pydoc", "debian")
MAN_PAGES = ("gzip", "xz", "zip", "grep", "ssh")
GUIDE = Path("/usr/share/doc/base-passwd/users-and-groups.txt.gz")
QUOTE = re.compile(r"(.*?)\s*\[\d+\]$", re.S)
SENTENCE_END = re.compile(r"[.!?:;][\"')\]]*$")


def answers_corpus(folder: Path) -> list[Path]:
    """Render the man pages to text and unpack the guide; fails clearly when one is missing."""
    folder.mkdir(parents=True, exist_ok=True)
    files = [render_man_page(name, folder / f"{name}.txt") for name in MAN_PAGES]
    if not GUIDE.exists():
        raise MissingDocuments(f"{GUIDE} is missing (this set uses Debian's documentation)")
    files.append(folder / "users-and-groups.txt")
    files[-1].write_text(gzip.decompress(GUIDE.read_bytes()).decode())
    return files


def load_set(name: str, folder: Path) -> tuple[list[dict[str, Any]], list[Path], list[Any]]:
    """The set's questions as {question, evidence (None: out of scope)}, its documents, and (for
    the retrieval sets, which name the file that answers) the questions as `rag eval` reads them."""
    if name == "answers":
        questions = json.loads((ROOT / "scripts" / "eval" / "answers.json").read_text())["questions"]
        return questions, answers_corpus(folder), []
    from rag.bench.retrieval import QUESTION_SETS, load_questions, question_set_documents

    asked = load_questions(QUESTION_SETS[name])  # answerable ones without an evidence phrase are left out
    questions = [{"question": q.question, "evidence": q.evidence if q.file else None} for q in asked if q.evidence or not q.file]
    return questions, question_set_documents(folder, name, asked), asked


def normalised(text: str) -> str:
    return " ".join((text or "").split()).lower()


def quotes_of(answer: str) -> list[str]:
    """The quotes of a quoted answer, without their source numbers."""
    parts = [QUOTE.match(part.strip()) for part in (answer or "").split("\n\n") if part.strip()]
    return [normalised(m.group(1)) for m in parts if m]


def seams(quotes: list[str]) -> tuple[int, int]:
    """(quotes that stop mid-sentence, quotes that repeat an earlier one or its start)."""
    cut = sum(not SENTENCE_END.search(q) for q in quotes)
    repeated = sum(any(q in p or p in q for p in quotes[:i]) for i, q in enumerate(quotes))
    return cut, repeated


def measure(rag: Any, name: str, questions: list[dict[str, Any]], files: list[Path], top_k: int,
            asked: list[Any]) -> dict[str, Any]:
    from rag.answering.events import Done, Sources, Token

    collection = f"answer_eval_{name}"
    report = rag.ingest(files, collection)
    retrieval = {}
    if asked:  # hybrid search, top 5, as `rag eval` reports it
        found = rag.evaluate(asked, collection, "hybrid", (5,))[0].to_json()
        retrieval = {k: found[k] for k in ("hit@1", "hit@3", "hit@k", "mrr", "losses")}
        retrieval["ranks"] = {q["question"]: q["rank"] for q in found["per_question"] if q["file"]}
    rows = []
    for item in questions:
        start, sources_at, first_words_at, answer = time.perf_counter(), None, None, None
        for event in rag.stream_ask(item["question"], AskOptions(collection, top_k)):
            now = time.perf_counter() - start
            if isinstance(event, Sources) and sources_at is None:
                sources_at = now
            elif isinstance(event, Token) and first_words_at is None:
                first_words_at = now
            elif isinstance(event, Done):
                answer = event.answer
        evidence = item.get("evidence")
        quotes = quotes_of(answer.answer or "") if answer.found else []
        cut, repeated = seams(quotes)
        rows.append({
            "question": item["question"], "in_scope": evidence is not None, "found": answer.found,
            "has_evidence": bool(evidence) and normalised(evidence) in normalised(answer.answer),
            "quotes": len(quotes), "cut_quotes": cut, "repeated_quotes": repeated,
            "answer": answer.answer, "sources_ms": round(1000 * sources_at, 1),
            "first_words_ms": round(1000 * first_words_at, 1) if first_words_at is not None else None,
        })
    return {**summarise(name, report.chunks, rows), "retrieval": retrieval}


def summarise(name: str, chunks: int, rows: list[dict[str, Any]]) -> dict[str, Any]:
    inside = [r for r in rows if r["in_scope"]]
    outside = [r for r in rows if not r["in_scope"]]
    quotes = sum(r["quotes"] for r in rows)
    ratios = [r["first_words_ms"] / r["sources_ms"] for r in inside if r["first_words_ms"] and r["found"]]
    share = lambda part, whole: round(part / whole, 3) if whole else None  # noqa: E731
    return {
        "set": name, "chunks": chunks, "in_scope": len(inside),
        "evidence_in_answer": share(sum(r["has_evidence"] for r in inside), len(inside)),
        "wrongly_declined": share(sum(not r["found"] for r in inside), len(inside)),
        "out_of_scope": len(outside),
        "declined_out_of_scope": share(sum(not r["found"] for r in outside), len(outside)),
        "quotes": quotes,
        "cut_quotes": sum(r["cut_quotes"] for r in rows),
        "repeated_quotes": sum(r["repeated_quotes"] for r in rows),
        "sources_ms_p50": statistics.median(r["sources_ms"] for r in inside),
        "first_words_over_sources_p50": round(statistics.median(ratios), 2) if ratios else None,
        "rows": rows,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=(*SETS, "all"), default="answers")
    parser.add_argument("--top-k", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from rag.config import Settings
    from rag.service import Rag

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        settings = Settings(RAG_DATA_DIR=folder / "data", MILVUS_URI=str(folder / "data" / "eval.db"))
        with Rag(settings) as rag:
            for name in SETS if args.set == "all" else (args.set,):
                try:
                    questions, files, asked = load_set(name, folder / name)
                except MissingDocuments as exc:
                    print(f"{name}: skipped ({exc})", file=sys.stderr)
                    continue
                results.append(measure(rag, name, questions, files, args.top_k, asked))
            mode = rag.info.llm.label
    if args.json:
        print(json.dumps({"mode": mode, "top_k": args.top_k, "sets": results}, indent=2))
        return 0
    for result in results:
        for r in result["rows"]:
            ok = (r["has_evidence"] and not r["cut_quotes"] and not r["repeated_quotes"]) if r["in_scope"] else not r["found"]
            print(f"{'ok ' if ok else 'MISS'} {result['set']:7} {'in ' if r['in_scope'] else 'out'} found={r['found']!s:5} {r['question']}")
            if not ok and r["found"]:
                print("      ", " | ".join(quotes_of(r["answer"] or ""))[:400])
    print(json.dumps({"mode": mode, "top_k": args.top_k,
                      "sets": [{k: v for k, v in s.items() if k != "rows"} for s in results]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
