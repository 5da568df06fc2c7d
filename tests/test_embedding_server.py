"""Embeddings from a server (`RAG_EMBED_PROVIDER=openai`), against a real OpenAI-compatible one.

The server is llama.cpp's, serving `/v1/embeddings` with the packaged GGUF (mean-pooled) on
127.0.0.1, started the way the app starts its local model. Between it and the app sits a small
HTTP relay that passes requests on unchanged, counts how many are in flight, and can answer
429 or 503 instead, or cut the vectors short: the server failing as real ones do. Everything
is driven through `python -m rag`, as a user runs it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rag.models.llm import packaged_gguf
from rag.models.local_model import LocalModelServer
from tests.helpers import ROOT, clean_environ, free_port

pytestmark = pytest.mark.llm

KEY = "emb-key-5d1c"


class Relay:
    """An HTTP relay to `target` that can fail on purpose and measures concurrency."""

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.fail: list[int] = []  # status codes to answer, one per coming request
        self.truncate: int | None = None  # cut every vector to this many numbers
        self.in_flight = self.max_in_flight = self.requests = 0
        self.sizes: list[int] = []  # texts per request
        self._lock = threading.Lock()
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with relay._lock:
                    relay.requests += 1
                    relay.in_flight += 1
                    relay.max_in_flight = max(relay.max_in_flight, relay.in_flight)
                    status = relay.fail.pop(0) if relay.fail else None
                    relay.sizes.append(len(json.loads(body).get("input", [])))
                try:
                    if status is not None:
                        return self._answer(status, b'{"error": {"message": "busy"}}')
                    request = urllib.request.Request(relay.target + self.path.removeprefix("/v1"), data=body,
                                                     headers={k: v for k, v in self.headers.items()}, method="POST")
                    try:
                        with urllib.request.urlopen(request, timeout=120) as response:
                            data = json.loads(response.read())
                    except urllib.error.HTTPError as exc:
                        return self._answer(exc.code, exc.read())
                    if relay.truncate:
                        for item in data["data"]:
                            item["embedding"] = item["embedding"][: relay.truncate]
                    self._answer(200, json.dumps(data).encode())
                finally:
                    with relay._lock:
                        relay.in_flight -= 1

            def _answer(self, status: int, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}/v1"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def relay():
    server = LocalModelServer(packaged_gguf(), context_window=2048, threads=2, api_key=KEY, embedding=True)
    server.ensure_running()
    relay = Relay(server.url)
    yield relay
    relay.close()
    server.close()


@pytest.fixture
def rag_cli(tmp_path, relay):
    """`python -m rag` with a server's embeddings, on a data folder of its own."""

    def run(*args: str, **env: str) -> subprocess.CompletedProcess:
        settings = {
            "RAG_DATA_DIR": str(tmp_path / "data"), "RAG_LLM": "none", "RAG_EMBED_PROVIDER": "openai",
            "RAG_EMBED_BASE_URL": relay.url, "RAG_EMBED_API_KEY": KEY, "RAG_EMBED_MODEL": "local",
            "RAG_EMBED_BATCH_SIZE": "4", "RAG_EMBED_CONCURRENCY": "3", **env,
        }
        return subprocess.run([sys.executable, "-m", "rag", *args], cwd=ROOT, env=clean_environ(**settings),
                              capture_output=True, text=True, timeout=600)

    return run


def error_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0 and len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    return lines[0]


def test_a_library_is_indexed_and_searched_with_a_servers_vectors(rag_cli, relay, corpus, tmp_path):
    long = tmp_path / "handbook.md"  # enough chunks for every request of a batch
    long.write_text("\n\n".join(f"## Section {n}\n\n" + f"Rule {n} of the handbook says what to do in case {n}. " * 8
                                  for n in range(12)))
    relay.max_in_flight, relay.sizes = 0, []
    result = rag_cli("ingest", str(long), str(corpus["manual.pdf"]), str(corpus["report.docx"]), str(corpus["plain.txt"]))
    assert result.returncode == 0, result.stderr
    assert relay.max_in_flight >= 2, "several requests in flight"
    assert max(relay.sizes) <= 4, "batches of RAG_EMBED_BATCH_SIZE texts"

    answer = json.loads(rag_cli("ask", "When does the staff cafeteria open?", "--json", "--top-k", "2").stdout)
    assert answer["sources"][0]["file"] == "plain.txt"
    info = rag_cli("info").stdout
    assert f"local at {relay.url}" in info and KEY not in info


def test_load_and_server_failures_are_retried(rag_cli, relay, corpus):
    relay.fail = [429, 503, 429]
    result = rag_cli("ingest", str(corpus["notes.md"]))
    assert result.returncode == 0, result.stderr
    assert not relay.fail, "the three failures were answered and retried"
    assert "indexed" in result.stdout


def test_a_model_that_changed_behind_the_server_is_refused(rag_cli, relay, corpus):
    assert rag_cli("ingest", str(corpus["plain.txt"])).returncode == 0
    relay.truncate = 100
    try:
        line = error_line(rag_cli("ask", "When does the staff cafeteria open?"))
    finally:
        relay.truncate = None
    assert "was built with embedding model 'openai:local' (576-d), but the configured one is 'openai:local' (100-d)" in line
    assert "set RAG_EMBED_PROVIDER=openai and RAG_EMBED_MODEL=local to use it" in line


def test_a_collection_of_another_provider_is_refused(rag_cli, corpus):
    local = {"RAG_EMBED_PROVIDER": "local", "RAG_EMBED_MODEL": "all-MiniLM-L6-v2"}
    assert rag_cli("ingest", str(corpus["plain.txt"]), **local).returncode == 0
    line = error_line(rag_cli("ask", "When does the staff cafeteria open?"))
    assert "was built with embedding model 'all-MiniLM-L6-v2' (384-d), but the configured one is 'openai:local'" in line
    assert "set RAG_EMBED_PROVIDER=local and RAG_EMBED_MODEL=all-MiniLM-L6-v2 to use it" in line


@pytest.mark.parametrize(
    "env, message",
    [
        ({"RAG_EMBED_BASE_URL": "http://127.0.0.1:{dead}/v1"},
         "cannot reach the embedding server at http://127.0.0.1:{dead}/v1 (5 attempts): check that it is running "
         "and RAG_EMBED_BASE_URL"),
        ({"RAG_EMBED_API_KEY": "wrong-key"}, "refused the API key (401): check RAG_EMBED_API_KEY"),
        ({"RAG_EMBED_BASE_URL": "", "RAG_EMBED_API_KEY": ""},
         "RAG_EMBED_PROVIDER=openai needs RAG_EMBED_BASE_URL (a compatible server) or RAG_EMBED_API_KEY (OpenAI)"),
        ({"RAG_EMBED_BASE_URL": "ftp://example"}, "RAG_EMBED_BASE_URL 'ftp://example' must start with http://"),
        ({"RAG_EMBED_CONCURRENCY": "0"}, "RAG_EMBED_CONCURRENCY"),
    ],
)
def test_a_server_that_cannot_be_used_is_one_clear_line(rag_cli, corpus, env, message):
    dead = str(free_port())
    env = {k: v.replace("{dead}", dead) for k, v in env.items()}
    line = error_line(rag_cli("ingest", str(corpus["plain.txt"]), **env))
    assert message.replace("{dead}", dead) in line
    assert "wrong-key" not in line and KEY not in line
