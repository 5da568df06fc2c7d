"""How a question finds passages: the retrieval mode (hybrid, dense, keyword) and the scope.

Hybrid search asks Milvus twice at once, by meaning (the dense vectors) and by words (Milvus' own
BM25), and fuses the two lists by score, so exact terms ("MIME-Magic", "REAL") are found even when
the embedding misses them. It needs a collection indexed with the BM25 field (Milvus 2.5+).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llama_index.core import VectorStoreIndex
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.schema import BaseNode, NodeWithScore, QueryBundle
from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQueryMode,
)
from llama_index.vector_stores.milvus.base import MILVUS_ID_FIELD

from rag.config import RETRIEVAL_MODES, check_retrieval_mode
from rag.errors import ConfigError, DocumentNotFound
from rag.status import DocStatus
from rag.storage.catalog import CollectionInfo, DocumentRecord, milvus_str

QUERY_MODES = {"dense": VectorStoreQueryMode.DEFAULT, "keyword": VectorStoreQueryMode.TEXT_SEARCH}
FUSION_DEPTH = 30  # passages each leg of a hybrid search hands to the fusion
MEANING_WEIGHT = 0.6  # the dense search's share of a hybrid score; BM25 has the rest
DOCUMENT_WEIGHT = 0.3  # how much a passage's score owes to the best passage of its document (`fuse_scores`)
# As LlamaIndex's own BM25 search asks: the query's least weighted 20% of terms are skipped.
BM25_SEARCH = {"metric_type": "BM25", "params": {"drop_ratio_search": 0.2}}


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

    Milvus breaks ties at random (equal BM25 scores, passages repeated in several files): the same
    question could cite a different first source from one run to the next.
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


def make_retriever(
    index: VectorStoreIndex, embed_model: BaseEmbedding, *, mode: str, top_k: int, filters: MetadataFilters | None = None
) -> StableOrder:
    """The one way a search is built for a mode: the app, the CLI, the evaluation and the benchmarks use it."""
    if mode == "hybrid":
        return StableOrder(HybridRetriever(index, embed_model, top_k, filters), top_k)
    return StableOrder(index.as_retriever(similarity_top_k=top_k, vector_store_query_mode=QUERY_MODES[mode],
                                          filters=filters), top_k)


class HybridRetriever(BaseRetriever):
    """Dense and BM25 searches in Milvus, run concurrently on the async client, fused by `fuse_scores`.

    A passage that only one search returned is scored by the other too (its vector read back,
    or a BM25 search limited to it), so every candidate is compared on both. Milvus' own
    `hybrid_search` fuses by rank (RRF): that gives each search's best hit the same value however
    far ahead it is, and measured worse than fusing the scores (README, "Retrieval").
    """

    def __init__(self, index: VectorStoreIndex, embed_model: BaseEmbedding, top_k: int,
                 filters: MetadataFilters | None = None) -> None:
        super().__init__()
        depth = max(FUSION_DEPTH, top_k)
        self._top_k = top_k
        self._embed_model = embed_model
        self._store: Any = index.vector_store  # a MilvusVectorStore
        self._meaning = index.as_retriever(similarity_top_k=depth, filters=filters)
        self._words = index.as_retriever(
            similarity_top_k=depth, vector_store_query_mode=VectorStoreQueryMode.TEXT_SEARCH, filters=filters
        )

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        if query_bundle.embedding is None:
            query_bundle.embedding = self._embed_model.get_agg_embedding_from_queries(query_bundle.embedding_strs)
        meaning, words = self._meaning.retrieve(query_bundle), self._words.retrieve(query_bundle)
        vectors, bm25 = self._requests(query_bundle, meaning, words)
        rows = self._store.client.get(**vectors) if vectors else []
        scored = self._store.client.search(**bm25)[0] if bm25 else []
        return self._fused(query_bundle, meaning, words, rows, scored)

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        if query_bundle.embedding is None:
            query_bundle.embedding = await self._embed_model.aget_agg_embedding_from_queries(query_bundle.embedding_strs)
        meaning, words = await asyncio.gather(self._meaning.aretrieve(query_bundle), self._words.aretrieve(query_bundle))
        vectors, bm25 = self._requests(query_bundle, meaning, words)
        rows, scored = await asyncio.gather(
            self._store.aclient.get(**vectors) if vectors else _nothing(),
            self._store.aclient.search(**bm25) if bm25 else _nothing(),
        )
        return self._fused(query_bundle, meaning, words, rows, scored[0] if scored else [])

    def _requests(self, query_bundle: QueryBundle, meaning: list[NodeWithScore], words: list[NodeWithScore]
                  ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The Milvus calls that score each search's passages on the other (empty: none needed)."""
        store, words_only, meaning_only = self._store, _only_in(words, meaning), _only_in(meaning, words)
        vectors = {"collection_name": store.collection_name, "ids": words_only,
                   "output_fields": [store.embedding_field]} if words_only else {}
        bm25 = {"collection_name": store.collection_name, "data": [query_bundle.query_str],
                "anns_field": store.sparse_embedding_field, "limit": len(meaning_only),
                "filter": f"{MILVUS_ID_FIELD} in [{', '.join(map(milvus_str, meaning_only))}]",
                "output_fields": [MILVUS_ID_FIELD], "search_params": BM25_SEARCH} if meaning_only else {}
        return vectors, bm25

    def _fused(self, query_bundle: QueryBundle, meaning: list[NodeWithScore], words: list[NodeWithScore],
               rows: Sequence[Mapping[str, Any]], scored: Sequence[Mapping[str, Any]]) -> list[NodeWithScore]:
        query, field = query_bundle.embedding or [], self._store.embedding_field
        similarity = {row[MILVUS_ID_FIELD]: sum(q * v for q, v in zip(query, row[field], strict=True)) for row in rows}
        bm25 = {hit[MILVUS_ID_FIELD]: hit["distance"] for hit in scored}
        return fuse_scores(meaning, words, similarity=similarity, bm25=bm25, top_k=self._top_k)


