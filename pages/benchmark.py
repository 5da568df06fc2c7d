"""Benchmark: the Milvus + LlamaIndex async tutorial's study, run live against the app's own Milvus.

The engine (`rag.bench_engine.BenchEngine`) runs in a background thread and hands over each
measurement as it completes; the page keeps them in a thread-safe holder in the session and
redraws the results every second while the run lasts. The engine only ever uses `_rag_bench_...` collections,
which it drops afterwards: the user's collections are never touched.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import altair as alt
import pandas as pd
import streamlit as st

from pages import common, formatting, quality, shell
from rag.bench import charts as bench_charts
from rag.bench import engine as bench_engine
from rag.bench import options as bench_options
from rag.bench import report as bench_report
from rag.errors import ConfigError, RagError

shell.require_shell()

HOLDER_KEY = "bench_run"
SERIES = {
    "add": "Add one node per call: sync vs async",
    "batched": "Batched inserts: one batch call, and async batches gathered",
    "search": "Search: sync vs async",
    "overhead": "Engine overhead: pymilvus vs LlamaIndex search",
}
DEFAULT_SERIES = ["add", "batched", "search"]
MODE_COLORS = {bench_report.RunMode.SYNC: "#d62728", bench_report.RunMode.ASYNC: "#1f77b4", bench_report.RunMode.BATCH: "#2ca02c",
               bench_report.RunMode.ASYNC_BATCH: "#9467bd",
               "pymilvus": "#8c564b", "llamaindex": "#e377c2"}
TIME_TITLES = {"add": "Adding nodes: wall time per series", "search": "Searching: wall time per series"}
OPERATION_COLORS = {"add": "#2ca02c", "search": "#ff7f0e"}
ROW_PX = 720  # bar pixels in one row of panels (the wide layout leaves ~870 with the axes)
MIN_BAR_PX, MAX_BAR_PX = 30, 52  # 30: room for a value label such as "0.028" in 10 px type
CHART_HEIGHT = 260


@dataclass
class BenchRun:
    """One run's state, shared between the engine's thread and the page (guarded by a lock)."""

    options: bench_options.BenchOptions
    planned: int
    stop_event: threading.Event = field(default_factory=threading.Event)
    future: Future | None = None
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    _records: list[bench_report.BenchRecord] = field(default_factory=list)
    _status: str = "starting"
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, record: bench_report.BenchRecord) -> None:
        with self._lock:
            self._records.append(record)

    def set_status(self, message: str) -> None:
        with self._lock:
            self._status = message

    @property
    def records(self) -> list[bench_report.BenchRecord]:
        with self._lock:
            return list(self._records)

    @property
    def status(self) -> str:
        with self._lock:
            return self._status

    @property
    def running(self) -> bool:
        return self.future is not None and not self.future.done()

    def elapsed(self) -> float:
        if self.finished is None and not self.running:
            self.finished = time.monotonic()
        return (self.finished or time.monotonic()) - self.started


rag = common.get_rag()
settings = rag.settings


# Input ------------------------------------------------------------------------------------------


def controls(running: bool) -> None:
    with st.container(border=True):
        a, b = st.columns([3, 2])
        a.text_input(
            "Counts", value=", ".join(map(str, bench_options.DEFAULT_COUNTS)), key="bench_counts",
            help="How many nodes to add, or queries to run, per measurement. Comma-separated.",
        )
        b.multiselect(
            "Consistency levels", bench_options.CONSISTENCY_LEVELS, default=["Strong"], key="bench_consistency",
            help="Each level is a separate run of every series. Strong reads wait for all earlier writes.",
        )
        st.pills(
            "Series", list(SERIES), default=DEFAULT_SERIES, selection_mode="multi", key="bench_series",
            format_func=SERIES.get,
        )
        c, d, e = st.columns(3)
        c.number_input(
            "Concurrency limit", min_value=0, max_value=bench_options.MAX_COUNT, value=0, step=1, key="bench_concurrency",
            help="Async calls in flight at most; 0 = all at once, as in the tutorial.",
        )
        d.number_input(
            "Batch size", min_value=1, max_value=bench_options.MAX_COUNT, value=bench_options.DEFAULT_BATCH_SIZE, step=10,
            key="bench_batch_size", help="Nodes per insert request in the batched series (LlamaIndex's default: 100).",
        )
        e.number_input(
            "Nodes to search over", min_value=1, max_value=bench_options.MAX_COUNT, value=bench_options.DEFAULT_SEARCH_ROWS, step=100,
            key="bench_search_rows", help="Loaded once before the search series (the tutorial: 1,000).",
        )
        left, right, _ = st.columns([2, 1, 5])
        run = left.button("Run benchmark", key="bench_run_button", type="primary", icon=":material/play_arrow:",
                          disabled=running, width="stretch")
        right.button("Stop", key="bench_stop_button", icon=":material/stop:", disabled=not running,
                     on_click=stop_run, width="stretch")
        if run:
            start_run()


def read_options() -> bench_options.BenchOptions:
    state = st.session_state
    series = state.get("bench_series") or []
    operations = tuple(op for op in ("add", "search", "overhead") if op in series)
    if "batched" in series and "add" not in operations:
        operations = ("add", *operations)
    if not operations:
        raise ConfigError("Choose at least one series to measure.")
    levels = tuple(state.get("bench_consistency") or ())
    if not levels:
        raise ConfigError("Choose at least one consistency level.")
    return bench_options.BenchOptions(
        counts=bench_options.parse_counts(state.get("bench_counts", ""), "Counts"),
        consistency=levels,
        concurrency=int(state.get("bench_concurrency") or 0) or None,
        batch_size=int(state.get("bench_batch_size") or bench_options.DEFAULT_BATCH_SIZE),
        batched="batched" in series,
        operations=operations,
        search_rows=int(state.get("bench_search_rows") or bench_options.DEFAULT_SEARCH_ROWS),
    )


def start_run() -> None:
    try:
        options = read_options()
    except ConfigError as exc:
        st.error(formatting.escape_markdown(str(exc)), icon=":material/error:")
        return
    run = BenchRun(options, bench_options.planned_measurements(options))
    engine = bench_engine.BenchEngine(settings, options, on_record=run.add, stop=run.stop_event, on_status=run.set_status)
    run.future = engine.start()
    st.session_state[HOLDER_KEY] = run
    st.rerun()  # redraw with the Run button disabled and the live results


def stop_run() -> None:
    run = st.session_state.get(HOLDER_KEY)
    if run is not None:
        run.stop_event.set()
        run.set_status("stopping after the current call")


# Results ----------------------------------------------------------------------------------------


def frame(records: list[bench_report.BenchRecord]) -> pd.DataFrame:
    return pd.DataFrame([r.to_json() for r in records], columns=list(bench_report.RECORD_FIELDS))


def bar_width(bars: int) -> int:
    """Pixels per bar, the same in every panel of a chart: as wide as the row allows (a wider
    chart would be cut off at the page's edge)."""
    return max(1, min(MAX_BAR_PX, ROW_PX // max(bars, 1)))


def palette(colors: dict[str, str], present: Iterable[str]) -> dict[str, str]:
    """The colours of the names present, in the fixed order (the same name keeps its colour everywhere)."""
    names = set(present)
    return {name: color for name, color in colors.items() if name in names}


def value_axis(field: str, title: str, domain: list[float], log: bool) -> alt.Y:
    """A value axis with units in its title; a log axis is ticked at whole decades only."""
    if log:
        return alt.Y(f"{field}:Q", title=title, scale=alt.Scale(type="log", domain=domain),
                     axis=alt.Axis(values=bench_charts.decades(domain), format=",~g"))
    return alt.Y(f"{field}:Q", title=title, scale=alt.Scale(domain=domain))


def bar_panel(rows: list[dict], *, title: str, x_title: str, value: str, value_title: str, domain: list[float],
              field: str, colors: dict[str, str], legend: str, px: int, log: bool,
              extra: Sequence[alt.Chart]) -> alt.LayerChart:
    """Bars grouped by `group`, one per `field` value in each group, with their value written above.

    Bars start at the bottom of the axis (explicit `y2`): a log axis has no zero to start from.
    """
    base = alt.Chart(pd.DataFrame(rows)).encode(
        x=alt.X("group:N", title=x_title, sort=bench_charts.groups(rows), axis=alt.Axis(labelAngle=0)),
        xOffset=alt.XOffset(f"{field}:N", sort=list(colors)),
        y=value_axis(value, value_title, domain, log),
    )
    color = alt.Color(f"{field}:N", title=legend, legend=alt.Legend(orient="bottom"),
                      scale=alt.Scale(domain=list(colors), range=list(colors.values())))
    bars = base.mark_bar().encode(y2=alt.datum(domain[0]), color=color,
                                  tooltip=[c for c in rows[0] if c not in ("label", "count")])
    font = 10 if px >= MIN_BAR_PX else 8  # narrower bars than a label: smaller labels, not hidden bars
    labels = base.mark_text(baseline="bottom", dy=-3, fontSize=font).encode(text="label:N")
    return alt.layer(bars, labels, *extra, title=title).properties(width=px * len(rows), height=CHART_HEIGHT)


def bar_chart(rows: list[dict], *, title: str | alt.Title, x_title: str, value: str, value_title: str, field: str,
              colors: dict[str, str], legend: str, domain: Callable[[Iterable[float]], list[float]], shared_y: bool,
              log: bool = False, extra: Sequence[alt.Chart] = ()) -> alt.ConcatChart:
    """One bar panel per `panel` of the rows: side by side while every bar keeps room for its
    label, one under another otherwise. `shared_y`: one axis for all (else each panel its own)."""
    by_panel = bench_charts.panels(rows)
    together = len(rows) * MIN_BAR_PX <= ROW_PX
    px = bar_width(len(rows) if together else max(map(len, by_panel.values())))
    everything = domain(r[value] for r in rows)
    panels = [
        bar_panel(panel_rows, title=panel, x_title=x_title, value=value, value_title=value_title, field=field,
                  domain=everything if shared_y else domain(r[value] for r in panel_rows), colors=colors,
                  legend=legend, px=px, log=log, extra=extra)
        for panel, panel_rows in by_panel.items()
    ]
    chart = alt.concat(*panels, columns=len(panels) if together else 1, title=title)
    return chart.resolve_scale(y="shared" if shared_y else "independent")


def time_chart(records: list[bench_report.BenchRecord], operation: str, tutorial: bool) -> alt.ConcatChart | None:
    """This run and the tutorial side by side, on one log axis of seconds."""
    rows = bench_charts.time_rows(records, operation, tutorial)
    if not rows:
        return None
    return bar_chart(rows, title=TIME_TITLES[operation], x_title=bench_charts.COUNT_TITLES[operation],
                     value="seconds", value_title="wall time (s, log scale)", field="mode",
                     colors=palette(MODE_COLORS, (r["mode"] for r in rows)), legend="mode",
                     domain=bench_charts.log_domain, shared_y=True, log=True)


def speedup_chart(records: list[bench_report.BenchRecord], tutorial: bool) -> alt.ConcatChart | None:
    """Async over sync, each panel on its own axis: this run's 1x would vanish next to the tutorial's 35x."""
    rows = bench_charts.speedup_rows(records, tutorial)
    if not rows:
        return None
    even = alt.Chart(pd.DataFrame({"speedup": [1.0]})).mark_rule(strokeDash=[4, 3], color="gray").encode(y="speedup:Q")
    return bar_chart(rows, title=alt.Title("Async speed-up over sync", subtitle="each panel on its own axis; "
                                           "dashed line: 1×, no gain"),
                     x_title="nodes added or queries per series", value="speedup",
                     value_title="speed-up (×, sync s ÷ async s)", field="operation",
                     colors=palette(OPERATION_COLORS, (r["operation"] for r in rows)), legend="operation",
                     domain=lambda values: bench_charts.linear_domain(values, floor=1), shared_y=False, extra=[even])


def overhead_chart(records: list[bench_report.BenchRecord]) -> alt.ConcatChart | None:
    """The same search through plain pymilvus and through LlamaIndex, per call: one panel per level."""
    rows = bench_charts.overhead_rows(records)
    if not rows:
        return None
    return bar_chart(rows, title=alt.Title("Engine overhead per search", subtitle="one panel per consistency level"),
                     x_title="per-call statistic", value="ms", value_title="latency per call (ms)", field="mode",
                     colors=palette(MODE_COLORS, (r["mode"] for r in rows)), legend="search through",
                     domain=bench_charts.linear_domain, shared_y=False)


def fastest_lines(records: list[bench_report.BenchRecord]) -> list[str]:
    """The fastest mode per operation at the largest count measured, in words."""
    lines = []
    for operation, what in (("add", "nodes"), ("search", "queries")):
        mine = [r for r in records if r.operation == operation]
        if not mine:
            continue
        count = max(r.count for r in mine)
        at = [r for r in mine if r.count == count]
        best = min(at, key=lambda r: r.seconds)
        lines.append(
            f"Fastest for {count:,} {what}: **{best.mode}** at {best.consistency} "
            f"({best.seconds:.3f} s, {best.throughput:,.0f} {what}/s)"
        )
    for s in bench_report.summarize(records):
        if "overhead" in s:
            o = s["overhead"]
            lines.append(
                f"LlamaIndex adds {o['per_call_ms']:.2f} ms per search over plain pymilvus "
                f"({o['percent']:.1f}%, medians, {s['consistency']})"
            )
    return lines


def results(run: BenchRun) -> None:
    records = run.records
    if run.running:
        done = len(records)
        fraction = min(done / run.planned, 1.0) if run.planned else 0.0
        st.progress(fraction, text=f"{done} of {run.planned} measurements · {formatting.escape_markdown(run.status)} · "
                                   f"{formatting.duration(run.elapsed())} elapsed")
    else:
        outcome(run)
    if not records:
        if run.running:
            st.caption("The first results appear here as soon as they are measured.")
        return
    df = frame(records)
    backends = ", ".join(dict.fromkeys(r.backend for r in records))
    tutorial = st.session_state.get("bench_show_tutorial", True)
    note = " · panels titled *tutorial*: the tutorial's published figures, for comparison" if tutorial else ""
    st.caption(f"Measured on **{formatting.escape_markdown(backends)}**{note}")
    charts = [time_chart(records, "add", tutorial), time_chart(records, "search", tutorial),
              speedup_chart(records, tutorial), overhead_chart(records)]
    for chart in charts:
        if chart is not None:
            st.altair_chart(chart, width="content")  # panels sized per bar: stretching would squeeze them
    if lines := fastest_lines(records):
        st.markdown("\n".join(f"- {line}" for line in lines))
    st.dataframe(
        df,
        hide_index=True,
        width="stretch",
        column_config={
            "seconds": st.column_config.NumberColumn("seconds", format="%.3f"),
            "p50_ms": st.column_config.NumberColumn("p50 ms", format="%.2f"),
            "p95_ms": st.column_config.NumberColumn("p95 ms", format="%.2f"),
            "p99_ms": st.column_config.NumberColumn("p99 ms", format="%.2f"),
            "throughput": st.column_config.NumberColumn("items/s", format="%.1f"),
            "batch_size": st.column_config.NumberColumn("batch"),
        },
    )
    if not run.running:
        a, b, _ = st.columns([1, 1, 4])
        a.download_button("Download CSV", bench_report.records_csv(records), "benchmark.csv", "text/csv",
                          icon=":material/download:", key="bench_csv", width="stretch")
        b.download_button("Download JSON", bench_report.records_json(records), "benchmark.json", "application/json",
                          icon=":material/download:", key="bench_json", width="stretch")


def outcome(run: BenchRun) -> None:
    """How a finished run ended: done, stopped, or a readable error."""
    error = run.future.exception() if run.future is not None else None
    took = formatting.duration(run.elapsed())
    if isinstance(error, RagError):
        st.error(formatting.escape_markdown(str(error)), icon=":material/cloud_off:")
    elif error is not None:
        logging.getLogger("rag.app").error("benchmark failed", exc_info=error)
        st.error(formatting.escape_markdown(f"The benchmark failed ({type(error).__name__}: {error}).")
                 + " The details are in the server log.", icon=":material/error:")
    elif run.stop_event.is_set():
        st.warning(f"Stopped after {len(run.records)} of {run.planned} measurements ({took}).", icon=":material/stop_circle:")
    else:
        st.success(f"Done: {len(run.records)} measurements in {took}.", icon=":material/check_circle:")


def explain() -> None:
    with st.expander("Why the numbers come out as they do", icon=":material/lightbulb:"):
        st.markdown(
            "- **Async add and search** win by keeping many requests in flight: the time of one call is mostly "
            "waiting for Milvus, and gathered calls wait together.\n"
            "- On a Milvus server a Strong search waits for the server's time tick (about every 200 ms) so that it "
            "sees every earlier write, which is why the tutorial's sync-search figure is mostly that wait "
            "(try Bounded or Session to see it go).\n"
            "- **Batched inserts** save a round trip per node; LlamaIndex still serialises every node, so the gain "
            "over gathered one-node adds is a few times, not orders of magnitude.\n"
            "- **Milvus Lite** is one local process that serves one request at a time: gathering calls only queues "
            "them, so most of the async gain needs a server.\n"
            "- Every series uses a fresh `_rag_bench_…` collection, dropped afterwards; your collections are never touched."
        )


# The page ---------------------------------------------------------------------------------------

st.title(":material/speed: Benchmark", anchor=False)
st.markdown(
    "The Milvus + LlamaIndex async tutorial's study, run live against this app's Milvus: synthetic 768-d "
    "nodes added one per call (sync vs async), in batches, and top-3 searches (sync vs async), timed per "
    "call. Pick what to measure, run it, and see which way is fastest for your setup."
)
backend = bench_engine.backend_label(settings)
if settings.is_milvus_server:
    st.caption(f":material/database: Backend: **{formatting.escape_markdown(settings.milvus_display)}**")
else:
    st.info(
        f"Backend: **{formatting.escape_markdown(backend)}** ({formatting.escape_markdown(settings.milvus_display)}). "
        "Milvus Lite serves one request at a time, so most of the async gain needs a Milvus server. "
        "To measure one: run `python -m rag milvus-server`, then start the app with "
        "`MILVUS_URI=http://127.0.0.1:19530`.",
        icon=":material/info:",
    )

current: BenchRun | None = st.session_state.get(HOLDER_KEY)
controls(running=bool(current and current.running))
st.toggle("Show the tutorial's figures", value=True, key="bench_show_tutorial")
explain()


was_running = bool(current is not None and current.running)


@st.fragment(run_every=1 if was_running else None)
def live() -> None:
    run: BenchRun | None = st.session_state.get(HOLDER_KEY)
    if run is None:
        st.caption("No run yet: choose the series and press **Run benchmark**. Small counts (10, 100) take seconds.")
        return
    results(run)
    if was_running and not run.running:
        st.rerun()  # finished: redraw the whole page (Run button, downloads)


live()

st.divider()
quality.show(rag, common.active_collection())
