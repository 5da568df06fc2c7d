"""The Benchmark page through `AppTest`, against the real engine on a temporary Milvus Lite.

Runs are tiny (counts 3 and 5, a few dozen nodes to search over), so the module takes seconds; the
chart specs are checked on a hand-made finished run, so their figures are known.
"""

from __future__ import annotations

import csv
import io
import json
import threading
from concurrent.futures import Future

import pytest

from rag.bench import charts as bench_charts
from rag.bench import engine as bench_engine
from rag.bench import options as bench_options
from rag.bench import report as bench_report
from rag.errors import StoreUnavailable
from tests.helpers import new_app, open_page, plain, texts

RUN_KEY = "bench_run"


def _page():
    at = open_page(new_app(), "benchmark")
    assert not at.exception, at.exception
    return at


def _configure(at, counts="3, 5", series=("add", "search"), search_rows=20, levels=("Strong",)):
    at.text_input(key="bench_counts").set_value(counts)
    at.pills(key="bench_series").set_value(list(series))
    at.number_input(key="bench_search_rows").set_value(search_rows)
    at.multiselect(key="bench_consistency").set_value(list(levels))
    return at


def _finish(at, timeout=60):
    run = at.session_state[RUN_KEY]
    run.future.result(timeout)
    at.run()
    assert not at.exception, at.exception
    return run


def _charts(at):
    return at.get("vega_lite_chart")


def _record(operation, mode, count, seconds, consistency="Strong"):
    return bench_report.build_record(operation, mode, count, seconds, [seconds / count] * count, backend="Milvus Lite 2.5.1",
                              consistency=consistency, concurrency=1, batch_size=1)


# A finished run on Milvus Lite: async about as fast as sync (1x), next to the tutorial's 35x.
RECORDS = [
    *(_record("add", mode, count, seconds) for count in (10, 100)
      for mode, seconds in (("sync", count * 0.003), ("async", count * 0.0028), ("batch", 0.02), ("async-batch", 0.03))),
    *(_record("search", mode, count, count * 0.0025) for count in (10, 100) for mode in ("sync", "async")),
    _record("overhead", "pymilvus", 100, 0.26),
    _record("overhead", "llamaindex", 100, 0.32),
]


@pytest.mark.quick
def test_helpers_for_the_page():
    rec, fast = _record("add", "sync", 10, 2.0), _record("add", "async", 10, 0.5)
    rows = list(csv.DictReader(io.StringIO(bench_report.records_csv([rec, fast]))))
    assert [r["mode"] for r in rows] == ["sync", "async"] and tuple(rows[0]) == bench_report.RECORD_FIELDS
    assert json.loads(bench_report.records_json([rec]))[0]["seconds"] == 2.0
    assert bench_options.planned_measurements(bench_options.BenchOptions(counts=(3, 5), operations=("add", "search"))) == 12


@pytest.mark.quick
def test_chart_rows_carry_panels_groups_and_labels():
    rec, fast = _record("add", "sync", 10, 2.0), _record("add", "async", 10, 0.5)
    assert bench_charts.speedup_rows([rec, fast], tutorial=False) == [
        {"panel": "this run", "group": "10", "count": 10, "operation": "add", "speedup": 4.0, "label": "4×"}
    ]
    tutorial = {(r["operation"], r["group"]): r["label"] for r in bench_charts.speedup_rows([rec, fast])
                if r["panel"] == bench_charts.TUTORIAL_PANEL}
    assert tutorial[("search", "1000")] == "35×" and len(tutorial) == 6
    times = bench_charts.time_rows([rec, fast, _record("add", "sync", 5, 0.0)], "add")
    assert [(r["panel"], r["group"], r["mode"]) for r in times[:3]] == [
        ("this run", "5", "sync"), ("this run", "10", "sync"), ("this run", "10", "async")
    ]
    assert times[0]["seconds"] == bench_charts.MIN_SECONDS and times[0]["label"] == "0"  # a log axis has no zero
    assert sum(r["panel"] == bench_charts.TUTORIAL_PANEL for r in times) == 6
    assert bench_charts.groups(times) == ["5", "10", "100", "1000"]  # counts in order, not as strings
    levels = [_record("search", "sync", 10, 2.0, "Bounded"), _record("search", "sync", 10, 0.05, "Strong")]
    assert bench_charts.groups(bench_charts.time_rows(levels, "search", tutorial=False)) == ["10 · Bounded", "10 · Strong"]
    assert [bench_charts.value_label(v) for v in (0.02834, 0.343, 5.85, 308.8, 12345.0)] == ["0.028", "0.34", "5.8", "309", "12,345"]
    assert bench_charts.log_domain([0.02, 309]) == [0.01, 1000]
    assert bench_charts.decades([0.001, 1000]) == [0.001, 0.01, 0.1, 1, 10, 100, 1000]
    assert bench_charts.linear_domain([0.8], floor=1) == [0.0, 1.25]


