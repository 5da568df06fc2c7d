"""`python -m rag bench-ocr`: how well and how fast scans are read.

1. Character error rate: pages of the text PDFs this machine has (Debian's libtasn1 and
   shared-mime-info manuals) are drawn as images at each resolution, read by OCR, and compared
   with their own text layer: edit distance / length of the text layer, after the same
   normalisation on both sides (NFKC, one space between words; an underscore counts as a space,
   since these PDFs' text layers write `_` as one); and the word error rate (words inserted,
   deleted or replaced / words). Both as the app keeps the text (misread words mended,
   `rag.ingestion.ocr_words`) and as the recogniser returned it, from the same reading.
2. Speed: pages per second, with the app's own page pool (`RAG_OCR_WORKERS`).
3. Retrieval: documents of the Debian question set as scanned copies (PDF pages drawn as
   images; text documents typeset onto pages as a printer would), ingested as image-only PDFs,
   then hit@k and MRR of that set's questions against the same documents as text.
4. At a library's size (`--library-pages N`): those scans among other documents typeset and
   scanned, N pages in all, ingested at once: pages/s end to end, peak memory, and the same
   questions asked of the whole library.
"""

from __future__ import annotations

import statistics
import time
import unicodedata
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from rag.bench.corpus import PREFIX, ingest_fresh, system_docs
from rag.config import RetrievalMode, Settings
from rag.errors import RagError
from rag.evaluation import Question, comparison_rows
from rag.ingestion.ocr import OcrJob, OcrOptions, mend_pages, pdf_page_images
from rag.ingestion.ocr_engine import engine_pool
from rag.ingestion.readers import read_file
from rag.service import Rag

Log = Callable[[str], None]

CER_PDFS = ("libtasn1.pdf", "shared-mime-info-spec.pdf")
MIN_PAGE_CHARS = 800  # pages with less text say little about a character error rate
# The question set's documents made into scans: both PDFs, and the text documents that fit a
# few dozen pages (the man pages run to a hundred pages each).
SCANNED_DOCS = ("libtasn1.pdf", "shared-mime-info-spec.pdf", "triggers.txt", "ENVIRONMENT.md",
                "users-and-groups.html", "zlib_how.html")
