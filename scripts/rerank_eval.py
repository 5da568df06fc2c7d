"""Measure the optional LLM rerank (`RAG_LLM_RERANK`): retrieval quality and time per question,
with and without it, on the retrieval question sets.

    .venv/bin/python scripts/rerank_eval.py [--candidates 10] [--library] [--json]

Each set (`pydoc`, `debian`: `docs/retrieval-questions*.json`) is asked of its own documents,
ingested into a fresh Milvus Lite file in a temporary folder; with `--library`, both sets are also
asked of the large-library benchmark's collection (`python -m rag bench-ingest --library DIR
--keep` builds it in the configured Milvus). The search is hybrid, top 5; the rerank uses the
configured LLM (`RAG_LLM`; `openai` with `OPENAI_BASE_URL`, or `local`, the packaged SmolLM2 on
llama.cpp's OpenAI-compatible server, when none is set).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rag.bench.corpus import PREFIX
from rag.bench.retrieval import QUESTION_SETS, load_questions, question_set_documents
from rag.config import LLMMode, Settings
from rag.service import Rag

LIBRARY = f"{PREFIX}_library_torch"


class RatedCount(logging.Handler):
    """Counts the rerank's parsed replies: how many candidates the LLM rated, per question."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.rated: list[int] = []
        self.failed = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("LLM rerank:"):
            self.rated.append(int(record.args[0]))
        elif record.getMessage().startswith("LLM rerank failed"):
            self.failed += 1


def evaluate(settings: Settings, collection: str, asked: list[Any], candidates: int) -> dict[str, Any]:
    """Hybrid top-5 figures and seconds per question, as the search alone and with the rerank."""
    counter = RatedCount()
    logger = logging.getLogger("rag.retrieval.rerank")
    logger.addHandler(counter)
    logger.setLevel(logging.DEBUG)
    rows = {}
    try:
        for label, rerank in (("search", 0), ("llm_rerank", candidates)):
            llm = settings.llm if rerank else LLMMode.QUOTE
            with Rag(settings.model_copy(update={"llm_rerank": rerank, "llm": llm})) as rag:
                if rerank:
                    _ = rag.llm  # not timed: loading the model
                started = time.perf_counter()
                report = rag.evaluate(asked, collection, "hybrid", (1, 3, 5))
                seconds = (time.perf_counter() - started) / len(asked)
            r1, r3, r5 = report
            rows[label] = {"hit@1": r1.overall.hit_at_k, "hit@3": r3.overall.hit_at_k, "hit@5": r5.overall.hit_at_k,
                           "mrr": round(r5.overall.mrr, 3), "seconds_per_question": round(seconds, 2),
                           "ranks": [o.rank for o in r5.outcomes]}
    finally:
        logger.removeHandler(counter)
    rated = counter.rated
    rows["llm_rerank"]["candidates_rated_mean"] = round(sum(rated) / len(rated), 2) if rated else 0.0
    rows["llm_rerank"]["replies_with_no_rating"] = sum(1 for n in rated if n == 0)
    rows["llm_rerank"]["failed_calls"] = counter.failed
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=10, help="RAG_LLM_RERANK for the reranked run")
    parser.add_argument("--library", action="store_true", help="also ask the large-library collection")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    configured = Settings()
    llm = configured.llm if configured.llm_mode in (LLMMode.OPENAI, LLMMode.LOCAL) else LLMMode.LOCAL
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        own = configured.model_copy(update={"data_dir": folder / "data", "milvus_uri": str(folder / "data" / "eval.db"),
                                            "llm": llm})
        for name, path in QUESTION_SETS.items():
            asked = load_questions(path)
            with Rag(own.model_copy(update={"llm": LLMMode.QUOTE})) as rag:
                rag.ingest(question_set_documents(folder / name, name, asked), f"rerank_eval_{name}")
            results.append({"set": name, "documents": "own", "questions": len(asked),
                            **evaluate(own, f"rerank_eval_{name}", asked, args.candidates)})
            print(json.dumps(results[-1]), file=sys.stderr)
    if args.library:
        library = configured.model_copy(update={"llm": llm})
        for name, path in QUESTION_SETS.items():
            asked = load_questions(path)
            results.append({"set": name, "documents": "library", "questions": len(asked),
                            **evaluate(library, LIBRARY, asked, args.candidates)})
            print(json.dumps(results[-1]), file=sys.stderr)
    if args.json:
        print(json.dumps({"candidates": args.candidates, "results": results}, indent=2))
        return 0
    for r in results:
        for label in ("search", "llm_rerank"):
            f = r[label]
            print(f"{r['set']:7} {r['documents']:8} {label:10} hit@1 {f['hit@1']:.2f} hit@3 {f['hit@3']:.2f} "
                  f"hit@5 {f['hit@5']:.2f} MRR {f['mrr']:.3f}  {f['seconds_per_question']:.2f} s/question")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