def test_the_page_shows_controls_and_the_lite_note(app_rag):
    at = _page()
    assert at.title[0].value.endswith("Benchmark")
    assert at.text_input(key="bench_counts").value == "10, 100, 1000"
    assert set(at.multiselect(key="bench_consistency").options) == set(bench_options.CONSISTENCY_LEVELS)
    assert at.number_input(key="bench_concurrency").value == 0
    assert at.number_input(key="bench_batch_size").value == 100
    note = plain(" ".join(i.value for i in at.info))
    assert "Milvus Lite" in note and "one request at a time" in note
    assert "python -m rag milvus-server" in note and "MILVUS_URI=http://127.0.0.1:19530" in note
    assert "time tick" in plain(texts(at))
    assert not at.button(key="bench_run_button").disabled and at.button(key="bench_stop_button").disabled


@pytest.mark.parametrize(
    ("counts", "message"),
    [("", "Counts needs at least one count"), ("10, ten", "Counts: 'ten' is not a whole number"),
     ("0", "Counts: 0 is out of range (1 to 100,000)")],
)
def test_bad_counts_are_a_clear_error(app_rag, counts, message):
    at = _configure(_page(), counts=counts)
    at.button(key="bench_run_button").click().run()
    assert not at.exception
    assert any(message in plain(e.value) for e in at.error), [e.value for e in at.error]
    assert RUN_KEY not in at.session_state


def test_a_tiny_run_fills_the_table_charts_and_downloads(app_rag):
    rag = app_rag
    rag.create_collection("mine")
    before = sorted(c.name for c in rag.collections())
    at = _configure(_page(), series=("add", "batched", "search", "overhead"))
    at.button(key="bench_run_button").click().run()
    assert not at.exception, at.exception
    run = _finish(at)
    assert any("Done: 14 measurements" in s.value for s in at.success), (texts(at), run.future.exception())
    df = at.dataframe[0].value
    assert len(df) == 14 and set(df["count"]) == {3, 5, 100}
    assert set(df["mode"]) == {"sync", "async", "batch", "async-batch", "pymilvus", "llamaindex"}
    assert set(df["operation"]) == {"add", "search", "overhead"} and (df["seconds"] > 0).all()
    assert {"p50_ms", "p95_ms", "p99_ms", "throughput"} <= set(df.columns)
    assert df["backend"].str.startswith("Milvus Lite").all()
    assert len(_charts(at)) == 4, "add and search times, the overhead, and the sync/async speed-up"
    assert [b.label for b in at.get("download_button")] == ["Download CSV", "Download JSON"]
    assert any("Fastest for 5 nodes" in m.value and "LlamaIndex adds" in m.value for m in at.markdown)
    assert len(run.records) == 14
    # Nothing of the user's was touched, and nothing of the benchmark's was left behind.
    assert sorted(c.name for c in rag.collections()) == before
    from pymilvus import MilvusClient

    names = MilvusClient(uri=rag.settings.resolved_milvus_uri).list_collections()
    assert not [n for n in names if n.startswith(bench_engine.PREFIX)], names


