"""Real documents for the tests, made with real writers (fpdf2, pypdf, python-docx).

Each good file states one fact found nowhere else, so a test can check that a question about
it retrieves the right file and page.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

FACTS = {
    "manual.pdf": "The Zephyr pump operates at a pressure of 42 bar.",
    "report.docx": "The Aurora project budget is 3.5 million euros for the year.",
    "notes.md": "The heron migration starts in the second week of October.",
    "plain.txt": "The staff cafeteria opens at 7:15 every weekday morning.",
    "page.html": "The observatory dome is twelve metres wide.",
    "table.csv": "Tromso",
    "data.json": "The backup server is called Grimsby.",
    "letter.rtf": "The lighthouse keeper retired in 1987.",
}
# A question per file whose answer is that file's fact, and in no other file.
QUESTIONS = {
    "manual.pdf": "Zephyr pump pressure",
    "report.docx": "Aurora project budget",
    "notes.md": "When do herons migrate?",
    "plain.txt": "When does the staff cafeteria open?",
    "page.html": "How wide is the observatory dome?",
    "table.csv": "population of Tromso",
    "data.json": "name of the backup server",
    "letter.rtf": "When did the lighthouse keeper retire?",
}


def make_pdf(path: Path, pages: list[str], labels: bool = True) -> Path:
    """A PDF with one text page per item; with `labels`, page 1 is labelled 'i' and the rest 1, 2, ..."""
    from fpdf import FPDF
    from pypdf import PdfReader, PdfWriter

    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    pdf.output(str(path))
    if labels and len(pages) > 1:
        writer = PdfWriter(clone_from=PdfReader(str(path)))
        writer.set_page_label(0, 0, style="/r")
        writer.set_page_label(1, len(pages) - 1, style="/D")
        writer.write(str(path))
    return path


def make_docx(path: Path, paragraphs: list[str]) -> Path:
    import docx

    document = docx.Document()
    document.add_heading("Aurora project report", level=1)
    for text in paragraphs:
        document.add_paragraph(text)
    document.save(str(path))
    return path


def make_corpus(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    files["manual.pdf"] = make_pdf(
        folder / "manual.pdf",
        [
            "Zephyr pump manual. Front matter and safety notes: wear gloves.",
            "Chapter 1. Operation. " + FACTS["manual.pdf"] + " Never exceed this pressure.",
            "Chapter 2. Maintenance. Replace the Zephyr pump seals every 600 operating hours.",
        ],
    )
    files["report.docx"] = make_docx(
        folder / "report.docx", ["Summary of the year.", FACTS["report.docx"], "Staffing is stable."]
    )
    (folder / "notes.md").write_text(f"# Birds\n\nNotes from the marsh.\n\n## Herons\n\n{FACTS['notes.md']}\n")
    (folder / "plain.txt").write_text(f"Office handbook.\n{FACTS['plain.txt']}\n")
    (folder / "page.html").write_text(
        "<html><head><title>Observatory</title><script>document.write('should not be indexed')</script>"
        f"<style>p {{color: red}}</style></head><body><h1>Observatory</h1><p>{FACTS['page.html']}</p></body></html>"
    )
    (folder / "table.csv").write_text("city,country,population\nOslo,Norway,709000\nTromso,Norway,77000\n")
    (folder / "data.json").write_text(json.dumps({"servers": [{"role": "backup", "note": FACTS["data.json"]}]}))
    (folder / "letter.rtf").write_text(r"{\rtf1\ansi{\fonttbl\f0\fswiss Helvetica;}\f0\pard " + FACTS["letter.rtf"] + r"\par}")
    for name in ("notes.md", "plain.txt", "page.html", "table.csv", "data.json", "letter.rtf"):
        files[name] = folder / name
    return files


def make_bad_files(folder: Path) -> dict[str, Path]:
    """Files that must fail with a clear reason (and nothing half-indexed)."""
    from fpdf import FPDF
    from pypdf import PdfReader, PdfWriter

    folder.mkdir(parents=True, exist_ok=True)
    bad: dict[str, Path] = {}
    bad["empty.txt"] = folder / "empty.txt"
    bad["empty.txt"].write_bytes(b"")
    bad["corrupt.pdf"] = folder / "corrupt.pdf"
    bad["corrupt.pdf"].write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >>\ngarbage" + os.urandom(200))
    locked = make_pdf(folder / "plain-for-lock.pdf", ["A secret page."], labels=False)
    writer = PdfWriter(clone_from=PdfReader(str(locked)))
    writer.encrypt(user_password="secret", owner_password="owner")
    bad["encrypted.pdf"] = folder / "encrypted.pdf"
    writer.write(str(bad["encrypted.pdf"]))
    locked.unlink()
    scan = FPDF()
    scan.add_page()
    scan.set_fill_color(40, 40, 40)
    scan.rect(20, 20, 120, 80, style="F")  # a drawing and no text layer: nothing to read, by OCR either
    bad["scanned.pdf"] = folder / "scanned.pdf"
    scan.output(str(bad["scanned.pdf"]))
    bad["binary.txt"] = folder / "binary.txt"
    bad["binary.txt"].write_bytes(b"\x00\x01\x02\xff" * 100)
    bad["unsupported.xyz"] = folder / "unsupported.xyz"
    bad["unsupported.xyz"].write_text("some text")
    return bad


def text_image(lines: list[str], size: tuple[int, int] = (1275, 420)):
    """A scan of printed lines: black 10-point text on white at 150 dpi (a strip of a page, so
    that reading it takes a second, not the three a full page takes)."""
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.truetype("DejaVuSans.ttf", 21)
    except OSError:
        font = ImageFont.load_default(21)
    image = Image.new("L", size, 255)
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((90, 70 + 36 * i), line, font=font, fill=0)
    return image


def make_scanned_pdf(path: Path, pages: list[list[str]]) -> Path:
    """An image-only PDF: each page a scan of its lines, and no text layer."""
    images = [text_image(lines) for lines in pages]
    images[0].save(path, save_all=True, append_images=images[1:], resolution=150)
    return path
