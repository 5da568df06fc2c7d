"""Ingestion: files in, indexed chunks out.

Owns reading files into text (`readers`, with PDF text cleaning in `textclean`), the async
pipeline that parses, chunks, embeds and inserts them (`pipeline`), the app's background job
queue with live progress (`jobs`), saving uploads safely (`uploads`), and rolling back what a
crash left half-indexed (`recovery`). May import `rag.storage`, `rag.models` and the top-level
`config`, `errors` and `status`; never `rag.answering`, `rag.retrieval` or `rag.bench`.
"""
