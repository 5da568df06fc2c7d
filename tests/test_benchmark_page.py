"""The Benchmark page through `AppTest`, against the real engine on a temporary Milvus Lite.

Runs are tiny (counts 3 and 5, a few dozen nodes to search over), so the module takes seconds.
"""

from __future__ import annotations

import csv
import io
import json
import threading
from concurrent.futures import Future

import pytest

from rag import bench
from rag.errors import StoreUnavailable
from tests.test_app import _app_environment, new_app, open_page, plain, texts

RUN_KEY = "bench_run"


@pytest.fixture(scope="module")
def bench_rag(tmp_path_factory):
    yield from _app_environment(tmp_path_factory)


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


def test_helpers_for_the_page():
    rec = bench.build_record("add", "sync", 10, 2.0, [0.2] * 10, backend="b", consistency="Strong", concurrency=1, batch_size=1)
    fast = bench.build_record("add", "async", 10, 0.5, [0.05] * 10, backend="b", consistency="Strong", concurrency=10, batch_size=1)
    assert bench.speedup_rows([rec, fast]) == [
        {"operation": "add", "count": 10, "consistency": "Strong", "backend": "b", "speedup": 4.0}
    ]
    rows = list(csv.DictReader(io.StringIO(bench.records_csv([rec, fast]))))
    assert [r["mode"] for r in rows] == ["sync", "async"] and tuple(rows[0]) == bench.RECORD_FIELDS
    assert json.loads(bench.records_json([rec]))[0]["seconds"] == 2.0
    assert {(r["operation"], r["count"]): r["speedup"] for r in bench.tutorial_speedup_rows()}[("search", 1000)] == 35.05
    assert len(bench.tutorial_rows()) == 12
    assert bench.planned_measurements(bench.BenchOptions(counts=(3, 5), operations=("add", "search"))) == 12


def test_the_page_shows_controls_and_the_lite_note(bench_rag):
    at = _page()
    assert at.title[0].value.endswith("Benchmark")
    assert at.text_input(key="bench_counts").value == "10, 100, 1000"
    assert set(at.multiselect(key="bench_consistency").options) == set(bench.CONSISTENCY_LEVELS)
    assert at.number_input(key="bench_concurrency").value == 0
    assert at.number_input(key="bench_batch_size").value == 100
    note = plain(" ".join(i.value for i in at.info))
    assert "Milvus Lite" in note and "one request at a time" in note
    assert "python -m rag milvus-server" in note and "MILVUS_URI=http://127.0.0.1:19530" in note
    assert "time tick" in plain(texts(at))
    assert not at.button(key="bench_run_button").disabled and at.button(key="bench_stop_button").disabled


@pytest.mark.parametrize(
    ("counts", "message"),
    [("", "Counts needs at least one count"), ("10, ten", "Counts: 'ten' is not a whole number"), ("0", "Counts: 0 is out of range (1 to 100,000)")],
)
def test_bad_counts_are_a_clear_error(bench_rag, counts, message):
    at = _configure(_page(), counts=counts)
    at.button(key="bench_run_button").click().run()
    assert not at.exception
    assert any(message in plain(e.value) for e in at.error), [e.value for e in at.error]
    assert RUN_KEY not in at.session_state


def test_a_tiny_run_fills_the_table_charts_and_downloads(bench_rag):
    rag = bench_rag
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
    assert not [n for n in names if n.startswith(bench.PREFIX)], names


def test_the_stop_button_stops_a_run(bench_rag):
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


class FailedRun:
    """What the page keeps for a run that ended in an error (Milvus went away mid-run)."""

    def __init__(self, error: Exception) -> None:
        self.future = Future()
        self.future.set_exception(error)
        self.stop_event = threading.Event()
        self.records, self.status, self.planned, self.running = [], "done", 4, False

    def elapsed(self) -> float:
        return 1.0


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (StoreUnavailable("cannot use Milvus server http://127.0.0.1:1: connection refused"), "cannot use Milvus server"),
        (ValueError("boom"), "The benchmark failed (ValueError: boom)"),
    ],
)
def test_a_failed_run_is_a_readable_message(bench_rag, error, message):
    at = _page()
    at.session_state[RUN_KEY] = FailedRun(error)
    at.run()
    assert not at.exception, at.exception
    assert any(message in plain(e.value) for e in at.error), [e.value for e in at.error]
    assert "Traceback" not in texts(at)
