"""Saved conversations: a Milvus collection of their own (`_rag_conversations`), next to the catalog.

Why Milvus: it is the one store every deployment already has (the embedded Lite file, one server,
a cluster shared by several app processes), so conversations survive a reload, a restart and a new
container with no extra server, and every replica sees the same ones.

Rows are small and written as they happen: one header row per conversation (title, collection,
settings, times) and one row per turn (question, answer, sources, feedback). A turn's JSON goes
into a VARCHAR field; one longer than `PART_CHARS` (a long answer with 20 long passages) is split
over several rows, so no answer is ever cut and no row passes Milvus' 65,535-byte VARCHAR limit.

A wrong answer can become a test: its question, with the file (and page, or a phrase) that
should have answered it, is kept as a row of its own (`QUESTION`) per collection, and the set
downloads as the question file `rag eval` reads.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from pymilvus import DataType, MilvusClient

from rag.answering.events import Answer, Citation
from rag.errors import ConversationNotFound, RagError
from rag.evaluation import Question, question_from, question_json
from rag.storage.catalog import MILVUS_ERRORS, MilvusStore, milvus_str


def now_iso() -> str:
    """UTC, to the microsecond: two answers within a second still list in order."""
    return datetime.now(UTC).isoformat(timespec="microseconds")

CONVERSATIONS = "_rag_conversations"
PART_CHARS = 60_000  # ASCII-only JSON (ensure_ascii), so characters are bytes: under 65,535
MAX_TURNS = 2_000  # keeps one conversation's rows under Milvus' 16,384-row query cap
MAX_CONVERSATIONS = 16_000  # listed per collection, newest first
TITLE_CHARS = 80
ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")
HEADER = -1  # the `seq` of a conversation's header row
QUESTION = -2  # the `seq` of a test question made from an answer's feedback (kept when its chat is deleted)
MAX_FEEDBACK_QUESTIONS = 1000  # per collection, as many as `rag eval` reads from one file


@dataclass
class Feedback:
    """A reader's rating of one answer: 1 (thumbs up) or 0 (thumbs down), and why."""

    score: int
    comment: str = ""
    at: str = field(default_factory=now_iso)


@dataclass
class SavedTurn:
    """One question and its answer, as shown: enough to redraw it and to export it."""

    question: str
    answer: str = ""
    sources: list[Citation] = field(default_factory=list)
    error: str = ""
    refused: str = ""
    found: bool = True
    searched: str = ""
    cut_off: bool = False
    stopped: bool = False
    retrieve_only: bool = False
    top_k: int | None = None
    feedback: Feedback | None = None
    at: str = field(default_factory=now_iso)

    @classmethod
    def from_answer(cls, answer: Answer, *, retrieve_only: bool = False, top_k: int | None = None) -> SavedTurn:
        return cls(question=answer.question, answer=answer.answer or "", sources=list(answer.sources),
                   error=answer.error, found=answer.found, searched=answer.searched, cut_off=answer.cut_off,
                   retrieve_only=retrieve_only, top_k=top_k)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["sources"] = [_citation_json(c) for c in self.sources]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SavedTurn:
        data = dict(data)
        data["sources"] = [_citation(c) for c in data.get("sources", [])]
        data["feedback"] = Feedback(**data["feedback"]) if data.get("feedback") else None
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class ConversationInfo:
    """A conversation's header: what the list shows."""

    id: str
    collection: str
    title: str = "New chat"
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)
    turns: int = 0
    top_k: int | None = None
    retrieve_only: bool = False


@dataclass
class SavedConversation:
    info: ConversationInfo
    turns: list[SavedTurn]

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self.info), "turns": [t.to_json() for t in self.turns]}


def _citation_json(c: Citation) -> dict[str, Any]:
    return {**c.to_json(), "score": c.score, "doc_id": c.doc_id, "page_label": c.page_label}


