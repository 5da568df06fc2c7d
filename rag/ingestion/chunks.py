"""Shaping the splitter's chunks before they are embedded: what the sentence splitter alone
gets wrong for retrieval and quoting.

- Chunks of a few word pieces ("2.2 Naming") merge into a neighbour on the same page.
- Each chunk keeps the parts of its first and last sentences its boundaries cut off, so answers
  quote whole sentences (`rag.ingestion.sentences`).

Chunks never cross a page, so a citation's page is the page its passage is on. (Embedding a
page's first chunk with the end of the page before, to carry a section's heading over a page
break, was measured on the scanned question set and not kept: the continued section rose two
places in dense search, below the top 5, and another question fell out of it.) No I/O here.
"""

from __future__ import annotations

from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import BaseNode, Document, MetadataMode

from rag.ingestion.sentences import SENTENCE_AFTER, SENTENCE_BEFORE, sentence_context, sentence_spans

MIN_CHUNK_TOKENS = 32  # word pieces; fewer rarely carry meaning of their own ("2.2 Naming")


def merge_small_chunks(nodes: list[BaseNode], documents: list[Document], splitter: SentenceSplitter) -> list[BaseNode]:
    """Merge a chunk under MIN_CHUNK_TOKENS into its neighbour of the same section (so the same
    page) when both fit the embedding window together; chunks never merge across pages."""
    texts = {doc.doc_id: doc.text for doc in documents}
    count = lambda text: len(splitter._tokenizer(text))  # noqa: E731  the splitter's own counter
    merged: list[BaseNode] = []
    for node in nodes:
        prev = merged[-1] if merged else None
        if prev is not None and prev.ref_doc_id == node.ref_doc_id and (
            count(node.get_content()) < MIN_CHUNK_TOKENS or count(prev.get_content()) < MIN_CHUNK_TOKENS
        ):
            text = _span(prev, node, texts.get(node.ref_doc_id or ""))
            room = splitter.chunk_size - count(node.get_metadata_str(MetadataMode.EMBED)) - 4  # as the splitter does
            if count(text) <= room:
                prev.set_content(text)
                prev.end_char_idx = node.end_char_idx
                continue
        merged.append(node)
    return merged


def add_sentence_context(nodes: list[BaseNode], documents: list[Document]) -> None:
    """Keep with each chunk the parts of its first and last sentences that its boundaries cut off
    (`rag.ingestion.sentences`), so answers quote whole sentences. Neither is
    embedded nor shown to an LLM: the chunk itself is what was found."""
    following = {doc.doc_id: after.text for doc, after in zip(documents, documents[1:], strict=False)}
    texts = {doc.doc_id: doc.text for doc in documents}
    spans: dict[str, list[tuple[int, int]]] = {}  # each text's sentences, found once
    for node in nodes:
        doc_id = node.ref_doc_id or ""
        text, start, end = texts.get(doc_id), node.start_char_idx, node.end_char_idx
        if text is None or start is None or end is None or text[start:end] != node.get_content():
            continue
        if doc_id not in spans:
            spans[doc_id] = sentence_spans(text)
        before, after = sentence_context(text, start, end, following.get(doc_id, ""), spans[doc_id])
        for key, part in ((SENTENCE_BEFORE, before), (SENTENCE_AFTER, after)):
            if part:
                node.metadata[key] = part
                node.excluded_embed_metadata_keys.append(key)
                node.excluded_llm_metadata_keys.append(key)


def _span(first: BaseNode, second: BaseNode, source: str | None) -> str:
    """The text from the start of `first` to the end of `second`, without their overlap twice."""
    start, end = first.start_char_idx, second.end_char_idx
    if source is not None and start is not None and end is not None and start < end:
        return source[start:end]
    return f"{first.get_content()} {second.get_content()}"

