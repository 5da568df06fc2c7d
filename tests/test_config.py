"""Settings: environment and .env in, clear errors out, secrets never shown."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from rag.config import LLMMode, Settings

pytestmark = pytest.mark.quick  # pure: no model, no Milvus


def make(**env) -> Settings:
    return Settings(_env_file=None, **env)


def test_defaults_are_offline(tmp_path):
    s = make(RAG_DATA_DIR=tmp_path)
    assert s.resolved_milvus_uri == str((tmp_path / "milvus.db").resolve())
    assert not s.is_milvus_server
    assert s.llm_mode is LLMMode.QUOTE  # answers quoted from the documents: no model to trust
    assert s.embed_model == "all-MiniLM-L6-v2"


def test_environment_and_dotenv_are_read(tmp_path, monkeypatch):
    env_file = tmp_path / ".env"
    env_file.write_text("MILVUS_URI=http://milvus.example:19530\nRAG_TOP_K=7\n")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8080/v1")
    s = Settings(_env_file=env_file)
    assert s.is_milvus_server and s.top_k == 7
    assert s.llm_mode is LLMMode.OPENAI


def test_display_never_contains_token_or_password():
    s = make(MILVUS_URI="https://user:hunter2@cluster.example:443", MILVUS_TOKEN="tok-123456")
    assert s.milvus_display == "Milvus server https://cluster.example:443"
    assert "hunter2" not in repr(s) and "tok-123456" not in repr(s)


@pytest.mark.parametrize(
    "env, message",
    [
        ({"MILVUS_URI": "ftp://host"}, "is not a Milvus address"),
        ({"MILVUS_URI": "milvus.sqlite"}, "must end in .db"),
        ({"RAG_COLLECTION": "my docs"}, "invalid collection name"),
        ({"RAG_COLLECTION": "1abc"}, "invalid collection name"),
        ({"RAG_TOP_K": "0"}, "greater than or equal to 1"),
        ({"RAG_TOP_K": "10000"}, "less than or equal to 100"),
        ({"RAG_LLM": "openai"}, "needs OPENAI_API_KEY"),
        ({"RAG_LLM": "gpt"}, "Input should be"),
        ({"OPENAI_BASE_URL": "localhost:8080"}, "must start with http"),
        ({"MILVUS_CONSISTENCY_LEVEL": "Sometimes"}, "Input should be"),
    ],
)
def test_bad_settings_say_what_to_fix(env, message):
    with pytest.raises(ValidationError, match=message):
        make(**env)
