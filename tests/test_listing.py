"""The library at the size people bring: 10,000 documents found, filtered, sorted and paged,
as pure logic and on the Documents page (through `AppTest`, on the stand-in core)."""

from __future__ import annotations

import pytest

from rag.status import DocStatus
from rag.storage.catalog import DocumentRecord
from rag.storage.listing import PAGE_SIZE, SortKey, browse, file_types
from tests.helpers import new_app, open_page
from tests.test_page_logic import core  # noqa: F401  (fixture)

pytestmark = pytest.mark.quick

KINDS = ("pdf", "html", "md", "txt")


def library(count: int = 10_000) -> list[DocumentRecord]:
    """Documents in folders, of four types, a few failed, indexed over a day."""
    docs = []
    for n in range(count):
        kind = KINDS[n % len(KINDS)]
        failed = n % 997 == 0
        docs.append(DocumentRecord(
            "lib", f"manuals/{n // 1000:02d}/doc-{n:05d}.{kind}", f"doc-{n:05d}.{kind}", file_type=kind,
            size=1000 + n, chunks=0 if failed else 1 + n % 40,
            status=DocStatus.FAILED if failed else DocStatus.INDEXED,
            indexed_at=None if failed else f"2026-12-05T{n % 24:02d}:{n % 60:02d}:00+00:00",
        ))
    return docs


def test_a_search_narrows_ten_thousand_documents_to_what_matches():
    docs = library()
    view = browse(docs, query="manuals/07 DOC-0712")
    assert [d.doc_id for d in view.documents] == [f"manuals/07/doc-0712{n}.{KINDS[n % 4]}" for n in range(10)]
    assert view.total == 10 and view.pages == 1


def test_filters_sort_and_pages():
    docs = library()
    failed = browse(docs, statuses=["failed"])
    assert failed.total == len([n for n in range(10_000) if n % 997 == 0])
    pdfs = browse(docs, types=["pdf"], sort=SortKey.LARGEST, page=2)
    assert pdfs.total == 2_500 and pdfs.pages == 25 and len(pdfs.documents) == PAGE_SIZE
    sizes = [d.size for d in pdfs.matching]
    assert sizes == sorted(sizes, reverse=True) and pdfs.documents[0] is pdfs.matching[PAGE_SIZE]
    assert browse(docs, page=1_000).page == 100, "past the last page: the last page"
    assert browse(docs, query="no such file").documents == [] and browse(docs, query="no such file").pages == 1
    assert file_types(docs) == ["html", "md", "pdf", "txt"]


def test_the_documents_page_shows_one_page_of_a_large_library_and_finds_by_name(core):  # noqa: F811
    core.library = library()
    at = open_page(new_app(), "documents")
    assert not at.exception, at.exception
    table = at.dataframe[-1].value
    rows = table.data if hasattr(table, "data") else table
    assert len(rows) == PAGE_SIZE
    assert any("1-100 of 10,000 matching (10,000 in the collection) · page 1 of 100" in c.value for c in at.caption)
    at.text_input(key="library_query").input("doc-0712").run()
    rows = at.dataframe[-1].value
    rows = rows.data if hasattr(rows, "data") else rows
    assert sorted(rows["File"]) == [f"manuals/07/doc-0712{n}.{KINDS[n % 4]}" for n in range(10)]
    at.toggle(key="select_matching").set_value(True).run()
    assert "Delete **10** document(s)" in " ".join(m.value for m in at.markdown)
