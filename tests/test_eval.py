"""Retrieval evaluation: the pure scoring, `Rag.evaluate` on real Milvus Lite, and `python -m rag eval`
/ `ask --mode` / `ask --doc` as subprocesses (on Milvus Lite and on the local Milvus 2.3.5 server)."""

from __future__ import annotations

import json

import pytest

from rag.answering.events import Citation
from rag.bench.corpus import SYSTEM_DOCS, MissingDocuments, missing_system_docs, system_docs
from rag.evaluation import (
    Outcome,
    Question,
    QuestionFileError,
    check_files,
    comparison_rows,
    figures,
    parse_questions,
    rank_of,
    report,
    rows_to_csv,
)
from tests.docs import FACTS
from tests.milvus_fixtures import milvus_server  # noqa: F401  (fixture)
from tests.test_cli import cli, one_line_error  # noqa: F401  (fixture)


def _cite(file: str, page: int | None, text: str) -> Citation:
    return Citation(file=file, page=page, score=0.5, text=text, doc_id=file)


# Parsing and scoring (pure) -------------------------------------------------------------------


@pytest.mark.quick
def test_json_and_csv_question_files_parse_alike():
    as_json = parse_questions(json.dumps([
        {"question": "pump pressure?", "file": "manual.pdf", "page": 2, "evidence": "42 bar"},
        {"question": "budget", "file": "report.docx"},
    ]))
    as_csv = parse_questions("question,file,page,evidence\npump pressure?,manual.pdf,2,42 bar\nbudget,report.docx,,\n")
    assert as_json == as_csv == [
        Question("pump pressure?", "manual.pdf", 2, "42 bar"),
        Question("budget", "report.docx", None, ""),
    ]


@pytest.mark.quick
@pytest.mark.parametrize("text, message", [
    ("", "the file is empty"),
    ("[unterminated", "not valid JSON"),
    ('{"question": "x"}', "expected a JSON list"),
    ("[]", "no questions"),
    ('[{"question": "x"}]', 'question 1 needs a non-empty "question" and "file"'),
    ('["just a string"]', "question 1 is not an object"),
    ('[{"question": "x", "file": "a.pdf", "page": "two"}]', "page must be a whole number"),
    ('[{"question": "x", "file": "a.pdf", "page": 0}]', "page must be 1 or more"),
    ("q,f\nx,y\n", "needs the columns question and file"),
])
def test_malformed_question_files_say_what_is_wrong(text, message):
    with pytest.raises(QuestionFileError, match=message):
        parse_questions(text, "q.json")


@pytest.mark.quick
def test_a_hit_needs_the_file_the_page_and_the_evidence():
    q = Question("pressure", "manual.pdf", 2, "42  BAR")
    ranked = [
        _cite("report.docx", None, "The pump operates at 42 bar."),
        _cite("manual.pdf", 3, "The pump operates at 42 bar."),
        _cite("manual.pdf", 2, "Front matter."),
        _cite("manual.pdf", 2, "The Zephyr pump operates at a pressure of 42\nbar."),
    ]
    assert rank_of(q, ranked) == 4, "evidence is compared without case, punctuation or line breaks"
    assert rank_of(Question("pressure", "manual.pdf"), ranked) == 2
    assert rank_of(Question("pressure", "notes.md"), ranked) is None


@pytest.mark.quick
def test_figures_and_per_file_reports():
    outcomes = [Outcome(Question("a", "x.pdf"), 1), Outcome(Question("b", "x.pdf"), 3),
                Outcome(Question("c", "y.md"), None), Outcome(Question("d", "y.md"), 8)]
    five = figures(outcomes, 5)
    assert (five.hit_at_1, five.hit_at_3, five.hit_at_k, five.mrr) == (0.25, 0.5, 0.5, round((1 + 1 / 3) / 4, 4))
    ten = report("c", outcomes, mode="hybrid", k=10)
    assert ten.overall.hit_at_k == 0.75 and ten.overall.mrr == round((1 + 1 / 3 + 1 / 8) / 4, 4)
    assert ten.per_file["x.pdf"].mrr == round((1 + 1 / 3) / 2, 4) and ten.per_file["y.md"].hit_at_1 == 0
    assert [o.rank for o in report("c", outcomes, mode="hybrid", k=5).outcomes] == [1, 3, None, None], "rank past k: a miss"
    data = ten.to_json()
    assert {"hit@1", "hit@3", "hit@k", "mrr", "per_file", "per_question"} <= data.keys()
    rows = comparison_rows([ten])
    assert rows == [{"mode": "hybrid", "top_k": 10, "questions": 4, "hit@1": 0.25, "hit@3": 0.5, "hit@k": 0.75,
                     "mrr": ten.overall.mrr, "not retrieved": None, "ranked below k": None, "lost in fusion": None,
                     "unanswerable_declined": 0, "unanswerable_total": 0, "answerable_declined": 0, "answerable_total": 4}]
    assert rows_to_csv(rows).splitlines()[0].startswith("mode,top_k,questions,hit@1,hit@3,hit@k,mrr,not retrieved,")