def _citation(data: dict[str, Any]) -> Citation:
    return Citation(file=data.get("file", ""), page=data.get("page"), score=float(data.get("score", 0.0)),
                    text=data.get("text", ""), doc_id=data.get("doc_id", ""), page_label=data.get("page_label"),
                    highlights=tuple(tuple(span) for span in data.get("highlights", ())))


def new_id() -> str:
    return uuid.uuid4().hex


def check_id(conversation_id: str) -> str:
    """Refuse what cannot be an id (a tampered address) before it reaches a filter expression."""
    if not isinstance(conversation_id, str) or not ID_PATTERN.match(conversation_id):
        raise ConversationNotFound(f"{str(conversation_id)[:40]!r} is not a conversation id")
    return conversation_id


def title_from(question: str) -> str:
    words = " ".join(question.split())
    return words if len(words) <= TITLE_CHARS else words[: TITLE_CHARS - 1].rstrip() + "…"


class ConversationStore:
    """Conversations in the Milvus deployment of a `MilvusStore` (runs on the shared loop)."""

    def __init__(self, store: MilvusStore) -> None:
        self._store = store
        self._ready = False

    async def _client(self):
        client = self._store.client
        if not self._ready:
            try:
                if not await client.has_collection(CONVERSATIONS):
                    await self._create(client)
                await client.load_collection(CONVERSATIONS)
            except MILVUS_ERRORS as exc:
                raise self._store.unavailable(exc) from exc
            self._ready = True
        return client

    @staticmethod
    async def _create(client) -> None:
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("conversation", DataType.VARCHAR, max_length=32)
        schema.add_field("collection", DataType.VARCHAR, max_length=256)
        schema.add_field("seq", DataType.INT64)  # HEADER, or the turn's number
        schema.add_field("part", DataType.INT64)
        schema.add_field("data", DataType.VARCHAR, max_length=65_535)
        schema.add_field("vec", DataType.FLOAT_VECTOR, dim=2)  # Milvus requires a vector field
        index = MilvusClient.prepare_index_params()
        index.add_index(field_name="vec", index_type="FLAT", metric_type="L2")
        try:
            await client.create_collection(CONVERSATIONS, schema=schema, index_params=index, consistency_level="Strong")
        except MILVUS_ERRORS:
            if not await client.has_collection(CONVERSATIONS):  # another process made it first: fine
                raise

    async def _upsert(self, rows: list[dict[str, Any]]) -> None:
        client = await self._client()
        try:
            await client.upsert(CONVERSATIONS, rows)
        except MILVUS_ERRORS as exc:
            self._ready = False  # the next write checks the collection again (and makes it, if it went)
            raise self._store.unavailable(exc) from exc

    async def _query(self, expr: str, fields: list[str], limit: int = 16_384) -> list[dict[str, Any]]:
        # Strong: a tab reloaded on another app process must see the turn this one just wrote.
        client = await self._client()
        try:
            return await client.query(CONVERSATIONS, filter=expr, output_fields=fields, limit=limit,
                                      consistency_level="Strong")
        except MILVUS_ERRORS as exc:
            raise self._store.unavailable(exc) from exc

    async def _delete(self, expr: str) -> None:
        client = await self._client()
        try:
            await client.delete(CONVERSATIONS, filter=expr)
        except MILVUS_ERRORS as exc:
            raise self._store.unavailable(exc) from exc

    @staticmethod
    def _rows(info: ConversationInfo, seq: int, data: dict[str, Any]) -> list[dict[str, Any]]:
        text = json.dumps(data, ensure_ascii=True, separators=(",", ":"))
        parts = [text[i:i + PART_CHARS] for i in range(0, len(text), PART_CHARS)] or [""]
        return [
            {"id": f"{info.id}/{seq}/{n}" if seq != HEADER else info.id, "conversation": info.id,
             "collection": info.collection, "seq": seq, "part": n, "data": part, "vec": [0.0, 0.0]}
            for n, part in enumerate(parts)
        ]

    async def _put_header(self, info: ConversationInfo) -> None:
        await self._upsert(self._rows(info, HEADER, asdict(info)))

    async def _put_turn(self, info: ConversationInfo, seq: int, turn: SavedTurn, replacing: bool) -> None:
        rows = self._rows(info, seq, turn.to_json())
        await self._upsert(rows)
        if replacing:  # a shorter version leaves no stale parts behind
            await self._delete(f"conversation == {milvus_str(info.id)} and seq == {seq} and part >= {len(rows)}")

    # Public ---------------------------------------------------------------------------------

    async def alist(self, collection: str | None = None) -> list[ConversationInfo]:
        expr = f"seq == {HEADER}" + (f" and collection == {milvus_str(collection)}" if collection is not None else "")
        rows = await self._query(expr, ["data"], MAX_CONVERSATIONS)
        infos = [ConversationInfo(**json.loads(r["data"])) for r in rows]
        return sorted(infos, key=lambda c: (c.updated_at, c.id), reverse=True)

    async def ainfo(self, conversation_id: str) -> ConversationInfo:
        rows = await self._query(f"id == {milvus_str(check_id(conversation_id))}", ["data"], 1)
        if not rows:
            raise ConversationNotFound(f"no conversation {conversation_id!r}: it was deleted, or the link is wrong")
        return ConversationInfo(**json.loads(rows[0]["data"]))

    async def aget(self, conversation_id: str) -> SavedConversation:
        rows = await self._query(f"conversation == {milvus_str(check_id(conversation_id))}", ["seq", "part", "data"])
        header = [r for r in rows if r["seq"] == HEADER]
        if not header:
            raise ConversationNotFound(f"no conversation {conversation_id!r}: it was deleted, or the link is wrong")
        parts: dict[int, list[tuple[int, str]]] = {}
        for r in rows:
            if r["seq"] != HEADER:
                parts.setdefault(r["seq"], []).append((r["part"], r["data"]))
        turns = [SavedTurn.from_json(json.loads("".join(p for _, p in sorted(parts[s])))) for s in sorted(parts)]
        return SavedConversation(ConversationInfo(**json.loads(header[0]["data"])), turns)

    async def acreate(self, collection: str, top_k: int | None = None, retrieve_only: bool = False,
                      conversation_id: str | None = None) -> ConversationInfo:
        info = ConversationInfo(id=check_id(conversation_id) if conversation_id else new_id(), collection=collection,
                                top_k=top_k, retrieve_only=retrieve_only)
        await self._put_header(info)
        return info

    async def asave_turn(self, info: ConversationInfo, turn: SavedTurn, seq: int | None = None) -> int:
        """Write a turn: appended (`seq=None`), or in place of turn `seq` (a question saved before
        its answer, then the whole turn). The header follows: title from the first question,
        turn count, time. Returns the turn's number."""
        replacing = seq is not None
        if seq is None:
            if info.turns >= MAX_TURNS:
                raise RagError(f"this conversation has {MAX_TURNS} turns, the most one can hold: start a new chat")
            seq = info.turns
        elif not 0 <= seq < info.turns:
            raise RagError(f"conversation {info.id!r} has no turn {seq + 1}")
        await self._put_turn(info, seq, turn, replacing)
        if seq == 0 and info.title == "New chat":
            info.title = title_from(turn.question)
        info.turns, info.updated_at = max(info.turns, seq + 1), now_iso()
        info.top_k, info.retrieve_only = turn.top_k, turn.retrieve_only
        await self._put_header(info)
        return seq

    async def arename(self, conversation_id: str, title: str) -> ConversationInfo:
        title = " ".join(title.split())[:200]
        if not title:
            raise RagError("a conversation's title cannot be empty")
        info = await self.ainfo(conversation_id)
        info.title = title
        await self._put_header(info)
        return info

    async def adelete(self, conversation_id: str) -> None:
        await self.ainfo(conversation_id)
        await self._delete(f"conversation == {milvus_str(conversation_id)}")

    async def asave_question(self, collection: str, question: Question, origin: str) -> None:
        """Keep a test question made from the answer `origin` ("<conversation>/<turn>"): saving
        again from the same answer replaces it. Its row belongs to no conversation, so deleting
        the chat keeps the test."""
        known = await self._query(f"seq == {QUESTION} and collection == {milvus_str(collection)}", ["id"],
                                  MAX_FEEDBACK_QUESTIONS + 1)
        row_id = f"q/{origin}"
        if len(known) >= MAX_FEEDBACK_QUESTIONS and row_id not in {r["id"] for r in known}:
            raise RagError(f"collection {collection!r} has {MAX_FEEDBACK_QUESTIONS} test questions, the most "
                           "one question file holds: download them and delete some first")
        data = json.dumps({**question_json(question), "origin": origin, "at": now_iso()}, ensure_ascii=True)
        await self._upsert([{"id": row_id, "conversation": "", "collection": collection, "seq": QUESTION,
                             "part": 0, "data": data, "vec": [0.0, 0.0]}])

    async def aquestions(self, collection: str) -> list[tuple[str, Question]]:
        """The test questions made from feedback in `collection`, oldest first, with their origins."""
        rows = await self._query(f"seq == {QUESTION} and collection == {milvus_str(collection)}", ["data"],
                                 MAX_FEEDBACK_QUESTIONS)
        saved = sorted((json.loads(r["data"]) for r in rows), key=lambda d: d.get("at", ""))
        return [(d.get("origin", ""), question_from(d, d.get("origin", "feedback"))) for d in saved]

    async def adelete_question(self, collection: str, origin: str) -> None:
        await self._delete(f"id == {milvus_str('q/' + origin)} and collection == {milvus_str(collection)}")

    async def afeedback(self, conversation_id: str, seq: int, feedback: Feedback | None) -> SavedTurn:
        info = await self.ainfo(conversation_id)
        if not 0 <= seq < info.turns:
            raise RagError(f"conversation {conversation_id!r} has no turn {seq + 1}")
        rows = await self._query(f"conversation == {milvus_str(info.id)} and seq == {seq}", ["part", "data"])
        turn = SavedTurn.from_json(json.loads("".join(r["data"] for r in sorted(rows, key=lambda r: r["part"]))))
        if feedback is not None:
            feedback.comment = feedback.comment.strip()[:2000]
        turn.feedback = feedback
        await self._put_turn(info, seq, turn, replacing=True)
        return turn


