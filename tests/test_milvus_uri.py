"""`MILVUS_URI` set the way a user sets it, read by the real entry points.

pymilvus parses `MILVUS_URI` itself when it is imported (environment and `.env`), and used to
crash on a Milvus Lite path. Each form the README documents is tried here through the CLI as a
subprocess; the app and the benchmark page get the same value in `tests/test_browser.py` and
`test_the_benchmark_page_runs_on_a_lite_path_from_the_environment` below.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, clean_environ


def run_cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rag", *args], cwd=cwd, env=clean_environ(PYTHONPATH=str(ROOT), RAG_LLM="none", **env),
        capture_output=True, text=True, timeout=300,
    )


def ingest_and_find(cwd: Path, note: Path, **env: str) -> None:
    """Ingest one file and retrieve it again: the whole path through pymilvus and Milvus Lite."""
    result = run_cli("ingest", str(note), "--json", cwd=cwd, **env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["chunks"] == 1
    result = run_cli("ask", "pressure of the pump", "--retrieve-only", "--json", cwd=cwd, **env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["sources"][0]["file"] == note.name


@pytest.fixture
def note(tmp_path) -> Path:
    path = tmp_path / "note.txt"
    path.write_text("The pump's working pressure is 4 bar.\n")
    return path


def test_an_absolute_lite_path_in_the_environment(tmp_path, note):
    db = tmp_path / "vectors" / "absolute.db"
    ingest_and_find(tmp_path, note, MILVUS_URI=str(db), RAG_DATA_DIR=str(tmp_path / "data"))
    assert db.exists(), "the file named by MILVUS_URI is the one used, its folder created"
    assert not (tmp_path / "data" / "milvus.db").exists()


def test_a_relative_lite_path_in_the_environment_is_relative_to_the_working_folder(tmp_path, note):
    ingest_and_find(tmp_path, note, MILVUS_URI="rel/relative.db", RAG_DATA_DIR=str(tmp_path / "data"))
    assert (tmp_path / "rel" / "relative.db").exists()
    result = run_cli("info", cwd=tmp_path, MILVUS_URI="rel/relative.db")
    assert f"Milvus Lite file {tmp_path / 'rel' / 'relative.db'}" in result.stdout


def test_a_lite_path_in_dotenv(tmp_path, note):
    (tmp_path / ".env").write_text("MILVUS_URI=from_dotenv.db\nRAG_LLM=none\n")
    ingest_and_find(tmp_path, note, RAG_DATA_DIR=str(tmp_path / "data"))
    assert (tmp_path / "from_dotenv.db").exists()


def test_a_lite_path_in_the_projects_own_dotenv(tmp_path, note):
    """pymilvus loads the `.env` it finds above its own install folder: the project's, when the
    virtual environment lives in the project, as `./run.sh` sets it up."""
    env_file = ROOT / ".env"
    if env_file.exists():
        pytest.skip("this checkout has its own .env; the test will not overwrite it")
    db = tmp_path / "project_dotenv.db"
    env_file.write_text(f"MILVUS_URI={db}\n")
    try:
        ingest_and_find(ROOT, note, RAG_DATA_DIR=str(tmp_path / "data"))
    finally:
        env_file.unlink()
    assert db.exists()


def test_a_server_uri_reaches_the_server(tmp_path):
    """An http(s) URI is a server address: with nothing listening, the one-line Milvus error."""
    result = run_cli("collections", cwd=tmp_path, MILVUS_URI="http://127.0.0.1:9")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot use Milvus server http://127.0.0.1:9: "), result.stderr
    assert "Check that Milvus is running" in lines[0]


@pytest.mark.parametrize("value", ["vectors.sqlite", "ftp://host:21", "http://"])
def test_a_malformed_value_is_one_line(tmp_path, value):
    result = run_cli("collections", cwd=tmp_path, MILVUS_URI=value)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: invalid setting MILVUS_URI"), result.stderr


def test_the_benchmark_runs_on_a_lite_path_from_the_environment(tmp_path):
    db = tmp_path / "bench.db"
    result = run_cli("bench", "--counts", "5", "--json", cwd=tmp_path, MILVUS_URI=str(db),
                     RAG_DATA_DIR=str(tmp_path / "data"))
    assert result.returncode == 0, result.stderr
    records = json.loads(result.stdout)
    assert {r["operation"] for r in records} >= {"add", "search"}, records
    assert db.exists()
