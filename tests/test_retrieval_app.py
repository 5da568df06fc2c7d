"""The Chat page's search mode and document picker, and the Benchmark page's Retrieval quality part,
through `AppTest` against the real core on a temporary Milvus Lite."""

from __future__ import annotations

import pytest

from rag.ingestion.sources import Source
from rag.ingestion.uploads import save_upload
from rag.loop import shared_loop
from tests.helpers import PUMP, ROOT, app_environment, button, new_app, open_page, plain, texts


@pytest.fixture(scope="module")
def app_rag(tmp_path_factory, corpus):
    for rag in app_environment(tmp_path_factory):
        sources = [Source(save_upload(rag.settings, "documents", n, corpus[n].read_bytes()), n)
                   for n in ("manual.pdf", "report.docx")]
        rag.ingest([*sources, ROOT / "data" / "samples"], "documents")
        yield rag


def test_chat_mode_control_and_document_picker(app_rag):
    at = open_page(new_app(), "chat")
    assert not at.exception, at.exception
    mode = at.selectbox(key="retrieval_mode")
    assert mode.options == ["Hybrid (words + meaning)", "Dense (meaning)", "Keyword (BM25)"] and mode.value == "hybrid"
    picker = at.multiselect(key="scope_documents")
    assert picker.options == ["llamaindex.txt", "manual.pdf", "milvus-async.md", "report.docx"]

    at.toggle(key="retrieve_only").set_value(True).run()
    picker.set_value(["report.docx"]).run()
    at.chat_input[0].set_value(PUMP).run()
    assert not at.exception and not at.error
    labels = [plain(e.label) for e in at.chat_message[-1].expander]
    assert labels and all(label[4:].startswith("report.docx") for label in labels), "no source from outside the scope"
    assert all("hybrid score" in label for label in labels), "hybrid scores are not called similarities"

    at.multiselect(key="scope_documents").set_value([]).run()
    at.selectbox(key="retrieval_mode").set_value("keyword").run()
    at.chat_input[0].set_value("Zephyr pump pressure").run()
    first = plain(at.chat_message[-1].expander[0].label)
    assert first.startswith("[1] manual.pdf · page 2") and "BM25" in first
    assert sum("Settings changed" in c.value for c in at.caption) == 1


def test_a_dense_only_collection_offers_dense_with_a_visible_note(app_rag, corpus):
    loop = shared_loop()
    loop.run(loop.run(app_rag.parts.aopen_store()).aensure_collection("olddense", app_rag.embed_info, "dense"))
    app_rag.ingest([corpus["plain.txt"]], "olddense")
    at = new_app()
    at.session_state["collection"] = "olddense"
    at = open_page(at, "chat")
    assert not at.exception, at.exception
    assert at.selectbox(key="retrieval_mode").options == ["Dense (meaning)"]
    assert "Searching by meaning only" in plain(texts(at)) and "re-index" in plain(texts(at))


def test_benchmark_page_compares_modes_and_top_k_on_the_sample_questions(app_rag):
    at = open_page(new_app(), "benchmark")
    assert not at.exception, at.exception
    assert "Retrieval quality" in [h.value for h in at.header]
    assert "sample-questions.json" in texts(at)
    at.multiselect(key="quality_ks").set_value([1, 5]).run()
    button(at, "Evaluate retrieval").click().run()
    assert not at.exception and not at.error, at.error
    table = next(frame.value for frame in at.dataframe if "mode" in frame.value.columns)
    assert list(zip(table["mode"], table["top-k"], strict=True)) == [
        ("hybrid", 1), ("hybrid", 5), ("dense", 1), ("dense", 5), ("keyword", 1), ("keyword", 5)]
    assert set(table.columns) >= {"hit@1", "hit@3", "hit@k", "MRR"}
    assert (table["hit@k"][table["top-k"] == 5] >= 0.8).all(), "the sample questions are about the sample files"
    assert at.get("vega_lite_chart") or at.get("arrow_vega_lite_chart"), "a chart"
    assert len(at.get("download_button")) == 2
    # Where the right passages were, per question, and the refusals of the questions nothing answers.
    assert (table["unanswerable declined"] == table["unanswerable total"]).all() and (table["unanswerable total"] == 2).all()
    assert "Where right passages were lost (hybrid, top-5)" in [h.value for h in at.subheader]
    questions = next(frame.value for frame in at.dataframe if "Stage" in frame.value.columns)
    assert set(questions.columns) >= {"Question", "File", "Fused", "Dense", "BM25", "Stage", "Declined"}
    assert list(questions["File"]).count("(unanswerable)") == 2 and questions["Declined"][questions["File"] == "(unanswerable)"].all()


def test_benchmark_page_names_what_is_wrong_with_a_question_file(app_rag):
    at = open_page(new_app(), "benchmark")
    at.file_uploader(key="quality_upload").set_value([("q.json", b'[{"question": "pump", "file": "ghost.pdf"}]',
                                                      "application/json")]).run()
    button(at, "Evaluate retrieval").click().run()
    assert not at.exception
    assert any("does not hold: ghost.pdf" in plain(e.value) for e in at.error)