def to_markdown(conv: SavedConversation) -> str:
    """A conversation as a Markdown document: each question, its answer and its numbered sources."""
    info = conv.info
    def when(iso: str) -> str:
        return iso[:16].replace("T", " ") + " UTC"

    lines = [f"# {info.title}", "", f"Collection: {info.collection} · started {when(info.created_at)} · "
             f"last answer {when(info.updated_at)} · {info.turns} question{'s' if info.turns != 1 else ''}", ""]
    for n, turn in enumerate(conv.turns, 1):
        lines += [f"## {n}. {' '.join(turn.question.split())}", ""]
        if turn.refused:
            lines += [f"*Not asked: {turn.refused}*", ""]
            continue
        if turn.answer:
            lines += [turn.answer, ""]
        elif turn.retrieve_only:
            lines += ["*Retrieval only: the closest passages are below.*", ""]
        if turn.error:
            lines += [f"*No generated answer: {turn.error}*", ""]
        if turn.stopped:
            lines += ["*Stopped while it was written.*", ""]
        if turn.sources:
            lines += ["Sources:" if turn.found else "Closest passages (none answers the question):", ""]
            for i, c in enumerate(turn.sources, 1):
                page = f", page {c.page}" if c.page is not None else ""
                passage = " ".join(c.text.split())
                lines += [f"{i}. **{c.file or 'unknown file'}**{page}", "", f"   > {passage}", ""]
        if turn.feedback is not None:
            thumb = "👍" if turn.feedback.score else "👎"
            comment = f": {turn.feedback.comment}" if turn.feedback.comment else ""
            lines += [f"Feedback: {thumb}{comment}", ""]
    return "\n".join(lines).rstrip() + "\n"
