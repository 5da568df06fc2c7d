"""How a question is answered, as one value checked before anything is loaded.

As LlamaIndex's `BaseQueryEngine.query` turns its input into a `QueryBundle` first, every
question-answering entry point (`Rag.ask`, `Rag.chat_session`, the CLI, the Chat page) takes
one `AskOptions`: a bad value fails at once, with the setting named, and two sets of options
compare by value (the Chat page starts a fresh memory when they change).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from rag.config import check_retrieval_mode, check_top_k, validate_collection_name
from rag.errors import ConfigError


@dataclass(frozen=True)
class AskOptions:
    """None means "the configured default" (RAG_COLLECTION, RAG_TOP_K, RAG_RETRIEVAL_MODE)."""

    collection: str | None = None
    top_k: int | None = None  # passages retrieved
    retrieve_only: bool = False  # the passages alone, no answer
    mode: str | None = None  # hybrid, dense or keyword
    docs: Sequence[str] = field(default=())  # ids or file names the search is limited to; empty: all

    def __post_init__(self) -> None:
        object.__setattr__(self, "docs", tuple(self.docs))
        try:
            if self.collection:  # empty: the default, as None
                validate_collection_name(self.collection)
            if self.top_k is not None:
                check_top_k(self.top_k)
            if self.mode is not None:
                check_retrieval_mode(self.mode)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
