"""How a question finds passages: the retrieval mode (hybrid, dense, keyword) and the scope.

Hybrid search runs Milvus' own BM25 (words) next to the dense vectors (meaning) and fuses the
two rankings with RRF inside Milvus, so exact terms ("MIME-Magic", "REAL") are found even when
the embedding misses them. It needs a collection indexed with the BM25 field (Milvus 2.5+).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle
from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQueryMode,
)

from rag.config import RETRIEVAL_MODES, check_retrieval_mode
from rag.errors import ConfigError, DocumentNotFound
from rag.status import DocStatus
from rag.store import CollectionInfo, DocumentRecord

QUERY_MODES = {
    "hybrid": VectorStoreQueryMode.HYBRID,
    "dense": VectorStoreQueryMode.DEFAULT,
    "keyword": VectorStoreQueryMode.TEXT_SEARCH,
}
# What a citation's score is in each mode: only dense scores are similarities.
SCORE_KINDS = {"hybrid": "rank score", "dense": "similarity", "keyword": "BM25"}


@dataclass(frozen=True)
class ModeChoice:
    """The mode a search runs in, and why it differs from the one asked for (if it does)."""

    mode: str
    note: str = ""


@dataclass(frozen=True)
class Modes:
    """The modes a collection can be searched in, and why not all of them (if so)."""

    modes: tuple[str, ...]
    why_not: str = ""  # the reason hybrid and keyword are missing
    fix: str = ""  # what gives them


def available_modes(info: CollectionInfo, milvus_bm25: bool) -> Modes:
    if info.has_bm25:
        return Modes(RETRIEVAL_MODES)
    if not milvus_bm25:
        return Modes(("dense",), "this Milvus has no full-text search (BM25 needs Milvus 2.5 or later)",
                     "use a Milvus 2.5+ server or Milvus Lite")
    return Modes(("dense",), f"collection {info.name!r} was indexed without full-text search",
                 "re-index it: ingest its documents into a new collection, or delete it and ingest them again")


def choose_mode(requested: str | None, default: str, info: CollectionInfo, milvus_bm25: bool) -> ModeChoice:
    """The mode to search `info` with.

    An explicit request the collection cannot serve is an error (nothing is searched); the
    configured default falls back to dense with a note, so an old collection or an old Milvus
    keeps working.
    """
    try:
        mode = check_retrieval_mode(requested or default)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    can = available_modes(info, milvus_bm25)
    if mode in can.modes:
        return ModeChoice(mode)
    if requested:
        raise ConfigError(f"{mode} search is not possible: {can.why_not}; use --mode dense, or {can.fix}")
    return ModeChoice("dense", f"{mode} search is not available ({can.why_not}): searching by meaning only. "
                               f"To get it, {can.fix}.")


def resolve_scope(names: Sequence[str], documents: Sequence[DocumentRecord], collection: str) -> list[str]:
    """The document ids that `names` (ids or file names) pick among the indexed documents."""
    indexed = [d for d in documents if d.status is DocStatus.INDEXED]
    picked: list[str] = []
    for name in names:
        matches = [d.doc_id for d in indexed if name in (d.doc_id, d.file_name)]
        if not matches:
            known = ", ".join(d.doc_id for d in indexed[:10]) or "none"
            raise DocumentNotFound(f"no indexed document {name!r} in collection {collection!r} (documents: {known})")
        picked.extend(m for m in matches if m not in picked)
    return picked


def scope_filters(doc_ids: Sequence[str]) -> MetadataFilters | None:
    """A Milvus filter that keeps only the chunks of these documents (applied to every leg)."""
    if not doc_ids:
        return None
    return MetadataFilters(
        filters=[MetadataFilter(key="doc_id", value=d, operator=FilterOperator.EQ) for d in doc_ids],
        condition=FilterCondition.OR,
    )


class StableOrder(BaseRetriever):
    """Hands the hits on best first, and equal scores in a fixed order (by chunk id).

    Milvus' RRF gives two passages the same score whenever the dense and BM25 rankings swap them,
    and breaks such ties at random: the same question could cite a different first source from
    one run to the next.
    """

    def __init__(self, inner: BaseRetriever, top_k: int) -> None:
        super().__init__()
        self._inner = inner
        self.similarity_top_k = top_k  # read by the chat engine's follow-up retriever

    @staticmethod
    def _ordered(hits: list[NodeWithScore]) -> list[NodeWithScore]:
        return sorted(hits, key=lambda hit: (-round(hit.score or 0.0, 9), hit.node.node_id))

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return self._ordered(self._inner.retrieve(query_bundle))

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return self._ordered(await self._inner.aretrieve(query_bundle))
