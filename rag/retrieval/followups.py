"""Follow-up questions: a message that leans on the conversation is also searched with the
previous search's words, and the two rankings are fused by rank (no LLM call, no I/O here)."""

from __future__ import annotations

import re

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle

RRF_K = 60  # reciprocal rank fusion's constant (Cormack et al.): ranks matter, raw scores don't
# Words that point back into the conversation: a message with one of them needs its context.
_REFERRING = frozenset(
    "it its it's they them their theirs this that these those he she him his her there such same "
    "also too either former latter above previous earlier".split()
)
_WORD = re.compile(r"[a-z0-9']+")
CONTEXT_WORDS = 40  # of the previous search, carried into a follow-up's search


def needs_context(message: str) -> bool:
    """Whether a message leans on the conversation ("and its seals?", "what about the other one").

    A cheap rule instead of an LLM rewrite: it costs no time before the sources, and it gives the
    same answer every time.
    """
    words = _WORD.findall(message.lower())
    return len(words) <= 2 or bool(_REFERRING.intersection(words)) or words[:1] in (["and"], ["or"], ["but"])


def fuse_ranks(*rankings: list[NodeWithScore], top_k: int) -> list[NodeWithScore]:
    """Reciprocal rank fusion: each list votes 1/(k + rank); ties go to the earlier list.

    Raw scores from different queries are not comparable; ranks are. Each list holds at most
    `top_k` hits, so the first list's best hit can be passed only by hits that both lists found,
    and always stays in the result.
    """
    votes: dict[str, float] = {}
    first_seen: dict[str, tuple[int, int]] = {}
    hits: dict[str, NodeWithScore] = {}
    for list_no, ranking in enumerate(rankings):
        for rank, hit in enumerate(ranking[:top_k]):
            node_id = hit.node.node_id
            votes[node_id] = votes.get(node_id, 0.0) + 1.0 / (RRF_K + rank + 1)
            first_seen.setdefault(node_id, (list_no, rank))
            hits.setdefault(node_id, hit)
    order = sorted(votes, key=lambda n: (-votes[n], first_seen[n]))
    return [hits[n] for n in order[:top_k]]


class FollowUpRetriever(BaseRetriever):
    """Searches with the user's own words and, for a follow-up, also with the previous search
    followed by the message; the two rankings are fused by rank.

    So a follow-up finds what its words alone find (its best hit is always kept), plus what the
    conversation's context adds, and sources show as fast as for a first question.
    """

    def __init__(self, inner: BaseRetriever, top_k: int) -> None:
        super().__init__()
        self._inner = inner
        self._top_k = top_k
        self.context = ""  # the previous turn's search: set by the chat engine before each turn
        self.searched = ""  # this turn's search with context, if one was made

    def _queries(self, message: str) -> list[str]:
        self.searched = ""
        if self.context and needs_context(message):
            words = self.context.split()[-CONTEXT_WORDS:]
            self.searched = " ".join([*words, message])
        return [message] + ([self.searched] if self.searched else [])

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        rankings = [self._inner.retrieve(q) for q in self._queries(query_bundle.query_str)]
        return fuse_ranks(*rankings, top_k=self._top_k)

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        rankings = [await self._inner.aretrieve(q) for q in self._queries(query_bundle.query_str)]
        return fuse_ranks(*rankings, top_k=self._top_k)

