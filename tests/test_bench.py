"""The sync/async benchmark engine on real Milvus Lite and a real local Milvus server."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest
from pymilvus import MilvusClient

from rag.bench.data import produce_nodes
from rag.bench.engine import PREFIX, BenchEngine
from rag.bench.options import BenchOptions, options_from_args, parse_counts
from rag.bench.report import (
    RECORD_FIELDS,
    BenchRecord,
    build_record,
    format_row,
    format_summary,
    format_table,
    percentile,
    summarize,
    table_header,
)
from rag.config import Settings
from rag.errors import ConfigError
from rag.loop import shared_loop
from rag.storage.catalog import LITE_GRPC_OPTIONS
from tests.helpers import ROOT, clean_environ, free_port
from tests.milvus_fixtures import milvus_server  # noqa: F401  (fixture)

SMALL = dict(counts=(5, 20), search_rows=100, overhead_calls=10, batch_size=8)
ADD_MODES = ("sync", "async", "batch", "async-batch")


# Pure parts --------------------------------------------------------------------------------------


@pytest.mark.quick
def test_percentiles_match_numpy():
    import numpy as np

    values = [0.3, 0.01, 0.2, 0.05, 0.07, 1.5, 0.02, 0.4, 0.11]
    for q in (0, 50, 95, 99, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))
    assert percentile([], 50) == 0.0 and percentile([2.0], 99) == 2.0


@pytest.mark.quick
def test_records_tables_and_summaries():
    common = dict(backend="Milvus server v2.3.5", consistency="Strong", batch_size=1)
    sync = build_record("search", "sync", 100, 20.0, [0.2] * 100, concurrency=1, **common)
    fast = build_record("search", "async", 100, 0.5, [0.1] * 50 + [0.3] * 50, concurrency=100, **common)
    assert sync.throughput == 5.0 and sync.p50_ms == pytest.approx(200.0)
    assert fast.p50_ms == pytest.approx(200.0) and fast.p99_ms == pytest.approx(300.0)
    assert set(sync.to_json()) == set(RECORD_FIELDS) == {
        "operation", "mode", "count", "seconds", "p50_ms", "p95_ms", "p99_ms", "throughput",
        "backend", "consistency", "concurrency", "batch_size",
    }
    one = build_record("add", "async", 100, 1.0, [0.01] * 100, concurrency=100, **common)
    batch = build_record("add", "batch", 100, 0.04, [0.04], concurrency=1, **{**common, "batch_size": 100})
    plain = build_record("overhead", "pymilvus", 10, 2.0, [0.2] * 10, concurrency=1, **common)
    engine = build_record("overhead", "llamaindex", 10, 2.01, [0.201] * 10, concurrency=1, **common)
    summary = summarize([sync, fast, one, batch, plain, engine])
    assert summary == [
        {
            "backend": "Milvus server v2.3.5",
            "consistency": "Strong",
            "search_async_speedup": {100: 40.0},
            "batch_speedup": {"count": 100, "mode": "batch", "vs_async_one_node": 25.0},
            "overhead": {"pymilvus_p50_ms": 200.0, "llamaindex_p50_ms": 201.0, "per_call_ms": 1.0, "percent": 0.5},
        }
    ]
    text = format_summary(summary)
    assert "search speed-up over sync (per count) 100: 40.0x" in text and "0.5% of plain pymilvus" in text
    table = format_table([sync, fast]).splitlines()
    assert table[0] == table_header() and table[1] == format_row(sync) and len(table) == 3
    assert sorted(table[0].split()) == sorted(RECORD_FIELDS)
    assert format_row(fast).split()[:3] == ["search", "async", "100"]


@pytest.mark.quick
def test_nodes_are_the_tutorials():
    nodes = produce_nodes(3)
    assert [n.text for n in nodes] == ["n0_text", "n1_text", "n2_text"]
    assert all(len(n.embedding) == 768 and n.embedding[:767] == [0.5] * 767 for n in nodes)
    assert all(len(n.node_id) == 16 and n.node_id.isdigit() for n in nodes)
    assert nodes[1].ref_doc_id == "n2"  # the SOURCE relationship


@pytest.mark.quick
def test_option_parsing_and_errors():
    options = options_from_args("10, 100,1000", ["strong", "Bounded,session"], "0", "250")
    assert options.counts == (10, 100, 1000) and options.consistency == ("Strong", "Bounded", "Session")
    assert options.concurrency is None and options.batch_size == 250
    assert options_from_args(concurrency="4").concurrency == 4
    assert parse_counts("5") == (5,) and parse_counts("10 100; 1_000, 10") == (10, 100, 1000)
    for kwargs, message in [
        ({"counts": "10,abc"}, "'abc' is not a whole number"),
        ({"counts": ","}, "--counts needs at least one count"),
        ({"counts": "0"}, "out of range"),
        ({"consistency": ["Strongest"]}, "unknown consistency level 'Strongest'"),
        ({"concurrency": "-1"}, "--concurrency must be between 0"),
        ({"batch_size": "x"}, "--batch-size must be a whole number"),
    ]:
        with pytest.raises(ConfigError, match=message):
            options_from_args(**kwargs)
    with pytest.raises(ConfigError, match="operations"):
        BenchOptions(operations=("drop",))


# The engine on real Milvus ---------------------------------------------------------------------


def _bench_collections(client: MilvusClient) -> list[str]:
    return [name for name in client.list_collections() if name.startswith(PREFIX)]


def _make_user_collection(client: MilvusClient, name: str) -> None:
    client.create_collection(name, dimension=4, consistency_level="Strong")
    client.insert(name, [{"id": i, "vector": [0.1 * i] * 4} for i in range(7)])


def _user_rows(client: MilvusClient, name: str) -> int:
    return client.query(name, filter="", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"]


def _check_records(records: list[BenchRecord], options: BenchOptions, backend: str) -> None:
    seen = [(r.consistency, r.operation, r.mode, r.count) for r in records]
    expected = []
    for level in options.consistency:
        expected += [(level, "add", mode, count) for mode in ADD_MODES for count in options.counts]
        expected += [(level, "search", "sync", count) for count in options.counts]
        expected += [(level, "overhead", "pymilvus", options.overhead_calls), (level, "overhead", "llamaindex", options.overhead_calls)]
        expected += [(level, "search", "async", count) for count in options.counts]
    assert seen == expected
    for r in records:
        assert r.backend == backend
        assert r.seconds > 0 and 0 < r.p50_ms <= r.p95_ms <= r.p99_ms
        assert r.throughput == pytest.approx(r.count / r.seconds, rel=0.01, abs=0.06)  # rounded to 0.1
        if r.mode == "async":
            assert r.concurrency == min(options.concurrency or r.count, r.count) and r.batch_size == 1
        elif r.mode == "async-batch":
            batches = -(-r.count // options.batch_size)
            assert r.concurrency == min(options.concurrency or batches, batches)
            assert r.batch_size == min(options.batch_size, r.count)
        else:
            assert r.concurrency == 1
    one_node = [r for r in records if r.operation == "add" and r.mode in ("sync", "async")]
    assert all(r.batch_size == 1 for r in one_node)


def test_engine_on_milvus_lite(tmp_path):
    settings = Settings(_env_file=None, RAG_DATA_DIR=tmp_path)
    client = MilvusClient(uri=settings.resolved_milvus_uri, grpc_options=LITE_GRPC_OPTIONS)
    _make_user_collection(client, "user_docs")
    seen: list[BenchRecord] = []
    options = BenchOptions(consistency=("Bounded", "Session"), **SMALL)
    engine = BenchEngine(settings, options, on_record=seen.append)
    records = engine.measure()
    assert records == seen == engine.records and not engine.stopped
    _check_records(records, options, engine.backend)
    assert engine.backend.startswith("Milvus Lite 2.5")
    assert _bench_collections(client) == [] and engine.created == []
    assert client.list_collections() == ["user_docs"] and _user_rows(client, "user_docs") == 7
    client.close()


def test_engine_on_a_server_with_a_concurrency_limit(milvus_server, tmp_path):  # noqa: F811
    settings = Settings(_env_file=None, RAG_DATA_DIR=tmp_path, MILVUS_URI=milvus_server.uri)
    client = MilvusClient(uri=milvus_server.uri)
    _make_user_collection(client, "user_docs")
    options = BenchOptions(consistency=("Strong",), concurrency=4, **SMALL)
    statuses: list[str] = []

    def from_a_fresh_thread(out: list) -> None:  # as a Streamlit script thread would
        out.extend(BenchEngine(settings, options, on_status=statuses.append).measure())

    records: list[BenchRecord] = []
    thread = threading.Thread(target=from_a_fresh_thread, args=(records,))
    thread.start()
    thread.join(timeout=600)
    assert not thread.is_alive() and records
    _check_records(records, options, "Milvus server v2.3.5-lite")
    assert statuses[0].startswith("connecting to Milvus server") and statuses[-1] == "done"
    assert _bench_collections(client) == []
    assert "user_docs" in client.list_collections() and _user_rows(client, "user_docs") == 7
    client.close()


def test_stop_between_measurements_drops_the_collections(milvus_server, tmp_path):  # noqa: F811
    settings = Settings(_env_file=None, RAG_DATA_DIR=tmp_path, MILVUS_URI=milvus_server.uri)
    stop = threading.Event()
    seen: list[BenchRecord] = []

    def on_record(record: BenchRecord) -> None:
        seen.append(record)
        if len(seen) == 3:
            stop.set()

    engine = BenchEngine(settings, BenchOptions(consistency=("Bounded",), **SMALL), on_record=on_record, stop=stop)
    records = engine.measure()
    assert engine.stopped and len(records) == 3 and records == seen
    client = MilvusClient(uri=milvus_server.uri)
    assert _bench_collections(client) == []

    # Stopped before it starts: nothing measured, nothing left behind; the shared loop still works.
    stop = threading.Event()
    stop.set()
    engine = BenchEngine(settings, BenchOptions(**SMALL), stop=stop)
    assert engine.measure() == [] and engine.stopped
    assert _bench_collections(client) == []
    assert shared_loop().run(_answer()) == 42
    client.close()


async def _answer() -> int:
    return 42


def test_a_server_that_is_down_is_a_clear_error(tmp_path):
    from rag.errors import StoreUnavailable
    port = free_port()  # nothing listens there
    settings = Settings(_env_file=None, RAG_DATA_DIR=tmp_path, MILVUS_URI=f"http://127.0.0.1:{port}")
    with pytest.raises(StoreUnavailable, match=f"cannot use Milvus server http://127.0.0.1:{port}: .*Check that Milvus"):
        BenchEngine(settings, BenchOptions(**SMALL)).measure()


# The command line --------------------------------------------------------------------------------


def _cli(*args: str, data) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rag", "bench", *args], cwd=ROOT, env=clean_environ(RAG_DATA_DIR=str(data)),
        capture_output=True, text=True, timeout=300,
    )


def test_cli_json_has_one_record_per_measurement(tmp_path):
    result = _cli("--counts", "3,6", "--consistency", "Eventually", "--concurrency", "2", "--batch-size", "4", "--json", data=tmp_path)
    assert result.returncode == 0, result.stderr
    records = json.loads(result.stdout)
    assert len(records) == 2 * 4 + 2 * 2 + 2  # add modes, searches, overhead
    assert all(set(r) == set(RECORD_FIELDS) for r in records)
    assert {r["consistency"] for r in records} == {"Eventually"}
    assert {(r["operation"], r["mode"]) for r in records} >= {("add", "async"), ("search", "async"), ("overhead", "llamaindex")}
    assert all(r["concurrency"] <= 2 for r in records)


@pytest.mark.parametrize(
    "args, message",
    [
        (("--counts", "10,x"), "--counts: 'x' is not a whole number"),
        (("--consistency", "Strong", "Weak"), "unknown consistency level 'Weak'"),
        (("--concurrency", "many"), "--concurrency must be a whole number"),
        (("--batch-size", "0"), "--batch-size must be between 1"),
    ],
)
def test_cli_bad_arguments_are_one_line_errors(tmp_path, args, message):
    result = _cli(*args, data=tmp_path)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.stderr
    assert result.stdout == "" and not (tmp_path / "milvus.db").exists(), "nothing runs on bad arguments"
