"""An HTML page's text in one pass of the standard library's parser, without building a tree.

Blocks (paragraphs, headings, list items, table cells...) are parted by a blank line and `<br>`
by a line break; inline elements (`<code>`, links) run on inside their sentence, set apart by a
space as a browser's "foo .py" would be searched word by word. Scripts, styles and comments are
left out; what the standard parser would stop at ("<![G") is read as text. BeautifulSoup gave
the same text but built the whole tree first: it was 40% of parsing a library's HTML files.
No I/O here.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

# Tags that start a new block of text; the others (code, a, em, span...) run on inside a sentence.
HTML_BLOCKS = frozenset((
    "address", "article", "aside", "blockquote", "dd", "div", "dl", "dt", "figcaption", "figure", "footer", "form",
    "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table",
    "tbody", "td", "th", "thead", "tr", "ul", "title", "caption",
))
HIDDEN = frozenset(("script", "style", "noscript", "template"))
KEEP_WHITESPACE = frozenset(("pre", "textarea"))
ASCII_SPACES = " \t\n\r\f"  # a no-break space between tags is text: "&nbsp;" stays


def html_text(markup: str) -> str:
    """The text of `markup`, blocks parted by blank lines, trailing spaces and runs of blank lines out."""
    parser = _TextParser()
    parser.feed(markup)
    parser.close()
    parser.flush()
    text = "\n".join(line.rstrip() for line in " ".join(parser.pieces).splitlines())
    return re.sub(r"\n{3,}", "\n\n", text).strip()


class _TextParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.pieces: list[str] = []  # strings joined by a space, as a tree's get_text(" ") joins its strings
        self._data: list[str] = []  # text since the last tag: one string ("<%=" comes in two calls)
        self._hidden = 0  # depth inside script, style, noscript or template
        self._kept = 0  # depth inside pre or textarea, whose whitespace is kept as it is

    def flush(self) -> None:
        if self._data:
            data = "".join(self._data)
            if not self._kept and not data.strip(ASCII_SPACES):  # whitespace between tags, outside <pre>: one space or break
                data = "\n" if "\n" in data else " "
            self.pieces.append(data)
            self._data = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.flush()
        self._kept += tag in KEEP_WHITESPACE
        if tag in HIDDEN:
            self._hidden += 1
        elif not self._hidden:
            self._mark(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.flush()
        if not self._hidden and tag not in HIDDEN:
            self._mark(tag)
            if tag in HTML_BLOCKS:
                self.pieces.append("\n\n")  # an empty block: its end too

    def handle_endtag(self, tag: str) -> None:
        self.flush()
        if tag in KEEP_WHITESPACE:
            self._kept = max(0, self._kept - 1)
        if tag in HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif not self._hidden and tag in HTML_BLOCKS:
            self.pieces.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self._hidden and data:
            self._data.append(data)

    def parse_marked_section(self, i: int, report: int = 1) -> int:
        """"<![" that opens no marked section the parser knows ("<![G", C++ templates in text):
        it stops the standard parser with an AssertionError; here it is text, and reading goes on."""
        try:
            return super().parse_marked_section(i, report)
        except AssertionError:
            self.handle_data(self.rawdata[i:i + 3])
            return i + 3

    def _mark(self, tag: str) -> None:
        if tag in HTML_BLOCKS:
            self.pieces.append("\n\n")
        elif tag == "br":
            self.pieces.append("\n")
