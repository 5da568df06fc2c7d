"""Evidence: sentences, citation markers, and sources shown in their original files, including
the ways an original can go wrong (deleted, damaged, encrypted, changed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.answering.events import MarkerFilter, keep_valid_markers
from rag.answering.evidence import _with_neighbours, one_line, quotable, terms
from rag.answering.source_view import SourceUnavailable, locate, render_pdf_page, text_context
from rag.ingestion.sentences import MAX_CONTEXT_CHARS, sentence_context, sentence_spans
from rag.storage.catalog import DocumentRecord
from tests.docs import FACTS, make_pdf

pytestmark = pytest.mark.quick  # pure: no model, no Milvus


def test_sentences_and_terms():
    text = "The pump runs at 4 bar. Seals must be replaced every 6 months!\n\n- item one\n- item two"
    assert [text[a:b] for a, b in sentence_spans(text)] == [
        "The pump runs at 4 bar.", "Seals must be replaced every 6 months!", "- item one", "- item two",
    ]
    data = '{\n "servers": [\n  {\n   "role": "backup",\n   "note": "The backup server is called Grimsby."\n  }\n ]\n}'
    assert '"note": "The backup server is called Grimsby."' in [data[a:b] for a, b in sentence_spans(data)], "a JSON line each"
    assert {"-j", "libtasn1.h", "libtasn1", "mime-magic", "mime", "magic", "tar"} <= terms(
        "What does tar's -J option do with libtasn1.h and MIME-Magic?"
    )
    assert not {"what", "does", "the", "with"} & terms("What does the option do with it?")


def test_a_chunk_keeps_what_its_boundaries_cut_off_its_sentences():
    text = "Alpha one. The pump runs at four bar, and it stops at six bar. Beta two."
    start, end = text.index("and it"), text.index(" bar. Beta")
    assert sentence_context(text, start, end) == ("The pump runs at four bar, ", " bar.")
    whole = text.index("The pump"), text.index(" Beta")
    assert sentence_context(text, *whole) == ("", ""), "a chunk of whole sentences lacks nothing"
    page = "Seals are checked weekly. The backup pump must be serviced by"
    assert sentence_context(page, page.index("The"), len(page), "a certified engineer. Nothing else.") == (
        "", " a certified engineer."), "a sentence runs on into the next page"
    assert sentence_context(page, page.index("The"), len(page), "Chapter 2. Valves.") == ("", ""), "a new page, a new sentence"
    long = "x " * MAX_CONTEXT_CHARS + "end of a very long sentence, and more"
    assert sentence_context(long, long.index("end"), long.index(" more")) == ("", " more"), "too long to complete: left out"
    wrapped = "It is 4,\nnot 5."
    assert [wrapped[a:b] for a, b in sentence_spans(wrapped)] == [wrapped], "a wrapped line goes on"
    value = "VALUE must be NEW and LEN !=\n0. With this"
    assert value[slice(*sentence_spans(value)[0])] == "VALUE must be NEW and LEN !=\n0.", "a line starting 0. is not a list item"


def test_headings_urls_tables_of_contents_and_boilerplate_are_not_answers():
    for line in ("2.1 Installing the pump", "INSTALLATION AND SERVICE", "Installing The Pump", "Options:",
                 "Service intervals .......... 14", "See: https://example.com/pump/manual", "<https://example.com/>",
                 "THE SOFTWARE IS PROVIDED AS IS, WITHOUT WARRANTY OF ANY KIND.", "pump service and seals",
                 "Harbour log, volume two"):
        assert not quotable(line, terms("how often must the pump be serviced?")), line
    assert quotable("THE SOFTWARE IS PROVIDED AS IS, WITHOUT WARRANTY OF ANY KIND.", terms("is there a warranty?"))
    for line in ("The pump must be serviced every six months.", "-k, --keep keep the input files",
                 "Example: curl --retry 5 https://example.com"):
        assert quotable(line, terms("how often must the pump be serviced?")), line


def test_a_label_on_its_own_line_is_set_apart_from_the_sentence_it_names():
    assert one_line("www-data\n          Some web servers run as www-data. Web content\n   should not be owned.") == (
        "www-data — Some web servers run as www-data. Web content should not be owned.")
    assert one_line("-J, --remote-header-name\n      This option tells -O to use the server's name.") == (
        "-J, --remote-header-name — This option tells -O to use the server's name.")
    assert one_line("files which begin with the correct magic num\u2010\n       ber are replaced.") == (
        "files which begin with the correct magic number are replaced."), "a manual page's line-end hyphen"
    assert one_line("* Allow gunzip --suffix to try any file. * Add support for -H.") == (
        "Allow gunzip --suffix to try any file. * Add support for -H."), "a quote is not shown as a list"
    assert one_line("## Pump service\nThe pump is serviced yearly.") == "Pump service — The pump is serviced yearly."
    assert one_line("-k, --keep keep the input files") == "-k, --keep keep the input files", "an option is no bullet"
    for wrapped in ("The pump must be serviced by a\n  Certified engineer.", "Some web servers run as\n www-data.",
                    "Example:\n  Pump A.", "The pump runs at 4 bar.\nSeals are changed yearly."):
        assert one_line(wrapped) == " ".join(wrapped.split()), "a wrapped sentence or a clause is one line, as before"


def quote_of(text: str, sentence: str) -> str:
    """The quote `weigh` makes of the sentence of `text` starting with `sentence`, as shown."""
    spans = sentence_spans(text)
    start, end = next(span for span in spans if text[span[0]:span[1]].startswith(sentence))
    return one_line(text[slice(*_with_neighbours(text, spans, start, end))])


def test_a_quote_names_what_it_defines_and_holds_what_it_announces():
    manual = ("       --exclude-vcs-ignores\n\t      Exclude files that match patterns read from VCS ignore files.\tSupported\n"
              "\t      files are: .cvsignore and .gitignore.\n\n       -h, --dereference\n\t      Follow symlinks.\n")
    assert quote_of(manual, "Supported") == ("--exclude-vcs-ignores — Exclude files that match patterns read from VCS "
                                             "ignore files. Supported files are: .cvsignore and .gitignore.")
    pydoc = ("    median_low(data)\n        Return the low median of numeric data.\n\n"
             "        When it is even, the smaller of the two middle values is returned.\n\n        >>> median_low([1, 3])\n")
    assert quote_of(pydoc, "When it is even") == ("median_low(data) — Return the low median of numeric data. When it is "
                                                  "even, the smaller of the two middle values is returned.")
    spec = ('dpkg will run the postinst script as:\n\n   postinst triggered "<name> ..."\n\n'
            "by passing the names as the second argument.\n\nThis is attempted at the end of each run.")
    assert quote_of(spec, "dpkg will") == ('dpkg will run the postinst script as: postinst triggered "<name> ..." '
                                           "by passing the names as the second argument.")
    sections = "DESCRIPTION\n\n       The pump runs at 4 bar.\n\n       -k\n\t      Keep the pump. It is dry."
    assert quote_of(sections, "The pump") == "The pump runs at 4 bar.", "a section heading is not a label"
    assert quote_of(sections, "-k") == "-k — Keep the pump. It is dry.", "a quote that starts with its label"
    wrapped = "Members of this\n\t    group can read logs.\n\n\t    HELP: Perhaps rename it."
    assert quote_of(wrapped, "HELP") == "HELP: Perhaps rename it.", "a wrapped sentence's first line is no label"
    heading = "   Searching files by age\n       •      Search for files changed today.\n"
    assert quote_of(heading, "•") == "Search for files changed today.", "nor is a heading of plain words"
    far = "    pump(rate)\n        " + "The pump is described here at length. " * 8 + "\n\n        It runs at 4 bar.\n"
    assert quote_of(far, "It runs") == "It runs at 4 bar.", "a label too far above is left out"


def test_a_gutter_down_the_lines_is_left_out_of_the_quote():
    pydoc = "class HtmlDiff(builtins.object)\n |  HtmlDiff(tabsize=8)\n |  \n |  For producing HTML side by side comparison."
    assert one_line(pydoc) == "class HtmlDiff(builtins.object) — HtmlDiff(tabsize=8) For producing HTML side by side comparison."
    assert one_line("If\n |  ensure_ascii is false, the output can contain\n |  non-ASCII characters.\n    ") == (
        "If ensure_ascii is false, the output can contain non-ASCII characters.")
    for kept in ("cat pumps.txt\n  | grep seal", "Types:\n |  | Python | JSON |\n |  | dict   | object |",
                 "| pump | seal |\n|  A  |  B  |", "The pump | seal\nis rated | 4 bar"):
        assert one_line(kept) == " ".join(kept.split()), "a pipeline, a table or a pipe inside a line stays"


def test_markers_that_point_nowhere_are_never_shown():
    assert keep_valid_markers("A [1]. B [7]. C [2, 9]. D [3][4].", 3) == "A [1]. B . C [2]. D [3]."
    stream = MarkerFilter(2)
    shown = [stream.feed(t) for t in ["The pump [", "1] runs [", "9", "]. Seals [2", "]."]] + [stream.flush()]
    assert "".join(shown) == "The pump [1] runs . Seals [2]."
    assert all("[9" not in part for part in shown), "not even for a moment"


@pytest.fixture(scope="module")
def pdf(tmp_path_factory) -> Path:
    pages = [f"Page {n} of the manual. Nothing to see here." for n in range(1, 51)]
    pages[36] = "Chapter 9. Storage. " + FACTS["manual.pdf"] + " Keep the pump dry."
    return make_pdf(tmp_path_factory.mktemp("pdf") / "long.pdf", pages, labels=False)


def test_a_page_of_a_long_pdf_is_drawn_with_its_passage_marked(pdf):
    image = render_pdf_page(pdf, 37, "Chapter 9. Storage. " + FACTS["manual.pdf"], [FACTS["manual.pdf"]])
    assert (image.page, image.pages, image.marked) == (37, 50, True)
    assert image.png.startswith(b"\x89PNG")
    assert not render_pdf_page(pdf, 38, "Chapter 9. Storage.").marked, "a passage is only marked where it is"


def test_a_page_that_cannot_be_shown_says_why(pdf, tmp_path):
    with pytest.raises(SourceUnavailable, match="has 50 pages, not a page 51"):
        render_pdf_page(pdf, 51)
    damaged = tmp_path / "damaged.pdf"
    damaged.write_bytes(pdf.read_bytes()[:300])
    with pytest.raises(SourceUnavailable, match="damaged.pdf cannot be shown"):
        render_pdf_page(damaged, 1)
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(pdf))
    writer.encrypt("secret")
    locked = tmp_path / "locked.pdf"
    with locked.open("wb") as out:
        writer.write(out)
    with pytest.raises(SourceUnavailable, match="password-protected"):
        render_pdf_page(locked, 1)


def test_a_text_passage_is_shown_in_its_lines(tmp_path, settings):
    path = tmp_path / "notes.md"
    path.write_text("# Birds\n\nNotes.\n\n## Herons\n\nThe heron migration starts\nin the second week of October.\n\nEnd.\n")
    view = text_context(path, "The heron migration starts in the second week of October.", context=1)
    assert view.marked == {7, 8} and [n for n, _ in view.lines] == [6, 7, 8, 9]
    with pytest.raises(SourceUnavailable, match="no longer in notes.md"):
        text_context(path, "A sentence the file never had.")

    record = DocumentRecord(collection="c", doc_id="notes.md", file_name="notes.md", source_path=str(path))
    assert locate(settings, record, "c", "notes.md") == path
    path.unlink()
    with pytest.raises(SourceUnavailable, match="deleted or moved"):
        locate(settings, record, "c", "notes.md")
