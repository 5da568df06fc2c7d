"""Benchmarks: sync versus async Milvus (`engine`, `data`, `options`, `report`, `charts`), the
real ingestion pipeline (`ingest`, on libraries built by `corpus`) and retrieval quality and
latency (`retrieval`), and both at the size of a real library (`library`). The modules without
I/O (`options`, `report`, `charts`) are what the Benchmark page draws from. May import any part of `rag`; nothing in `rag` imports it except
the CLI.
"""
