"""Reading scans offline: scanned PDF pages and image files, read by RapidOCR.

RapidOCR runs PP-OCRv4 text detection and recognition, with the models inside its wheel: nothing
is downloaded. The models run on OpenVINO (`rag.ingestion.ocr_engine`). Why it is used the way
it is:

- Every recognised line keeps its box (as fractions of the page) and its confidence: a cited
  passage can then be marked on the scan, and a page read badly is flagged rather than indexed
  as garbage (`OcrPage.confidence`, `RAG_OCR_MIN_CONFIDENCE`).
- Recognition is CPU-bound native work that releases the GIL: pages are read by a small
  pool of engines in threads, each given its share of the cores (`RAG_OCR_WORKERS`).
- The model reads Chinese and English: full-width punctuation comes back ("，"), and spaces
  between words are often dropped, so the text is normalised (NFKC; spaces put back from the
  line's pixels, `respace`) and words misread are mended from the document's own words
  (`mend_pages`) before it is chunked and indexed for BM25. Its per-line 180°
  classifier is off: on clean pages it turned whole lines over and lost them.
- Pixels are bounded before anything is decoded (`RAG_OCR_MAX_PIXELS`): a decompression bomb
  is refused from its header, and a huge PDF page is drawn at a lower resolution instead.
- A job can be cancelled between pages, and reports each page read: the pipeline's time limit
  is per page, so a 500-page scan is not cut off while a stuck one still is.
"""

from __future__ import annotations

import json
import os
import queue
import re
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path

from rag.config import OcrMode, OcrRuntime, Settings
from rag.errors import ParseError, RagError
from rag.ingestion.ocr_engine import engine_pool
from rag.ingestion.ocr_words import mend_texts

# pdfium is not thread-safe: every use of it in this process (drawing a page to read it, or to
# show a source) holds this lock.
PDFIUM_LOCK = threading.RLock()
MIN_TEXT_CHARS = 16  # a PDF page whose text layer has fewer (a page number, a watermark) is a scan
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp")
INK_SHARE = 0.1  # a pixel this much darker than the line's background is ink
WORD_GAP = 0.25  # blank columns between words: at least this share of the height of the line's ink
SCAN_FORMAT = 1  # version of the saved lines and boxes (`save_scan`)


class OcrCancelled(RagError):
    """The ingestion was cancelled while a document was being read."""


@dataclass(frozen=True)
class OcrOptions:
    mode: OcrMode = OcrMode.AUTO
    dpi: int = 150
    min_confidence: float = 0.8
    max_pixels: int = 60_000_000
    workers: int = 0  # 0: one per core, up to 4
    runtime: OcrRuntime = OcrRuntime.AUTO

    @classmethod
    def from_settings(cls, settings: Settings) -> OcrOptions:
        return cls(settings.ocr, settings.ocr_dpi, settings.ocr_min_confidence, settings.ocr_max_pixels,
                   settings.ocr_workers, settings.ocr_runtime)

    @property
    def pool_size(self) -> int:
        return self.workers or max(1, min(os.cpu_count() or 1, 4))


@dataclass(frozen=True)
class OcrLine:
    text: str
    box: tuple[float, float, float, float]  # left, top, right, bottom, as fractions of the page
    confidence: float


@dataclass(frozen=True)
class OcrPage:
    page: int  # 1-based
    lines: tuple[OcrLine, ...]

    @property
    def confidence(self) -> float:
        """Mean recognition confidence, weighted by characters (0 for a page with no text)."""
        chars = sum(len(line.text) for line in self.lines)
        return sum(line.confidence * len(line.text) for line in self.lines) / chars if chars else 0.0

    @property
    def text(self) -> str:
        """The page's lines in reading order: boxes on one row joined left to right."""
        return "\n".join(" ".join(line.text for line in row) for row in _rows(self.lines))


def _rows(lines: Sequence[OcrLine]) -> list[list[OcrLine]]:
    rows: list[list[OcrLine]] = []
    for line in sorted(lines, key=lambda item: (item.box[1] + item.box[3]) / 2):
        middle = (line.box[1] + line.box[3]) / 2
        row = rows[-1] if rows else None
        if row is not None and row[0].box[1] <= middle <= row[0].box[3]:
            row.append(line)
        else:
            rows.append([line])
    return [sorted(row, key=lambda item: item.box[0]) for row in rows]


