"""`python -m rag bench`: sync vs async Milvus through LlamaIndex, as in the Milvus + LlamaIndex
async tutorial ("RAG with Milvus and LlamaIndex Async API"), measured per call.

The tutorial's experiment, reproduced as it is written:
- synthetic nodes: `TextNode(id_=<16 random digits>, text="n{i}_text",
  embedding=[0.5] * 767 + [random()], relationships={SOURCE: RelatedNodeInfo("n{i+1}")})`;
- a `MilvusVectorStore` (768-d, COSINE, FLAT index, the chosen consistency level);
- add: `add([node])` one node per call, one after another, vs `async_add([node])` for every node,
  gathered; for 10, 100 and 1,000 nodes;
- search: over 1,000 inserted nodes, `query(VectorStoreQuery(query_embedding=[0.5] * 767 + [0.6],
  similarity_top_k=3))` one after another vs `aquery(...)` gathered; for 10, 100 and 1,000 queries.
On top of it, in the same engine: batched inserts (one `add` of all N nodes, or `async_add` of
`batch_size` nodes at a time, gathered), a consistency level per run, a concurrency limit for async
runs, per-call latency percentiles, the backend in every record, and the engine's own overhead (the
same search through plain pymilvus `MilvusClient.search` and through `MilvusVectorStore.query`).

Every series gets a fresh collection named `_rag_bench_...`, dropped afterwards; nothing else is
touched. Async work runs on the shared loop (`rag.loop`); sync work runs in the engine's worker
thread, never on that loop. Results arrive through a callback as each measurement completes, and a
`threading.Event` stops a run between calls. The functions without I/O (percentiles, records,
tables, summaries, option parsing) are shared by the CLI and the Streamlit page.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.metadata
import json
import math
import random
import re
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from rag.config import Settings
from rag.errors import ConfigError, RagError, StoreUnavailable

DIM = 768
PREFIX = "_rag_bench_"
TOP_K = 3
CONSISTENCY_LEVELS = ("Strong", "Session", "Bounded", "Eventually")
DEFAULT_COUNTS = (10, 100, 1000)
DEFAULT_BATCH_SIZE = 100  # LlamaIndex's own default insert batch
DEFAULT_SEARCH_ROWS = 1000
DEFAULT_OVERHEAD_CALLS = 100
MAX_COUNT = 100_000
OPERATIONS = ("add", "search", "overhead")

RecordCallback = Callable[["BenchRecord"], None]
StatusCallback = Callable[[str], None]


# Options and records (no I/O) ----------------------------------------------------------------


@dataclass(frozen=True)
class BenchOptions:
    """What to measure. `concurrency=None`: every async call in flight at once (the tutorial)."""

    counts: tuple[int, ...] = DEFAULT_COUNTS
    consistency: tuple[str, ...] = ("Strong",)
    concurrency: int | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    batched: bool = True  # also the batched insert modes
    operations: tuple[str, ...] = OPERATIONS
    search_rows: int = DEFAULT_SEARCH_ROWS
    overhead_calls: int = DEFAULT_OVERHEAD_CALLS

    def __post_init__(self) -> None:
        if not self.counts:
            raise ConfigError("give at least one count")
        for count in self.counts:
            if not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
                raise ConfigError(f"counts must be whole numbers from 1 to {MAX_COUNT}, not {count!r}")
        if not self.consistency:
            raise ConfigError("give at least one consistency level")
        object.__setattr__(self, "consistency", tuple(parse_consistency(c) for c in self.consistency))
        if self.concurrency is not None and not (isinstance(self.concurrency, int) and self.concurrency >= 1):
            raise ConfigError(f"concurrency must be a whole number >= 1 (or none: unlimited), not {self.concurrency!r}")
        if not isinstance(self.batch_size, int) or not 1 <= self.batch_size <= MAX_COUNT:
            raise ConfigError(f"batch size must be a whole number from 1 to {MAX_COUNT}, not {self.batch_size!r}")
        unknown = [op for op in self.operations if op not in OPERATIONS]
        if unknown or not self.operations:
            raise ConfigError(f"operations must be among {', '.join(OPERATIONS)}, not {unknown or 'none'}")
        if not 1 <= self.search_rows <= MAX_COUNT:
            raise ConfigError(f"search rows must be from 1 to {MAX_COUNT}, not {self.search_rows}")
        if not 1 <= self.overhead_calls <= MAX_COUNT:
            raise ConfigError(f"overhead calls must be from 1 to {MAX_COUNT}, not {self.overhead_calls}")


@dataclass
class BenchRecord:
    """One measurement: `count` items (nodes or queries) in `seconds` of wall time."""

    operation: str  # add | search | overhead
    mode: str  # sync | async | batch | async-batch (add, search); pymilvus | llamaindex (overhead)
    count: int
    seconds: float
    p50_ms: float  # per call
    p95_ms: float
    p99_ms: float
    throughput: float  # items per second
    backend: str
    consistency: str
    concurrency: int  # calls in flight at most (1: one after another)
    batch_size: int  # items per request to Milvus (nodes per insert; 1 for searches)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


RECORD_FIELDS = tuple(f.name for f in fields(BenchRecord))


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear interpolation between closest ranks (NumPy's default)."""
    if not values:
        return 0.0
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be between 0 and 100, not {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def build_record(
    operation: str,
    mode: str,
    count: int,
    seconds: float,
    latencies: Sequence[float],
    *,
    backend: str,
    consistency: str,
    concurrency: int,
    batch_size: int,
) -> BenchRecord:
    """A record from a wall time and per-call latencies (both in seconds)."""
    return BenchRecord(
        operation=operation,
        mode=mode,
        count=count,
        seconds=round(seconds, 4),
        p50_ms=round(percentile(latencies, 50) * 1000, 3),
        p95_ms=round(percentile(latencies, 95) * 1000, 3),
        p99_ms=round(percentile(latencies, 99) * 1000, 3),
        throughput=round(count / seconds, 1) if seconds > 0 else 0.0,
        backend=backend,
        consistency=consistency,
        concurrency=concurrency,
        batch_size=batch_size,
    )


def parse_consistency(value: str) -> str:
    for level in CONSISTENCY_LEVELS:
        if value.strip().lower() == level.lower():
            return level
    raise ConfigError(f"unknown consistency level {value!r}: choose from {', '.join(CONSISTENCY_LEVELS)}")


def parse_counts(text: str, label: str = "--counts") -> tuple[int, ...]:
    """'10,100,1000' (or spaces, semicolons) -> (10, 100, 1000), repeats dropped.

    `label` names the input in errors: the CLI option, or the page's field.
    """
    parts = [p for p in re.split(r"[,;\s]+", str(text or "")) if p]
    if not parts:
        raise ConfigError(f"{label} needs at least one count, e.g. 10,100,1000")
    counts = []
    for part in parts:
        try:
            count = int(part.replace("_", ""))
        except ValueError:
            raise ConfigError(f"{label}: {part!r} is not a whole number (e.g. 10,100,1000)") from None
        if not 1 <= count <= MAX_COUNT:
            raise ConfigError(f"{label}: {count} is out of range (1 to {MAX_COUNT:,})")
        counts.append(count)
    return tuple(dict.fromkeys(counts))


def _positive_int(name: str, value: Any, minimum: int = 1) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {value!r}") from None
    if not minimum <= number <= MAX_COUNT:
        raise ConfigError(f"{name} must be between {minimum} and {MAX_COUNT}, not {number}")
    return number


def options_from_args(
    counts: str | None = None,
    consistency: Iterable[str] | None = None,
    concurrency: str | int | None = None,
    batch_size: str | int | None = None,
) -> BenchOptions:
    """BenchOptions from command-line style strings; ConfigError with a one-line message if bad."""
    levels: list[str] = []
    for item in consistency or ["Strong"]:
        levels += [parse_consistency(part) for part in str(item).split(",") if part.strip()]
    limit = None if concurrency in (None, "") else _positive_int("--concurrency", concurrency, 0)
    return BenchOptions(
        counts=parse_counts(counts) if counts is not None else DEFAULT_COUNTS,
        consistency=tuple(dict.fromkeys(levels)) or ("Strong",),
        concurrency=limit or None,  # 0: unlimited
        batch_size=_positive_int("--batch-size", batch_size) if batch_size not in (None, "") else DEFAULT_BATCH_SIZE,
    )


# Tables and summaries (no I/O) -----------------------------------------------------------------

COLUMNS = (
    ("operation", 9, "{}"),
    ("mode", 11, "{}"),
    ("count", 6, "{}"),
    ("seconds", 9, "{:.3f}"),
    ("p50_ms", 9, "{:.2f}"),
    ("p95_ms", 9, "{:.2f}"),
    ("p99_ms", 9, "{:.2f}"),
    ("throughput", 11, "{:.1f}"),
    ("consistency", 11, "{}"),
    ("concurrency", 11, "{}"),
    ("batch_size", 10, "{}"),
    ("backend", 0, "{}"),
)


NUMERIC = {name for name, _, _ in COLUMNS} - {"operation", "mode", "consistency", "backend"}


def _cell(name: str, width: int, text: str) -> str:
    return text.rjust(width) if name in NUMERIC else text.ljust(width)


def table_header() -> str:
    return "  ".join(_cell(name, width, name) for name, width, _ in COLUMNS).rstrip()


def format_row(record: BenchRecord) -> str:
    return "  ".join(_cell(name, width, fmt.format(getattr(record, name))) for name, width, fmt in COLUMNS).rstrip()


def format_table(records: Iterable[BenchRecord]) -> str:
    lines = [table_header()]
    lines += [format_row(r) for r in records]
    return "\n".join(lines)


def _find(records: Sequence[BenchRecord], operation: str, mode: str, count: int | None = None) -> BenchRecord | None:
    found = [r for r in records if r.operation == operation and r.mode == mode and (count is None or r.count == count)]
    return found[-1] if found else None


def summarize(records: Sequence[BenchRecord]) -> list[dict[str, Any]]:
    """Headline figures per backend and consistency level: speed-ups and the engine's overhead."""
    groups: dict[tuple[str, str], list[BenchRecord]] = {}
    for r in records:
        groups.setdefault((r.backend, r.consistency), []).append(r)
    out = []
    for (backend, consistency), group in groups.items():
        figures: dict[str, Any] = {"backend": backend, "consistency": consistency}
        for operation in ("add", "search"):
            ratios = {}
            for r in group:
                if r.operation == operation and r.mode == "sync":
                    other = _find(group, operation, "async", r.count)
                    if other is not None and other.seconds > 0:
                        ratios[r.count] = round(r.seconds / other.seconds, 1)
            if ratios:
                figures[f"{operation}_async_speedup"] = ratios  # sync seconds / async seconds, per count
        one_by_one = [r for r in group if r.operation == "add" and r.mode == "async"]
        if one_by_one:
            biggest = max(one_by_one, key=lambda r: r.count)
            batched = [
                r for r in group if r.operation == "add" and r.mode in ("batch", "async-batch") and r.count == biggest.count
            ]
            if batched:
                best = min(batched, key=lambda r: r.seconds)
                if best.seconds > 0:
                    figures["batch_speedup"] = {
                        "count": biggest.count,
                        "mode": best.mode,
                        "vs_async_one_node": round(biggest.seconds / best.seconds, 1),
                    }
        plain, engine = _find(group, "overhead", "pymilvus"), _find(group, "overhead", "llamaindex")
        if plain is not None and engine is not None and plain.p50_ms > 0:
            extra = engine.p50_ms - plain.p50_ms
            figures["overhead"] = {
                "pymilvus_p50_ms": plain.p50_ms,
                "llamaindex_p50_ms": engine.p50_ms,
                "per_call_ms": round(extra, 3),
                "percent": round(100 * extra / plain.p50_ms, 1),
            }
        out.append(figures)
    return out


def format_summary(summary: Sequence[dict[str, Any]]) -> str:
    lines = []
    for s in summary:
        lines.append(f"{s['backend']}, consistency {s['consistency']}:")
        for operation in ("add", "search"):
            ratios = s.get(f"{operation}_async_speedup")
            if ratios:
                text = ", ".join(f"{c}: {v}x" for c, v in ratios.items())
                lines.append(f"  async {operation} speed-up over sync (per count) {text}")
        if "batch_speedup" in s:
            b = s["batch_speedup"]
            lines.append(
                f"  batched load of {b['count']} nodes ({b['mode']}): {b['vs_async_one_node']}x faster "
                "than one-node async adds"
            )
        if "overhead" in s:
            o = s["overhead"]
            lines.append(
                f"  engine overhead per call: {o['per_call_ms']:.3f} ms ({o['percent']:.1f}% of plain pymilvus "
                f"{o['pymilvus_p50_ms']:.2f} ms, medians)"
            )
    return "\n".join(lines)


# Synthetic data, as in the tutorial ----------------------------------------------------------


def random_id(rng: random.Random | None = None) -> str:
    rng = rng or random
    return "".join(str(rng.randint(0, 9)) for _ in range(16))


def produce_nodes(count: int, dim: int = DIM, rng: random.Random | None = None) -> list:
    from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode

    rng = rng or random
    return [
        TextNode(
            id_=random_id(rng),
            text=f"n{i}_text",
            embedding=[0.5] * (dim - 1) + [rng.random()],
            relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=f"n{i + 1}")},
        )
        for i in range(count)
    ]


