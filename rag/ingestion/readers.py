"""Turn a file into text sections (one per PDF page), with a clear reason when that is impossible.

Scanned PDF pages and image files are read by OCR (`rag.ingestion.ocr`) when the caller passes
an `OcrJob`; without one they are refused with the setting that reads them.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rag.config import OcrMode
from rag.errors import ParseError, first_line
from rag.ingestion.html_text import html_text
from rag.ingestion.ocr import IMAGE_EXTENSIONS, MIN_TEXT_CHARS, OcrJob, image_pages, pdf_page_images
from rag.ingestion.textclean import clean_pdf_pages, clean_plain_text


@dataclass(frozen=True)
class Section:
    """A piece of a document's text and where it sits: PDFs have one per page."""

    text: str
    page: int | None = None  # physical page, 1-based: what a viewer opens
    page_label: str | None = None  # the printed label ("iv", "T-2", "8")


WESTERN = ("cp1252", "latin_1", "iso8859_15")


def decode_text(data: bytes, name: str) -> str:
    """Decode bytes as text: UTF-8 first, then the most likely legacy encoding; refuse binaries."""
    if not data.strip():
        raise ParseError(f"{name}: the file is empty")
    if b"\x00" in data[:8192] and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ParseError(f"{name}: this looks like a binary file, not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    matches = from_bytes(data)
    best = matches.best()
    if best is None:
        raise ParseError(f"{name}: cannot tell the text encoding; save it as UTF-8 and upload again")
    # Short texts fit several code pages equally well; prefer the most common Western one then.
    western = [m for m in matches if m.encoding in WESTERN and m.chaos <= best.chaos + 0.01]
    return str(western[0] if western else best)


def read_text(path: Path, ocr: OcrJob | None = None) -> list[Section]:
    return [Section(clean_plain_text(decode_text(path.read_bytes(), path.name)))]


def read_html(path: Path, ocr: OcrJob | None = None) -> list[Section]:
    """The page's text with line breaks between blocks only, so a sentence with a link or a
    `<code>` in it stays one sentence (`rag.ingestion.html_text`)."""
    markup = decode_text(path.read_bytes(), path.name)
    try:
        return [Section(html_text(markup))]
    except Exception as exc:  # anything the parser still raises fails this file alone, not the ingestion
        raise ParseError(f"{path.name}: this HTML cannot be read ({first_line(exc)})") from None


def read_csv(path: Path, ocr: OcrJob | None = None) -> list[Section]:
    """One line per row, `column: value` pairs, so a chunk keeps the meaning of its cells."""
    text = decode_text(path.read_bytes(), path.name)
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    rows = list(csv.reader(io.StringIO(text), dialect))
    if not rows:
        return []
    header, body = rows[0], rows[1:]
    if not body:
        return [Section(", ".join(header))]
    lines = ["; ".join(f"{h}: {v}" for h, v in zip(header, row, strict=False) if v.strip()) for row in body]
    return [Section("\n".join(lines))]


def read_json(path: Path, ocr: OcrJob | None = None) -> list[Section]:
    text = decode_text(path.read_bytes(), path.name)
    try:
        return [Section(json.dumps(json.loads(text), indent=1, ensure_ascii=False))]
    except json.JSONDecodeError as exc:
        raise ParseError(f"{path.name}: not valid JSON ({exc.msg}, line {exc.lineno})") from exc


def read_rtf(path: Path, ocr: OcrJob | None = None) -> list[Section]:
    from striprtf.striprtf import rtf_to_text

    return [Section(rtf_to_text(decode_text(path.read_bytes(), path.name)))]


def read_docx(path: Path, ocr: OcrJob | None = None) -> list[Section]:
    import zipfile

    import docx2txt

    try:
        return [Section(docx2txt.process(str(path)))]
    except (zipfile.BadZipFile, KeyError) as exc:
        raise ParseError(f"{path.name}: not a valid Word (.docx) file") from exc


def read_pdf(path: Path, ocr: OcrJob | None = None) -> list[Section]:
    """One section per page, with the physical page number and the printed page label; pages
    without a text layer (scans) are read by `ocr`."""
    import pypdf
    from pypdf.errors import PdfReadError

    try:
        pdf = pypdf.PdfReader(str(path))
        if pdf.is_encrypted and not pdf.decrypt(""):
            raise ParseError(f"{path.name}: the PDF is password-protected; remove the password and upload again")
        texts = [page.extract_text() or "" for page in pdf.pages]
        labels = [pdf.page_labels[i] if i < len(pdf.page_labels) else str(i + 1) for i in range(len(texts))]
        scanned = _scanned_pages(pdf, texts, ocr)
    except ParseError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise ParseError(f"{path.name}: the PDF is damaged or not a PDF ({exc})") from exc
    except Exception as exc:  # pypdf raises many types on malformed input; the file is unreadable either way
        raise ParseError(f"{path.name}: the PDF could not be read ({type(exc).__name__}: {exc})") from exc
    if scanned:
        assert ocr is not None
        read = set(scanned)
        known = [text for number, text in enumerate(texts, 1) if number not in read]
        for page in ocr.read(pdf_page_images(path, scanned, ocr.options), len(scanned), known):
            texts[page.page - 1] = ocr.kept_text(page)
    elif not any(text.strip() for text in texts):
        if ocr is None or ocr.options.mode is OcrMode.OFF:
            raise ParseError(f"{path.name}: the PDF has no text layer (a scan?) and OCR is off; set RAG_OCR=auto to read it")
        raise ParseError(f"{path.name}: the PDF has no text layer and no scanned image to read (drawings only?)")
    cleaned = clean_pdf_pages(texts, labels)  # prose: no page furniture, no TOC, whole words
    sections = [Section(text, page=i + 1, page_label=labels[i]) for i, text in enumerate(cleaned) if text.strip()]
    return sections or _unread(path, ocr)


def _scanned_pages(pdf, texts: list[str], ocr: OcrJob | None) -> list[int]:
    """The pages (1-based) to read by OCR: all under RAG_OCR=force; under auto, those with
    (almost) no text layer that hold an image (a blank page is no scan)."""
    if ocr is None or ocr.options.mode is OcrMode.OFF:
        return []
    if ocr.options.mode is OcrMode.FORCE:
        return list(range(1, len(texts) + 1))
    return [i + 1 for i, text in enumerate(texts)
            if len("".join(text.split())) < MIN_TEXT_CHARS and len(pdf.pages[i].images) > 0]


def read_image(path: Path, ocr: OcrJob | None = None) -> list[Section]:
    """A picture of text (a scan, a photo, a screenshot): each page (TIFF frame) read by OCR."""
    if ocr is None or ocr.options.mode is OcrMode.OFF:
        raise ParseError(f"{path.name}: images are read by OCR, which is off; set RAG_OCR=auto to read it")
    count, frames = image_pages(path, ocr.options)
    pages = ocr.read(frames, count)
    texts = [ocr.kept_text(p) for p in pages]
    cleaned = clean_pdf_pages(texts, [str(p.page) for p in pages])
    sections = [Section(text, page=p.page) for p, text in zip(pages, cleaned, strict=True) if text.strip()]
    return sections or _unread(path, ocr)


def _unread(path: Path, ocr: OcrJob | None) -> list[Section]:
    """Nothing to index: say whether the scan was blank or read too badly to trust."""
    summary = ocr.summary() if ocr is not None else None
    if not summary:
        return []
    if summary["flagged"]:
        raise ParseError(
            f"{path.name}: the scan could not be read reliably (OCR confidence {summary['confidence']:.0%}, "
            f"below RAG_OCR_MIN_CONFIDENCE={ocr.options.min_confidence:g}); nothing was indexed"
        )
    pages = "its scanned page" if summary["pages"] == 1 else f"any of its {summary['pages']} scanned pages"
    raise ParseError(f"{path.name}: OCR found no text on {pages}: a blank scan?")


@dataclass(frozen=True)
class FileType:
    """One kind of document the app reads: its name for people, its extensions, its reader."""

    label: str
    extensions: tuple[str, ...]
    reader: Callable[[Path, OcrJob | None], list[Section]]


# The one list of supported files: the extensions, the upload box and every sentence that
# names the types derive from it.
FILE_TYPES = (
    FileType("PDF", (".pdf",), read_pdf),
    FileType("Word (.docx)", (".docx",), read_docx),
    FileType("Markdown", (".md", ".markdown"), read_text),
    FileType("plain text", (".txt", ".text", ".rst", ".log"), read_text),
    FileType("HTML", (".html", ".htm"), read_html),
    FileType("CSV", (".csv", ".tsv"), read_csv),
    FileType("JSON", (".json",), read_json),
    FileType("RTF", (".rtf",), read_rtf),
    FileType("scanned images (PNG, JPEG, TIFF, WebP)", IMAGE_EXTENSIONS, read_image),
)

READERS: dict[str, Callable[[Path, OcrJob | None], list[Section]]] = {ext: t.reader for t in FILE_TYPES for ext in t.extensions}

SUPPORTED_EXTENSIONS = tuple(sorted(READERS))

# "PDF, Word (.docx), Markdown, plain text, HTML, CSV, JSON and RTF"
SUPPORTED_TYPES = ", ".join(t.label for t in FILE_TYPES[:-1]) + f" and {FILE_TYPES[-1].label}"


def read_file(path: Path, ocr: OcrJob | None = None) -> list[Section]:
    """The text sections of a file, or ParseError saying why there are none. Scans are read by
    `ocr` (none: refused)."""
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise ParseError(
            f"{path.name}: unsupported file type {path.suffix or '(none)'}; "
            f"supported: {SUPPORTED_TYPES} ({', '.join(SUPPORTED_EXTENSIONS)})"
        )
    if path.stat().st_size == 0:
        raise ParseError(f"{path.name}: the file is empty")
    sections = [s for s in reader(path, ocr) if s.text.strip()]
    if not sections:
        raise ParseError(f"{path.name}: no text found in the file")
    return sections