@pytest.mark.quick
def test_a_miss_says_where_the_right_passage_was_lost_and_refusals_are_counted():
    [unanswerable] = parse_questions('[{"question": "population of Tokyo?", "file": null}]')
    assert unanswerable.file is None
    outcomes = [
        Outcome(Question("a", "x.pdf"), 2, dense_rank=1, keyword_rank=9, legs=True),  # found
        Outcome(Question("b", "x.pdf"), None, dense_rank=None, keyword_rank=None, legs=True),  # in neither search
        Outcome(Question("c", "x.pdf"), None, dense_rank=12, keyword_rank=None, legs=True),  # below k
        Outcome(Question("d", "x.pdf"), 7, dense_rank=3, keyword_rank=30, legs=True, declined=True),  # fusion
        Outcome(unanswerable, None, legs=True, declined=True),
        Outcome(Question("f", None), None, legs=True, declined=False),
    ]
    five = report("c", outcomes, mode="hybrid", k=5)
    assert [o.stage(5) for o in five.outcomes] == ["found", "not retrieved", "ranked below k", "lost in fusion", None, None]
    assert five.losses == {"found": 1, "not retrieved": 1, "ranked below k": 1, "lost in fusion": 1}
    assert five.refusals == {"unanswerable_declined": 1, "unanswerable_total": 2, "answerable_declined": 1,
                             "answerable_total": 4}
    assert five.overall.questions == 4 and five.overall.hit_at_k == 0.25, "unanswerable questions are not misses"
    assert set(five.per_file) == {"x.pdf"}
    check_files([o.question for o in outcomes], ["x.pdf"], "c")  # null files are not unknown files
    assert report("c", outcomes, mode="hybrid", k=10).losses["found"] == 2, "at k=10 rank 7 is found"
    assert report("c", [Outcome(Question("a", "x.pdf"), 1)], mode="dense", k=5).losses == {}, "no legs: no stages"


@pytest.mark.quick
def test_unknown_files_are_named():
    with pytest.raises(QuestionFileError, match="does not hold: ghost.pdf"):
        check_files([Question("q", "manual.pdf"), Question("q", "ghost.pdf")], ["manual.pdf"], "docs")


# On real Milvus Lite ----------------------------------------------------------------------------


def test_evaluate_a_collection_in_every_mode(rag, corpus, collection):
    rag.ingest([corpus["manual.pdf"], corpus["report.docx"], corpus["plain.txt"]], collection)
    questions = [
        Question("Zephyr pump pressure", "manual.pdf", 2, "42 bar"),
        Question("How often are the seals replaced?", "manual.pdf", 3, "600 operating hours"),
        Question("Aurora project budget", "report.docx", evidence="3.5 million euros"),
        Question("When does the staff cafeteria open?", "plain.txt", evidence=FACTS["plain.txt"]),
    ]
    questions.append(Question("What is the population of Tokyo?", None))
    for mode in ("hybrid", "dense", "keyword"):
        three, one = rag.evaluate(questions, collection, mode, (3, 1))
        assert three.mode == mode and three.top_k == 3 and one.top_k == 1
        assert three.overall.hit_at_k == 1.0, (mode, [(o.question.question, o.rank, o.top) for o in three.outcomes])
        assert set(three.per_file) == {"manual.pdf", "report.docx", "plain.txt"}
        assert three.refusals["unanswerable_declined"] == three.refusals["unanswerable_total"] == 1, three.outcomes
        assert three.refusals["answerable_declined"] == 0, [o for o in three.outcomes if o.declined]
    hybrid = rag.evaluate(questions, collection, "hybrid", (3,))[0]
    assert hybrid.losses == {"found": 4, "not retrieved": 0, "ranked below k": 0, "lost in fusion": 0}
    assert all(o.dense_rank and o.keyword_rank for o in hybrid.outcomes if o.question.file), hybrid.outcomes
    with pytest.raises(QuestionFileError, match="does not hold: ghost.pdf"):
        rag.evaluate([Question("x", "ghost.pdf")], collection, "hybrid")


# The CLI ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def indexed_cli(cli, corpus):  # noqa: F811
    result = cli("ingest", str(corpus["manual.pdf"]), str(corpus["report.docx"]), "-c", "evalset")
    assert result.returncode == 0, result.stderr
    return "evalset"


