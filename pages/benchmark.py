"""Benchmark: the Milvus + LlamaIndex async tutorial's study, run live against the app's own Milvus.

The engine (`rag.bench.BenchEngine`) runs in a background thread and hands over each measurement
as it completes; the page keeps them in a thread-safe holder in the session and redraws the
results every second while the run lasts. The engine only ever uses `_rag_bench_...` collections,
which it drops afterwards: the user's collections are never touched.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import altair as alt
import pandas as pd
import streamlit as st

from pages import common
from rag import bench
from rag.errors import ConfigError, RagError

common.require_shell()

HOLDER_KEY = "bench_run"
SERIES = {
    "add": "Add one node per call: sync vs async",
    "batched": "Batched inserts: one batch call, and async batches gathered",
    "search": "Search: sync vs async",
    "overhead": "Engine overhead: pymilvus vs LlamaIndex search",
}
DEFAULT_SERIES = ["add", "batched", "search"]
MODE_COLORS = {"sync": "#d62728", "async": "#1f77b4", "batch": "#2ca02c", "async-batch": "#9467bd",
               "pymilvus": "#8c564b", "llamaindex": "#e377c2"}
RUN_LABEL = "this run"


@dataclass
class BenchRun:
    """One run's state, shared between the engine's thread and the page (guarded by a lock)."""

    options: bench.BenchOptions
    planned: int
    stop_event: threading.Event = field(default_factory=threading.Event)
    future: Future | None = None
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    _records: list[bench.BenchRecord] = field(default_factory=list)
    _status: str = "starting"
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, record: bench.BenchRecord) -> None:
        with self._lock:
            self._records.append(record)

    def set_status(self, message: str) -> None:
        with self._lock:
            self._status = message

    @property
    def records(self) -> list[bench.BenchRecord]:
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
            "Counts", value=", ".join(map(str, bench.DEFAULT_COUNTS)), key="bench_counts",
            help="How many nodes to add, or queries to run, per measurement. Comma-separated.",
        )
        b.multiselect(
            "Consistency levels", bench.CONSISTENCY_LEVELS, default=["Strong"], key="bench_consistency",
            help="Each level is a separate run of every series. Strong reads wait for all earlier writes.",
        )
        st.pills(
            "Series", list(SERIES), default=DEFAULT_SERIES, selection_mode="multi", key="bench_series",
            format_func=SERIES.get,
        )
        c, d, e = st.columns(3)
        c.number_input(
            "Concurrency limit", min_value=0, max_value=bench.MAX_COUNT, value=0, step=1, key="bench_concurrency",
            help="Async calls in flight at most; 0 = all at once, as in the tutorial.",
        )
        d.number_input(
            "Batch size", min_value=1, max_value=bench.MAX_COUNT, value=bench.DEFAULT_BATCH_SIZE, step=10,
            key="bench_batch_size", help="Nodes per insert request in the batched series (LlamaIndex's default: 100).",
        )
        e.number_input(
            "Nodes to search over", min_value=1, max_value=bench.MAX_COUNT, value=bench.DEFAULT_SEARCH_ROWS, step=100,
            key="bench_search_rows", help="Loaded once before the search series (the tutorial: 1,000).",
        )
        left, right, _ = st.columns([2, 1, 5])
        run = left.button("Run benchmark", key="bench_run_button", type="primary", icon=":material/play_arrow:",
                          disabled=running, width="stretch")
        right.button("Stop", key="bench_stop_button", icon=":material/stop:", disabled=not running,
                     on_click=stop_run, width="stretch")
        if run:
            start_run()


def read_options() -> bench.BenchOptions:
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
    return bench.BenchOptions(
        counts=bench.parse_counts(state.get("bench_counts", ""), "Counts"),
        consistency=levels,
        concurrency=int(state.get("bench_concurrency") or 0) or None,
        batch_size=int(state.get("bench_batch_size") or bench.DEFAULT_BATCH_SIZE),
        batched="batched" in series,
        operations=operations,
        search_rows=int(state.get("bench_search_rows") or bench.DEFAULT_SEARCH_ROWS),
    )


def start_run() -> None:
    try:
        options = read_options()
    except ConfigError as exc:
        st.error(common.escape_markdown(str(exc)), icon=":material/error:")
        return
    run = BenchRun(options, bench.planned_measurements(options))
    engine = bench.BenchEngine(settings, options, on_record=run.add, stop=run.stop_event, on_status=run.set_status)
    run.future = engine.start()
    st.session_state[HOLDER_KEY] = run
    st.rerun()  # redraw with the Run button disabled and the live results


def stop_run() -> None:
    run = st.session_state.get(HOLDER_KEY)
    if run is not None:
        run.stop_event.set()
        run.set_status("stopping after the current call")


# Results ----------------------------------------------------------------------------------------


def frame(records: list[bench.BenchRecord]) -> pd.DataFrame:
    return pd.DataFrame([r.to_json() for r in records], columns=list(bench.RECORD_FIELDS))


def series_label(df: pd.DataFrame) -> pd.Series:
    if df["consistency"].nunique() > 1:
        return df["mode"] + " · " + df["consistency"]
    return df["mode"]


def overhead_chart(df: pd.DataFrame) -> alt.Chart | None:
    """The same search through plain pymilvus and through LlamaIndex: median and p95 per call."""
    mine = df[df["operation"] == "overhead"]
    if mine.empty:
        return None
    data = mine.melt(id_vars=["mode", "consistency"], value_vars=["p50_ms", "p95_ms"], var_name="statistic", value_name="ms")
    return (
        alt.Chart(data, title="engine overhead: one search, per call")
        .mark_bar()
        .encode(
            x=alt.X("statistic:N", title=None),
            xOffset="mode:N",
            y=alt.Y("ms:Q", title="milliseconds"),
            color=alt.Color("mode:N", scale=alt.Scale(domain=["pymilvus", "llamaindex"],
                                                        range=[MODE_COLORS["pymilvus"], MODE_COLORS["llamaindex"]])),
            tooltip=["mode", "consistency", "statistic", alt.Tooltip("ms:Q", format=".2f")],
        )
        .properties(height=300)
    )


def time_chart(df: pd.DataFrame, operation: str, tutorial: bool) -> alt.Chart | None:
    if operation == "overhead":
        return overhead_chart(df)
    mine = df[df["operation"] == operation][["mode", "count", "seconds", "consistency"]].copy()
    if mine.empty:
        return None
    mine["series"] = series_label(mine)
    several = mine["consistency"].nunique() > 1
    mine["source"] = RUN_LABEL
    parts = [mine]
    if tutorial and operation in ("add", "search"):
        tut = pd.DataFrame([r for r in bench.tutorial_rows() if r["operation"] == operation])
        tut["series"] = tut["mode"]
        tut["source"] = bench.TUTORIAL_LABEL
        tut["consistency"] = "Strong"
        parts.append(tut.drop(columns=["operation"]))
    data = pd.concat(parts, ignore_index=True)
    data["seconds"] = data["seconds"].clip(lower=1e-4)  # log scale
    modes = [m for m in MODE_COLORS if m in set(data["mode"])]
    what = "nodes" if operation == "add" else ("queries" if operation == "search" else "calls")
    return (
        alt.Chart(data, title=f"{operation}: wall time by count")
        .mark_line(point=True)
        .encode(
            x=alt.X("count:Q", scale=alt.Scale(type="log"), title=f"{what} (log)"),
            y=alt.Y("seconds:Q", scale=alt.Scale(type="log"), title="seconds (log)"),
            color=alt.Color("mode:N", scale=alt.Scale(domain=modes, range=[MODE_COLORS[m] for m in modes]), title="mode"),
            strokeDash=alt.StrokeDash("source:N", scale=alt.Scale(domain=[RUN_LABEL, bench.TUTORIAL_LABEL], range=[[1, 0], [5, 4]]),
                                      legend=None),  # the caption says: dashed = the tutorial
            shape=alt.Shape("consistency:N", title="consistency", legend=alt.Legend() if several else None),
            detail="series:N",
            tooltip=["source", "mode", "consistency", "count", alt.Tooltip("seconds:Q", format=".3f")],
        )
        .properties(height=300)
    )


def speedup_chart(records: list[bench.BenchRecord]) -> alt.Chart | None:
    rows = bench.speedup_rows(records)
    if not rows:
        return None
    mine = pd.DataFrame(rows)
    levels = mine["consistency"].nunique() > 1
    mine["source"] = RUN_LABEL + mine["consistency"].map(lambda c: f" ({c})") if levels else RUN_LABEL
    tut = pd.DataFrame(bench.tutorial_speedup_rows())
    tut = tut[tut["count"].isin(set(mine["count"]))]
    tut["source"] = bench.TUTORIAL_LABEL
    data = pd.concat([mine[["operation", "count", "speedup", "source"]], tut], ignore_index=True)
    return (
        alt.Chart(data, title="async speed-up over sync (sync seconds / async seconds)")
        .mark_bar()
        .encode(
            x=alt.X("count:O", title="count"),
            xOffset="source:N",
            y=alt.Y("speedup:Q", title="times faster"),
            color=alt.Color("source:N", title="figures"),
            column=alt.Column("operation:N", title=None),
            tooltip=["operation", "count", "source", alt.Tooltip("speedup:Q", format=".1f")],
        )
        .properties(height=260, width=260)
    )


def fastest_lines(records: list[bench.BenchRecord]) -> list[str]:
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
    for s in bench.summarize(records):
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
        st.progress(fraction, text=f"{done} of {run.planned} measurements · {common.escape_markdown(run.status)} · "
                                   f"{common.duration(run.elapsed())} elapsed")
    else:
        outcome(run)
    if not records:
        if run.running:
            st.caption("The first results appear here as soon as they are measured.")
        return
    df = frame(records)
    backends = ", ".join(dict.fromkeys(r.backend for r in records))
    tutorial = st.session_state.get("bench_show_tutorial", True)
    note = " · dashed lines: the tutorial's published figures" if tutorial else ""
    st.caption(f"Measured on **{common.escape_markdown(backends)}**{note}")
    charts = [c for c in (time_chart(df, op, tutorial) for op in ("add", "search", "overhead")) if c is not None]
    for left, right in zip(charts[::2], [*charts[1::2], None]):
        cols = st.columns(2)
        cols[0].altair_chart(left, width="stretch")
        if right is not None:
            cols[1].altair_chart(right, width="stretch")
    if (chart := speedup_chart(records)) is not None:
        st.altair_chart(chart)
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
        a.download_button("Download CSV", bench.records_csv(records), "benchmark.csv", "text/csv",
                          icon=":material/download:", key="bench_csv", width="stretch")
        b.download_button("Download JSON", bench.records_json(records), "benchmark.json", "application/json",
                          icon=":material/download:", key="bench_json", width="stretch")


def outcome(run: BenchRun) -> None:
    """How a finished run ended: done, stopped, or a readable error."""
    error = run.future.exception() if run.future is not None else None
    took = common.duration(run.elapsed())
    if isinstance(error, RagError):
        st.error(common.escape_markdown(str(error)), icon=":material/cloud_off:")
    elif error is not None:
        common.log.error("benchmark failed", exc_info=error)
        st.error(common.escape_markdown(f"The benchmark failed ({type(error).__name__}: {error}).")
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
backend = bench.backend_label(settings)
if settings.is_milvus_server:
    st.caption(f":material/database: Backend: **{common.escape_markdown(settings.milvus_display)}**")
else:
    st.info(
        f"Backend: **{common.escape_markdown(backend)}** ({common.escape_markdown(settings.milvus_display)}). "
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
