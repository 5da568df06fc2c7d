"""Hybrid, dense and keyword search on real Milvus Lite (BM25 built in), scope filters, and PDF
text cleaning, with real files and the real embedding model."""

from __future__ import annotations

from collections import Counter

import pytest
from llama_index.core.schema import NodeRelationship, NodeWithScore, RelatedNodeInfo, TextNode

from rag.errors import ConfigError, DocumentNotFound
from rag.ingestion.readers import read_pdf
from rag.ingestion.sentences import sentence_spans
from rag.ingestion.textclean import clean_pdf_pages, join_lines, reflow
from rag.loop import shared_loop
from rag.options import AskOptions
from rag.retrieval.rerank import reordered
from rag.retrieval.search import fuse_scores
from tests.docs import make_pdf

# An exact term that the embedding does not know: keyword search must find it.
PART = "The replacement gasket for the Zephyr pump is part QX-7731-B, sold by Harland Supplies."
FILLER = [
    "Pumps move fluids by mechanical action. Centrifugal pumps use an impeller to add energy.",
    "A seal keeps the fluid inside the pump housing. Seals wear over time and must be replaced.",
    "Pressure is measured in bar. One bar is roughly the air pressure at sea level.",
]


@pytest.fixture(scope="module")
def parts(rag, tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("parts")
    (folder / "parts.txt").write_text(PART + "\n")
    for i, text in enumerate(FILLER):
        (folder / f"filler{i}.txt").write_text(text + "\n")
    rag.ingest([folder], "hybrid_parts")
    return "hybrid_parts"


# Text cleaning (pure) -----------------------------------------------------------------------------


@pytest.mark.quick
def test_line_end_hyphens_are_mended_by_the_documents_own_words():
    assert join_lines("Distinguished Encoding Rules (DER) manip-", "ulation.", Counter()) == \
        "Distinguished Encoding Rules (DER) manipulation."
    # The document writes "glob-deleteall" elsewhere and never "globdeleteall": a real hyphen.
    vocabulary = Counter({"glob-deleteall": 2})
    assert join_lines("except when glob-", "deleteall or magic-deleteall", vocabulary) == \
        "except when glob-deleteall or magic-deleteall"
    assert join_lines("no Front-", "Cover Texts", Counter()) == "no Front-Cover Texts"
    assert join_lines("version 4.19-", "2 of it", Counter()) == "version 4.19-2 of it"


@pytest.mark.quick
def test_paragraph_lines_are_joined_and_short_lines_keep_their_break():
    lines = [
        "This manual is for GNU Libtasn1, which is a library for Abstract Syntax",
        "Notation One and Distinguished Encoding Rules manipulation.",
        "2.2 Naming",
        "Consider this definition:",
        "• UTF8String;",
    ]
    assert reflow(lines, full_line=72) == [
        "This manual is for GNU Libtasn1, which is a library for Abstract Syntax Notation One and "
        "Distinguished Encoding Rules manipulation.",
        "2.2 Naming",
        "Consider this definition:",
        "• UTF8String;",
    ]


@pytest.mark.quick
def test_a_heading_without_a_full_stop_is_not_part_of_the_sentence_after_it():
    [page] = clean_pdf_pages(["Harbour log, volume two\nThe Corran lamp was lit by paraffin until 1954, then by"
                              "\nelectricity, and the lamp room was painted white."])
    assert [page[a:b] for a, b in sentence_spans(page)] == [
        "Harbour log, volume two", "The Corran lamp was lit by paraffin until 1954, then by electricity, and the lamp room "
        "was painted white."]
    # A short line that ends no sentence goes on where the next line starts in lower case or a digit.
    assert reflow(["asn1 write value", "SEQUENCE OF: the string NEW and len !=", "0 appends an element.", "Short one."],
                  full_line=80) == ["asn1 write value", "SEQUENCE OF: the string NEW and len != 0 appends an element.",
                                    "Short one."]


@pytest.mark.quick
def test_page_furniture_and_tables_of_contents_are_dropped():
    body = [f"The notation to access the {word} type of the Example definition is Example.{word}."
            for word in ("Group", "Value", "Naming", "Tag")]
    pages = [
        "Shared MIME-info Database\nTable of Contents\n1 Introduction . . . . . . . . 1\n2 Naming . . . . . . . . . 3\n"
        "3 Utilities . . . . . . . . . 5",
        f"Shared MIME-info Database\n{body[1]}\n1",
        f"Shared MIME-info Database\nChapter 2: Naming 2\n{body[2]}\n",
        f"Shared MIME-info Database\n{body[3]}\nSee also the section about pages.",
    ]
    cleaned = clean_pdf_pages(pages, ["i", "1", "2", "3"])
    assert cleaned[0] == "", "a table-of-contents page is dropped whole"
    assert cleaned[1] == body[1] and cleaned[2] == body[2], "running header, page number and chapter header are gone"
    assert cleaned[3].startswith(body[3]) and cleaned[3].endswith("See also the section about pages.")


@pytest.mark.quick
def test_a_real_pdf_reads_as_prose_and_keeps_its_physical_pages(tmp_path):
    long = "The pump housing is cast in one piece and every seal is checked before it ships"  # one full line
    pages = [
        "Contents\nOperation . . . . . . . . . . 1\nMaintenance . . . . . . . . . 2\nParts . . . . . . . . . . 2",
        f"Zephyr pump manual\n{long}\nand after the first 100 hours. The seals need a lot of careful manip-\nulation.",
        f"Zephyr pump manual\nIt is tested at the site, by the fitter who installs the pump for its owner.\n{PART}",
        "Zephyr pump manual\nWarranty: two years from the day the pump is installed, parts and labour.",
    ]
    sections = read_pdf(make_pdf(tmp_path / "pump.pdf", pages))
    assert [s.page for s in sections] == [2, 3, 4], "the TOC page is dropped; the others keep their physical page"
    assert sections[0].page_label == "1"
    assert "Zephyr pump manual" not in sections[0].text, "a line on every page is a running header"
    assert f"{long} and after the first 100 hours." in sections[0].text, "a broken line is joined"
    assert "careful manipulation." in sections[0].text, "a word hyphenated at the line end is mended"
    assert "QX-7731-B" in sections[1].text


# Fusion of the dense and BM25 legs (pure) ---------------------------------------------------------


def _hits(by_document: bool = False, **scores: float) -> list[NodeWithScore]:
    """Hits named by chunk id; `by_document`: each chunk's document is its id's first letter, upper case."""
    def node(name: str) -> TextNode:
        source = {NodeRelationship.SOURCE: RelatedNodeInfo(node_id=name[0].upper())} if by_document else {}
        return TextNode(id_=name, text=name, relationships=source)
    return [NodeWithScore(node=node(name), score=score) for name, score in scores.items()]


@pytest.mark.quick
def test_fusion_keeps_a_passage_close_to_the_top_of_both_searches_first():
    meaning = _hits(a=0.80, b=0.78, c=0.40)
    words = _hits(c=20.0, b=19.0, d=5.0)
    fused = fuse_scores(meaning, words, similarity={"d": 0.30}, bm25={"a": 2.0}, top_k=4)
    # b: 0.6 x 0.78/0.80 + 0.4 x 19/20 = 0.965. By rank (RRF, k=60) c would come first: 1/63 + 1/61 > 2/62.
    assert [hit.node.node_id for hit in fused] == ["b", "c", "a", "d"]
    # Each passage is its own document here: (score + 0.3 x score / 0.965) / 1.3.
    assert [round(hit.score, 4) for hit in fused] == [0.9731, 0.7059, 0.6454, 0.3277]
    assert fuse_scores(meaning, words, similarity={"d": 0.30}, bm25={"a": 2.0}, top_k=2) == fused[:2]


@pytest.mark.quick
def test_fusion_prefers_the_document_of_the_best_passage_and_keeps_the_order_inside_one():
    meaning = _hits(by_document=True, x1=0.80, y1=0.70, x2=0.68)
    words = _hits(by_document=True, x1=10.0, y1=6.0, x2=5.0)
    fused = fuse_scores(meaning, words, similarity={}, bm25={}, top_k=3)
    # Alone, y1 (0.765) beats x2 (0.71); x2's document holds the best passage: (0.71 + 0.3) / 1.3 = 0.777.
    assert [(hit.node.node_id, round(hit.score, 3)) for hit in fused] == [("x1", 1.0), ("x2", 0.777), ("y1", 0.765)]


@pytest.mark.quick
def test_an_llm_rerank_puts_what_it_rated_first_and_loses_nothing():
    hits = _hits(a=0.9, b=0.8, c=0.7, d=0.6)
    rated = _hits(c=9.0, ghost=10.0, d=9.0, b=3.0, c2=1.0)  # a passage it invented is ignored
    rated[-1].node.id_ = "c"  # the same passage named twice keeps its best rating
    order = reordered(hits, rated)
    assert [hit.node.node_id for hit in order] == ["c", "d", "b", "a"]  # equal ratings: search order
    assert [hit.score for hit in order] == [0.7, 0.6, 0.8, 0.9], "each passage keeps its search score"
    assert reordered(hits, []) == hits


@pytest.mark.quick
def test_fusion_scores_a_passage_one_search_missed_on_both_and_breaks_ties_by_id():
    def fused(meaning, words, similarity, bm25):
        return [(h.node.node_id, round(h.score, 4)) for h in
                fuse_scores(meaning, words, similarity=similarity, bm25=bm25, top_k=5)]

    words = _hits(z=4.0, y=4.0)
    assert fused([], words, {"z": 0.5, "y": 0.5}, {}) == [("y", 1.0), ("z", 1.0)]
    assert [node for node, _ in fused([], words, {"z": 0.5, "y": 0.1}, {})] == ["z", "y"]
    meaning = _hits(m=0.6)
    assert fused(meaning, [], {}, {}) == [("m", round((0.6 + 0.3) / 1.3, 4))], "no word in common; its document is the best"
    assert fused(meaning, [], {}, {"m": 3.0}) == [("m", 1.0)]
    assert fuse_scores([], [], similarity={}, bm25={}, top_k=5) == []


# Modes -------------------------------------------------------------------------------------------------


def test_new_collections_are_hybrid_and_every_mode_finds_the_exact_term(rag, parts):
    [info] = [c for c in rag.collections() if c.name == parts]
    assert info.retrieval == "hybrid"
    assert rag.retrieval_modes(parts).modes == ("hybrid", "dense", "keyword")
    keyword = rag.ask("QX-7731-B", AskOptions(parts, top_k=2, retrieve_only=True, mode="keyword"))
    assert keyword.mode == "keyword" and keyword.sources[0].file == "parts.txt"
    assert keyword.sources[0].score_kind == "BM25" and keyword.sources[0].score_label.startswith("BM25 ")
    hybrid = rag.ask("QX-7731-B gasket", AskOptions(parts, top_k=2, retrieve_only=True, mode="hybrid"))
    assert hybrid.mode == "hybrid" and hybrid.sources[0].file == "parts.txt"
    assert hybrid.sources[0].score_kind == "hybrid score" and hybrid.sources[0].score_label.startswith("hybrid score ")
    assert hybrid.sources[0].score == pytest.approx(1.0), "first on both legs: the best possible hybrid score"
    assert hybrid.to_json()["sources"][0]["score_kind"] == "hybrid score"
    dense = rag.ask("how is a pump seal kept", AskOptions(parts, top_k=2, retrieve_only=True, mode="dense"))
    assert dense.mode == "dense" and dense.sources[0].score_kind == "similarity"


def test_hybrid_scores_every_passage_on_both_searches_sync_and_async(rag, parts, monkeypatch):
    # The dense search puts the pressure note first, BM25 the parts list ("Harland Supplies"). With
    # one candidate per search, each is scored by the other search in Milvus (the BM25 passage's
    # vector read back, a BM25 search limited to the dense passage): the same scores as with 20.
    question = "Harland Supplies pressure"
    results = {}
    for depth in (20, 1):
        monkeypatch.setattr("rag.retrieval.search.FUSION_DEPTH", depth)
        loop = shared_loop()
        retriever, _ = loop.run(rag.parts.aretriever(AskOptions(parts, top_k=1, mode="hybrid")))
        asynchronous = loop.run(retriever.aretrieve(question))
        synchronous = retriever.retrieve(question)
        results[depth] = [(h.node.node_id, round(h.score, 6)) for h in asynchronous]
        assert [(h.node.node_id, round(h.score, 6)) for h in synchronous] == results[depth]
    assert results[1] == results[20]
    assert 0.5 < results[1][0][1] < 1.0, "first on one search only"


def test_the_configured_mode_is_the_default(rag, parts):
    assert rag.settings.retrieval_mode == "hybrid"
    assert rag.ask("QX-7731-B", AskOptions(parts, top_k=1, retrieve_only=True)).mode == "hybrid"


def test_a_dense_only_collection_keeps_working_and_says_how_to_upgrade(rag, corpus):
    name = "dense_only"
    loop = shared_loop()
    loop.run(loop.run(rag.parts.aopen_store()).aensure_collection(name, rag.embed_info, "dense"))
    rag.ingest([corpus["plain.txt"]], name)
    answer = rag.ask("When does the staff cafeteria open?", AskOptions(name, top_k=1, retrieve_only=True))
    assert answer.mode == "dense" and answer.sources[0].file == "plain.txt"
    assert "indexed without full-text search" in answer.note and "re-index" in answer.note
    modes = rag.retrieval_modes(name)
    assert modes.modes == ("dense",) and "re-index" in modes.fix
    with pytest.raises(ConfigError, match="keyword search is not possible: collection 'dense_only' was indexed without"):
        rag.ask("cafeteria", AskOptions(name, retrieve_only=True, mode="keyword"))
    with pytest.raises(ConfigError, match="unknown retrieval mode 'fuzzy'"):
        rag.ask("cafeteria", AskOptions(name, retrieve_only=True, mode="fuzzy"))


# Scope ------------------------------------------------------------------------------------------------


def test_a_scope_keeps_every_source_inside_it(rag, parts):
    for mode in ("hybrid", "dense", "keyword"):
        options = AskOptions(parts, top_k=4, retrieve_only=True, mode=mode, docs=["filler1.txt", "filler2.txt"])
        answer = rag.ask("QX-7731-B gasket pump seal", options)
        assert answer.sources and {s.file for s in answer.sources} <= {"filler1.txt", "filler2.txt"}, mode


def test_a_chat_scope_and_mode_hold_for_follow_ups(rag, parts):
    session = rag.chat_session(AskOptions(parts, top_k=3, retrieve_only=True, mode="keyword", docs=["parts.txt"]))
    first = session.chat("Which part number is the gasket?")
    assert first.mode == "keyword" and {s.file for s in first.sources} == {"parts.txt"}
    follow = session.chat("and who sells it?")
    assert follow.searched, "a follow-up searches with the conversation's context too"
    assert {s.file for s in follow.sources} == {"parts.txt"} and follow.mode == "keyword"


def test_an_unknown_scope_is_refused(rag, parts):
    with pytest.raises(DocumentNotFound, match="no indexed document 'nothing.pdf' in collection 'hybrid_parts'"):
        rag.ask("gasket", AskOptions(parts, retrieve_only=True, docs=["nothing.pdf"]))
