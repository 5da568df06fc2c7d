"""Ingestion into a real Milvus Lite with the real embedding model."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from dataclasses import asdict

import pytest

from rag.errors import EmbeddingMismatch, RagError
from rag.ingestion.sources import Source
from rag.loop import shared_loop
from rag.options import AskOptions
from rag.storage.catalog import DocumentRecord
from tests.docs import FACTS, QUESTIONS, make_bad_files, make_pdf
from tests.helpers import ROOT


def test_every_type_is_indexed_and_listed_with_true_chunk_counts(rag, corpus, collection):
    seen = []
    report = rag.ingest(list(corpus.values()), collection, progress=lambda p: seen.append((p.files_done, p.chunks_done)))
    assert {r.doc_id: r.status for r in report.results} == {name: "indexed" for name in corpus}
    docs = {d.doc_id: d for d in rag.documents(collection)}
    assert set(docs) == set(corpus)
    for doc_id, doc in docs.items():
        assert doc.status == "indexed" and doc.chunks >= 1
        assert rag.count_chunks(collection, doc_id) == doc.chunks
    assert docs["manual.pdf"].pages == 3
    # progress went forward and ended complete
    assert seen[-1] == (len(corpus), report.chunks)
    assert [c for _, c in seen] == sorted(c for _, c in seen)


def test_citations_name_the_file_and_physical_page(rag, corpus, collection):
    rag.ingest([corpus["manual.pdf"], corpus["report.docx"]], collection)
    answer = rag.ask("At what pressure does the Zephyr pump operate?", AskOptions(collection, top_k=2, retrieve_only=True))
    top = answer.sources[0]
    assert (top.file, top.page, top.page_label) == ("manual.pdf", 2, "1")
    assert "42 bar" in top.text
    assert answer.answer is None


def test_reingest_unchanged_is_skipped_and_changed_replaces_without_duplicates(rag, tmp_path, collection):
    path = tmp_path / "policy.txt"
    path.write_text("Version one of the travel policy. Trains are preferred over planes. " * 40)
    first = rag.ingest([path], collection).results[0]
    assert first.status == "indexed"
    assert rag.ingest([path], collection).results[0].status == "unchanged"
    path.write_text("Version two of the travel policy. Bicycles are reimbursed. " * 3)
    second = rag.ingest([path], collection).results[0]
    assert second.status == "replaced"
    assert rag.count_chunks(collection, "policy.txt") == second.chunks
    assert rag.count_chunks(collection) == second.chunks
    texts = [s.text for s in rag.ask("travel policy", AskOptions(collection, top_k=5, retrieve_only=True)).sources]
    assert texts and all("Version two" in t for t in texts)


def test_chunks_fit_the_embedding_model(rag, tmp_path, collection):
    words = " ".join(f"word{i} is part of a long sentence about pumps." for i in range(1500))
    path = tmp_path / "long.md"
    path.write_text(words)
    report = rag.ingest([path], collection)
    assert report.results[0].chunks > 10
    for citation in rag.ask("pumps", AskOptions(collection, top_k=20, retrieve_only=True)).sources:
        # the model's own word pieces (whatever the backend), and its two special tokens
        assert len(rag.embed_model.count_tokens(citation.text)) + 2 <= rag.embed_info.max_tokens


def test_chunk_sizing_skips_tokenising_long_texts_and_cuts_the_same_chunks(rag):
    """The splitter's counter only learns that a text of more words than a chunk holds is too
    long, and counts a text as the sum of its words; the chunks are the ones an exact count cuts
    (README, samples, long lines of one word)."""
    from llama_index.core import Document
    from llama_index.core.node_parser import SentenceSplitter

    splitter = rag.splitter
    texts = [p.read_text() for p in (ROOT / "README.md", ROOT / "data" / "samples" / "llamaindex.txt")]
    texts.append(" ".join(["supercalifragilistic-expialidocious_identifier"] * 400))
    exact = SentenceSplitter(chunk_size=splitter.chunk_size, chunk_overlap=splitter.chunk_overlap,
                             tokenizer=rag.embed_model.count_tokens)
    docs = [Document(text=t) for t in texts]
    assert [n.get_content() for n in splitter.get_nodes_from_documents(docs)] == \
        [n.get_content() for n in exact.get_nodes_from_documents(docs)]
    assert len(splitter._tokenizer(texts[0])) == splitter.chunk_size + 1 < len(rag.embed_model.count_tokens(texts[0]))
    for text in ("one short line", "Naïve café-owners' e-mail: https://例え.jp/?x=1,2 — don't!", texts[1][:3000]):
        assert len(splitter._tokenizer(text)) == len(rag.embed_model.count_tokens(text)), text[:40]


def test_a_tokenizer_that_does_not_read_words_apart_counts_whole_texts():
    from rag.models.embeddings import count_tokens

    class Pairs:  # a count of character pairs: "ab cd" is not "ab" + "cd"
        def count_tokens(self, text: str) -> list:
            return [text[i:i + 2] for i in range(0, len(text), 2)]

    assert len(count_tokens(Pairs())("ab cd")) == 3


def test_bad_files_fail_alone_and_leave_nothing_behind(rag, corpus, tmp_path, collection):
    bad = make_bad_files(tmp_path)
    report = rag.ingest([*bad.values(), corpus["plain.txt"]], collection)
    statuses = {r.doc_id: r for r in report.results}
    assert statuses["plain.txt"].status == "indexed"
    for name in bad:
        assert statuses[name].status == "failed" and statuses[name].error.startswith(name)
    docs = {d.doc_id: d for d in rag.documents(collection)}
    assert docs["encrypted.pdf"].status == "failed" and "password" in docs["encrypted.pdf"].error
    assert rag.count_chunks(collection) == statuses["plain.txt"].chunks


def test_a_failed_update_keeps_the_indexed_version(rag, tmp_path, collection):
    path = tmp_path / "guide.pdf"
    make_pdf(path, ["The guide says: lock the door at night."], labels=False)
    before = rag.ingest([path], collection).results[0]
    path.write_bytes(b"%PDF-1.4 truncated")
    after = rag.ingest([path], collection).results[0]
    assert after.status == "failed"
    doc = rag.documents(collection)[0]
    assert doc.status == "indexed" and "damaged" in doc.error
    assert rag.count_chunks(collection, "guide.pdf") == before.chunks


def test_delete_removes_chunks_and_listing(rag, corpus, collection):
    rag.ingest([corpus["notes.md"], corpus["plain.txt"]], collection)
    rag.delete("notes.md", collection)
    assert [d.doc_id for d in rag.documents(collection)] == ["plain.txt"]
    assert rag.count_chunks(collection, "notes.md") == 0
    sources = rag.ask("heron migration", AskOptions(collection, retrieve_only=True)).sources
    assert all(s.file != "notes.md" for s in sources)
    with pytest.raises(RagError, match="no document 'notes.md'"):
        rag.delete("notes.md", collection)


def test_folders_keep_relative_ids_and_collections_are_separate(rag, corpus, tmp_path, collection):
    folder = tmp_path / "kb"
    (folder / "a").mkdir(parents=True)
    (folder / "b").mkdir()
    shutil.copy(corpus["plain.txt"], folder / "a" / "readme.txt")
    shutil.copy(corpus["notes.md"], folder / "b" / "readme.md")
    (folder / ".hidden.txt").write_text("not me")
    rag.ingest([folder], collection)
    assert [d.doc_id for d in rag.documents(collection)] == ["a/readme.txt", "b/readme.md"]
    other = collection + "_other"
    rag.ingest([corpus["report.docx"]], other)
    assert [d.doc_id for d in rag.documents(other)] == ["report.docx"]
    assert {collection, other} <= {c.name for c in rag.collections()}


def test_opening_a_collection_with_another_model_is_a_clear_error(rag, corpus, collection):

    rag.ingest([corpus["plain.txt"]], collection)
    # Same Milvus, a collection recorded with another model: simulate by rewriting its record.
    loop = shared_loop()
    store = loop.run(rag.parts.aopen_store())
    info = loop.run(store.aget_collection(collection))
    info.embed_model, info.embed_dim = "BAAI/bge-base-en-v1.5", 768
    loop.run(store._put(collection, "collection", collection, asdict(info)))
    with pytest.raises(EmbeddingMismatch, match="RAG_EMBED_MODEL=BAAI/bge-base-en-v1.5"):
        rag.ask("cafeteria", AskOptions(collection, retrieve_only=True))
    with pytest.raises(EmbeddingMismatch):
        rag.ingest([corpus["notes.md"]], collection)


def test_missing_paths_and_empty_collections_are_errors(rag, collection):
    with pytest.raises(RagError, match="no such file or folder"):
        rag.ingest(["/nonexistent/file.pdf"], collection)
    with pytest.raises(RagError, match="no collection named"):
        rag.ask("anything", AskOptions(collection, retrieve_only=True))
    rag.create_collection(collection)
    with pytest.raises(RagError, match="no indexed documents"):
        rag.ask("anything", AskOptions(collection, retrieve_only=True))


def test_calls_from_many_threads_and_their_own_loops_share_one_client(rag, corpus, collection):
    """The Streamlit pattern: script threads, each with `asyncio.run`, against a cached core."""
    import asyncio

    rag.ingest([corpus["plain.txt"]], collection)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(3):
                answer = asyncio.run(rag.aask("When does the cafeteria open?", AskOptions(collection, retrieve_only=True)))
                assert answer.sources[0].file == "plain.txt"
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_a_document_left_half_indexed_by_a_dead_process_is_rolled_back(rag, settings, corpus, tmp_path, collection):
    from rag.ingestion import recovery

    rag.ingest([corpus["plain.txt"]], collection)
    old = rag.documents(collection)[0]
    # A process that died mid-update: new-version chunks written, catalog row still "indexing".
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    path = tmp_path / "plain.txt"
    path.write_text("A newer handbook: the cafeteria now opens at 8:00.")
    record, nodes = rag.parts.parse(Source(path, "plain.txt"), collection)
    for node, vector in zip(nodes, rag.embed_model.get_text_embedding_batch([n.get_content() for n in nodes]), strict=True):
        node.embedding = vector
    loop = shared_loop()
    store = loop.run(rag.parts.aopen_store())
    info = loop.run(store.aget_collection(collection))
    loop.run(store.vector_store(info).async_add(nodes))
    record.owner = f"{os.uname().nodename}:{pid}"
    record.previous = asdict(old)
    loop.run(store.aput_document(record))
    assert rag.count_chunks(collection, "plain.txt") == old.chunks + len(nodes)

    recovery.needs_recovery(store.uri)
    rag.collections()  # the next connection runs recovery
    assert rag.count_chunks(collection, "plain.txt") == old.chunks
    assert rag.documents(collection)[0] == DocumentRecord(**{**asdict(old), "owner": old.owner})


def test_duplicate_ids_in_one_batch_are_refused(rag, corpus, tmp_path, collection):
    other = tmp_path / "x" / "plain.txt"
    other.parent.mkdir()
    other.write_text("another file with the same name")
    with pytest.raises(RagError, match="share the document id 'plain.txt'"):
        rag.ingest([corpus["plain.txt"], other], collection)


def test_facts_are_all_retrievable(rag, corpus, collection):
    rag.ingest(list(corpus.values()), collection)
    assert set(QUESTIONS) == set(FACTS)
    for name, question in QUESTIONS.items():
        top = rag.ask(question, AskOptions(collection, top_k=1, retrieve_only=True)).sources[0]
        assert top.file == name, question


def test_bfloat16_embeddings_match_float32(corpus):
    """RAG_EMBED_PRECISION: bf16 (auto on CPUs with native support) must not change retrieval."""
    import numpy as np

    from rag.models.embeddings import load_embed_model

    texts = [corpus["plain.txt"].read_text(), "When does the cafeteria open?", "Zephyr pump pressure"]
    fp32 = np.array(load_embed_model("all-MiniLM-L6-v2", precision="float32").get_text_embedding_batch(texts))
    bf16_model = load_embed_model("all-MiniLM-L6-v2", precision="bfloat16")
    assert bf16_model.precision == "bfloat16"
    bf16 = np.array(bf16_model.get_text_embedding_batch(texts))
    assert (fp32 * bf16).sum(axis=1).min() > 0.999
