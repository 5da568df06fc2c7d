"""A cited passage in its original file: the page drawn with the passage marked (a PDF page, or
a scan: a scanned PDF page or an image, marked from the boxes OCR kept), or the passage in its
surrounding text with line numbers. What the Chat page opens under a source.

Nothing here may break an answer: a file deleted or moved since indexing, an encrypted or damaged
PDF, a page that does not exist, each becomes a `SourceUnavailable` with a sentence to show.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

from rag.config import Settings
from rag.errors import RagError
from rag.ingestion.ocr import IMAGE_EXTENSIONS, PDFIUM_LOCK, OcrPage, load_scan, passage_boxes, scans_dir
from rag.ingestion.readers import read_file
from rag.ingestion.uploads import find_upload
from rag.storage.catalog import DocumentRecord

SCALE = 1.5  # PDF points to pixels: a readable page at about 900 px wide
IMAGE_WIDTH = 1000  # a scanned image is shown at most this wide
PASSAGE_FILL = (255, 214, 10, 70)  # the passage: light yellow
ANSWER_FILL = (255, 140, 0, 110)  # its sentences that answer the question: orange
CONTEXT_LINES = 8


class SourceUnavailable(RagError):
    """The original cannot be shown; the passage itself still can."""


@dataclass(frozen=True)
class PageImage:
    png: bytes
    page: int  # 1-based physical page shown
    pages: int  # pages in the PDF
    marked: bool  # whether the passage was found on the page and marked


@dataclass(frozen=True)
class TextContext:
    lines: list[tuple[int, str]]  # (1-based line number, text) around the passage
    marked: set[int]  # the line numbers the passage spans


def locate(settings: Settings, record: DocumentRecord | None, collection: str, doc_id: str) -> Path:
    """The original file: the app's saved upload, or the path it was ingested from."""
    upload = find_upload(settings, collection, doc_id)
    if upload is not None:
        return upload
    path = Path(record.source_path) if record is not None and record.source_path else None
    if path is None or not path.is_file():
        where = f" ({path})" if path is not None else ""
        raise SourceUnavailable(
            f"The original of {doc_id} is no longer where it was indexed from{where}: it was deleted or "
            "moved. The passage above is what was indexed."
        )
    return path


def _words(text: str, count: int, last: bool = False) -> str:
    words = text.split()
    return " ".join(words[-count:] if last else words[:count])


def is_paged(path: Path) -> bool:
    """Whether a file is shown a page at a time (a PDF, or a scanned image)."""
    return path.suffix.lower() in (".pdf", *IMAGE_EXTENSIONS)


def render_page(
    settings: Settings, record: DocumentRecord | None, path: Path, page: int, passage: str = "",
    answers: list[str] | None = None,
) -> PageImage:
    """Page `page` (1-based) of a PDF or an image, with `passage` and its answering sentences
    marked: from the text layer, or, on a page read by OCR, from the boxes of its lines."""
    scans = load_scan(scans_dir(settings), record.content_hash) if record is not None and record.ocr else {}
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return render_image_page(path, page, passage, answers, scans.get(page))
    return render_pdf_page(path, page, passage, answers, scans.get(page))


def render_pdf_page(
    path: Path, page: int, passage: str = "", answers: list[str] | None = None, scan: OcrPage | None = None
) -> PageImage:
    """Draw physical page `page` (1-based) of a PDF, with `passage` and its answering sentences marked."""
    import pypdfium2 as pdfium

    with PDFIUM_LOCK:
        try:
            pdf = pdfium.PdfDocument(path)
        except (pdfium.PdfiumError, OSError) as exc:
            reason = "it is password-protected" if "password" in str(exc).lower() else f"it cannot be read ({exc})"
            raise SourceUnavailable(f"{path.name} cannot be shown: {reason}.") from None
        try:
            count = len(pdf)
            if not 1 <= page <= count:
                raise SourceUnavailable(f"{path.name} has {count} pages, not a page {page}: it changed since it was indexed.")
            pdf_page = pdf[page - 1]
            try:
                image = pdf_page.render(scale=SCALE).to_pil()
                text_page = pdf_page.get_textpage()
            except pdfium.PdfiumError as exc:
                raise SourceUnavailable(f"Page {page} of {path.name} cannot be drawn ({exc}).") from None
            height = pdf_page.get_height()
            if scan is not None:
                return _marked(image, _scan_marks(scan, image.size, passage, answers), page, count)
            marks = [((left * SCALE, (height - top) * SCALE, right * SCALE, (height - bottom) * SCALE), fill)
                     for text, fill in _fills(passage, answers) for left, bottom, right, top in _rects(text_page, text)]
            return _marked(image, marks, page, count)
        finally:
            pdf.close()


