"""Benchmark records and what is read from them: percentiles, tables, summaries, CSV and JSON.

No I/O, so the CLI, the Benchmark page and the ingestion benchmarks share one way of computing
and printing figures; the engine that measures them is `rag.bench.engine`.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from typing import Any


class RunMode(StrEnum):
    """How a benchmark series talks to Milvus: one call at a time, all at once on the async
    client, or in batches (one `add` of every node) through either client."""

    SYNC = "sync"
    ASYNC = "async"
    BATCH = "batch"
    ASYNC_BATCH = "async-batch"


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


# Tables ----------------------------------------------------------------------------------------

# (field, width, format) per column; the CLI prints a row as each record arrives.
COLUMNS = (
    ("operation", 9, "{}"), ("mode", 11, "{}"), ("count", 6, "{}"),
    ("seconds", 9, "{:.3f}"), ("p50_ms", 9, "{:.2f}"), ("p95_ms", 9, "{:.2f}"), ("p99_ms", 9, "{:.2f}"),
    ("throughput", 11, "{:.1f}"), ("consistency", 11, "{}"), ("concurrency", 11, "{}"),
    ("batch_size", 10, "{}"), ("backend", 0, "{}"),
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


# Summaries -------------------------------------------------------------------------------------


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
            ratios = _async_speedups(group, operation)
            if ratios:
                figures[f"{operation}_async_speedup"] = ratios  # sync seconds / async seconds, per count
        batch = _batch_speedup(group)
        if batch is not None:
            figures["batch_speedup"] = batch
        overhead = _engine_overhead(group)
        if overhead is not None:
            figures["overhead"] = overhead
        out.append(figures)
    return out


def _async_speedups(group: Sequence[BenchRecord], operation: str) -> dict[int, float]:
    """Per count: how many times faster the async series was than the sync one."""
    ratios = {}
    for r in group:
        if r.operation == operation and r.mode == RunMode.SYNC:
            other = _find(group, operation, RunMode.ASYNC, r.count)
            if other is not None and other.seconds > 0:
                ratios[r.count] = round(r.seconds / other.seconds, 1)
    return ratios


def _batch_speedup(group: Sequence[BenchRecord]) -> dict[str, Any] | None:
    """The best batched load against one-node async adds, at the largest count."""
    one_by_one = [r for r in group if r.operation == "add" and r.mode == RunMode.ASYNC]
    if not one_by_one:
        return None
    biggest = max(one_by_one, key=lambda r: r.count)
    batched = [r for r in group if r.operation == "add" and r.mode in (RunMode.BATCH, RunMode.ASYNC_BATCH) and r.count == biggest.count]
    if not batched:
        return None
    best = min(batched, key=lambda r: r.seconds)
    if best.seconds <= 0:
        return None
    return {"count": biggest.count, "mode": best.mode, "vs_async_one_node": round(biggest.seconds / best.seconds, 1)}


def _engine_overhead(group: Sequence[BenchRecord]) -> dict[str, float] | None:
    """What LlamaIndex adds to a plain pymilvus search, per call (medians)."""
    plain, engine = _find(group, "overhead", "pymilvus"), _find(group, "overhead", "llamaindex")
    if plain is None or engine is None or plain.p50_ms <= 0:
        return None
    extra = engine.p50_ms - plain.p50_ms
    return {
        "pymilvus_p50_ms": plain.p50_ms,
        "llamaindex_p50_ms": engine.p50_ms,
        "per_call_ms": round(extra, 3),
        "percent": round(100 * extra / plain.p50_ms, 1),
    }


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


# Downloads (the Benchmark page; its chart rows are in rag.bench.charts) ------------------------


def records_csv(records: Iterable[BenchRecord]) -> str:
    """The records as CSV, one header line with the record fields."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=RECORD_FIELDS, lineterminator="\n")
    writer.writeheader()
    for r in records:
        writer.writerow(r.to_json())
    return out.getvalue()


def records_json(records: Iterable[BenchRecord]) -> str:
    return json.dumps([r.to_json() for r in records], indent=2)