def query_embedding(dim: int = DIM) -> list[float]:
    return [0.5] * (dim - 1) + [0.6]


def chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def backend_label(settings: Settings, server_version: str | None = None) -> str:
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
        """Run in a background thread; the future holds the records (or the error)."""
        future: concurrent.futures.Future[list[BenchRecord]] = concurrent.futures.Future()

        def work() -> None:
            try:
                future.set_result(self._run())
            except BaseException as exc:  # handed to whoever waits on the future
                future.set_exception(exc)

        threading.Thread(target=work, name="rag-bench", daemon=True).start()
        return future

    def run(self) -> list[BenchRecord]:
        """Run and wait. Ctrl-C stops the run and still drops the benchmark collections."""
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
        self.stop_event.set()

    # Plan ---------------------------------------------------------------------------------------

    def _run(self) -> list[BenchRecord]:
        from pymilvus import MilvusClient

        from rag.store import CONNECT_TIMEOUT, LITE_GRPC_OPTIONS

        self._client_kwargs = {"timeout": CONNECT_TIMEOUT}
        if not self.settings.is_milvus_server:
            self._client_kwargs["grpc_options"] = LITE_GRPC_OPTIONS
            Path(self._uri).parent.mkdir(parents=True, exist_ok=True)
        self._status(f"connecting to {self.settings.milvus_display}")
        try:
            self._admin = MilvusClient(uri=self._uri, token=self._token, **self._client_kwargs)
            version = self._admin.get_server_version() if self.settings.is_milvus_server else None
        except Exception as exc:
            reason = (getattr(exc, "message", None) or str(exc) or type(exc).__name__).splitlines()[0][:300]
            raise StoreUnavailable(
                f"cannot use {self.settings.milvus_display}: {reason}. "
                "Check that Milvus is running and that MILVUS_URI and MILVUS_TOKEN are right."
            ) from None
        self.backend = backend_label(self.settings, version)
        ops = self.options.operations
        add_modes = ["sync", "async"] + (["batch", "async-batch"] if self.options.batched else [])
        try:
            for level in self.options.consistency:
                if "add" in ops:
                    for mode in add_modes:
                        self._series(level, "add", mode)
                if "search" in ops or "overhead" in ops:
                    self._series(level, "search", "sync")
                if "search" in ops:
                    self._series(level, "search", "async")
        except Stopped:
            pass
        except RagError:
            raise
        except Exception as exc:
            reason = (getattr(exc, "message", None) or str(exc) or type(exc).__name__).splitlines()[0][:300]
            raise RagError(f"benchmark failed on {self.settings.milvus_display}: {reason}") from exc
        finally:
            self._cleanup()
        self.stopped = self.stop_event.is_set()
        self._status("stopped" if self.stopped else "done")
        return self.records

    def _series(self, level: str, operation: str, mode: str) -> None:
        """One fresh collection for a series of counts (or the search collection and the overhead)."""
        self._check_stop()
        store = self._new_store(level, operation, mode)
        try:
            if mode in ("async", "async-batch"):  # open the async channel before timing (not measured)
                self._loop.run(store.aclient.has_collection(store.collection_name))
            if operation == "add":
                for count in self.options.counts:
                    self._measure_add(store, level, mode, count)
            else:
                self._load_search_rows(store)
                if "search" in self.options.operations:
                    for count in self.options.counts:
                        self._measure_search(store, level, mode, count)
                if mode == "sync" and "overhead" in self.options.operations:
                    self._measure_overhead(store, level)
        finally:
            self._close_store(store)

    # Measurements ---------------------------------------------------------------------------

    def _measure_add(self, store: Any, level: str, mode: str, count: int) -> None:
        self._status(f"{level}: add {count} nodes ({mode})")
        nodes = produce_nodes(count)
        size = self.options.batch_size
        if mode == "sync":
            seconds, latencies = self._sync_calls([lambda n=n: store.add([n]) for n in nodes])
            concurrency, batch = 1, 1
        elif mode == "async":
            calls = [lambda n=n: store.async_add([n]) for n in nodes]
            seconds, latencies = self._loop.run(self._gather(calls))
            concurrency, batch = self._in_flight(len(calls)), 1
        elif mode == "batch":  # one `add` of all the nodes (LlamaIndex inserts `batch_size` at a time)
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

        if mode == "sync":
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


