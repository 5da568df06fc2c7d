"""`python -m rag bench`: sync vs async Milvus through LlamaIndex, as in the Milvus + LlamaIndex
async tutorial ("RAG with Milvus and LlamaIndex Async API"), measured per call.

The tutorial's experiment, reproduced as it is written (its data: `rag.bench.data`):
- a `MilvusVectorStore` (768-d, COSINE, FLAT index, the chosen consistency level);
- add: `add([node])` one node per call, one after another, vs `async_add([node])` for every node,
  gathered; for 10, 100 and 1,000 nodes;
- search: over 1,000 inserted nodes, `query(VectorStoreQuery(query_embedding=[0.5] * 767 + [0.6],
  similarity_top_k=3))` one after another vs `aquery(...)` gathered; for 10, 100 and 1,000 queries.
On top of it, in the same engine: batched inserts (one `add` of all N nodes, or `async_add` of
`batch_size` nodes at a time, gathered), a consistency level per series, a concurrency limit for
async series, per-call latency percentiles, the backend in every record, and the engine's own
overhead (the same search through plain pymilvus `MilvusClient.search` and through
`MilvusVectorStore.query`).

Every series gets a fresh collection named `_rag_bench_...`, dropped afterwards; nothing else is
touched. Async work runs on the shared loop (`rag.loop`); sync work runs in the engine's worker
thread, never on that loop. Results arrive through a callback as each measurement completes, and a
`threading.Event` stops the benchmark between calls. What needs no I/O lives apart, shared by the
CLI and the Streamlit page: options in `rag.bench.options`, records, tables and summaries in
`rag.bench.report`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.metadata
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from rag.bench.data import DIM, chunks, produce_nodes, query_embedding
from rag.bench.options import BenchOptions
from rag.bench.report import BenchRecord, RunMode, build_record
from rag.config import Settings
from rag.errors import RagError, StoreUnavailable

PREFIX = "_rag_bench_"
TOP_K = 3

RecordCallback = Callable[[BenchRecord], None]
StatusCallback = Callable[[str], None]


def backend_label(settings: Settings, server_version: str | None = None) -> str:
    """What every record names as its backend: Milvus Lite's package version, or the server's."""
    if not settings.is_milvus_server:
        try:
            return f"Milvus Lite {importlib.metadata.version('milvus-lite')}"
        except importlib.metadata.PackageNotFoundError:
            return "Milvus Lite"
    return f"Milvus server {server_version}" if server_version else "Milvus server"


# The engine -------------------------------------------------------------------------------------


class Stopped(Exception):
    """The stop event was set: the current measurement is abandoned."""


class BenchEngine:
    """Runs the plan on a worker thread (sync calls) and the shared loop (async calls)."""

    def __init__(
        self,
        settings: Settings,
        options: BenchOptions | None = None,
        on_record: RecordCallback | None = None,
        stop: threading.Event | None = None,
        on_status: StatusCallback | None = None,
        loop: Any = None,
    ) -> None:
        from rag.loop import shared_loop

        self.settings = settings
        self.options = options or BenchOptions()
        self.on_record = on_record
        self.on_status = on_status
        self.stop_event = stop or threading.Event()
        self.records: list[BenchRecord] = []
        self.backend = ""
        self.stopped = False
        self.created: list[str] = []  # every collection this engine made (all dropped at the end)
        self._loop = loop or shared_loop()
        self._uri = settings.resolved_milvus_uri
        self._token = settings.milvus_token.get_secret_value()
        self._client_kwargs: dict[str, Any] = {}
        self._admin: Any = None

    # Entry points -------------------------------------------------------------------------------

    def start(self) -> concurrent.futures.Future[list[BenchRecord]]:
        """Measure in a background thread; the future holds the records (or the error)."""
        future: concurrent.futures.Future[list[BenchRecord]] = concurrent.futures.Future()

        def work() -> None:
            try:
                future.set_result(self._measure_plan())
            except BaseException as exc:  # handed to whoever waits on the future
                future.set_exception(exc)

        threading.Thread(target=work, name="rag-bench", daemon=True).start()
        return future

    def measure(self) -> list[BenchRecord]:
        """Measure the whole plan and wait for it. Ctrl-C stops it and still drops the collections."""
        future = self.start()
        try:
            while True:
                try:
                    return future.result(timeout=0.5)
                except concurrent.futures.TimeoutError:
                    continue
        except KeyboardInterrupt:
            self.stop_event.set()
            try:
                future.result(timeout=60)
            except Exception:
                pass
            raise

    def stop(self) -> None:
        """Stop between calls: the measurement under way is abandoned, the collections dropped."""
        self.stop_event.set()

    # Plan ---------------------------------------------------------------------------------------

    def _measure_plan(self) -> list[BenchRecord]:
        """Every series of every consistency level, in order; the collections dropped at the end."""
        self._connect_admin()
        ops = self.options.operations
        add_modes = [RunMode.SYNC, RunMode.ASYNC] + ([RunMode.BATCH, RunMode.ASYNC_BATCH] if self.options.batched else [])
        try:
            for level in self.options.consistency:
                if "add" in ops:
                    for mode in add_modes:
                        self._measure_series(level, "add", mode)
                if "search" in ops or "overhead" in ops:
                    self._measure_series(level, "search", RunMode.SYNC)
                if "search" in ops:
                    self._measure_series(level, "search", RunMode.ASYNC)
        except Stopped:
            pass
        except RagError:
            raise
        except Exception as exc:
            raise RagError(f"benchmark failed on {self.settings.milvus_display}: {_reason(exc)}") from exc
        finally:
            self._cleanup()
        self.stopped = self.stop_event.is_set()
        self._status("stopped" if self.stopped else "done")
        return self.records

    def _connect_admin(self) -> None:
        """The client that creates and drops the collections; names the backend for the records."""
        from pymilvus import MilvusClient

        from rag.storage.catalog import CONNECT_TIMEOUT, LITE_GRPC_OPTIONS

        self._client_kwargs = {"timeout": CONNECT_TIMEOUT}
        if not self.settings.is_milvus_server:
            self._client_kwargs["grpc_options"] = LITE_GRPC_OPTIONS
            Path(self._uri).parent.mkdir(parents=True, exist_ok=True)
        self._status(f"connecting to {self.settings.milvus_display}")
        try:
            self._admin = MilvusClient(uri=self._uri, token=self._token, **self._client_kwargs)
            version = self._admin.get_server_version() if self.settings.is_milvus_server else None
        except Exception as exc:
            raise StoreUnavailable(
                f"cannot use {self.settings.milvus_display}: {_reason(exc)}. "
                "Check that Milvus is running and that MILVUS_URI and MILVUS_TOKEN are right."
            ) from None
        self.backend = backend_label(self.settings, version)

    def _measure_series(self, level: str, operation: str, mode: str) -> None:
        """One fresh collection for a series of counts (or the search collection and the overhead)."""
        self._check_stop()
        store = self._new_store(level, operation, mode)
        try:
            if mode in (RunMode.ASYNC, RunMode.ASYNC_BATCH):  # open the async channel before timing (not measured)
                self._loop.run(store.aclient.has_collection(store.collection_name))
            if operation == "add":
                for count in self.options.counts:
                    self._measure_add(store, level, mode, count)
            else:
                self._load_search_rows(store)
                if "search" in self.options.operations:
                    for count in self.options.counts:
                        self._measure_search(store, level, mode, count)
                if mode == RunMode.SYNC and "overhead" in self.options.operations:
                    self._measure_overhead(store, level)
        finally:
            self._close_store(store)

    # Measurements ---------------------------------------------------------------------------

    def _measure_add(self, store: Any, level: str, mode: str, count: int) -> None:
        self._status(f"{level}: add {count} nodes ({mode})")
        nodes = produce_nodes(count)
        size = self.options.batch_size
        if mode == RunMode.SYNC:
            seconds, latencies = self._sync_calls([lambda n=n: store.add([n]) for n in nodes])
            concurrency, batch = 1, 1
        elif mode == RunMode.ASYNC:
            calls = [lambda n=n: store.async_add([n]) for n in nodes]
            seconds, latencies = self._loop.run(self._gather(calls))
            concurrency, batch = self._in_flight(len(calls)), 1
        elif mode == RunMode.BATCH:  # one `add` of all the nodes (LlamaIndex inserts `batch_size` at a time)
            seconds, latencies = self._sync_calls([lambda: store.add(nodes)])
            concurrency, batch = 1, min(size, count)
        else:  # async-batch: every batch's `async_add` gathered
            calls = [lambda b=b: store.async_add(list(b)) for b in chunks(nodes, size)]
            seconds, latencies = self._loop.run(self._gather(calls))
            concurrency, batch = self._in_flight(len(calls)), min(size, count)
        self._emit("add", mode, count, seconds, latencies, level, concurrency, batch)

    def _load_search_rows(self, store: Any) -> None:
        rows = self.options.search_rows
        self._status(f"loading {rows} nodes to search")
        for batch in chunks(produce_nodes(rows), self.options.batch_size):
            self._check_stop()
            store.add(list(batch))
        # One Strong read, so that every level searches all the rows (not measured).
        self._admin.query(store.collection_name, filter="", output_fields=["count(*)"], consistency_level="Strong")

    def _measure_search(self, store: Any, level: str, mode: str, count: int) -> None:
        from llama_index.core.vector_stores import VectorStoreQuery

        self._status(f"{level}: search {count} queries ({mode})")
        embedding = query_embedding()

        def query() -> VectorStoreQuery:
            return VectorStoreQuery(query_embedding=embedding, similarity_top_k=TOP_K)

        if mode == RunMode.SYNC:
            seconds, latencies = self._sync_calls([lambda: store.query(query())] * count)
            concurrency = 1
        else:
            calls = [lambda: store.aquery(query())] * count
            seconds, latencies = self._loop.run(self._gather(calls))
            concurrency = self._in_flight(count)
        self._emit("search", mode, count, seconds, latencies, level, concurrency, 1)

    def _measure_overhead(self, store: Any, level: str) -> None:
        """The same search, alternately through plain pymilvus and through the vector store."""
        from llama_index.core.vector_stores import VectorStoreQuery

        calls = self.options.overhead_calls
        self._status(f"{level}: engine overhead, {calls} searches each way")
        embedding = query_embedding()
        client = store.client  # the store's own client: same connection, same server work

        def plain() -> Any:
            return client.search(
                collection_name=store.collection_name,
                data=[embedding],
                filter="",
                limit=TOP_K,
                output_fields=["*"],
                search_params=store.search_config,
                anns_field=store.embedding_field,
                partition_names=None,
            )

        def engine() -> Any:
            return store.query(VectorStoreQuery(query_embedding=embedding, similarity_top_k=TOP_K))

        for _ in range(3):  # warm-up, not measured
            plain(), engine()
        times: dict[str, list[float]] = {"pymilvus": [], "llamaindex": []}
        for _ in range(calls):
            self._check_stop()
            for name, call in (("pymilvus", plain), ("llamaindex", engine)):
                started = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - started)
        for name, latencies in times.items():
            self._emit("overhead", name, calls, sum(latencies), latencies, level, 1, 1)

    # Helpers --------------------------------------------------------------------------------

    def _in_flight(self, calls: int) -> int:
        return min(self.options.concurrency or calls, calls)

    def _sync_calls(self, calls: Sequence[Callable[[], Any]]) -> tuple[float, list[float]]:
        latencies = []
        started = time.perf_counter()
        for call in calls:
            self._check_stop()
            t = time.perf_counter()
            call()
            latencies.append(time.perf_counter() - t)
        return time.perf_counter() - started, latencies

    async def _gather(self, calls: Sequence[Callable[[], Awaitable[Any]]]) -> tuple[float, list[float]]:
        """All calls started together (at most `concurrency` in flight); runs on the shared loop."""
        limit = self.options.concurrency
        semaphore = asyncio.Semaphore(limit) if limit else None
        latencies: list[float] = []

        async def one(call: Callable[[], Awaitable[Any]]) -> None:
            if semaphore is not None:
                await semaphore.acquire()
            try:
                if self.stop_event.is_set():
                    return
                t = time.perf_counter()
                await call()
                latencies.append(time.perf_counter() - t)
            finally:
                if semaphore is not None:
                    semaphore.release()

        started = time.perf_counter()
        results = await asyncio.gather(*(one(c) for c in calls), return_exceptions=True)
        seconds = time.perf_counter() - started
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]
        if len(latencies) < len(calls):
            raise Stopped()
        return seconds, latencies

    def _emit(
        self,
        operation: str,
        mode: str,
        count: int,
        seconds: float,
        latencies: Sequence[float],
        level: str,
        concurrency: int,
        batch_size: int,
    ) -> None:
        record = build_record(
            operation,
            mode,
            count,
            seconds,
            latencies,
            backend=self.backend,
            consistency=level,
            concurrency=concurrency,
            batch_size=batch_size,
        )
        self.records.append(record)
        if self.on_record is not None:
            self.on_record(record)

    def _check_stop(self) -> None:
        if self.stop_event.is_set():
            raise Stopped()

    def _status(self, message: str) -> None:
        if self.on_status is not None:
            self.on_status(message)

    def _new_store(self, level: str, operation: str, mode: str) -> Any:
        from llama_index.vector_stores.milvus import MilvusVectorStore

        name = f"{PREFIX}{uuid.uuid4().hex[:10]}_{operation}_{mode.replace('-', '_')}_{level.lower()}"
        self.created.append(name)  # before creation: dropped even if the constructor fails half-way
        return MilvusVectorStore(
            uri=self._uri,
            token=self._token,
            collection_name=name,
            dim=DIM,
            embedding_field="embedding",
            similarity_metric="COSINE",
            consistency_level=level,
            batch_size=self.options.batch_size,
            overwrite=False,  # a new, unique name: nothing to overwrite
            **self._client_kwargs,
        )

    def _close_store(self, store: Any) -> None:
        name = store.collection_name
        try:
            if store.aclient is not None:
                self._loop.run(store.aclient.close(), timeout=30)
        except Exception:
            pass
        try:
            store.client.close()
        except Exception:
            pass
        self._drop(name)

    def _drop(self, name: str) -> None:
        if not name.startswith(PREFIX):  # never anything but our own
            return
        try:
            if self._admin.has_collection(name):
                self._admin.drop_collection(name)
            self.created.remove(name)
        except Exception:
            pass

    def _cleanup(self) -> None:
        if self._admin is None:
            return
        for name in list(self.created):
            self._drop(name)
        try:
            self._admin.close()
        except Exception:
            pass
        self._admin = None


def _reason(exc: BaseException) -> str:
    """An error's first line, at most 300 characters: Milvus errors can run to whole tracebacks."""
    return (getattr(exc, "message", None) or str(exc) or type(exc).__name__).splitlines()[0][:300]
