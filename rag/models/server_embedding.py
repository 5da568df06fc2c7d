"""Embeddings from a server: any OpenAI-compatible `/v1/embeddings` endpoint.

How a library outgrows one machine's CPU: OpenAI, Ollama, vLLM, Text Embeddings Inference,
infinity or llama.cpp's server compute the vectors, and this process only parses, chunks and
stores. Texts go in batches, several requests in flight at once (`RAG_EMBED_CONCURRENCY`);
a request refused for load (429) or failing on the server's side (5xx, a dropped connection)
is retried with growing pauses; anything else is one clear error that names the setting to
check. Every vector must have the dimension the first one had.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
from llama_index.core.base.embeddings.base import BaseEmbedding
from pydantic import PrivateAttr

from rag.config import without_credentials
from rag.errors import ConfigError, EmbeddingUnavailable

RETRIES = 4  # after the first attempt: 0.5 + 1 + 2 + 4 s of pauses at most
FIRST_PAUSE = 0.5
PROBE = "What dimension are the vectors of this server?"
# Chunks are sized before the server sees them, so in an estimate of its word pieces: one per
# word or punctuation mark, which undercounts a subword tokenizer a little (hence the margin).
_PIECE = re.compile(r"\w+|[^\w\s]")
TOKEN_MARGIN = 0.8


class ServerEmbedding(BaseEmbedding):
    """LlamaIndex's embedding interface over an OpenAI-compatible server."""

    base_url: str | None = None
    request_size: int = 32  # texts per request (LlamaIndex's `embed_batch_size`: texts per call, all requests)
    concurrency: int = 4
    timeout: float = 60.0
    max_tokens: int = 512

    _client: openai.OpenAI = PrivateAttr()
    _aclient: openai.AsyncOpenAI = PrivateAttr()
    _pool: ThreadPoolExecutor = PrivateAttr()
    _dim: int | None = PrivateAttr(default=None)

    def __init__(self, *, api_key: str, **data: Any) -> None:
        super().__init__(**data)
        options = {"api_key": api_key or "not-needed", "base_url": self.base_url or None, "timeout": self.timeout,
                   "max_retries": 0}  # retried here, with the pauses above
        self._client = openai.OpenAI(**options)
        self._aclient = openai.AsyncOpenAI(**options)
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="rag-embed-request")

    @classmethod
    def class_name(cls) -> str:
        return "ServerEmbedding"

    @property
    def where(self) -> str:
        return without_credentials(self.base_url) if self.base_url else "OpenAI"

    # What a collection records, and how chunks are sized ------------------------------------

    def dimension(self) -> int:
        """The vectors' dimension, asked of the server once (a first check that it answers)."""
        if self._dim is None:
            self._dim = len(self._request([PROBE])[0])
        return self._dim

    def count_tokens(self, text: str) -> list[str]:
        return _PIECE.findall(text)

    @property
    def chunk_tokens(self) -> int:
        return int(self.max_tokens * TOKEN_MARGIN)

    # LlamaIndex's interface: every method ends in one of the two below ----------------------

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._embed([query])[0]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return (await self._aembed([query]))[0]

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._embed([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._embed(texts)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return await self._aembed(texts)

    def _embed(self, texts: Sequence[str]) -> list[list[float]]:
        """`texts` in requests of `request_size`, up to `concurrency` of them in flight."""
        batches = _batches(texts, self.request_size)
        return [v for vectors in self._pool.map(self._request, batches) for v in vectors]

    async def _aembed(self, texts: Sequence[str]) -> list[list[float]]:
        limit = asyncio.Semaphore(self.concurrency)

        async def one(batch: list[str]) -> list[list[float]]:
            async with limit:
                return await self._arequest(batch)

        results = await asyncio.gather(*(one(b) for b in _batches(texts, self.request_size)))
        return [v for vectors in results for v in vectors]

    # One request, with retries ------------------------------------------------------------

    def _request(self, batch: list[str]) -> list[list[float]]:
        for attempt in range(RETRIES + 1):
            try:
                return self._vectors(self._client.embeddings.create(model=self.model_name, input=batch))
            except Exception as exc:  # sorted: retried, or one clear error
                self._give_up_unless_passing(exc, attempt)
                time.sleep(FIRST_PAUSE * 2**attempt)
        raise AssertionError("unreachable")

    async def _arequest(self, batch: list[str]) -> list[list[float]]:
        for attempt in range(RETRIES + 1):
            try:
                return self._vectors(await self._aclient.embeddings.create(model=self.model_name, input=batch))
            except Exception as exc:  # sorted: retried, or one clear error
                self._give_up_unless_passing(exc, attempt)
                await asyncio.sleep(FIRST_PAUSE * 2**attempt)
        raise AssertionError("unreachable")

    def _vectors(self, response: Any) -> list[list[float]]:
        vectors = [item.embedding for item in sorted(response.data, key=lambda item: item.index)]
        for vector in vectors:
            if not vector or not isinstance(vector[0], float):
                raise EmbeddingUnavailable(
                    f"the embedding server at {self.where} returned no single vector per text for RAG_EMBED_MODEL="
                    f"{self.model_name!r} (a model without pooling?)"
                )
            if self._dim is not None and len(vector) != self._dim:
                raise EmbeddingUnavailable(
                    f"the embedding server at {self.where} returned {len(vector)}-dimensional vectors for "
                    f"RAG_EMBED_MODEL={self.model_name!r}, {self._dim} before: did the model behind it change?"
                )
        return vectors

    def _give_up_unless_passing(self, exc: Exception, attempt: int) -> None:
        """Return to retry a failure that may pass (load, the server's own errors); raise otherwise."""
        passing = isinstance(exc, openai.RateLimitError | openai.InternalServerError | openai.APIConnectionError)
        if passing and attempt < RETRIES:
            return
        raise EmbeddingUnavailable(self._describe(exc, attempt + 1)) from exc

    def _describe(self, exc: Exception, attempts: int) -> str:
        where = f"the embedding server at {self.where}"
        tries = f" ({attempts} attempts)" if attempts > 1 else ""
        if isinstance(exc, EmbeddingUnavailable):
            return str(exc)
        if isinstance(exc, openai.AuthenticationError):
            return f"{where} refused the API key (401): check RAG_EMBED_API_KEY"
        if isinstance(exc, openai.NotFoundError):
            return f"{where} does not know RAG_EMBED_MODEL={self.model_name!r} (404): check RAG_EMBED_MODEL"
        if isinstance(exc, openai.APITimeoutError):
            return f"{where} did not answer in {self.timeout:g} s{tries}: check it, or raise RAG_EMBED_TIMEOUT"
        if isinstance(exc, openai.APIConnectionError):
            return f"cannot reach {where}{tries}: check that it is running and RAG_EMBED_BASE_URL"
        if isinstance(exc, openai.APIStatusError):
            return f"{where} answered with an error ({exc.status_code}){tries}"
        return f"{where} failed ({type(exc).__name__}: {str(exc)[:200]})"


def _batches(texts: Sequence[str], size: int) -> list[list[str]]:
    return [list(texts[i : i + size]) for i in range(0, len(texts), size)]


def server_embedding(
    *, model: str, base_url: str, api_key: str, batch_size: int, concurrency: int, timeout: float, max_tokens: int,
) -> ServerEmbedding:
    """The server's embedding model, checked: it answers, and says its vectors' dimension."""
    if not model:
        raise ConfigError("RAG_EMBED_PROVIDER=openai needs RAG_EMBED_MODEL: the model name the server knows")
    embedding = ServerEmbedding(
        model_name=model, base_url=base_url or None, api_key=api_key, request_size=batch_size,
        embed_batch_size=batch_size * concurrency, concurrency=concurrency, timeout=timeout, max_tokens=max_tokens,
    )
    embedding.dimension()
    return embedding

