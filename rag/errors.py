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


class EmbeddingMismatch(RagError):
    """A collection was built with another embedding model than the configured one."""


class DocumentNotFound(RagError):
    """No document with that id in the collection."""


class ParseError(RagError):
    """A file could not be turned into text."""


class LLMError(RagError):
    """The language model failed (unreachable, refused the key, timed out)."""


class ConversationNotFound(RagError):
    """No saved conversation with that id (deleted, or a wrong or tampered link)."""