LIBRARY_CANDIDATES, LIBRARY_DOC_BYTES = 400, 24_000  # other documents for `--library-pages`: a few pages each
PAGE_PX, MARGIN_PX, FONT_PT = (1275, 1650), 120, 10  # US Letter at 150 dpi


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance, one row at a time in numpy (pages are thousands of characters)."""
    import numpy as np

    if not a or not b:
        return len(a) + len(b)
    codes = np.frombuffer(b.encode("utf-32-le"), dtype=np.uint32)
    index = np.arange(len(b) + 1)
    row = index.copy()
    for i, char in enumerate(a, 1):
        best = np.empty(len(b) + 1, dtype=np.int64)
        best[0] = i
        best[1:] = np.minimum(row[1:] + 1, row[:-1] + (codes != ord(char)))
        row = np.minimum.accumulate(best - index) + index  # insertions, carried along the row
    return int(row[-1])


def comparable(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).replace("_", " ").replace("\u00ad", "").replace("\ufffe", "")
    return " ".join(text.split())


def _cer_pages(folder: Path, count: int) -> list[tuple[Path, int, str]]:
    """`count` printed pages of prose, spread over the text PDFs: (file, page, text layer)."""
    import pypdfium2 as pdfium

    pages = []
    for path in system_docs(folder, CER_PDFS):
        pdf = pdfium.PdfDocument(path)
        try:
            for number in range(1, len(pdf) + 1):
                text = comparable(pdf[number - 1].get_textpage().get_text_range())
                if len(text) >= MIN_PAGE_CHARS and text.count(". . .") < 3:  # prose, not a table of contents
                    pages.append((path, number, text))
        finally:
            pdf.close()
    step = max(1, len(pages) // max(count, 1))
    return pages[::step][:count]


def measure_cer(pages: list[tuple[Path, int, str]], dpi: int, options: OcrOptions) -> dict[str, Any]:
    """Character and word error rates of the pages read at `dpi`, as the app keeps them (misread
    words mended) and as the recogniser returned them (`_as_read`)."""
    options = replace(options, dpi=dpi)
    read, started = [], time.perf_counter()
    for path in dict.fromkeys(p for p, _, _ in pages):
        numbers = [n for p, n, _ in pages if p == path]
        as_read = OcrJob(options, mend=False).read(pdf_page_images(path, numbers, options), len(numbers))
        read += [(path, raw, mended) for raw, mended in zip(as_read, mend_pages(as_read), strict=True)]
    seconds = time.perf_counter() - started
    truth = {(p, n): text for p, n, text in pages}
    rates: list[float] = []
    totals = {"chars": 0, "words": 0, "cer": 0, "cer_as_read": 0, "wer": 0, "wer_as_read": 0}
    for path, raw, mended in read:
        ref = truth[(path, raw.page)]
        for suffix, page in (("", mended), ("_as_read", raw)):
            text = comparable(page.text)
            distance = edit_distance(text, ref)
            totals["cer" + suffix] += distance
            totals["wer" + suffix] += edit_distance(*_words_as_letters(text, ref))
            if page is mended:
                rates.append(distance / len(ref))
        totals["chars"] += len(ref)
        totals["words"] += len(ref.split())
    chars, words = totals["chars"], totals["words"]
    return {"dpi": dpi, "pages": len(read), "chars": chars, "cer": round(totals["cer"] / chars, 4),
            "cer_median_page": round(statistics.median(rates), 4), "cer_worst_page": round(max(rates), 4),
            "cer_as_read": round(totals["cer_as_read"] / chars, 4), "words": words,
            "wer": round(totals["wer"] / words, 4), "wer_as_read": round(totals["wer_as_read"] / words, 4),
            "confidence": round(statistics.mean(raw.confidence for _, raw, _ in read), 3),
            "seconds": round(seconds, 1), "pages_per_second": round(len(read) / seconds, 2)}


def _words_as_letters(*texts: str) -> list[str]:
    """Each text with every distinct word as one character: the edit distance of the results is
    the number of words inserted, deleted or replaced."""
    codes: dict[str, str] = {}
    return ["".join(codes.setdefault(w, chr(0x10000 + len(codes))) for w in text.split()) for text in texts]


def typeset(sections_text: str, target: Path) -> int:
    """Text laid out on US Letter pages at 150 dpi (DejaVu Sans 10 pt), saved as an image-only PDF."""
    from PIL import Image, ImageDraw, ImageFont

    size = round(FONT_PT / 72 * 150)
    try:
        font = ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:  # no DejaVu installed: Pillow's own font
        font = ImageFont.load_default(size)
    width, height = PAGE_PX
    line_height = round(font.size * 1.35)
    lines: list[str] = []
    for paragraph in sections_text.splitlines():
        words, line = paragraph.split(), ""
        for word in words:
            candidate = f"{line} {word}".strip()
            if font.getlength(candidate) > width - 2 * MARGIN_PX and line:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
    per_page = (height - 2 * MARGIN_PX) // line_height
    pages = []
    for start in range(0, len(lines), per_page):
        page = Image.new("L", PAGE_PX, 255)
        draw = ImageDraw.Draw(page)
        for i, line in enumerate(lines[start : start + per_page]):
            draw.text((MARGIN_PX, MARGIN_PX + i * line_height), line, font=font, fill=0)
        pages.append(page)
    pages[0].save(target, save_all=True, append_images=pages[1:], resolution=150)
    return len(pages)


def scanned_copy(original: Path, folder: Path, dpi: int = 150) -> tuple[Path, int]:
    """An image-only PDF of `original`: a PDF's pages drawn at `dpi`, other documents typeset."""
    import pypdfium2 as pdfium

    folder.mkdir(parents=True, exist_ok=True)
    target = folder / (original.name if original.suffix == ".pdf" else f"{original.name}.pdf")
    if original.suffix != ".pdf":
        return target, typeset("\n".join(s.text for s in read_file(original)), target)
    pdf = pdfium.PdfDocument(original)
    try:
        images = [pdf[i].render(scale=dpi / 72, grayscale=True).to_pil() for i in range(len(pdf))]
    finally:
        pdf.close()
    images[0].save(target, save_all=True, append_images=images[1:], resolution=dpi)
    return target, len(images)


Scans = list[tuple[Path, int]]  # scanned copies and their pages


def _question_scans(settings: Settings, questions: list[Question]) -> tuple[list[Path], Scans, list[Question], list[Question]]:
    """The question set's documents, their scanned copies (path, pages), and the questions asked
    of each: (originals, scans, questions as asked of the originals, the same of the scans)."""
    folder = settings.data_dir / "bench" / "ocr"
    originals = system_docs(folder / "originals", SCANNED_DOCS)
    scans = [scanned_copy(path, folder / "scans") for path in originals]
    asked = [q for q in questions if q.file in SCANNED_DOCS]
    renamed = {path.name: scan.name for path, (scan, _) in zip(originals, scans, strict=True)}
    return originals, scans, asked, [Question(q.question, renamed[q.file], q.page, q.evidence) for q in asked]


