"""Sentences of a text: where each starts and ends, and what a chunk's boundaries cut off.

A chunk ends where its token budget runs out, not where a sentence does. To quote whole sentences
(`rag.answering.evidence`), each chunk keeps, as metadata written at ingestion, the beginning of
its first sentence from before the chunk and the rest of its last sentence from after it.
No I/O here.
"""

from __future__ import annotations

import bisect
import re

# Chunk metadata: the parts of a chunk's first and last sentences outside it (see `sentence_context`).
SENTENCE_BEFORE, SENTENCE_AFTER = "sentence_before", "sentence_after"
MAX_CONTEXT_CHARS = 400  # a cut sentence is completed only when the missing part is this short
SENTENCE_END = re.compile(r"[.!?;][\"')\]]*$")
# Sentence ends; blank lines; list items; and, in JSON, each line (a line ending with a comma in
# prose goes on: wrapped text breaks lines after commas too).
_SENTENCE_BREAK = re.compile(
    r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9`-])|\n\s*\n|\n(?=\s*(?:[-*•]|[1-9]\d*[.)])\s)"
    r"|(?<=[{}\[\]])\s*\n|\n(?=\s*[\"{}\[\]])"
)


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Sentences as (start, end) offsets into `text`, stripped; lines of lists count as sentences."""
    spans, start = [], 0
    for match in _SENTENCE_BREAK.finditer(text):
        spans.append((start, match.start()))
        start = match.end()
    spans.append((start, len(text)))
    result = []
    for begin, end in spans:
        while begin < end and text[begin].isspace():
            begin += 1
        while end > begin and text[end - 1].isspace():
            end -= 1
        if end - begin >= 3:
            result.append((begin, end))
    return result


def sentence_context(text: str, start: int, end: int, following: str = "",
                     spans: list[tuple[int, int]] | None = None) -> tuple[str, str]:
    """What the chunk `text[start:end]` cuts off its first and last sentences: the first one's
    beginning before `start`, and the last one's rest after `end`, run on into `following` (the
    next page's text) when the chunk ends its page mid-sentence and that page goes on in lower
    case. Empty where the chunk starts or ends a sentence, or the missing part is too long to quote.

    `spans`: `sentence_spans(text)`, computed once for all the chunks of a text (a long text has
    thousands of chunks: finding its sentences again for each one took most of an ingestion)."""
    spans = sentence_spans(text) if spans is None else spans
    before, after = "", ""
    i = bisect.bisect_left(spans, (start, start)) - 1  # the last sentence starting before `start`
    if i >= 0 and spans[i][0] < start < spans[i][1]:
        before = text[spans[i][0]:start]
    i = bisect.bisect_left(spans, (end, end)) - 1  # the last sentence starting before `end`
    if i >= 0 and spans[i][0] < end < spans[i][1]:
        after = text[end:spans[i][1]]
    last = text[start:end].rstrip()
    if not after and following and end >= len(text.rstrip()) and last and not SENTENCE_END.search(last):
        rest = following.lstrip()
        if rest[:1].islower():
            first = sentence_spans(rest)
            after = " " + rest[: first[0][1]] if first and first[0][0] == 0 else ""
    fits = lambda part: part if len(part) <= MAX_CONTEXT_CHARS else ""  # noqa: E731
    return fits(before), fits(after)
