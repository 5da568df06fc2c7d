"""How long a cited PDF page takes to open with its passage marked (the Chat page's source view).

    .venv/bin/python scripts/bench_page_view.py [--pages 50] [--opens 30]

Makes a text PDF of `--pages` pages (fpdf2, installed with the test tools), then opens random
pages the way the Chat page does: open the file, draw the page, find and mark the passage.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rag.answering.source_view import render_pdf_page
from tests.docs import make_pdf


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=50)
    parser.add_argument("--opens", type=int, default=30)
    args = parser.parse_args()
    rng = random.Random(7)
    words = "pump seal pressure valve gasket flow rate inlet outlet housing bearing motor shaft".split()
    texts = [" ".join(rng.choices(words, k=400)).capitalize() + "." for _ in range(args.pages)]
    with tempfile.TemporaryDirectory() as tmp:
        pdf = make_pdf(Path(tmp) / "manual.pdf", texts, labels=False)
        seconds, marked = [], 0
        for _ in range(args.opens):
            page = rng.randint(1, args.pages)
            words_on_page = texts[page - 1].split()
            start = rng.randint(0, len(words_on_page) - 60)
            passage = " ".join(words_on_page[start:start + 60])
            began = time.perf_counter()
            image = render_pdf_page(pdf, page, passage, [" ".join(words_on_page[start + 10:start + 25])])
            seconds.append(time.perf_counter() - began)
            marked += image.marked
    print(f"{args.pages}-page PDF, {args.opens} opens: p50 {1000 * statistics.median(seconds):.0f} ms, "
          f"max {1000 * max(seconds):.0f} ms; passage marked in {marked}/{args.opens}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