def test_the_stop_button_stops_a_run(app_rag):
    at = _configure(_page(), counts="5000", series=("add",))
    at.button(key="bench_run_button").click().run()
    assert not at.exception, at.exception
    assert at.button(key="bench_run_button").disabled and not at.button(key="bench_stop_button").disabled
    assert at.progress, "a running benchmark shows its progress"
    at.button(key="bench_stop_button").click().run()
    run = _finish(at, timeout=30)
    assert run.stop_event.is_set() and len(run.records) < 2
    assert any("Stopped after" in w.value for w in at.warning)
    assert not at.button(key="bench_run_button").disabled


class EndedRun:
    """What the page keeps for a run that has ended: with its records, or with an error (Milvus went away mid-run)."""

    def __init__(self, records=(), error: Exception | None = None) -> None:
        self.future = Future()
        if error is None:
            self.future.set_result(list(records))
        else:
            self.future.set_exception(error)
        self.stop_event = threading.Event()
        self.records, self.status, self.planned, self.running = list(records), "done", max(len(records), 4), False

    def elapsed(self) -> float:
        return 1.0


def _specs(at):
    return [json.loads(chart.proto.spec) for chart in _charts(at)]


def _layers(spec):
    """Each panel's bars and labels (and any other layers), by panel title."""
    return {panel["title"]: {layer["mark"]["type"]: layer for layer in panel["layer"]} for panel in spec["concat"]}


def test_every_chart_labels_its_bars_and_keeps_magnitudes_apart(app_rag):
    at = _page()
    at.session_state[RUN_KEY] = EndedRun(RECORDS)
    at.run()
    assert not at.exception, at.exception
    specs = _specs(at)
    titles = [s["title"] if isinstance(s["title"], str) else s["title"]["text"] for s in specs]
    assert titles == ["Adding nodes: wall time per series", "Searching: wall time per series",
                      "Async speed-up over sync", "Engine overhead per search"]
    units = ["(s, log scale)", "(s, log scale)", "(×, sync s ÷ async s)", "(ms)"]
    for spec, unit in zip(specs, units, strict=True):
        for title, layers in _layers(spec).items():
            bar, text = layers["bar"]["encoding"], layers["text"]["encoding"]
            assert text["text"]["field"] == "label", title  # a value label on every bar
            assert bar["x"]["axis"]["labelAngle"] == 0, title  # horizontal count labels
            assert bar["y"]["title"].endswith(unit), title  # units on the value axis
            assert bar["y2"]["datum"] == bar["y"]["scale"]["domain"][0], title  # bars rise from the axis' bottom
    # Wall times: this run and the tutorial side by side, on one shared log axis.
    for spec in specs[:2]:
        assert list(_layers(spec)) == ["this run", "tutorial (Milvus server, Strong)"]
        assert spec["resolve"]["scale"]["y"] == "shared"
        assert {layers["bar"]["encoding"]["y"]["scale"]["type"] for layers in _layers(spec).values()} == {"log"}
    # Speed-ups: this run's ~1x and the tutorial's 35x each on their own axis, with the 1x line.
    speedups = _layers(specs[2])
    assert specs[2]["resolve"]["scale"]["y"] == "independent"
    run_top = speedups["this run"]["bar"]["encoding"]["y"]["scale"]["domain"][1]
    tutorial_top = speedups["tutorial (Milvus server, Strong)"]["bar"]["encoding"]["y"]["scale"]["domain"][1]
    assert run_top < 2 and tutorial_top > 35
    assert all("rule" in layers for layers in speedups.values())
    assert list(_layers(specs[3])) == ["Strong"]


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (StoreUnavailable("cannot use Milvus server http://127.0.0.1:1: connection refused"), "cannot use Milvus server"),
        (ValueError("boom"), "The benchmark failed (ValueError: boom)"),
    ],
)
def test_a_failed_run_is_a_readable_message(app_rag, error, message):
    at = _page()
    at.session_state[RUN_KEY] = EndedRun(error=error)
    at.run()
    assert not at.exception, at.exception
    assert any(message in plain(e.value) for e in at.error), [e.value for e in at.error]
    assert "Traceback" not in texts(at)