async def _nothing() -> list[Any]:
    return []


def _only_in(hits: Sequence[NodeWithScore], other: Sequence[NodeWithScore]) -> list[str]:
    seen = {hit.node.node_id for hit in other}
    return [hit.node.node_id for hit in hits if hit.node.node_id not in seen]


def fuse_scores(
    meaning: Sequence[NodeWithScore],
    words: Sequence[NodeWithScore],
    *,
    similarity: Mapping[str, float],
    bm25: Mapping[str, float],
    top_k: int,
) -> list[NodeWithScore]:
    """The passages of both searches, best first by MEANING_WEIGHT x similarity / best similarity
    + the rest x BM25 / best BM25, then leaning towards the documents that match best: 1.0 is the
    best passage of both.

    Each search is scaled by its own best score, so a clear winner keeps its margin (RRF forgets
    it) and neither scale (similarities near 0.5, BM25 in the tens) swamps the other.
    `similarity` holds the similarities of the passages only the BM25 search returned, `bm25` the
    BM25 scores of those only the dense search returned (missing: 0, no word in common).

    Each passage then gets DOCUMENT_WEIGHT x the score of its document's best passage (over the
    best of all), and the sum is scaled back to at most 1. Passages of one document keep their
    order; between documents, the one whose best passage matches the question best is preferred.
    In a library of a thousand documents the right passage is often beaten by a look-alike from
    another document (another package's NEWS, a sibling module) while its own document has the
    best passage: there this moved 3 right passages of 66 into the top 5 and none out of it; with a
    dozen documents no ranking changed (README, "Large libraries").
    Equal scores go by chunk id.
    """
    nodes: dict[str, BaseNode] = {hit.node.node_id: hit.node for hit in (*words, *meaning)}
    dense = {**similarity, **{hit.node.node_id: hit.score or 0.0 for hit in meaning}}
    words_score = {**bm25, **{hit.node.node_id: hit.score or 0.0 for hit in words}}
    best_dense, best_bm25 = max(dense.values(), default=0.0), max(words_score.values(), default=0.0)

    def share(value: float, best: float) -> float:
        return value / best if best > 0 else 0.0

    fused = {
        node_id: MEANING_WEIGHT * share(dense.get(node_id, 0.0), best_dense)
        + (1 - MEANING_WEIGHT) * share(words_score.get(node_id, 0.0), best_bm25)
        for node_id in nodes
    }
    document = {node_id: node.ref_doc_id or node_id for node_id, node in nodes.items()}
    best_of: dict[str, float] = {}
    for node_id, value in fused.items():
        best_of[document[node_id]] = max(best_of.get(document[node_id], 0.0), value)
    best = max(fused.values(), default=0.0)
    score = {
        node_id: (value + DOCUMENT_WEIGHT * share(best_of[document[node_id]], best)) / (1 + DOCUMENT_WEIGHT)
        for node_id, value in fused.items()
    }
    ranked = sorted(nodes, key=lambda node_id: (-round(score[node_id], 9), node_id))[:top_k]
    return [NodeWithScore(node=nodes[node_id], score=score[node_id]) for node_id in ranked]