def respace(text: str, starts: Sequence[float], gaps: Sequence[float]) -> str:
    """The spaces of a line as printed: the recogniser often drops the space between two words
    ("anASN.1definitionsfile"; in tightly set sans-serif type, most of them). `starts`: where
    the recogniser placed each character on the line, `gaps`: the middles of the blank runs
    of the line's pixels wide enough to part two words (`word_gaps`). The recogniser places a
    character a little before its glyph, so a gap found around a character's place, between
    the midpoints to its neighbours, is the space before it. Measured on typeset pages: 20% of
    characters wrong without this, 0.8% with it; on the manuals' pages 1.4% and 1.2%."""
    if len(starts) != len(text) or len(text) < 2:
        return text
    out = [text[0]]
    for i in range(1, len(text)):
        low = (starts[i - 1] + starts[i]) / 2
        high = (starts[i] + starts[i + 1]) / 2 if i + 1 < len(text) else float("inf")
        if not text[i].isspace() and not text[i - 1].isspace() and any(low < g < high for g in gaps):
            out.append(" ")
        out.append(text[i])
    return "".join(out)


def word_gaps(gray, box: Sequence[float]) -> list[float]:
    """The middles (in page pixels) of the runs of blank columns in a line's box that are wider
    than a gap between letters: a quarter of the height of the line's ink."""
    import numpy as np

    left, top, right, bottom = (max(round(v), 0) for v in box)
    crop = gray[top:bottom, left:right]
    if crop.size == 0:
        return []
    darkest, lightest = int(crop.min()), int(crop.max())
    ink = crop < lightest - (lightest - darkest) * INK_SHARE  # anti-aliased edges count as ink
    rows = np.flatnonzero(ink.any(axis=1))
    if rows.size == 0:
        return []
    wide = max(2.0, (rows[-1] - rows[0] + 1) * WORD_GAP)
    gaps, run = [], None
    for x, inked in enumerate(ink.any(axis=0)):
        if not inked and run is None:
            run = x
        elif inked and run is not None:
            if x - run >= wide and run > 0:
                gaps.append(left + (run + x) / 2)
            run = None
    return gaps


def normalise(text: str) -> str:
    """OCR output as document text: full-width forms as ASCII, one space between words, and a
    space after a comma or semicolon that runs into a word ("-o，--output" -> "-o, --output")."""
    text = unicodedata.normalize("NFKC", text)
    text = re.sub(r"([,;])(?=[A-Za-z-])", r"\1 ", text)
    return " ".join(text.split())


def mend_pages(pages: Sequence[OcrPage], known: Sequence[str] = ()) -> list[OcrPage]:
    """The pages of one document with misread words mended from the document's own words
    (`rag.ingestion.ocr_words`; `known`: its pages with a text layer); boxes and confidences
    stay as read."""
    texts = mend_texts([[line.text for line in page.lines] for page in pages], known)
    return [OcrPage(page.page, tuple(replace(line, text=text) for line, text in zip(page.lines, lines, strict=True)))
            for page, lines in zip(pages, texts, strict=True)]


@dataclass
class OcrJob:
    """One file's OCR: its options, a progress callback (pages read, pages to read), a cancel
    flag, and the pages read so far."""

    options: OcrOptions
    on_page: Callable[[int, int], None] | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    pages: list[OcrPage] = field(default_factory=list)
    last_progress: float = field(default_factory=time.monotonic)
    mend: bool = True  # misread words mended (`mend_pages`); the benchmark also reads without

    def cancel(self) -> None:
        self.cancelled.set()

    def check(self) -> None:
        if self.cancelled.is_set():
            raise OcrCancelled("cancelled while reading the scan")

    def read(self, images: Iterator[tuple[int, object]], total: int, known: Sequence[str] = ()) -> list[OcrPage]:
        """Read `total` pages given as (page number, PIL image), a few at a time in the pool;
        `known`: the document's text that is not read (the words mending may go by)."""
        pool, engines, _ = engine_pool(self.options.pool_size, self.options.runtime)
        pending: list[Future[OcrPage]] = []
        done: list[OcrPage] = []

        def collect(block: bool) -> None:
            while pending and (block or pending[0].done()):
                done.append(pending.pop(0).result())
                self._progress(len(done), total)
                self.check()

        try:
            self._progress(0, total)
            for number, image in images:
                self.check()
                pending.append(pool.submit(_read_page, engines, number, image, self.options.min_confidence))
                while len(pending) >= 2 * self.options.pool_size:  # bounded: pages are large
                    pending[0].result()
                    collect(block=False)
            collect(block=True)
        finally:
            for future in pending:
                future.cancel()
        if self.mend:
            done = mend_pages(done, known)
        self.pages.extend(done)
        return done

    def kept_text(self, page: OcrPage) -> str:
        """A page's text, or "" for a page left out: blank, or read under the confidence threshold."""
        return page.text if page.lines and page.confidence >= self.options.min_confidence else ""

    def _progress(self, done: int, total: int) -> None:
        self.last_progress = time.monotonic()
        if self.on_page is not None:
            self.on_page(done, total)

    def summary(self) -> dict | None:
        """What the library records about a document read by OCR (None if it was not)."""
        if not self.pages:
            return None
        low = self.options.min_confidence
        chars = sum(len(line.text) for page in self.pages for line in page.lines)
        mean = sum(p.confidence * sum(len(x.text) for x in p.lines) for p in self.pages) / chars if chars else 0.0
        return {
            "pages": len(self.pages),
            "confidence": round(mean, 3),
            "flagged": sorted(p.page for p in self.pages if p.lines and p.confidence < low),
            "blank": sorted(p.page for p in self.pages if not p.lines),
        }


