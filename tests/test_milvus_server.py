"""The core against a real Milvus server (standalone 2.3.5, started locally), and a server that is down."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from rag.config import Settings
from rag.errors import StoreUnavailable
from rag.options import AskOptions
from rag.service import Rag
from rag.storage.local_server import LocalMilvusServer, MilvusServerError, port_in_use
from tests import docs
from tests.helpers import ROOT, clean_environ, free_port
from tests.milvus_fixtures import milvus_server  # noqa: F401  (fixture)

pytestmark = pytest.mark.server


def test_the_core_ingests_answers_and_deletes_on_a_server(milvus_server, tmp_path):  # noqa: F811
    assert milvus_server.running and milvus_server.uri == f"http://127.0.0.1:{milvus_server.port}"
    corpus = docs.make_corpus(tmp_path / "corpus")
    settings = Settings(_env_file=None, RAG_DATA_DIR=tmp_path / "data", MILVUS_URI=milvus_server.uri)
    assert settings.is_milvus_server
    with Rag(settings) as rag:
        report = rag.ingest([corpus["manual.pdf"], corpus["notes.md"]], "on_server")
        assert {r.doc_id: r.status for r in report.results} == {"manual.pdf": "indexed", "notes.md": "indexed"}
        assert [c.name for c in rag.collections()] == ["on_server"]

        answer = rag.ask("At what pressure does the Zephyr pump operate?", AskOptions("on_server", top_k=2, retrieve_only=True))
        assert answer.answer is None
        assert answer.sources[0].file == "manual.pdf" and answer.sources[0].page == 2
        assert "42 bar" in answer.sources[0].text

        answer = rag.ask("When does the heron migration start?", AskOptions("on_server", top_k=1, retrieve_only=True))
        assert answer.sources[0].file == "notes.md"

        before = rag.count_chunks("on_server")
        record = rag.delete("manual.pdf", "on_server")
        assert record.chunks > 0 and rag.count_chunks("on_server") == before - record.chunks
        assert rag.count_chunks("on_server", "manual.pdf") == 0
        assert [d.doc_id for d in rag.documents("on_server")] == ["notes.md"]


def test_a_server_that_is_down_is_reported_clearly(tmp_path):
    port = free_port()  # nothing listens there
    settings = Settings(_env_file=None, RAG_DATA_DIR=tmp_path, MILVUS_URI=f"http://127.0.0.1:{port}")
    rag = Rag(settings)
    with pytest.raises(StoreUnavailable) as info:
        rag.collections()
    message = str(info.value)
    assert f"Milvus server http://127.0.0.1:{port}" in message
    assert "Check that Milvus is running" in message and "\n" not in message


def test_a_busy_port_is_refused_with_one_line(milvus_server, tmp_path):  # noqa: F811
    assert port_in_use(milvus_server.port)
    with pytest.raises(MilvusServerError, match=f"port {milvus_server.port} is busy"):
        LocalMilvusServer(tmp_path / "second", port=milvus_server.port).start()
    with pytest.raises(MilvusServerError, match="between 1 and 65535"):
        LocalMilvusServer(tmp_path / "third", port=70000)


def test_cli_busy_port_is_a_one_line_error(milvus_server, tmp_path):  # noqa: F811
    result = subprocess.run(
        [sys.executable, "-m", "rag", "milvus-server", "--port", str(milvus_server.port)],
        cwd=ROOT, env=clean_environ(RAG_DATA_DIR=str(tmp_path)), capture_output=True, text=True, timeout=120,
    )
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and len(errors) == 1 and "is busy" in errors[0], result.stderr


def test_cli_serves_until_ctrl_c_and_stops_cleanly(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rag", "milvus-server", "--port", str(port)],
        cwd=ROOT, env=clean_environ(RAG_DATA_DIR=str(tmp_path)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Ctrl-C" in line:
                break
        assert f"MILVUS_URI=http://127.0.0.1:{port}\n" in [line.strip() + "\n" for line in lines], lines
        assert (tmp_path / "milvus-server" / "data").is_dir(), "data under RAG_DATA_DIR/milvus-server by default"

        from pymilvus import MilvusClient

        client = MilvusClient(uri=f"http://127.0.0.1:{port}", timeout=30)
        assert client.get_server_version().startswith("v2.3.5")
        client.close()

        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert out.strip().endswith("stopped")
    assert not port_in_use(port), "the Milvus process is gone"


def test_a_wrong_token_is_one_readable_error_and_the_right_one_works(tmp_path):
    server = LocalMilvusServer(tmp_path / "auth-server", port=free_port(), stop_timeout=5, authorization=True)
    server.start()
    try:
        def rag_with(token: str) -> Rag:
            return Rag(Settings(_env_file=None, RAG_DATA_DIR=tmp_path, MILVUS_URI=server.uri, MILVUS_TOKEN=token, RAG_LLM="none"))

        for token in ("root:wrong-pass-31", "", "nobody:Milvus"):
            with rag_with(token) as rag, pytest.raises(StoreUnavailable) as info:
                rag.collections()
            message = str(info.value)
            assert message == f"Milvus server {server.uri} refused the credentials. Set MILVUS_TOKEN to a " \
                "user:password or an API key that this Milvus accepts."
        with rag_with("root:Milvus") as rag:  # Milvus' default user
            assert rag.collections() == []
    finally:
        server.stop()


def _dense_index(uri: str, collection: str) -> dict:
    from pymilvus import MilvusClient

    client = MilvusClient(uri=uri, timeout=30)
    try:
        return client.describe_index(collection, "embedding")
    finally:
        client.close()


def test_new_collections_get_the_configured_index_and_search_through_it(milvus_server, tmp_path):  # noqa: F811
    """HNSW by default; RAG_VECTOR_INDEX and its JSON parameters, set as a user sets them, change it;
    a collection keeps the index it was made with, and is still searched after the setting changes."""
    corpus = docs.make_corpus(tmp_path / "corpus")

    def cli(*args: str, **env: str) -> subprocess.CompletedProcess:
        environ = clean_environ(RAG_DATA_DIR=str(tmp_path / "data"), MILVUS_URI=milvus_server.uri, RAG_LLM="none", **env)
        return subprocess.run([sys.executable, "-m", "rag", *args], cwd=ROOT, env=environ, capture_output=True,
                              text=True, timeout=300)

    made = cli("ingest", str(corpus["manual.pdf"]), "-c", "by_default")
    assert made.returncode == 0, made.stderr
    index = _dense_index(milvus_server.uri, "by_default")
    assert index["index_type"] == "HNSW" and int(index["M"]) == 16 and int(index["efConstruction"]) == 200, index

    ivf = {"RAG_VECTOR_INDEX": "ivf_flat", "RAG_VECTOR_INDEX_PARAMS": '{"nlist": 4}', "RAG_VECTOR_SEARCH_PARAMS": '{"nprobe": 4}'}
    info = cli("info", **ivf)
    assert "index: IVF_FLAT (nlist=4, nprobe=4) for new collections" in info.stdout, info.stdout + info.stderr
    made = cli("ingest", str(corpus["manual.pdf"]), "-c", "clustered", **ivf)
    assert made.returncode == 0, made.stderr
    index = _dense_index(milvus_server.uri, "clustered")
    assert index["index_type"] == "IVF_FLAT" and int(index["nlist"]) == 4, index

    for collection in ("by_default", "clustered"):  # each searched with the default (HNSW) settings
        asked = cli("ask", "At what pressure does the Zephyr pump operate?", "-c", collection, "--mode", "dense", "--json")
        assert asked.returncode == 0, asked.stderr
        assert "42 bar" in json.loads(asked.stdout)["sources"][0]["text"]

    wrong = cli("info", RAG_VECTOR_INDEX_PARAMS="M=16")
    assert wrong.returncode != 0 and wrong.stderr.strip().splitlines() == [
        'error: invalid setting RAG_VECTOR_INDEX_PARAMS: must be a JSON object of numbers or words, e.g. {"ef": 128}'
    ], wrong.stderr


def test_bench_latency_on_a_server_searches_its_hnsw_index(milvus_server, tmp_path):  # noqa: F811
    environ = clean_environ(RAG_DATA_DIR=str(tmp_path), MILVUS_URI=milvus_server.uri)
    result = subprocess.run(
        [sys.executable, "-m", "rag", "bench-ingest", "--latency", "--search-chunks", "200", "--embed-chunks", "40",
         "--questions", "5", "--json"], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    latency = report["latency"]
    assert report["backend"] == f"Milvus server {milvus_server.uri}"
    assert latency["index"].startswith("HNSW (") and "M=16" in latency["index"], latency["index"]
    assert (latency["chunks"], latency["embedded"]) == (200, 40) and latency["dense_p50_ms"] > 0
    assert "hybrid_p50_ms" not in latency, "Milvus 2.3 has no BM25: dense only"