def render_image_page(
    path: Path, page: int, passage: str = "", answers: list[str] | None = None, scan: OcrPage | None = None
) -> PageImage:
    """Page `page` of a scanned image (a frame of a multi-page TIFF), with the passage marked."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as original:
            count = getattr(original, "n_frames", 1)
            if not 1 <= page <= count:
                raise SourceUnavailable(f"{path.name} has {count} pages, not a page {page}: it changed since it was indexed.")
            original.seek(page - 1)
            original.draft("RGB", (IMAGE_WIDTH, IMAGE_WIDTH * 4))  # JPEG: decode at a fraction of the size
            image = original.convert("RGB")
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise SourceUnavailable(f"{path.name} cannot be shown: it cannot be read ({exc}).") from None
    if image.width > IMAGE_WIDTH:
        image = image.resize((IMAGE_WIDTH, round(image.height * IMAGE_WIDTH / image.width)))
    return _marked(image, _scan_marks(scan, image.size, passage, answers) if scan is not None else [], page, count)


def _fills(passage: str, answers: list[str] | None) -> list[tuple[str, tuple[int, ...]]]:
    """What to mark, in which colour: the passage, then its answering sentences over it."""
    return [(passage, PASSAGE_FILL), *((a, ANSWER_FILL) for a in answers or [])]


def _scan_marks(scan: OcrPage, size: tuple[int, int], passage: str, answers: list[str] | None) -> list:
    """(rectangle in pixels of an image of `size`, colour) for the OCR lines that make up each text."""
    width, height = size
    return [((left * width, top * height, right * width, bottom * height), fill)
            for text, fill in _fills(passage, answers) for left, top, right, bottom in passage_boxes(scan, text)]


def _marked(image, marks: list[tuple[tuple[float, float, float, float], tuple[int, ...]]], page: int, count: int) -> PageImage:
    """The page as PNG, each (rectangle, colour) of `marks` drawn over it."""
    from PIL import Image, ImageDraw

    image = image.convert("RGBA")
    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    for rect, fill in marks:
        draw.rectangle(list(rect), fill=fill)
    buffer = io.BytesIO()
    Image.alpha_composite(image, overlay).convert("RGB").save(buffer, format="PNG", optimize=False)
    return PageImage(buffer.getvalue(), page, count, bool(marks))


def _rects(text_page, text: str) -> list[tuple[float, float, float, float]]:
    """Rectangles of `text` on the page, found by its first and last words (the extracted text
    and the page's may differ in spacing and line breaks in between)."""
    if not text.strip():
        return []
    start = _find(text_page, _words(text, 6))
    if start is None:
        return []
    end = _find(text_page, _words(text, 4, last=True), after=start[0])
    first, last = start[0], (end[0] + end[1] if end is not None else start[0] + start[1])
    count = text_page.count_rects(first, max(last - first, 1))
    return [text_page.get_rect(i) for i in range(count)]


def _find(text_page, snippet: str, after: int = 0) -> tuple[int, int] | None:
    searcher = text_page.search(snippet, index=after, match_case=False)
    try:
        return searcher.get_next()
    finally:
        searcher.close()


def text_context(path: Path, passage: str, context: int = CONTEXT_LINES) -> TextContext:
    """The lines of a text file around `passage`, with the passage's own lines marked."""
    try:
        sections = read_file(path)
    except RagError as exc:
        raise SourceUnavailable(f"{path.name} cannot be read any more: {exc}") from None
    full = "\n".join(s.text for s in sections)
    lines = full.splitlines()
    flat, offsets = _flatten(full)
    needle = " ".join(passage.split())
    at = flat.find(needle[:200]) if needle else -1
    if at < 0:
        raise SourceUnavailable(f"The passage is no longer in {path.name}: the file changed since it was indexed.")
    first = full.count("\n", 0, offsets[at]) + 1
    end = offsets[min(at + len(needle), len(offsets) - 1)]
    last = full.count("\n", 0, end) + 1
    lo, hi = max(1, first - context), min(len(lines), last + context)
    return TextContext([(n, lines[n - 1]) for n in range(lo, hi + 1)], set(range(first, last + 1)))


def _flatten(text: str) -> tuple[str, list[int]]:
    """`text` with each run of whitespace as one space, and each character's original offset."""
    out, offsets = [], []
    for match in re.finditer(r"\s+|\S+", text):
        if match.group().isspace():
            if out and out[-1] != " ":
                out.append(" ")
                offsets.append(match.start())
        else:
            out.extend(match.group())
            offsets.extend(range(match.start(), match.end()))
    return "".join(out), offsets
