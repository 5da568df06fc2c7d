"""A library of thousands of documents, as a person looks through it: found by name, filtered
by status and type, sorted, and shown a page at a time. Pure logic over the catalog's records."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from rag.storage.catalog import DocumentRecord

PAGE_SIZE = 100


class SortKey(StrEnum):
    """The orders the library can be shown in (the names are what the page offers)."""

    NAME = "Name"
    NEWEST = "Newest first"
    LARGEST = "Largest first"
    MOST_CHUNKS = "Most chunks first"
    STATUS = "Status"


_ORDERS = {
    SortKey.NAME: (lambda d: d.doc_id.lower(), False),
    SortKey.NEWEST: (lambda d: d.indexed_at or "", True),
    SortKey.LARGEST: (lambda d: d.size, True),
    SortKey.MOST_CHUNKS: (lambda d: d.chunks, True),
    SortKey.STATUS: (lambda d: (d.status.value, d.doc_id.lower()), False),
}


@dataclass(frozen=True)
class LibraryPage:
    """One page of the documents that match, and how many match in all."""

    documents: list[DocumentRecord]
    matching: list[DocumentRecord]  # every match, in order: what "all that match" acts on
    page: int  # 1-based, within 1..pages
    pages: int

    @property
    def total(self) -> int:
        return len(self.matching)


def browse(
    docs: Sequence[DocumentRecord], *, query: str = "", statuses: Sequence[str] = (), types: Sequence[str] = (),
    sort: SortKey = SortKey.NAME, page: int = 1, page_size: int = PAGE_SIZE,
) -> LibraryPage:
    """The documents whose id contains `query` (any case), of the given statuses and file types
    (all when empty), in `sort` order, cut to page `page` (clamped to the pages there are)."""
    words = query.lower().split()
    matching = [
        d for d in docs
        if all(w in d.doc_id.lower() for w in words)
        and (not statuses or d.status.value in statuses)
        and (not types or d.file_type in types)
    ]
    key, newest_first = _ORDERS[sort]
    matching.sort(key=key, reverse=newest_first)
    pages = max(1, math.ceil(len(matching) / page_size))
    page = min(max(page, 1), pages)
    start = (page - 1) * page_size
    return LibraryPage(matching[start : start + page_size], matching, page, pages)


def file_types(docs: Sequence[DocumentRecord]) -> list[str]:
    return sorted({d.file_type for d in docs if d.file_type})