async def measure_scan_library(settings: Settings, questions: list[Question], pages: int, log: Log) -> dict[str, Any]:
    """OCR at a library's size: the question set's scanned copies among other documents of this
    machine, typeset and scanned too (LIBRARY_DOC_BYTES at most each), until `pages` pages;
    all ingested at once (pages/s end to end, peak memory), then the questions asked."""
    from rag.bench.ingest import RssSampler
    from rag.bench.library import build_library

    folder = settings.data_dir / "bench" / "ocr"
    _, scans, _, as_scans = _question_scans(settings, questions)
    candidates = [p for p in build_library(folder / "library", LIBRARY_CANDIDATES, log)
                  if p.name not in SCANNED_DOCS and p.suffix != ".pdf" and p.stat().st_size <= LIBRARY_DOC_BYTES]
    for path in candidates:
        if sum(n for _, n in scans) >= pages:
            break
        scans.append(scanned_copy(path, folder / "library-scans"))
    rag = Rag(settings)
    store = await rag.parts.aopen_store()
    collection = f"{PREFIX}_ocr_library"
    try:
        with RssSampler() as memory:
            seconds, chunks = await ingest_fresh(rag, store, [s for s, _ in scans], collection)
        rows = comparison_rows(await rag.aevaluate(as_scans, collection, RetrievalMode.HYBRID, (1, 3, 5)))
    finally:
        await store.adiscard_collection(collection)  # a run that failed leaves no collection either
        await rag.aclose()
    total = sum(n for _, n in scans)
    result = {"documents": len(scans), "pages": total, "chunks": chunks, "seconds": round(seconds, 1),
              "pages_per_second": round(total / seconds, 2), "peak_rss_mb": round(memory.peak / 2**20), "rows": rows}
    log(f"scanned library: {result}")
    return result


async def measure_retrieval_on_scans(settings: Settings, questions: list[Question], log: Log) -> dict[str, Any]:
    originals, scans, asked, as_scans = _question_scans(settings, questions)
    rag = Rag(settings)
    store = await rag.parts.aopen_store()
    result: dict[str, Any] = {"documents": len(originals), "pages": sum(n for _, n in scans), "questions": len(asked)}
    try:
        for kind, files, qs in (("text", originals, asked), ("scans", [s for s, _ in scans], as_scans)):
            collection = f"{PREFIX}_ocr_{kind}"
            seconds, chunks = await ingest_fresh(rag, store, files, collection)
            rows = comparison_rows(await rag.aevaluate(qs, collection, RetrievalMode.HYBRID, (1, 3, 5)))
            result[kind] = {"seconds": round(seconds, 1), "chunks": chunks, "rows": rows}
            log(f"retrieval on {kind}: {rows} ({seconds:.0f} s to ingest)")
            await store.adiscard_collection(collection)
    finally:
        await rag.aclose()
    return result


async def measure_ocr(settings: Settings, *, pages: int, dpis: list[int], retrieval: bool, log: Log,
                      library_pages: int = 0) -> dict[str, Any]:
    """Every part of the OCR benchmark (see the module's docstring)."""
    import os

    from rag.bench.retrieval import QUESTION_SETS, load_questions

    if pages < 1 or not dpis or any(not 72 <= d <= 600 for d in dpis):
        raise RagError("--pages must be at least 1 and each --dpi from 72 to 600")
    options = OcrOptions.from_settings(settings)
    chosen = _cer_pages(settings.data_dir / "bench" / "ocr" / "originals", pages)
    runtime = engine_pool(options.pool_size, options.runtime)[2]
    result: dict[str, Any] = {"cores": os.cpu_count(), "workers": options.pool_size, "runtime": runtime, "cer": []}
    for dpi in dpis:
        row = measure_cer(chosen, dpi, options)
        log(f"OCR at {dpi} dpi: {row}")
        result["cer"].append(row)
    if retrieval:
        result["retrieval"] = await measure_retrieval_on_scans(settings, load_questions(QUESTION_SETS["debian"]), log)
    if library_pages:
        result["library"] = await measure_scan_library(settings, load_questions(QUESTION_SETS["debian"]), library_pages, log)
    return result
