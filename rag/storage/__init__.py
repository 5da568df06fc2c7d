"""Storage: Milvus, and nothing else.

Owns the catalog of collections and documents over `MilvusVectorStore` (`catalog`: Milvus
Lite, a server, a cluster or Zilliz Cloud, by URI) and the local Milvus server started for
tests and benchmarks (`local_server`). May import `rag.models` (what a collection's vectors
were made with) and the top-level `config`, `errors` and `status`; nothing else of `rag`.
"""