def test_cli_eval_reports_figures_per_file_and_question(cli, indexed_cli, tmp_path):  # noqa: F811
    path = tmp_path / "q.json"
    path.write_text(json.dumps([
        {"question": "Zephyr pump pressure", "file": "manual.pdf", "page": 2, "evidence": "42 bar"},
        {"question": "Aurora project budget", "file": "report.docx", "evidence": "3.5 million"},
        {"question": "What is the population of Tokyo?", "file": None},
    ]))
    result = cli("eval", str(path), "-c", indexed_cli, "--mode", "hybrid", "--top-k", "3", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["hit@1"], data["hit@k"], data["mrr"], data["mode"], data["top_k"]) == (1.0, 1.0, 1.0, "hybrid", 3)
    assert [q["rank"] for q in data["per_question"]] == [1, 1, None] and set(data["per_file"]) == {"manual.pdf", "report.docx"}
    assert (data["unanswerable_declined"], data["unanswerable_total"], data["answerable_declined"]) == (1, 1, 0)
    assert data["losses"]["found"] == 2 and [q["stage"] for q in data["per_question"]] == ["found", "found", None]
    text = cli("eval", str(path), "-c", indexed_cli)
    assert text.returncode == 0 and "overall" in text.stdout and "rank 1" in text.stdout and "hit@5" in text.stdout
    assert "declined (unanswerable)" in text.stdout and "declined: 1 of 1 unanswerable questions, 0 of 2" in text.stdout
    assert "right passages: found 2, not retrieved 0" in text.stdout


def test_cli_eval_keeps_the_search_order_when_the_rerank_model_is_down(cli, indexed_cli, tmp_path):  # noqa: F811
    """An LLM rerank is advice: with its server down, the figures are the search's own."""
    path = tmp_path / "q.json"
    path.write_text(json.dumps([
        {"question": "Zephyr pump pressure", "file": "manual.pdf", "page": 2, "evidence": "42 bar"},
        {"question": "Aurora project budget", "file": "report.docx", "evidence": "3.5 million"},
    ]))
    args = ("eval", str(path), "-c", indexed_cli, "--mode", "hybrid", "--top-k", "3", "--json")
    plain = cli(*args)
    down = cli(*args, RAG_LLM="openai", OPENAI_BASE_URL="http://127.0.0.1:9/v1", RAG_LLM_RERANK="10")
    assert plain.returncode == 0 and down.returncode == 0, down.stderr
    assert json.loads(down.stdout)["per_question"] == json.loads(plain.stdout)["per_question"]
    assert "LLM rerank failed, the search's order is kept" in down.stderr


def test_cli_bad_question_files_and_scopes_are_one_line(cli, indexed_cli, tmp_path):  # noqa: F811
    path = tmp_path / "bad.json"
    path.write_text('[{"question": "x"}]')
    one_line_error(cli("eval", str(path), "-c", indexed_cli), 'needs a non-empty "question" and "file"')
    path.write_text('[{"question": "pump", "file": "ghost.pdf"}]')
    one_line_error(cli("eval", str(path), "-c", indexed_cli), "does not hold: ghost.pdf")
    one_line_error(cli("eval", str(tmp_path / "none.json"), "-c", indexed_cli), "no such file")
    one_line_error(cli("ask", "pump", "-c", indexed_cli, "--doc", "ghost.pdf", "--retrieve-only"),
                   "no indexed document 'ghost.pdf'")
    one_line_error(cli("ask", "pump", "-c", indexed_cli, "--mode", "fuzzy"), "unknown retrieval mode 'fuzzy'")


def test_cli_ask_in_a_mode_within_a_scope(cli, indexed_cli):  # noqa: F811
    result = cli("ask", "Aurora project budget", "-c", indexed_cli, "--doc", "manual.pdf", "--mode", "keyword",
                 "--retrieve-only", "--json", "--top-k", "5")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["mode"] == "keyword" and {s["file"] for s in answer["sources"]} <= {"manual.pdf"}
    text = cli("ask", "Aurora project budget", "-c", indexed_cli, "--retrieve-only")
    assert "hybrid score" in text.stdout and "similarity" not in text.stdout, "hybrid scores are labelled as such"


