"""What the Chat page keeps in a browser session between reruns: the transcript's turns and the
conversation they belong to, saved to Milvus as it happens."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from enum import StrEnum

from rag.answering.events import Citation
from rag.chats import ChatSession
from rag.conversations import ConversationInfo, Feedback, SavedTurn, new_id
from rag.options import AskOptions


class Role(StrEnum):
    """Who a turn of the transcript is from (the names are `st.chat_message`'s)."""

    USER = "user"
    ASSISTANT = "assistant"
    NOTICE = "notice"  # a note from the app (a question refused, settings changed)


@dataclass
class Turn:
    """One message of the transcript, kept in the session so reruns can redraw it."""

    role: Role
    text: str = ""
    citations: list[Citation] = field(default_factory=list)
    error: str = ""  # the LLM failed: readable message, passages kept
    refused: str = ""  # the question was refused (RagError): nothing else to show
    retrieve_only: bool = False
    searched: str = ""  # a follow-up's search with the conversation's context
    found: bool = True  # False: nothing retrieved answers the question; citations are the closest passages
    cut_off: bool = False  # the generated answer stops mid-sentence
    stopped: bool = False  # the user pressed Stop while it was written
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])  # widget keys of its sources
    question: str = ""  # an answer's question, saved with it
    seq: int | None = None  # an answer's number in the saved conversation, once written
    dirty: bool = True  # an answer changed since it was saved
    feedback: Feedback | None = None

    def saved(self, top_k: int) -> SavedTurn:
        return SavedTurn(question=self.question, answer=self.text, sources=self.citations, error=self.error,
                         refused=self.refused, found=self.found, searched=self.searched, cut_off=self.cut_off,
                         stopped=self.stopped, retrieve_only=self.retrieve_only, top_k=top_k, feedback=self.feedback)

    @classmethod
    def pair(cls, seq: int, t: SavedTurn) -> list[Turn]:
        answer = cls(Role.ASSISTANT, t.answer, t.sources, t.error, t.refused, t.retrieve_only, t.searched, t.found,
                     t.cut_off, t.stopped, question=t.question, seq=seq, dirty=False, feedback=t.feedback)
        return [cls(Role.USER, t.question), answer]


@dataclass
class Conversation:
    """A collection's chat in this browser session: the core's memory plus what is on screen.

    Saved as it happens (`save`); what Milvus could not take stays `dirty` and is written on the next run."""

    session: ChatSession
    turns: list[Turn] = field(default_factory=list)
    id: str = field(default_factory=new_id)
    info: ConversationInfo | None = None  # None until its first question is saved
    read_only: str = ""  # why no question can be added (its collection was deleted)
    save_error: str = ""

    @property
    def options(self) -> AskOptions:
        return self.session.options
