"""Secrets (the Milvus token, a password in MILVUS_URI, the OpenAI key, the app password) never
appear in what the app shows, logs or prints: checked with every library's debug logging on."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from rag.config import Settings
from rag.errors import StoreUnavailable
from rag.options import AskOptions
from rag.service import Rag
from tests.helpers import ROOT, clean_environ, free_port

TOKEN = "root:tok-5e1f9c2a77"
KEY = "sk-key-0b7d3e55c1"
URI_PASSWORD = "pw-9a4c2e1b"
APP_PASSWORD = "app-pass-71c3f0"
SECRETS = (TOKEN, KEY, URI_PASSWORD, APP_PASSWORD, "tok-5e1f9c2a77")


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a secret leaked: ...{text[max(0, text.find(secret) - 80):text.find(secret) + 40]}..."


@pytest.fixture
def all_debug_logs(caplog):
    """Every logger at DEBUG, pymilvus' too (it has its own handler and does not propagate)."""
    caplog.set_level(logging.DEBUG)
    pymilvus = logging.getLogger("pymilvus")
    level = pymilvus.level
    pymilvus.setLevel(logging.DEBUG)
    pymilvus.addHandler(caplog.handler)
    yield caplog
    pymilvus.removeHandler(caplog.handler)
    pymilvus.setLevel(level)


def test_core_logs_and_errors_hold_no_secret(tmp_path, corpus, all_debug_logs, capfd):
    caplog = all_debug_logs
    settings = Settings(
        _env_file=None, RAG_DATA_DIR=tmp_path, MILVUS_TOKEN=TOKEN, OPENAI_API_KEY=KEY,
        OPENAI_BASE_URL=f"http://127.0.0.1:{free_port()}/v1", RAG_APP_PASSWORD=APP_PASSWORD, RAG_LLM_TIMEOUT=5,
    )
    with Rag(settings) as rag:
        rag.ingest([corpus["plain.txt"]], "secrets")
        answer = rag.ask("When does the staff cafeteria open?", AskOptions("secrets", top_k=2))
        assert answer.error and answer.sources, "the LLM failed and the passages are kept"
        shown = [repr(settings), str(settings.model_dump()), repr(rag.info), answer.error, str(answer.to_json())]
    assert caplog.records, "debug logging was on (pymilvus logs nothing when all goes well)"
    assert_no_secret("\n".join([*shown, caplog.text, *capfd.readouterr()]))


def test_a_password_in_an_unreachable_milvus_uri_is_not_repeated(tmp_path, all_debug_logs, capfd):
    caplog = all_debug_logs
    port = free_port()
    settings = Settings(_env_file=None, RAG_DATA_DIR=tmp_path, MILVUS_URI=f"http://admin:{URI_PASSWORD}@127.0.0.1:{port}",
                        MILVUS_TOKEN=TOKEN, RAG_LLM="none")
    assert settings.milvus_display == f"Milvus server http://127.0.0.1:{port}"
    with Rag(settings) as rag, pytest.raises(StoreUnavailable) as failure:
        rag.collections()
    assert f"127.0.0.1:{port}" in str(failure.value)
    assert_no_secret("\n".join([str(failure.value), repr(failure.value), caplog.text, *capfd.readouterr()]))


@pytest.mark.parametrize("args", [("info",), ("ask", "When does the staff cafeteria open?", "--json"), ("collections",)])
def test_cli_output_holds_no_secret(tmp_path, corpus, args):
    env = clean_environ(RAG_DATA_DIR=str(tmp_path), MILVUS_TOKEN=TOKEN, OPENAI_API_KEY=KEY, RAG_APP_PASSWORD=APP_PASSWORD,
                        OPENAI_BASE_URL=f"http://127.0.0.1:{free_port()}/v1", RAG_LLM_TIMEOUT="5")
    ingest = subprocess.run([sys.executable, "-m", "rag", "ingest", str(corpus["plain.txt"])], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert ingest.returncode == 0, ingest.stderr
    result = subprocess.run([sys.executable, "-m", "rag", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.stdout.strip(), result.stderr
    assert_no_secret(ingest.stdout + ingest.stderr + result.stdout + result.stderr)


@pytest.mark.parametrize("env", [{"MILVUS_URI": f"ftp://admin:{URI_PASSWORD}@milvus:19530"},
                                 {"OPENAI_BASE_URL": f"ftp://user:{KEY}@llm.example"}])
def test_a_bad_setting_holding_a_secret_is_not_repeated(tmp_path, env):
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as failure:
        Settings(_env_file=None, RAG_DATA_DIR=tmp_path, **env)
    assert "***@" in failure.value.errors()[0]["msg"]
    assert_no_secret(" ".join(e["msg"] for e in failure.value.errors()))
    result = subprocess.run([sys.executable, "-m", "rag", "docs"], cwd=ROOT, env=clean_environ(RAG_DATA_DIR=str(tmp_path), **env),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "***@" in result.stderr
    assert_no_secret(result.stdout + result.stderr)