def test_a_milvus_without_bm25_falls_back_to_dense_and_refuses_keyword(cli, milvus_server, corpus):  # noqa: F811
    server = {"MILVUS_URI": milvus_server.uri}
    assert cli("ingest", str(corpus["plain.txt"]), "-c", "old_milvus", **server).returncode == 0
    [info] = [c for c in json.loads(cli("collections", "--json", **server).stdout) if c["name"] == "old_milvus"]
    assert info["retrieval"] == "dense"
    result = cli("ask", "When does the cafeteria open?", "-c", "old_milvus", "--retrieve-only", **server)
    assert result.returncode == 0, result.stderr
    assert "plain.txt" in result.stdout and "no full-text search" in result.stderr, "a visible note"
    one_line_error(cli("ask", "cafeteria", "-c", "old_milvus", "--mode", "keyword", **server),
                   "keyword search is not possible: this Milvus has no full-text search")
    assert json.loads(cli("docs", "-c", "old_milvus", "--json", **server).stdout)[0]["status"] == "indexed"


@pytest.mark.quick
def test_a_missing_benchmark_document_is_named(tmp_path, monkeypatch):
    monkeypatch.setitem(SYSTEM_DOCS, "gone.pdf", str(tmp_path / "gone.pdf"))
    with pytest.raises(MissingDocuments, match=r"gone\.pdf missing: this measurement uses Debian's documentation"):
        system_docs(tmp_path / "out", ["gone.pdf"])
    assert not (tmp_path / "out").exists(), "nothing written before the check"


def test_bench_ingest_retrieval_reports_every_part(cli):  # noqa: F811
    result = cli("bench-ingest", "--retrieval", "--chunks", "20", "--search-chunks", "60", "--questions", "5", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    sets = {s["name"]: s for s in report["quality"]["sets"]}
    if missing_system_docs():  # not a Debian machine: that set is skipped, with the reason
        assert "missing" in sets.pop("debian")["skipped"]
    for name, count in (("pydoc", 30), ("debian", 36))[: len(sets)]:
        rows = sets[name]["rows"]
        assert [(r["mode"], r["top_k"]) for r in rows] == [(m, k) for m in ("dense", "keyword", "hybrid") for k in (1, 3, 5, 10)]
        assert all(r["questions"] == count and 0 <= r["mrr"] <= r["hit@k"] <= 1 and r["unanswerable_total"] == 6 for r in rows)
    assert report["quality"]["follow_ups"]["questions"] == 20
    assert len(report["ingestion"]["all_runs"]["dense"]) == len(report["ingestion"]["all_runs"]["hybrid"]) == 3
    assert report["latency"]["chunks"] == 60 and report["latency"]["hybrid_p50_ms"] > 0
    assert "_rag_bench" not in cli("collections").stdout, "benchmark collections are dropped"


def test_bench_ingest_latency_fills_a_large_collection_from_few_embeddings(cli):  # noqa: F811
    result = cli("bench-ingest", "--latency", "--search-chunks", "300", "--embed-chunks", "40", "--questions", "5", "--json")
    assert result.returncode == 0, result.stderr
    latency = json.loads(result.stdout)["latency"]
    assert (latency["chunks"], latency["embedded"], latency["questions"]) == (300, 40, 5)
    assert latency["index"].startswith("FLAT"), "Milvus Lite searches flat"
    assert all(latency[f"{m}_p95_ms"] >= latency[f"{m}_p50_ms"] > 0 for m in ("dense", "keyword", "hybrid"))
    assert "_rag_bench" not in cli("collections").stdout, "the search collection is dropped"


def test_bench_ingest_library_measures_a_library_of_real_documents(cli, tmp_path):  # noqa: F811
    library = tmp_path / "library"
    result = cli("bench-ingest", "--library", str(library), "--files", "25", "--backends", "torch", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["documents"] == 25 == len(list(library.iterdir()))
    [run] = report["runs"]
    assert run["backend"] == "torch" and run["documents"] == 25 and run["chunks"] > 100
    assert run["chunks_per_s"] > 0 and run["embedding_only"]["passages_per_s"] > 0 and run["peak_rss_mb"] > 100
    assert report["float32_encode"]["passages"] == run["embedding_only"]["passages"] > 0
    assert run["end_to_end_over_float32_encode"] == round(run["chunks_per_s"] / report["float32_encode"]["passages_per_s"], 2)
    sets = {(q["set"], q["mode"]): q for q in run["quality"]}
    expected = {"pydoc"} if missing_system_docs() else {"pydoc", "debian"}
    assert sets.keys() == {(name, mode) for name in expected for mode in ("dense", "keyword", "hybrid")}
    assert all(0 <= q["mrr"] <= q["hit@5"] <= 1 and q["hit@1"] <= q["hit@3"] <= q["hit@5"] for q in sets.values())
    assert sets[("pydoc", "hybrid")]["questions"] == 30 and sets[("pydoc", "hybrid")]["hit@5"] >= 0.7
    assert run["latency"]["questions"] == sum(sets[(name, "hybrid")]["questions"] for name in expected)
    assert "_rag_bench" not in cli("collections").stdout, "the library's collection is dropped"
