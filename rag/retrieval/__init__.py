"""Retrieval: which passages answer a question.

Owns the search modes (dense, keyword/BM25, hybrid) and the choice among them, hybrid score
fusion, scoping a search to some documents (`search`), and follow-up questions searched with
the conversation's context, fused by rank (`followups`). May import `rag.storage`,
`rag.models` and the top-level `config`, `errors` and `status`; never `rag.answering`,
`rag.ingestion` or `rag.bench`.
"""
