"""A cited passage drawn for the Chat page: its label, its text with the answering sentences
marked, and the passage in its original file (the PDF page drawn and marked, or its lines)."""

from __future__ import annotations

import html

import streamlit as st

from pages import common, formatting
from rag.answering.events import Citation
from rag.answering.source_view import SourceUnavailable, is_paged, locate, render_page, text_context
from rag.service import Rag


def citation_label(number: int, c: Citation) -> str:
    page = ""
    if c.page is not None:
        page = f" · page {c.page}"
        if c.page_label and c.page_label != str(c.page):
            page += f" (printed {formatting.escape_markdown(c.page_label)})"
    return f"[{number}] {formatting.escape_markdown(c.file or 'unknown file')}{page} · {c.score_label}"


def marked_html(text: str, spans: tuple[tuple[int, int], ...]) -> str:
    """Passage text as escaped HTML (document text is data: never markdown), answering sentences marked."""
    parts, at = [], 0
    for start, end in sorted(spans):
        parts += [html.escape(text[at:start]), f"<mark>{html.escape(text[start:end])}</mark>"]
        at = end
    parts.append(html.escape(text[at:]))
    return f'<div class="passage" style="white-space: pre-wrap; font-size: 0.9rem">{"".join(parts)}</div>'


def show_in_document(rag: Rag, collection: str, citation: Citation, key: str) -> None:
    """The passage in its original file: the page (PDF or scan), or the surrounding lines; and the file itself."""
    doc_id = citation.doc_id or citation.file
    record = next((d for d in common.library(rag, collection) if d.doc_id == doc_id), None)
    try:
        path = locate(rag.settings, record, collection, doc_id)
        if is_paged(path) and citation.page is not None:
            page = st.number_input("Page", min_value=1, value=citation.page, key=f"{key}-page",
                                   help="Previous and next pages of the document")
            answers = [citation.text[a:b] for a, b in citation.highlights]
            image = render_page(rag.settings, record, path, int(page), citation.text if page == citation.page else "",
                                answers if page == citation.page else [])
            caption = f"Page {image.page} of {image.pages}"
            if page == citation.page:
                caption += " · the passage is marked" if image.marked else " · the passage could not be located on the page"
            st.image(image.png, caption=caption)
        else:
            view = text_context(path, citation.text)
            rows = "".join(
                f'<div style="background:{"#fff3bf" if n in view.marked else "transparent"}">'
                f'<span style="color:#888; display:inline-block; width:3.5em">{n}</span>{html.escape(line)}</div>'
                for n, line in view.lines
            )
            st.html(f'<div class="source-lines" style="font-family: monospace; font-size: 0.8rem; white-space: pre-wrap">{rows}</div>')
        st.download_button("Download the original", path.read_bytes(), file_name=path.name, key=f"{key}-download",
                           icon=":material/download:")
    except SourceUnavailable as exc:
        st.warning(formatting.escape_markdown(str(exc)), icon=":material/link_off:")
