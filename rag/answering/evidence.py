"""Which sentences of the retrieved passages answer a question, and whether any does at all.

Used for the quoted (offline) answers, for the highlights under every answer, and to say "not in
your documents" instead of answering when nothing retrieved supports an answer. No I/O here: the
embedding function is passed in, so the scoring is the same in every answer mode.

A sentence is scored on two things: how much of the question's rare terms it contains (exact
terms such as `libtasn1.h` or `-J` count, which embeddings blur) and how close its embedding is to
the question's (paraphrases, which term overlap misses).

Quotes are whole sentences: a passage comes with the parts of its first and last sentences that
its chunk boundaries cut off (`rag.ingestion.sentences`, stored with each chunk at ingestion), so a
sentence is scored and quoted whole and only its part inside the passage is highlighted. A quote
is the answering sentence with what it needs to stand alone: the sentence before it when it refers
back ("Members of this group..."), the next one of its paragraph, where the answer often goes
on, the label it is indented under (an option, a function's signature: what it defines), and the
line its closing colon announces. Headings, bare URLs, table-of-contents lines and licence
boilerplate are not quoted as answers (licence text is, when the question asks about licensing);
a sentence already quoted is not quoted again, and quotes of touching sentences of one passage
are joined into one. A quote is shown as one line (`one_line`): a label on its own line is set
apart from its sentence by a dash.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from rag.ingestion.sentences import SENTENCE_END, sentence_spans
from rag.ingestion.textclean import GUTTER

Embed = Callable[[list[str]], list[list[float]]]

# Calibrated on real questions, in and out of scope (see README, "Answers"): a passage supports
# an answer when its best sentence is this close to the question in meaning...
MIN_SIMILARITY = 0.45
# ... or shares this much of the question's weighted terms and is at least loosely related.
MIN_TERM_SHARE, MIN_SIMILARITY_WITH_TERMS = 0.6, 0.3
MAX_QUOTES = 3
MAX_QUOTE_CHARS = 500  # one quote: a longer "sentence" is a table or a list, cut at a word
MAX_CANDIDATES = 10  # sentences embedded per question: the cost of a quoted answer's first words
FIRST_PASSAGE_SENTENCES = 8  # ... and at most this many more, from the first passage
QUOTE_FRACTION = 0.8  # a further quote must score this share of the best one
# The retriever's order in a sentence's score, 1/(1 + the passage's position): measured with
# scripts/answer_eval.py, 0.1 put the evidence in more answers than 0.03 or 0.2 on all three sets.
RANK_WEIGHT = 0.1

STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have
    having he her here hers herself him himself his how i if in into is it its itself just me more most
    my myself no nor not now of off on once only or other our ours ourselves out over own same she
    should so some such than that the their theirs them themselves then there these they this those
    through to too under until up very was we were what when where which while who whom why will with
    would you your yours yourself yourselves tell explain describe please say does mean use used""".split()
)
_URL = re.compile(r"<?(?:https?://|www\.)\S+|<[^<>\s]+@[^<>\s]+>")
_TOC_LINE = re.compile(r"(?:\.\s*){4,}\s*[0-9ivxlcdm]+\s*$|…+\s*\d+\s*$", re.I)
# A line of plain words this short that ends no sentence is a heading ("asn1 write value",
# "Harbour log, volume two"), whatever its capitals; longer ones need a heading's look.
HEADING_WORDS = 6
LABEL_WORDS = 8  # a first line this short, ending no sentence or clause, before a capital: a label
DEFINITION_REACH = 250  # characters from a label to the quote under it that the quote may take
_TERM_MARK = re.compile(r"[-_()\[\]=<>~/$@]")  # in a signature or an option, not in a heading's words
_LABEL_END = re.compile(r"[.!?;:,\-]$")
_LEADING_MARK = re.compile(r"^(?:[-*+•]|#{1,6})\s+(?=\S)")
_TYPESET_HYPHEN = re.compile(r"([a-z])\u2010[ \t]*\n\s*([a-z])")
_NUMBERED_HEADING = re.compile(r"^(?:#+\s|(?:\d+\.)+\d*\s+[A-Z]|[A-Z]\.\d)")
_BOILERPLATE = re.compile(
    r"\b(?:licen[cs]\w*|warrant\w*|copyright|permission is hereby granted|all rights reserved|merchantability"
    r"|fitness for a particular purpose|liab(?:le|ility))\b",
    re.I,
)
# A sentence that starts by referring back needs the one before it to be understood.
_REFERRING = re.compile(r"^(?:\S+\s+){0,3}?(?:it|its|this|these|that|those|they|their|them|such)\b", re.I)
_TOKEN = re.compile(r"-?[a-z0-9][a-z0-9_.+\-]*[a-z0-9+]|-?[a-z0-9]")


