"""Text as prose: a PDF page's furniture and tables of contents out, paragraphs joined, hyphens
mended; the gutter a plain-text document draws down its lines out.

A PDF's text layer keeps every line break of the printed page, the running header of every
page and the dot leaders of its table of contents. Left in, they split words for BM25 and the
embedding alike ("manip-" / "ulation"), and TOC pages, dense with every heading's words, crowd
the results. The rules here are deterministic and only look at the document itself:

- Running headers and footers: a first or last line of a page that is the page's printed label,
  or a short line (not ending a sentence) that starts or ends with it ("Chapter 2: ASN.1
  structure handling 3"), or (digits ignored) repeats
  at the top or bottom of at least half the pages (3 at least), is dropped.
- Tables of contents: a line with a dot leader before a page number ("2.1 Syntax . . . . 2") is
  dropped; a page where such lines are at least a third is a TOC page and is dropped whole.
- Lines are joined into paragraphs: a line is continued by the next one when it is long (at
  least 70% of the document's usual full line), or ends no sentence and the next one starts in
  lower case or with a digit ("... and len !=" / "0 to append"), unless the next line starts a
  list item, or is short and follows the end of a sentence (a heading, a one-line paragraph). Short lines (ends of
  paragraphs, headings, code) keep their break. Paragraphs are parted by a blank line, so a
  heading without a full stop is never read as the start of the sentence after it (in quotes,
  `rag.ingestion.sentences`).
- A word split by a hyphen at a line end, between two lowercase letters, is mended: without the
  hyphen ("manip-" + "ulation" -> "manipulation") unless the document itself writes the hyphenated
  form elsewhere and never the joined one ("glob-" + "deleteall" -> "glob-deleteall"); a hyphen
  before a capital letter or a digit is always kept ("Front-" + "Cover" -> "Front-Cover").

Plain text (`clean_plain_text`): a line of spaces is a blank line, as it reads, so it parts
paragraphs (pydoc indents a docstring's blank lines). pydoc also draws " |  " down every line of a
class's help. Left in, the pipes cost the embedding a word piece per line and hide the blank
lines that part the help's paragraphs, so a method's signature and the sentences of the next
method read as one passage. A run of at least GUTTER_RUN such lines loses the gutter; a table's
rows (most lines of the run ending with "|") and a shell pipeline continued on the next line
("  | grep x") keep their pipes.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

TOC_LINE = re.compile(r"(?:\.\s*){4,}\s*[0-9ivxlcdmIVXLCDM]+\s*$|…+\s*\d+\s*$")
LIST_ITEM = re.compile(r"^\s*(?:[•·▪◦‣*–-]\s|\(?\d{1,3}[.)]\s|\(?[a-z][.)]\s)")
HYPHENATED_END = re.compile(r"([A-Za-z]*[a-z])-$")
WORD_START = re.compile(r"^([a-z][A-Za-z]*)")
CARRIES_ON = re.compile(r"^[a-z0-9]")  # a line that starts so after one that ends no sentence goes on with it
GUTTER = re.compile(r"^([ \t]*)\|(?:  |[ \t]*$)")  # pydoc's " |  " before each line of a class's help
GUTTER_RUN = 3
LONG_LINE = 0.7
FURNITURE_SHARE = 0.5
TOC_SHARE = 1 / 3


def clean_pdf_pages(pages: Sequence[str], labels: Sequence[str | None] | None = None) -> list[str]:
    """Each page's text cleaned (same length and order as `pages`; a dropped page is "")."""
    labels = list(labels or [None] * len(pages))
    split = [[line.strip() for line in page.splitlines()] for page in pages]
    split = [[line for line in lines if line] for lines in split]
    furniture = _repeated_edges(split)
    cleaned_lines: list[list[str]] = []
    for lines, label in zip(split, labels, strict=True):
        lines = _drop_edges(lines, label, furniture)
        toc = [bool(TOC_LINE.search(line)) for line in lines]
        if lines and sum(toc) >= max(2, TOC_SHARE * len(lines)):
            lines, toc = [], []  # a table-of-contents page
        cleaned_lines.append([line for line, is_toc in zip(lines, toc, strict=True) if not is_toc])
    vocabulary = Counter(w.lower() for lines in cleaned_lines for line in lines for w in re.findall(r"[\w-]+", line))
    full = _usual_full_line(cleaned_lines)
    return ["\n\n".join(reflow(lines, full, vocabulary)) for lines in cleaned_lines]


