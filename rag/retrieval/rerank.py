"""An optional second opinion on the search's order: an LLM re-ranks the top candidates
(`RAG_LLM_RERANK`, off by default).

No cross-encoder installs offline, so when an LLM is configured it is the only reader that can
judge a passage against the question beyond shared words and one embedding. It runs LlamaIndex's
own `LLMRerank` (its choice-select prompt and parser) and treats the reply as advice: the passages
it rates come first, best rated first, then every other candidate in the search's order. A passage
it skips, a reply it garbles or a call that fails never loses a passage; the last two keep the
search's order, logged. See the README ("Answers") for what it measured with the local model.
"""

from __future__ import annotations

import logging

from llama_index.core.llms import LLM
from llama_index.core.postprocessor import LLMRerank
from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle

log = logging.getLogger(__name__)

CHOICE_BATCH = 10  # passages per LLM call: ten ~256-token chunks fit the local model's 4,096-token context


class LLMReranked(BaseRetriever):
    """The inner retriever's candidates, re-ordered by `llm`; the first `top_k` are handed on."""

    def __init__(self, inner: BaseRetriever, llm: LLM, top_k: int) -> None:
        super().__init__()
        self._inner = inner
        self._rerank = LLMRerank(llm=llm, choice_batch_size=CHOICE_BATCH, top_n=CHOICE_BATCH)
        self.similarity_top_k = top_k  # read by the chat engine's follow-up retriever

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = self._inner.retrieve(query_bundle)
        try:
            rated = self._rerank.postprocess_nodes(hits, query_bundle=query_bundle)
        except Exception as exc:  # advice only: the search's order stands
            rated = _failed(exc)
        return reordered(hits, rated)[: self.similarity_top_k]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = await self._inner.aretrieve(query_bundle)
        try:
            rated = await self._rerank.apostprocess_nodes(hits, query_bundle=query_bundle)
        except Exception as exc:  # advice only: the search's order stands
            rated = _failed(exc)
        return reordered(hits, rated)[: self.similarity_top_k]


def _failed(exc: Exception) -> list[NodeWithScore]:
    log.warning("LLM rerank failed, the search's order is kept: %s", exc)
    return []


def reordered(hits: list[NodeWithScore], rated: list[NodeWithScore]) -> list[NodeWithScore]:
    """`hits` with the rated ones first (higher rating first, equal ratings in search order), then
    the rest in search order. Each hit keeps its search score: that is what the page shows."""
    position = {hit.node.node_id: i for i, hit in enumerate(hits)}
    rating: dict[str, float] = {}
    for r in rated:
        if r.node.node_id in position:  # a reply naming the same passage twice keeps its best rating
            rating[r.node.node_id] = max(rating.get(r.node.node_id, float("-inf")), r.score or 0.0)
    log.debug("LLM rerank: %d of %d candidates rated", len(rating), len(hits))
    first = sorted((h for h in hits if h.node.node_id in rating), key=lambda h: (-rating[h.node.node_id], position[h.node.node_id]))
    return first + [h for h in hits if h.node.node_id not in rating]
