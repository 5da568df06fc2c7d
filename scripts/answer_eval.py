"""Measure answers on real documents: does the answer hold the evidence, are out-of-scope
questions declined, and how soon do the first words come after the sources?

    .venv/bin/python scripts/answer_eval.py [--questions scripts/eval/answers.json] [--json]

The documents are documentation that ships with Debian (man pages rendered by `man`, the
base-passwd users-and-groups guide): real text in a user's language, available offline. They are
ingested into a fresh Milvus Lite file in a temporary folder; answers use the configured mode
(`RAG_LLM`; the offline default quotes the documents).
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rag.bench.corpus import MissingDocuments, render_man_page
from rag.options import AskOptions

ROOT = Path(__file__).resolve().parent.parent

MAN_PAGES = ("gzip", "xz", "zip", "grep", "ssh")
GUIDE = Path("/usr/share/doc/base-passwd/users-and-groups.txt.gz")


def build_corpus(folder: Path) -> list[Path]:
    """Render the man pages to text and unpack the guide; fails clearly when one is missing."""
    try:
        files = [render_man_page(name, folder / f"{name}.txt") for name in MAN_PAGES]
    except MissingDocuments as exc:
        sys.exit(f"error: {exc}")
    if not GUIDE.exists():
        sys.exit(f"error: {GUIDE} is missing (this measurement uses Debian's documentation)")
    files.append(folder / "users-and-groups.txt")
    files[-1].write_text(gzip.decompress(GUIDE.read_bytes()).decode())
    return files


def normalised(text: str) -> str:
    return " ".join((text or "").split()).lower()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=Path, default=ROOT / "scripts" / "eval" / "answers.json")
    parser.add_argument("--top-k", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from rag.answering.events import Done, Sources, Token
    from rag.config import Settings
    from rag.service import Rag

    questions = json.loads(args.questions.read_text())["questions"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "docs").mkdir()
        files = build_corpus(folder / "docs")
        settings = Settings(RAG_DATA_DIR=folder / "data", MILVUS_URI=str(folder / "data" / "eval.db"))
        with Rag(settings) as rag:
            report = rag.ingest(files, "answer_eval")
            rows = []
            for item in questions:
                start, sources_at, first_words_at, answer = time.perf_counter(), None, None, None
                for event in rag.stream_ask(item["question"], AskOptions("answer_eval", args.top_k)):
                    now = time.perf_counter() - start
                    if isinstance(event, Sources) and sources_at is None:
                        sources_at = now
                    elif isinstance(event, Token) and first_words_at is None:
                        first_words_at = now
                    elif isinstance(event, Done):
                        answer = event.answer
                evidence = item.get("evidence")
                rows.append({
                    "question": item["question"],
                    "in_scope": evidence is not None,
                    "found": answer.found,
                    "has_evidence": bool(evidence) and normalised(evidence) in normalised(answer.answer),
                    "answer": answer.answer,
                    "sources_ms": round(1000 * sources_at, 1),
                    "first_words_ms": round(1000 * first_words_at, 1) if first_words_at is not None else None,
                })
            mode = rag.info.llm.label
    in_scope = [r for r in rows if r["in_scope"]]
    out_of_scope = [r for r in rows if not r["in_scope"]]
    ratios = [r["first_words_ms"] / r["sources_ms"] for r in in_scope if r["first_words_ms"] and r["found"]]
    summary = {
        "mode": mode,
        "chunks": report.chunks,
        "in_scope": len(in_scope),
        "evidence_in_answer": round(sum(r["has_evidence"] for r in in_scope) / len(in_scope), 3),
        "answered_in_scope": round(sum(r["found"] for r in in_scope) / len(in_scope), 3),
        "out_of_scope": len(out_of_scope),
        "declined_out_of_scope": round(sum(not r["found"] for r in out_of_scope) / max(len(out_of_scope), 1), 3),
        "sources_ms_p50": statistics.median(r["sources_ms"] for r in in_scope),
        "first_words_ms_p50": statistics.median(r["first_words_ms"] for r in in_scope if r["first_words_ms"]),
        "first_words_over_sources_p50": round(statistics.median(ratios), 2) if ratios else None,
    }
    if args.json:
        print(json.dumps({"summary": summary, "questions": rows}, indent=2))
        return 0
    for r in rows:
        mark = "ok " if (r["has_evidence"] if r["in_scope"] else not r["found"]) else "MISS"
        print(f"{mark} {'in ' if r['in_scope'] else 'out'} found={r['found']!s:5} {r['question']}")
        if mark == "MISS":
            print("     ", " ".join((r["answer"] or "").split())[:200])
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
