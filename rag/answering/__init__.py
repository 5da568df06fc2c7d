"""Answering: retrieved passages in, a streamed answer with citations out.

Owns the events and citations of an answer (`events`, no I/O), LlamaIndex's async query and
chat engines (`engines`), the decision whether passages support an answer and the quoted
answers (`evidence`, `grounding`), and a cited passage drawn in its document (`source_view`).
May import `rag.retrieval`, `rag.storage`, `rag.models`, `rag.ingestion` (readers and upload
paths, to show a source) and the top-level `config`, `errors` and `status`; never `rag.bench`.
"""
