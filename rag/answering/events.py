"""What answering yields: citations, answers and the events of an answer's stream (no I/O).

Both engines (`rag.answering.engines`) yield the same events, so the CLI and the pages render
one stream: `Sources` first (as soon as retrieval is done), then `Token`s, then `Done` with the
whole `Answer`. An LLM failure becomes a `Failure` event with a readable message; the passages
are kept.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llama_index.core.schema import NodeWithScore

from rag.config import ScoreKind
from rag.errors import QuestionRefused, QuestionTooLong, RagError, first_line

if TYPE_CHECKING:
    from rag.retrieval.search import ModeChoice

MAX_QUESTION_CHARS = 4000
NOT_FOUND = "Not in your documents: none of the passages found answers this question. The closest ones are below."
CUT_OFF = "The answer stops mid-sentence: it probably reached the length limit (RAG_MAX_NEW_TOKENS)."


@dataclass(frozen=True)
class Citation:
    """A retrieved passage: where it comes from and how close it is to the question."""

    file: str
    page: int | None
    score: float
    text: str
    doc_id: str = ""
    page_label: str | None = None
    highlights: tuple[tuple[int, int], ...] = ()  # character spans of `text` that answer the question
    score_kind: ScoreKind = ScoreKind.SIMILARITY  # hybrid scores fuse similarity and BM25, keyword scores are BM25

    @property
    def score_label(self) -> str:
        """The score with what it is, e.g. "similarity 0.83" or "BM25 7.41"."""
        return f"{self.score_kind} {round(self.score, 2) + 0.0:.2f}"

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file, "page": self.page, "score": round(self.score, 4), "score_kind": self.score_kind,
            "text": self.text, "highlights": [list(span) for span in self.highlights],
        }

    @classmethod
    def from_node(
        cls, hit: NodeWithScore, *, highlights: tuple[tuple[int, int], ...] = (), score_kind: ScoreKind = ScoreKind.SIMILARITY
    ) -> Citation:
        meta = hit.node.metadata
        page = meta.get("page")
        return cls(
            file=str(meta.get("file_name", "")),
            page=int(page) if page is not None else None,
            score=float(hit.score or 0.0),
            text=hit.node.get_content(),
            doc_id=hit.node.ref_doc_id or "",
            page_label=meta.get("page_label"),
            highlights=highlights,
            score_kind=score_kind,
        )


@dataclass
class Answer:
    question: str
    answer: str | None  # None in retrieval-only mode, or when the LLM failed
    sources: list[Citation] = field(default_factory=list)
    error: str = ""
    searched: str = ""  # a follow-up's search with the conversation's context, when one was made
    found: bool = True  # False: nothing retrieved supports an answer; `sources` are the closest passages
    cut_off: bool = False  # the generated answer stops mid-sentence
    mode: str = "dense"  # the retrieval mode the sources were found with
    note: str = ""  # why the mode differs from the configured one, if it does

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "answer": self.answer, "found": self.found, "sources": [s.to_json() for s in self.sources], "mode": self.mode,
        }
        if self.error:
            data["error"] = self.error
        if self.note:
            data["note"] = self.note
        return data


@dataclass(frozen=True)
class Sources:
    citations: list[Citation]


@dataclass(frozen=True)
class Token:
    text: str


@dataclass(frozen=True)
class Failure:
    message: str


@dataclass(frozen=True)
class Done:
    answer: Answer


Event = Sources | Token | Failure | Done


def clean_question(question: str) -> str:
    """Refuse what no engine should see: empty or oversized questions."""
    text = (question or "").strip()
    if not text:
        raise QuestionRefused("the question is empty: type a question")
    if len(text) > MAX_QUESTION_CHARS:
        raise QuestionTooLong(f"the question is {len(text):,} characters long; the limit is {MAX_QUESTION_CHARS:,}")
    return text


def describe_llm_error(exc: BaseException, secrets: tuple[str, ...] = ()) -> str:
    """One readable line for an LLM failure; never contains a secret."""
    import httpx
    import openai

    if isinstance(exc, RagError):  # says itself what happened (the local model stopped, ...)
        text = first_line(exc, 300)
    elif isinstance(exc, openai.AuthenticationError):
        text = "the LLM server refused the API key (401): check OPENAI_API_KEY"
    elif isinstance(exc, openai.APITimeoutError | httpx.TimeoutException):  # a stream times out unwrapped
        text = "the LLM did not answer in time: try again, or raise RAG_LLM_TIMEOUT"
    elif isinstance(exc, openai.APIConnectionError):
        text = "cannot reach the LLM server: check that it is running and OPENAI_BASE_URL"
    elif isinstance(exc, openai.NotFoundError):
        text = "the LLM server does not know the model: check RAG_OPENAI_MODEL"
    elif isinstance(exc, openai.APIStatusError):
        text = f"the LLM server answered with an error ({exc.status_code})"
    else:
        text = f"the LLM failed ({type(exc).__name__}: {first_line(exc, 200)})"
    return redact(text, secrets)


def redact(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


_MARKER = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
_PARTIAL_MARKER = re.compile(r"\[[\d,\s]{0,12}$")
_SENTENCE_END = re.compile(r"""[.!?:;)\]"'`*]\s*$""")


def ends_mid_sentence(text: str) -> bool:
    """Whether a generated answer stops before its sentence ends (it hit the length limit)."""
    return bool(text) and not _SENTENCE_END.search(text)


def keep_valid_markers(text: str, count: int) -> str:
    """Drop citation numbers that point to no source (`[7]` with 4 sources); keep the others."""

    def valid(match: re.Match[str]) -> str:
        numbers = [n for n in re.split(r"\s*,\s*", match.group(1)) if 1 <= int(n) <= count]
        return f"[{', '.join(numbers)}]" if numbers else ""

    return _MARKER.sub(valid, text)


class MarkerFilter:
    """`keep_valid_markers` for a token stream: a marker split across tokens is held back until
    it is complete, so an invalid one is never shown, not even for a moment."""

    def __init__(self, count: int) -> None:
        self._count = count
        self._pending = ""

    def feed(self, delta: str) -> str:
        text = self._pending + delta
        partial = _PARTIAL_MARKER.search(text)
        cut = partial.start() if partial else len(text)
        self._pending = text[cut:]
        return keep_valid_markers(text[:cut], self._count)

    def flush(self) -> str:
        text, self._pending = self._pending, ""
        return keep_valid_markers(text, self._count)



async def with_mode(events: AsyncIterator[Event], choice: ModeChoice) -> AsyncIterator[Event]:
    """An engine's events, the final answer labelled with the search mode that found its passages."""
    async for event in events:
        if isinstance(event, Done):
            event.answer.mode, event.answer.note = choice.mode, choice.note
        yield event


def last_answer(events: Iterable[Event]) -> Answer:
    """The `Answer` a stream of events ends with."""
    return _checked([e.answer for e in events if isinstance(e, Done)])


async def alast_answer(events: AsyncIterator[Event]) -> Answer:
    return _checked([e.answer async for e in events if isinstance(e, Done)])


def _checked(answers: list[Answer]) -> Answer:
    if not answers:
        raise RuntimeError("answer stream ended without a result")
    return answers[-1]