def _normalise(line: str) -> str:
    return re.sub(r"\d+", "#", line.lower())


def _repeated_edges(pages: list[list[str]]) -> set[str]:
    """Lines (digits ignored) found among the first or last two lines of most pages."""
    if len(pages) < 3:
        return set()
    counts: Counter[str] = Counter()
    for lines in pages:
        counts.update({_normalise(line) for line in lines[:2] + lines[-2:]})
    least = max(3, FURNITURE_SHARE * len(pages))
    return {line for line, n in counts.items() if n >= least and len(line) < 100}


def _drop_edges(lines: list[str], label: str | None, furniture: set[str]) -> list[str]:
    def is_furniture(line: str) -> bool:
        if _normalise(line) in furniture:
            return True
        if label and line == label:
            return True
        if label and len(line) < 80 and not line.endswith((".", ",", ";", ":")):
            words = line.split()
            return words[0] == label or words[-1] == label
        return False

    lines = list(lines)
    for _ in range(2):  # a header and a page number can both sit at one edge
        if lines and is_furniture(lines[0]):
            lines.pop(0)
        if lines and is_furniture(lines[-1]):
            lines.pop()
    return lines


def _usual_full_line(pages: list[list[str]]) -> int:
    """The length of a full line of body text: the 90th percentile of line lengths."""
    lengths = sorted(len(line) for lines in pages for line in lines)
    return lengths[int(0.9 * (len(lengths) - 1))] if lengths else 0


def reflow(lines: Sequence[str], full_line: int, vocabulary: Counter[str] | None = None) -> list[str]:
    """Lines joined into paragraphs (see the module's rules); one paragraph per item."""
    vocabulary = vocabulary or Counter()
    paragraphs: list[str] = []
    continues = False
    for line in lines:
        short = len(line) < LONG_LINE * full_line
        starts_anew = LIST_ITEM.match(line) or (short and paragraphs and paragraphs[-1].endswith((".", "!", "?", ":")))
        carries_on = paragraphs and CARRIES_ON.match(line) and not paragraphs[-1].endswith((".", "!", "?", ":", ";"))
        if (continues or carries_on) and paragraphs and not starts_anew:
            paragraphs[-1] = join_lines(paragraphs[-1], line, vocabulary)
        else:
            paragraphs.append(line)
        continues = full_line > 0 and len(line) >= LONG_LINE * full_line
    return paragraphs


def join_lines(left: str, right: str, vocabulary: Counter[str]) -> str:
    """Two lines of one paragraph as one, mending a word hyphenated at the break."""
    if not (left.endswith("-") and left[-2:-1].isalnum() and right[:1].isalnum()):
        return f"{left} {right}"
    end, start = HYPHENATED_END.search(left), WORD_START.match(right)
    if end is None or start is None:
        return left + right  # a hyphen before a capital or a digit is part of the word: keep it
    head, tail = end.group(1).lower(), start.group(1).lower()
    joined, hyphenated = head + tail, f"{head}-{tail}"
    if vocabulary[hyphenated] and not vocabulary[joined]:
        return left + right
    return left[:-1] + right


def clean_plain_text(text: str) -> str:
    """`text` without trailing spaces on its lines, nor the gutter drawn down a run of lines (see
    the module's docstring)."""
    lines = [line.rstrip() for line in text.split("\n")]
    start = 0
    while start < len(lines):
        end = start
        while end < len(lines) and GUTTER.match(lines[end]):
            end += 1
        run = [line for line in lines[start:end] if line.strip() != "|"]
        if end - start >= GUTTER_RUN and 2 * sum(line.rstrip().endswith("|") for line in run) < len(run):
            lines[start:end] = [GUTTER.sub(r"\1", line).rstrip() for line in lines[start:end]]
        start = max(end, start + 1)
    return "\n".join(lines)
