"""Conversations: a chat with memory (`ChatSession`) and the saved ones (`Conversations`).

Both are reached from a `Rag` (`rag.chat_session(...)`, `rag.conversations.list()`) and get from
it only what they need, passed in explicitly: the background loop, a way to open an engine or
the store, and the mark that a question is being answered. Like `Rag`, every operation is an
`x` / `ax` pair whose async method is the one implementation, run on the core's loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

from rag.answering.engines import ChatEngine
from rag.answering.events import Answer, Event, alast_answer, last_answer, with_mode
from rag.conversations import ConversationInfo, ConversationStore, Feedback, SavedConversation, SavedTurn, check_id
from rag.evaluation import Question, check_files, document_names, question_from
from rag.loop import BackgroundLoop
from rag.options import AskOptions
from rag.retrieval.search import ModeChoice
from rag.storage.catalog import DocumentRecord

T = TypeVar("T")


class ChatSession:
    """One conversation: its own memory, so each browser session has its own history."""

    def __init__(
        self, options: AskOptions, *, loop: BackgroundLoop,
        open_engine: Callable[[AskOptions], Awaitable[tuple[ChatEngine, ModeChoice]]],
        answering: Callable[[], AbstractAsyncContextManager[None]],
    ) -> None:
        self.options = options
        self._loop = loop
        self._open_engine = open_engine
        self._answering = answering
        self._engine: ChatEngine | None = None
        self._choice = ModeChoice("dense")
        self._earlier: list[tuple[str, str, str]] = []

    def restore(self, turns: list[SavedTurn]) -> None:
        """Continue a saved conversation: its turns become this session's memory."""
        self._earlier = [(t.question, t.answer, t.searched) for t in turns if not t.refused]
        if self._engine is not None:
            self._engine.restore(self._earlier)

    def chat(self, message: str) -> Answer:
        return last_answer(self.stream_chat(message))

    async def achat(self, message: str) -> Answer:
        return await alast_answer(self.astream_chat(message))

    def stream_chat(self, message: str) -> Iterator[Event]:
        return self._loop.iterate(self._astream(message))

    def astream_chat(self, message: str) -> AsyncIterator[Event]:
        return self._loop.hop_iter(self._astream(message))

    def reset(self) -> None:
        """Start a new conversation (same collection and settings)."""
        self._earlier = []
        if self._engine is not None:
            self._engine.reset()

    @property
    def history(self) -> list[tuple[str, str]]:
        return self._engine.history if self._engine is not None else []

    async def _astream(self, message: str) -> AsyncIterator[Event]:
        async with self._answering():
            if self._engine is None:
                self._engine, self._choice = await self._open_engine(self.options)
                self._engine.restore(self._earlier)
            async for event in with_mode(self._engine.astream(message), self._choice):
                yield event


class Conversations:
    """The saved conversations of one Milvus deployment (`rag.conversations`)."""

    def __init__(
        self, store: ConversationStore, *, loop: BackgroundLoop, connect: Callable[[], Awaitable[object]],
        collection: Callable[[str | None], str], documents: Callable[[str], Awaitable[list[DocumentRecord]]],
    ) -> None:
        self._store = store
        self._loop = loop
        self._connect = connect
        self._collection = collection
        self._documents = documents  # a collection's: the files a test question may name

    def list(self, collection: str | None = None) -> list[ConversationInfo]:
        """Saved conversations, newest first: of one collection, or of all with `collection=None`."""
        return self._loop.run(self.alist(collection))

    async def alist(self, collection: str | None = None) -> list[ConversationInfo]:
        return await self._on_loop(lambda: self._store.alist(collection))

    def get(self, conversation_id: str) -> SavedConversation:
        return self._loop.run(self.aget(conversation_id))

    async def aget(self, conversation_id: str) -> SavedConversation:
        return await self._on_loop(lambda: self._store.aget(conversation_id))

    def new(self, collection: str | None = None, *, top_k: int | None = None, retrieve_only: bool = False,
            conversation_id: str | None = None) -> ConversationInfo:
        return self._loop.run(
            self.anew(collection, top_k=top_k, retrieve_only=retrieve_only, conversation_id=conversation_id)
        )

    async def anew(self, collection: str | None = None, *, top_k: int | None = None, retrieve_only: bool = False,
                   conversation_id: str | None = None) -> ConversationInfo:
        name = self._collection(collection)
        return await self._on_loop(lambda: self._store.acreate(name, top_k, retrieve_only, conversation_id))

    def save_turn(self, info: ConversationInfo, turn: SavedTurn, seq: int | None = None) -> int:
        """Append a turn (or replace turn `seq`); `info` follows in place. Returns the turn's number."""
        return self._loop.run(self.asave_turn(info, turn, seq))

    async def asave_turn(self, info: ConversationInfo, turn: SavedTurn, seq: int | None = None) -> int:
        return await self._on_loop(lambda: self._store.asave_turn(info, turn, seq))

    def rename(self, conversation_id: str, title: str) -> ConversationInfo:
        return self._loop.run(self.arename(conversation_id, title))

    async def arename(self, conversation_id: str, title: str) -> ConversationInfo:
        return await self._on_loop(lambda: self._store.arename(conversation_id, title))

    def delete(self, conversation_id: str) -> None:
        self._loop.run(self.adelete(conversation_id))

    async def adelete(self, conversation_id: str) -> None:
        await self._on_loop(lambda: self._store.adelete(conversation_id))

    def feedback(self, conversation_id: str, turn: int, feedback: Feedback | None) -> SavedTurn:
        """Rate answer number `turn` (0-based); None clears the rating."""
        return self._loop.run(self.afeedback(conversation_id, turn, feedback))

    async def afeedback(self, conversation_id: str, turn: int, feedback: Feedback | None) -> SavedTurn:
        return await self._on_loop(lambda: self._store.afeedback(conversation_id, turn, feedback))

    def save_question(self, collection: str, row: dict[str, Any], conversation_id: str, turn: int) -> Question:
        """Make answer `turn` of a conversation a test question for `rag eval`: `row` is
        {"question", "file" (None: nothing in the documents answers it), "page"?, "evidence"?},
        checked as a question file's row is, and its file must be one of the collection's."""
        return self._loop.run(self.asave_question(collection, row, conversation_id, turn))

    async def asave_question(self, collection: str, row: dict[str, Any], conversation_id: str, turn: int) -> Question:
        question = question_from(row, "the test question")
        origin = f"{check_id(conversation_id)}/{int(turn)}"

        async def save() -> Question:
            check_files([question], document_names(await self._documents(collection)), collection)
            await self._store.asave_question(collection, question, origin)
            return question

        return await self._on_loop(save)

    def questions(self, collection: str) -> list[tuple[str, Question]]:
        """The test questions made from feedback in `collection`, oldest first, with the answer
        each came from ("<conversation>/<turn>"); `questions_file` writes them for `rag eval`."""
        return self._loop.run(self.aquestions(collection))

    async def aquestions(self, collection: str) -> list[tuple[str, Question]]:
        return await self._on_loop(lambda: self._store.aquestions(collection))

    def delete_question(self, collection: str, origin: str) -> None:
        self._loop.run(self.adelete_question(collection, origin))

    async def adelete_question(self, collection: str, origin: str) -> None:
        await self._on_loop(lambda: self._store.adelete_question(collection, origin))

    async def _on_loop(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Connect (recovery included), then run `operation` on the core's loop."""

        async def run() -> T:
            await self._connect()
            return await operation()

        return await self._loop.hop(run())