def ocr_note(summary: dict | None) -> str:
    """One line on how a document was read ("OCR: 3 pages, confidence 96%; page 2 read with low
    confidence, not indexed")."""
    if not summary:
        return ""
    note = f"OCR: {summary['pages']} page{'s' * (summary['pages'] != 1)}, confidence {summary['confidence']:.0%}"
    for key, words in (("flagged", "read with low confidence, not indexed"), ("blank", "blank")):
        if summary.get(key):
            pages = ", ".join(map(str, summary[key][:10])) + (" ..." if len(summary[key]) > 10 else "")
            note += f"; page{'s' * (len(summary[key]) > 1)} {pages} {words}"
    return note


# Reading a page ------------------------------------------------------------------------------

def _read_page(engines: queue.Queue, number: int, image, min_confidence: float) -> OcrPage:
    """One page read; a page read badly, or with no text found, is read again turned upside
    down (a scan fed the wrong way round), and the better reading kept."""
    page = _recognise(engines, number, image)
    if page.confidence < min_confidence:
        turned = _recognise(engines, number, image.rotate(180))
        if turned.confidence > page.confidence:
            return OcrPage(number, tuple(OcrLine(x.text, (1 - x.box[2], 1 - x.box[3], 1 - x.box[0], 1 - x.box[1]),
                                                 x.confidence) for x in turned.lines))
    return page


def _recognise(engines: queue.Queue, number: int, image) -> OcrPage:
    import numpy as np

    pixels = np.asarray(image.convert("RGB"))
    engine = engines.get()
    try:
        result, _ = engine(pixels, return_word_box=True)
    finally:
        engines.put(engine)
    gray = pixels.min(axis=2)
    width, height = image.size
    lines = []
    for points, text, score, char_boxes, *_ in result or []:
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        starts = [min(p[0] for p in box) for box in char_boxes]
        text = normalise(respace(text, starts, word_gaps(gray, (min(xs), min(ys), max(xs), max(ys)))))
        if text:
            box = (min(xs) / width, min(ys) / height, max(xs) / width, max(ys) / height)
            lines.append(OcrLine(text, tuple(round(v, 5) for v in box), round(float(score), 4)))
    return OcrPage(number, tuple(lines))


# Pages as images -----------------------------------------------------------------------------

def pdf_page_images(path: Path, numbers: Sequence[int], options: OcrOptions) -> Iterator[tuple[int, object]]:
    """Pages `numbers` (1-based) of a PDF drawn at the OCR resolution, one at a time; a page
    too large for `max_pixels` at that resolution is drawn at the largest one that fits."""
    import pypdfium2 as pdfium

    try:
        with PDFIUM_LOCK:
            pdf = pdfium.PdfDocument(path)
    except (pdfium.PdfiumError, OSError) as exc:
        raise ParseError(f"{path.name}: the PDF pages cannot be drawn to read them by OCR ({exc})") from None
    try:
        for number in numbers:
            with PDFIUM_LOCK:
                page = pdf[number - 1]
                width, height = page.get_size()
                scale = min(options.dpi / 72, (options.max_pixels / max(width * height, 1)) ** 0.5)
                image = page.render(scale=scale, grayscale=True).to_pil()
            yield number, image
    finally:
        with PDFIUM_LOCK:
            pdf.close()