def run_bench(
    settings: Settings,
    options: BenchOptions | None = None,
    on_record: RecordCallback | None = None,
    stop: threading.Event | None = None,
    on_status: StatusCallback | None = None,
) -> list[BenchRecord]:
    return BenchEngine(settings, options, on_record, stop, on_status).run()


# CLI ------------------------------------------------------------------------------------------


def run_cli(args: Any, settings: Settings) -> int:
    import sys

    options = options_from_args(args.counts, args.consistency, args.concurrency, args.batch_size)
    if args.json:
        status = (lambda message: print(message, file=sys.stderr, flush=True)) if sys.stderr.isatty() else None
        records = run_bench(settings, options, on_status=status)
        print(json.dumps([r.to_json() for r in records], indent=2))
        return 0

    def show(record: BenchRecord) -> None:
        print(format_row(record), flush=True)

    print(f"Milvus: {settings.milvus_display}; counts {', '.join(map(str, options.counts))}", flush=True)
    print(table_header(), flush=True)
    engine = BenchEngine(settings, options, on_record=show)
    records = engine.run()
    print()
    print(format_summary(summarize(records)))
    return 0


# For the Streamlit page (no I/O; its chart rows are in rag.bench_charts) ------------------------


def records_csv(records: Iterable[BenchRecord]) -> str:
    """The records as CSV, one header line with the record fields."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=RECORD_FIELDS, lineterminator="\n")
    writer.writeheader()
    for r in records:
        writer.writerow(r.to_json())
    return out.getvalue()


def records_json(records: Iterable[BenchRecord]) -> str:
    return json.dumps([r.to_json() for r in records], indent=2)


def planned_measurements(options: BenchOptions) -> int:
    """How many records a full run of `options` emits (for a progress bar)."""
    per_level = 0
    counts = len(options.counts)
    if "add" in options.operations:
        per_level += counts * (4 if options.batched else 2)
    if "search" in options.operations:
        per_level += 2 * counts
    if "overhead" in options.operations:
        per_level += 2
    return per_level * len(options.consistency)
