"""Errors `rag` raises on purpose: each message says what went wrong and what to do."""

from __future__ import annotations


class RagError(Exception):
    """Base class: a failure the user can act on; its message is shown as it is."""


class ConfigError(RagError):
    """A setting is wrong (bad value, missing file, unknown model)."""


class StoreUnavailable(RagError):
    """Milvus cannot be reached or refused the request."""


class CollectionNotFound(RagError):
    """The named collection does not exist."""


class EmbeddingUnavailable(RagError):
    """The embedding server cannot be used (down, refused the key, unknown model, wrong vectors)."""


class EmbeddingMismatch(RagError):
    """A collection was built with another embedding model than the configured one."""


class DocumentNotFound(RagError):
    """No document with that id in the collection."""


class ParseError(RagError):
    """A file could not be turned into text."""


class CoreClosed(RagError):
    """The `Rag` was closed: it refuses further calls instead of half-reconnecting."""


class LLMError(RagError):
    """The language model failed (unreachable, refused the key, timed out)."""


class QuestionRefused(RagError):
    """A question no engine should see (empty, or over the length limit): nothing was asked."""


class QuestionTooLong(QuestionRefused):
    """Over the length limit: the text is worth keeping, to shorten and send again."""


class ConversationNotFound(RagError):
    """No saved conversation with that id (deleted, or a wrong or tampered link)."""


def first_line(exc: BaseException | str, limit: int = 300) -> str:
    """The first line of an error, cut to `limit` characters: what one line of a report shows
    (a raw gRPC or HTTP error's text can be a multi-line dump)."""
    return next(iter(str(exc).strip().splitlines()), "")[:limit]
