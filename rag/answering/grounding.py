"""LlamaIndex parts that keep answers grounded: a node postprocessor that decides whether the
retrieved passages support an answer (and marks the sentences that do), and a synthesizer that
answers by quoting those sentences, for the offline default.

Both plug into LlamaIndex's own engines (`RetrieverQueryEngine`, `ContextChatEngine`), so quoted
and generated answers take the same path: retrieve, postprocess, synthesize, stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from llama_index.core.base.llms.types import (
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
)
from llama_index.core.chat_engine import ContextChatEngine
from llama_index.core.llms import CustomLLM
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.response_synthesizers import BaseSynthesizer
from llama_index.core.schema import NodeWithScore, QueryBundle
from llama_index.core.types import RESPONSE_TEXT_TYPE
from pydantic import PrivateAttr

from rag.answering.evidence import Embed, Evidence, one_line, weigh
from rag.ingestion.sentences import SENTENCE_AFTER, SENTENCE_BEFORE

SOURCE_KEY = "source"  # node metadata the LLM sees: "[1]", the number it cites the passage by


class SupportGate(BaseNodePostprocessor):
    """Weighs the retrieved passages' sentences against the question (`rag.answering.evidence`).

    When none supports an answer it passes no node on, so no LLM is called, and keeps the
    passages as `closest` to show as such. Otherwise the passages go on numbered (`[1]`, `[2]`,
    in retrieval order) for the LLM to cite. One gate serves one engine, one question at a time.
    """

    _embed: Embed = PrivateAttr()
    _evidence: Evidence | None = PrivateAttr(default=None)
    _closest: list[NodeWithScore] = PrivateAttr(default_factory=list)

    def __init__(self, embed: Embed, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._embed = embed

    @classmethod
    def class_name(cls) -> str:
        return "SupportGate"

    @property
    def evidence(self) -> Evidence | None:
        """What the last question's passages hold; None before the first question."""
        return self._evidence

    @property
    def closest(self) -> list[NodeWithScore]:
        """The last question's passages (also when they were not passed on)."""
        return self._closest

    def _postprocess_nodes(self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None) -> list[NodeWithScore]:
        question = query_bundle.query_str if query_bundle else ""
        self._closest = list(nodes)
        self._evidence = weigh_nodes(question, nodes, self._embed)
        if not self._evidence.found:
            return []
        for number, hit in enumerate(nodes, 1):
            hit.node.metadata[SOURCE_KEY] = f"[{number}]"
            excluded = hit.node.excluded_llm_metadata_keys
            if SOURCE_KEY in excluded:
                excluded.remove(SOURCE_KEY)
            if SOURCE_KEY not in hit.node.excluded_embed_metadata_keys:
                hit.node.excluded_embed_metadata_keys.append(SOURCE_KEY)
        return nodes


class QuoteSynthesizer(BaseSynthesizer):
    """Answers with the sentences the gate found, each followed by its source number.

    Every word of such an answer is in the documents. It streams one quote at a time, like a
    generated answer streams tokens.
    """

    def __init__(self, gate: SupportGate, streaming: bool = True) -> None:
        super().__init__(llm=NoGeneration(), streaming=streaming)
        self._gate = gate

    def _get_prompts(self) -> dict[str, Any]:
        return {}

    def _update_prompts(self, prompts: dict[str, Any]) -> None:
        pass

    def _quotes(self, count: int) -> list[str]:
        evidence = self._gate.evidence
        if evidence is None or not evidence.found:
            return []
        return [f"{one_line(q.text)} [{q.source + 1}]" for q in evidence.quotes if q.source < count]

    def _parts(self, count: int) -> list[str]:
        return [("\n\n" if i else "") + quote for i, quote in enumerate(self._quotes(count))]

    def get_response(self, query_str: str, text_chunks: Sequence[str], **kwargs: Any) -> RESPONSE_TEXT_TYPE:
        parts = self._parts(len(text_chunks))
        return iter(parts) if self._streaming else "".join(parts)

    async def aget_response(self, query_str: str, text_chunks: Sequence[str], **kwargs: Any) -> RESPONSE_TEXT_TYPE:
        parts = self._parts(len(text_chunks))
        if not self._streaming:
            return "".join(parts)

        async def stream() -> AsyncIterator[str]:
            for part in parts:
                yield part

        return stream()


class QuotingChatEngine(ContextChatEngine):
    """`ContextChatEngine` whose answers are quotes: the history still shapes the search
    (see `rag.retrieval.followups.FollowUpRetriever`), the words all come from the passages."""

    _quote_synthesizer: QuoteSynthesizer

    @classmethod
    def for_gate(cls, retriever: Any, gate: SupportGate, memory: Any) -> QuotingChatEngine:
        engine = cls.from_defaults(retriever, llm=NoGeneration(), memory=memory, node_postprocessors=[gate])
        engine._quote_synthesizer = QuoteSynthesizer(gate)
        return engine

    def _get_response_synthesizer(self, chat_history: Any, streaming: bool = False) -> Any:
        return self._quote_synthesizer


class NoGeneration(CustomLLM):
    """The LLM slot of the quoting engines: LlamaIndex's classes require one, and this one refuses
    to write, so a quoted answer can never contain a generated word."""

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(context_window=100_000, num_output=0, model_name="quotes from the documents")

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        raise RuntimeError("quoted answers never call an LLM")

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        raise RuntimeError("quoted answers never call an LLM")


def weigh_nodes(question: str, nodes: Sequence[NodeWithScore], embed: Embed) -> Evidence:
    """`weigh` on retrieved chunks, with what their boundaries cut off their sentences."""
    context = [(str(n.node.metadata.get(SENTENCE_BEFORE, "")), str(n.node.metadata.get(SENTENCE_AFTER, ""))) for n in nodes]
    return weigh(question, [n.node.get_content() for n in nodes], embed, context)


def embedder(model: Any) -> Callable[[list[str]], list[list[float]]]:
    """The embedding model as `rag.answering.evidence` wants it: texts in, normalised vectors out."""
    return model.get_text_embedding_batch

