"""Every supported file type parses to its text; every bad file fails with its own reason."""

from __future__ import annotations

import pytest

from rag.errors import ParseError
from rag.ingestion.readers import read_file
from tests.docs import FACTS, make_bad_files

pytestmark = pytest.mark.quick  # pure: no model, no Milvus


@pytest.mark.parametrize("name", sorted(FACTS))
def test_each_type_yields_its_fact(corpus, name):
    text = "\n".join(s.text for s in read_file(corpus[name]))
    assert FACTS[name].split()[-1].rstrip(".") in text


def test_pdf_pages_carry_physical_number_and_printed_label(corpus):
    sections = read_file(corpus["manual.pdf"])
    assert [(s.page, s.page_label) for s in sections] == [(1, "i"), (2, "1"), (3, "2")]
    assert "42 bar" in sections[1].text


def test_html_drops_scripts_and_styles(corpus):
    text = read_file(corpus["page.html"])[0].text
    assert "should not be indexed" not in text and "color: red" not in text
    assert "observatory dome" in text


def test_html_blocks_part_sentences_and_inline_elements_do_not(tmp_path):
    path = tmp_path / "guide.html"
    path.write_text(
        "<html><head><title>Guide</title><script>var x = 1;</script></head><body>"
        "<dl><dt>www-data</dt><dd><p>Some web servers run as <code>www-data</code>. Content should <i>not</i> be "
        "owned by it.</p></dd></dl><p>Line one<br>line two &amp; more&nbsp;text</p>"
        "<noscript><p>enable scripts</p></noscript><pre>  indented\n    code</pre></body></html>")
    text = read_file(path)[0].text
    assert "www-data\n\n" in text, "a term is a block of its own"
    assert "Some web servers run as  www-data . Content should  not  be owned by it." in text, "one sentence"
    assert "Line one\n line two & more\xa0text" in text
    assert "  indented\n    code" in text, "<pre> keeps its spaces"
    assert "var x" not in text and "enable scripts" not in text


def test_html_that_stops_the_standard_parser_is_read_whole(tmp_path):
    """Python's HTMLParser raises on "<![" before an unknown keyword (C++ templates in a page)."""
    path = tmp_path / "odd.html"
    path.write_text("<p>Before</p><p>std::enable_if_t<![foo[ x ]]> and <![ 5</p><p>After the odd markup.</p>")
    text = read_file(path)[0].text
    assert "Before" in text and "enable_if_t" in text and "After the odd markup." in text


def test_a_gutter_drawn_down_plain_text_is_dropped_and_tables_keep_their_pipes(tmp_path):
    """pydoc's " |  " down a class's help: out, so its blank lines part paragraphs again."""
    path = tmp_path / "pumps.txt"
    path.write_text(
        "class Pump(builtins.object)\n |  Pump(rate)\n |  \n |  A pump of the given rate.\n |  \n"
        " |  start(self)\n |      Start the pump.\n\n"
        "| pump |  seal  |\n|  A   |  B     |\n|  C   |  D     |\n\ncat pumps.txt\n  | grep seal\n")
    text = read_file(path)[0].text
    assert "class Pump(builtins.object)\n Pump(rate)\n\n A pump of the given rate.\n\n start(self)\n     Start" in text
    assert "| pump |  seal  |\n|  A   |  B     |\n|  C   |  D     |" in text, "a table keeps its pipes"
    assert "cat pumps.txt\n  | grep seal" in text, "so does a pipeline"


def test_csv_rows_keep_their_column_names(corpus):
    text = read_file(corpus["table.csv"])[0].text
    assert "city: Tromso; country: Norway; population: 77000" in text


@pytest.mark.parametrize("encoding", ["cp1252", "latin-1", "utf-16"])
def test_legacy_encoding_is_decoded(tmp_path, encoding):
    path = tmp_path / "menu.txt"
    path.write_bytes("Café crème brûlée, déjà vu, naïve façade: à la carte".encode(encoding))
    assert "crème brûlée" in read_file(path)[0].text


@pytest.mark.parametrize(
    "name, reason",
    [
        ("empty.txt", "empty"),
        ("corrupt.pdf", "damaged or not a PDF"),
        ("encrypted.pdf", "password-protected"),
        ("scanned.pdf", "no text layer"),
        ("binary.txt", "binary file"),
        ("unsupported.xyz", "unsupported file type .xyz"),
    ],
)
def test_bad_files_fail_with_a_clear_reason(tmp_path, name, reason):
    bad = make_bad_files(tmp_path)
    with pytest.raises(ParseError, match=reason) as info:
        read_file(bad[name])
    assert str(info.value).startswith(name)
