"""Chart rows for the Benchmark page: plain dicts built from benchmark records, no I/O.

The figures span orders of magnitude (a 2 ms search next to the tutorial's 309 s series, this
run's 1x speed-up next to the tutorial's 35x), so no two of them may share a linear axis: wall
times go on a log axis, and this run and the tutorial each get their own panel. Every row carries
its panel, its x-axis group and the text of its value label, so the page only draws.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from rag.bench.report import BenchRecord, RunMode, summarize

Row = dict[str, Any]

RUN_PANEL = "this run"
TUTORIAL_PANEL = "tutorial (Milvus server, Strong)"
COUNT_TITLES = {"add": "nodes added per series", "search": "queries per series"}
MODES = tuple(RunMode)
STATISTICS = {"p50_ms": "median (p50)", "p95_ms": "p95"}
MIN_SECONDS = 1e-4  # a log axis has no zero: faster series are drawn at this height

# The tutorial's published figures (Milvus server, Strong, 768-d, top-3), in seconds per series.
TUTORIAL_SECONDS: dict[tuple[str, str], dict[int, float]] = {
    ("add", "async"): {10: 0.19, 100: 0.48, 1000: 3.22},
    ("add", "sync"): {10: 0.56, 100: 5.85, 1000: 62.91},
    ("search", "async"): {10: 0.55, 100: 1.39, 1000: 8.81},
    ("search", "sync"): {10: 3.29, 100: 30.80, 1000: 308.80},
}


def value_label(value: float, unit: str = "") -> str:
    """Two significant digits, whole numbers from 10 on (0.028, 0.34, 5.9, 309, 1,234): short
    enough to sit above a bar; the table below the charts has every digit."""
    text = f"{value:,.0f}" if abs(value) >= 10 else f"{value:.2g}"
    return text + unit


def _group(count: int, consistency: str, several: bool) -> str:
    """The x-axis label of a count: with the level when a run measured several."""
    return f"{count} · {consistency}" if several else str(count)


def time_rows(records: Sequence[BenchRecord], operation: str, tutorial: bool = True) -> list[Row]:
    """Wall time per mode and count of one operation: this run's bars, then the tutorial's."""
    mine = sorted((r for r in records if r.operation == operation), key=lambda r: (r.count, r.consistency))
    several = len({r.consistency for r in mine}) > 1
    rows = [
        {"panel": RUN_PANEL, "group": _group(r.count, r.consistency, several), "mode": r.mode,
         "seconds": max(r.seconds, MIN_SECONDS), "label": value_label(r.seconds)}
        for r in mine
    ]
    if rows and tutorial:
        rows += [
            {"panel": TUTORIAL_PANEL, "group": str(count), "mode": mode, "seconds": seconds,
             "label": value_label(seconds)}
            for (op, mode), figures in TUTORIAL_SECONDS.items() if op == operation
            for count, seconds in figures.items()
        ]
    return rows


def speedup_rows(records: Sequence[BenchRecord], tutorial: bool = True) -> list[Row]:
    """Sync seconds / async seconds per operation and count, one panel per consistency level, then
    the tutorial's panel: 83x at Strong would flatten 3x at Bounded on a shared axis."""
    summary = summarize(records)
    several = len({s["consistency"] for s in summary}) > 1
    rows = [
        {"panel": f"{RUN_PANEL} · {s['consistency']}" if several else RUN_PANEL, "group": str(count),
         "count": count, "operation": operation, "speedup": ratio, "label": value_label(ratio, "×")}
        for s in summary
        for operation in ("add", "search")
        for count, ratio in s.get(f"{operation}_async_speedup", {}).items()
    ]
    rows.sort(key=lambda r: r["count"])  # stable: the panels keep the order of the levels
    if rows and tutorial:
        rows += [
            {"panel": TUTORIAL_PANEL, "group": str(count), "count": count, "operation": op,
             "speedup": ratio, "label": value_label(ratio, "×")}
            for op, count, ratio in tutorial_speedups()
        ]
    return rows


def tutorial_speedups() -> list[tuple[str, int, float]]:
    """(operation, count, sync seconds / async seconds) from the tutorial's figures."""
    return [
        (op, count, TUTORIAL_SECONDS[(op, "sync")][count] / TUTORIAL_SECONDS[(op, "async")][count])
        for op in ("add", "search")
        for count in TUTORIAL_SECONDS[(op, "sync")]
    ]


def overhead_rows(records: Sequence[BenchRecord]) -> list[Row]:
    """Per-call latency of the same search through pymilvus and through LlamaIndex, one panel per
    consistency level (a Strong search on a server waits ~200 ms, a Bounded one ~6 ms)."""
    mine = [r for r in records if r.operation == "overhead"]
    return [
        {"panel": r.consistency, "group": name, "mode": r.mode, "ms": getattr(r, field),
         "label": value_label(getattr(r, field))}
        for r in mine
        for field, name in STATISTICS.items()
    ]


def panels(rows: Iterable[Row]) -> dict[str, list[Row]]:
    """The rows of each panel, panels in the rows' order."""
    out: dict[str, list[Row]] = {}
    for row in rows:
        out.setdefault(row["panel"], []).append(row)
    return out


def groups(rows: Iterable[Row]) -> list[str]:
    """The x-axis groups in the rows' order (an axis of strings would sort 1000 before 5)."""
    return list(dict.fromkeys(r["group"] for r in rows))


def log_domain(values: Iterable[float]) -> list[float]:
    """Whole decades around the values, with room above the tallest bar for its label.

    Bars on a log axis start at the domain's bottom, so the shortest bar keeps a visible height.
    """
    values = list(values)
    low = 10 ** math.floor(math.log10(min(values) / 2))
    high = 10 ** math.ceil(math.log10(max(values) * 2))
    return [low, high]


def decades(domain: Sequence[float]) -> list[float]:
    """The powers of ten from a log domain's bottom to its top: the only ticks the axis needs."""
    low, high = (round(math.log10(v)) for v in domain)
    return [10.0**k for k in range(low, high + 1)]


def linear_domain(values: Iterable[float], floor: float = 0.0) -> list[float]:
    """From zero to a quarter above the tallest bar (and at least `floor`), room for its label."""
    return [0.0, max([*values, floor]) * 1.25]