@dataclass(frozen=True)
class Quote:
    """A sentence that answers the question: which passage, where in its text, how well."""

    source: int  # 0-based position of the passage among the retrieved ones
    start: int  # the part of the sentence inside the passage (what is highlighted there)
    end: int
    text: str  # the whole sentence, completed from beyond the passage where its chunk cut it
    score: float


@dataclass(frozen=True)
class Evidence:
    found: bool  # whether anything retrieved supports an answer
    quotes: tuple[Quote, ...]  # the best sentences, best first (empty when not found)
    highlights: tuple[tuple[tuple[int, int], ...], ...]  # per passage: character spans to mark
    similarity: float  # of the best sentence to the question (cosine)
    term_share: float  # of the question's weighted terms in the best sentence


def quotable(sentence: str, question_terms: set[str] = frozenset()) -> bool:
    """Whether a sentence can stand as an answer: not a heading, a bare URL, a table-of-contents
    line, or licence boilerplate (unless the question is about licensing)."""
    text = " ".join(sentence.split())
    words = _URL.sub(" ", text).split()
    if len(words) < 3 or _TOC_LINE.search(text):
        return False
    if len(words) <= 8 and not SENTENCE_END.search(text) and not text.startswith("-") and (
        _short_heading(text, words) or _NUMBERED_HEADING.match(text) or text.isupper() or text.endswith(":")
        or all(w[:1].isupper() or not w[:1].isalpha() for w in words)
    ):
        return False
    if _BOILERPLATE.search(text):
        return bool(question_terms & terms(" ".join(_BOILERPLATE.findall(text))))
    return True


def one_line(quote: str) -> str:
    """A quote as one line of an answer. A label on a line of its own before the sentence it
    names (a definition list's term, a function's signature, a manual's option) is set apart by a
    dash, not glued to the sentence as one: "www-data — Some web servers run as www-data.". A word
    a manual page hyphenated at a line end ("num‐" / "ber", U+2010) is whole again. (Mending those
    at ingestion, for search too, was measured and not kept: README, "Answers".) A list item's
    bullet or a Markdown heading's hashes do not start the quote: an answer shown as Markdown
    would make the quote a list or a heading. The gutter pydoc draws down a class's help (" |  ")
    is left out, not shown as pipes between the words ("If | ensure_ascii is false")."""
    quote = _without_gutter(_TYPESET_HYPHEN.sub(r"\1\2", quote))
    first, newline, rest = quote.strip().partition("\n")
    label, rest = " ".join(first.split()), " ".join(rest.split())
    words = label.lower().split()
    if newline and rest[:1].isupper() and _is_label(label) \
            and sum(w in STOPWORDS for w in words) <= 1:  # a wrapped sentence's first line has more
        line = f"{label} — {rest}"
    else:
        line = " ".join(quote.split())
    return _LEADING_MARK.sub("", line)


def _without_gutter(quote: str) -> str:
    """`quote` without a gutter that starts every line after its first (blank lines aside). Not a
    table's rows (a line ending with "|") nor a shell pipeline continued on the next line
    ("  | grep x": one space after the pipe). Ingestion drops such gutters from plain text
    (`rag.ingestion.textclean.clean_plain_text`); this is for passages indexed before it did."""
    first, *rest = quote.split("\n")
    gutters = [bool(GUTTER.match(line)) for line in rest]
    if not any(gutters) or not all(g or not line.strip() for g, line in zip(gutters, rest, strict=True)):
        return quote
    lines = [first] + [GUTTER.sub("", line) for line in rest]
    return quote if any(line.rstrip().endswith("|") for line in lines) else "\n".join(lines)