def image_pages(path: Path, options: OcrOptions) -> tuple[int, Iterator[tuple[int, object]]]:
    """An image file's pages (frames of a multi-page TIFF), each checked against `max_pixels`
    from its header before it is decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(path)
    except Image.DecompressionBombError:  # Pillow's own guard, for far larger images than ours
        raise ParseError(
            f"{path.name}: the image has more than {2 * Image.MAX_IMAGE_PIXELS / 1e6:,.0f} million pixels (a decompression "
            f"bomb?), more than RAG_OCR_MAX_PIXELS ({options.max_pixels / 1e6:,.0f} MP): refused"
        ) from None
    except (UnidentifiedImageError, OSError) as exc:
        raise ParseError(f"{path.name}: the image is damaged or not an image ({exc})") from None
    count = getattr(image, "n_frames", 1)

    def frames() -> Iterator[tuple[int, object]]:
        with image:
            for index in range(count):
                try:
                    image.seek(index)
                    width, height = image.size
                    if width * height > options.max_pixels:
                        raise ParseError(
                            f"{path.name}: page {index + 1} is {width:,} x {height:,} px ({width * height / 1e6:,.0f} MP), "
                            f"more than RAG_OCR_MAX_PIXELS ({options.max_pixels / 1e6:,.0f} MP): refused"
                        )
                    frame = _flatten(image)
                except (OSError, ValueError, SyntaxError) as exc:  # truncated or damaged data
                    raise ParseError(f"{path.name}: the image is damaged (page {index + 1}: {exc})") from None
                yield index + 1, frame

    return count, frames()


def _flatten(image):
    """A frame as an RGB image on white (transparent PNGs, palettes, 16-bit scans)."""
    from PIL import Image

    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if image.mode.startswith("I"):  # 16/32-bit greyscale: scale to 8 bits
        return image.point(lambda v: v / 256).convert("L").convert("RGB")
    return image.convert("RGB")


# Lines and boxes kept next to the data, to mark a passage on its scan ---------------------------

def scans_dir(settings: Settings) -> Path:
    """Where the lines and boxes of scanned documents are kept, by content hash."""
    return settings.data_dir / "scans"


def scan_file(folder: Path, digest: str) -> Path:
    return folder / f"{digest}.json"


def save_scan(folder: Path, digest: str, pages: Sequence[OcrPage]) -> None:
    """The lines and boxes of a document's scanned pages, by content hash (written atomically)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = {"format": SCAN_FORMAT, "pages": {
        str(p.page): [[line.text, list(line.box), line.confidence] for line in p.lines] for p in pages
    }}
    target = scan_file(folder, digest)
    temporary = target.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps(data, ensure_ascii=False))
    temporary.replace(target)


def forget_scan(folder: Path, digest: str) -> None:
    scan_file(folder, digest).unlink(missing_ok=True)


def load_scan(folder: Path, digest: str) -> dict[int, OcrPage]:
    """The scanned pages saved for a document ({} if it has none or they cannot be read)."""
    try:
        data = json.loads(scan_file(folder, digest).read_text())
        return {
            int(number): OcrPage(int(number), tuple(OcrLine(text, tuple(box), conf) for text, box, conf in lines))
            for number, lines in data["pages"].items()
        }
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def passage_boxes(page: OcrPage, passage: str) -> list[tuple[float, float, float, float]]:
    """The boxes of the lines of `page` that make up `passage`: lines whose letters and digits
    occur in the passage's, in the longest run of such lines (so a short line that happens to
    occur elsewhere on the page is not marked)."""
    target = _letters(passage)
    if not target:
        return []
    lines = [line for row in _rows(page.lines) for line in row]
    inside = [len(_letters(line.text)) >= 4 and _letters(line.text) in target for line in lines]
    best: list[int] = []
    run: list[int] = []
    for i, hit in enumerate(inside):
        if hit:
            if run and i - run[-1] > 2:  # more than one line between: a new run
                run = []
            run.append(i)
            if sum(len(lines[j].text) for j in run) > sum(len(lines[j].text) for j in best):
                best = list(run)
    return [lines[i].box for i in range(best[0], best[-1] + 1) if inside[i]] if best else []


def _letters(text: str) -> str:
    return re.sub(r"[\W_]+", "", unicodedata.normalize("NFKC", text).lower())