def _short_heading(text: str, words: list[str]) -> bool:
    """A few plain words ending no sentence: a heading. Not a command, an option or a labelled
    example ("Example: curl --retry 5 URL"), which stand as answers however short."""
    return len(words) <= HEADING_WORDS and ":" not in text and not _URL.search(text) and not any(
        w.startswith("-") for w in words)


def terms(text: str) -> set[str]:
    """Content terms, lower case, lightly stemmed; dotted or hyphenated names also count whole."""
    found: set[str] = set()
    for token in _TOKEN.findall(text.lower()):
        if len(token) > 1 and token.lstrip("-") not in STOPWORDS:  # `-J`, `2.3.5`, `libtasn1.h`
            found.add(_stem(token))
        parts = re.split(r"[._+\-]+", token)
        if len(parts) > 1:
            found.update(_stem(p) for p in parts if len(p) > 1 and p not in STOPWORDS and not p.isdigit())
    return found


def _stem(word: str) -> str:
    for suffix, keep in (("ies", "y"), ("sses", "ss"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            return word[: len(word) - len(suffix)] + keep
    return word


def weigh(
    question: str, passages: Sequence[str], embed: Embed, context: Sequence[tuple[str, str]] | None = None
) -> Evidence:
    """Score every sentence of `passages` (in retrieval order) against `question`. `context`: per
    passage, the parts of its first and last sentences that its chunk cut off (`rag.ingestion.sentences.sentence_context`);
    sentences are scored and quoted whole, highlighted only inside their passage."""
    context = list(context) if context is not None else [("", "")] * len(passages)
    whole = [before + text + after for text, (before, after) in zip(passages, context, strict=True)]
    inside = [(len(before), len(before) + len(text)) for text, (before, _) in zip(passages, context, strict=True)]
    candidates = [
        (i, start, end) for i, text in enumerate(whole) for start, end in sentence_spans(text)
        if start < inside[i][1] and end > inside[i][0]
    ]
    if not candidates:
        return Evidence(False, (), tuple(() for _ in passages), 0.0, 0.0)
    texts = [whole[i][start:end] for i, start, end in candidates]
    share = _term_shares(question, texts)
    prior = [1.0 / (1 + i) for i, _, _ in candidates]  # the retriever's order, as a tie-breaker
    shortlist = sorted(range(len(candidates)), key=lambda n: share[n] + 0.1 * prior[n], reverse=True)[:MAX_CANDIDATES]
    # The first passage's sentences are weighed even with no word of the question ("biggest" for
    # "largest"): the search ranked it first, often for its meaning, which only embeddings see.
    shortlist += [n for n, (i, _, _) in enumerate(candidates) if i == 0 and n not in shortlist][:FIRST_PASSAGE_SENTENCES]
    vectors = embed([question] + [texts[n][:MAX_QUOTE_CHARS] for n in shortlist])
    query, rest = vectors[0], vectors[1:]
    similarity = {n: _cosine(query, v) for n, v in zip(shortlist, rest, strict=True)}
    score = {n: 0.55 * similarity[n] + 0.45 * share[n] + RANK_WEIGHT * prior[n] for n in shortlist}
    ranked = sorted(shortlist, key=lambda n: score[n], reverse=True)
    best = ranked[0]
    found = any(_supports(similarity[n], share[n]) for n in shortlist)
    quotes: list[Quote] = []
    if found:
        asked = terms(question)
        answering = [n for n in ranked if quotable(texts[n], asked)] or ranked[:1]
        for n in answering:
            if len(quotes) == MAX_QUOTES or score[n] < QUOTE_FRACTION * score[answering[0]]:
                break
            if not (_supports(similarity[n], share[n]) or not quotes):
                continue
            i, start, end = candidates[n]
            spans = [c[1:] for c in candidates if c[0] == i]
            widened = _with_neighbours(whole[i], spans, start, end)
            if (joined := _joined(quotes, i, whole[i], *widened)) is not None:
                quotes = joined
                continue
            kept = _unsaid(whole[i], spans, *widened, quotes)
            if kept is None or not kept[0] <= start < end <= kept[1]:
                continue  # the sentence itself was quoted already
            start, end = kept
            end = min(end, _cut(whole[i], start, end))
            quotes.append(Quote(i, start, end, whole[i][start:end], round(score[n], 4)))
    highlights = tuple(
        tuple(sorted((max(q.start, low) - low, min(q.end, high) - low) for q in quotes if q.source == i))
        for i, (low, high) in enumerate(inside)
    )
    quotes = [replace(q, start=max(q.start, inside[q.source][0]) - inside[q.source][0],
                      end=min(q.end, inside[q.source][1]) - inside[q.source][0]) for q in quotes]
    return Evidence(found, tuple(quotes), highlights, round(similarity[best], 4), round(share[best], 4))


def _with_neighbours(text: str, spans: list[tuple[int, int]], start: int, end: int) -> tuple[int, int]:
    """The sentence at text[start:end] (one of `spans`, its passage's sentences) as a quote: with
    the sentence before it when it refers back ("Members of this group can read..."), and with the
    next one of its paragraph, which is where the answer often goes on ("Some web servers run as
    www-data. Web content should not be owned by this user, ..."), within MAX_QUOTE_CHARS; then
    with the label it is indented under and what its colon announces (`_definition_start`,
    `_announced_end`)."""
    k = spans.index((start, end)) if (start, end) in spans else None
    if k is None:
        return start, end
    same_paragraph = lambda a, b: "\n\n" not in text[a[1]:b[0]]  # noqa: E731
    if k > 0 and _REFERRING.match(text[start:end]) and same_paragraph(spans[k - 1], spans[k]) \
            and end - spans[k - 1][0] <= MAX_QUOTE_CHARS:
        start = spans[k - 1][0]
    if k + 1 < len(spans) and same_paragraph(spans[k], spans[k + 1]) and spans[k + 1][1] - start <= MAX_QUOTE_CHARS:
        end = spans[k + 1][1]
    start = _definition_start(text, start, end)
    return start, _announced_end(text, spans, start, end)


def _indent(line: str) -> int:
    line = line.expandtabs(8)
    return len(line) - len(line.lstrip())


def _is_label(line: str) -> bool:
    """A line short enough, and ending no sentence or clause, to name what follows it."""
    words = line.split()
    return 0 < len(words) <= LABEL_WORDS and not _LABEL_END.search(line.strip())


def _names_a_term(line: str) -> bool:
    """A label that names what the lines under it define: one word ("adm", "60") or a signature or
    option ("median_low(data)", "-mtime n"); not a heading of plain words ("Searching files by
    age", "Chapter 1. Introduction"), nor one in capitals ("DESCRIPTION")."""
    return _is_label(line) and not line.strip().isupper() and (len(line.split()) == 1 or bool(_TERM_MARK.search(line)))


def _definition_start(text: str, start: int, end: int) -> int:
    """Where the quote text[start:end] starts once it names what it is about: a sentence indented
    under a label ("--exclude-vcs-ignores", "median_low(data)", "-mtime n") takes the label and
    what comes before it under that label ("--exclude-vcs-ignores — Exclude files that match
    patterns read from VCS-specific ignore files. Supported files are: .cvsignore, .gitignore,
    ..." rather than "Supported files are: ..."), within DEFINITION_REACH characters. Not a
    heading (`_names_a_term`), and not when the quote starts with a label."""
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", start)
    first_line = text[line_start:line_end if line_end >= 0 else len(text)]
    indent = _indent(first_line)
    if indent == 0 or (not text[line_start:start].strip() and _is_label(first_line)):
        return start
    position = line_start
    while position > 0 and start - position <= DEFINITION_REACH:
        above = text.rfind("\n", 0, position - 1) + 1
        line = text[above:position - 1]
        if line.strip() and _indent(line) < indent:
            head = above + len(line) - len(line.lstrip())
            fits = start - head <= DEFINITION_REACH and end - head <= MAX_QUOTE_CHARS
            return head if fits and _names_a_term(line) else start
        position = above
    return start


def _announced_end(text: str, spans: list[tuple[int, int]], start: int, end: int) -> int:
    """Where the quote text[start:end] ends once it holds what it announces: a quote ending with a
    colon ("dpkg will run the postinst script as:") takes the next sentence or line, whatever its
    paragraph (the command it announces), and the one after when it carries the sentence on in
    lower case ("by passing a space-separated list ..."); within MAX_QUOTE_CHARS."""
    if not text[start:end].rstrip().endswith(":"):
        return end
    following = [span for span in spans if span[0] >= end]
    if not following or following[0][1] - start > MAX_QUOTE_CHARS:
        return end
    end = following[0][1]
    if len(following) > 1 and text[following[1][0]].islower() and following[1][1] - start <= MAX_QUOTE_CHARS:
        end = following[1][1]
    return end


def _joined(quotes: list[Quote], source: int, text: str, start: int, end: int) -> list[Quote] | None:
    """`quotes` with an earlier quote of the same passage that text[start:end] overlaps or touches
    grown to cover both, in its place (one quote of consecutive sentences, not two that share or
    split one); None when there is no such quote or both together would be too long."""
    for k, earlier in enumerate(quotes):
        if earlier.source != source or start > earlier.end + 2 or end < earlier.start - 2 \
                or text[min(end, earlier.end):max(start, earlier.start)].strip():
            continue
        low, high = min(start, earlier.start), max(end, earlier.end)
        if high - low > 2 * MAX_QUOTE_CHARS:
            return None
        return quotes[:k] + [replace(earlier, start=low, end=high, text=text[low:high])] + quotes[k + 1:]
    return None


def _unsaid(text: str, spans: list[tuple[int, int]], start: int, end: int, quotes: list[Quote]) -> tuple[int, int] | None:
    """text[start:end] without the sentences at its ends that an earlier quote already holds
    (a neighbour added to two quotes, or overlapping chunks); None when nothing new is left."""
    said = " ".join(" ".join(q.text.split()).lower() for q in quotes)
    inside = [(a, b) for a, b in spans if a >= start and b <= end] or [(start, end)]
    fresh = lambda span: " ".join(text[span[0]:span[1]].split()).lower()[:120] not in said  # noqa: E731  (or its start, if cut)
    while inside and not fresh(inside[0]):
        inside.pop(0)
    while inside and not fresh(inside[-1]):
        inside.pop()
    return (inside[0][0], inside[-1][1]) if inside else None


def _supports(similarity: float, share: float) -> bool:
    return similarity >= MIN_SIMILARITY or (share >= MIN_TERM_SHARE and similarity >= MIN_SIMILARITY_WITH_TERMS)


def _term_shares(question: str, sentences: list[str]) -> list[float]:
    """The share of the question's terms each sentence holds, each term weighted by its rarity
    among the sentences (a term found nowhere weighs most: it is what the documents lack)."""
    wanted = terms(question)
    if not wanted:
        return [0.0] * len(sentences)
    held = [terms(s) & wanted for s in sentences]
    count = len(sentences)
    weight = {t: math.log(1 + (count + 1) / (0.5 + sum(t in h for h in held))) for t in wanted}
    total = sum(weight.values())
    return [sum(weight[t] for t in h) / total for h in held]


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def _cut(text: str, start: int, end: int) -> int:
    """Where a quote stops: at most MAX_QUOTE_CHARS, at a word boundary."""
    if end - start <= MAX_QUOTE_CHARS:
        return end
    space = text.rfind(" ", start, start + MAX_QUOTE_CHARS)
    return space if space > start else start + MAX_QUOTE_CHARS
