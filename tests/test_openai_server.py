"""The OpenAI code path against a real OpenAI-compatible server: llama.cpp's, on 127.0.0.1.

It serves the packaged SmolLM2 GGUF (the app's own local-model server), with an API key, so the same client that talks to OpenAI,
Ollama or vLLM is exercised for real: streaming, a wrong key (401), a server that is down, and a
timeout. In every failure the passages are still returned.
"""

from __future__ import annotations

import logging
import re

import pytest

from rag.answering.events import NOT_FOUND, Done, Failure, Sources, Token
from rag.config import Settings
from rag.evaluation import Question
from rag.models.llm import packaged_gguf
from rag.models.local_model import LocalModelServer
from rag.options import AskOptions
from rag.service import Rag
from tests.helpers import free_port

pytestmark = pytest.mark.llm

API_KEY = "sk-test-4f9a8b7c6d5e"


@pytest.fixture(scope="module")
def llm_server():
    """llama.cpp's server for the packaged model, started as the app starts its local model."""
    server = LocalModelServer(packaged_gguf(), context_window=4096, threads=2, api_key=API_KEY)
    server.ensure_running()
    yield server.url
    server.close()


def rag_for(settings: Settings, **env) -> Rag:
    return Rag(Settings(_env_file=None, RAG_DATA_DIR=settings.data_dir, **env))


@pytest.fixture
def indexed(rag, corpus, collection) -> str:
    rag.ingest([corpus["manual.pdf"], corpus["plain.txt"]], collection)
    return collection


def test_answers_stream_from_the_openai_compatible_server(settings, llm_server, indexed, caplog, capfd):
    caplog.set_level(logging.DEBUG)  # every library's debug logging: the key must not be in any of it
    rag = rag_for(settings, OPENAI_BASE_URL=llm_server, OPENAI_API_KEY=API_KEY, RAG_OPENAI_MODEL="local")
    assert rag.info.llm.label == f"local at {llm_server} (OpenAI-compatible)"
    events = list(rag.stream_ask("When does the staff cafeteria open?", AskOptions(indexed, top_k=2)))
    assert isinstance(events[0], Sources) and events[0].citations[0].file == "plain.txt"
    assert sum(isinstance(e, Token) for e in events) > 3
    assert events[-1].answer.answer and not events[-1].answer.error
    follow = rag.chat_session(AskOptions(indexed, top_k=2))
    follow.chat("What does the pump manual say about pressure?")
    assert follow.chat("And about its seals?").answer
    answer = events[-1].answer
    assert answer.found and re.findall(r"\[(\d+)\]", answer.answer) in ([], ["1"], ["2"], ["1", "2"], ["2", "1"]), \
        "citation markers only point at the sources"
    declined = rag.ask("What is the population of Tokyo?", AskOptions(indexed, top_k=2))
    assert not declined.found and declined.answer == NOT_FOUND and len(declined.sources) == 2
    assert any(r.name.startswith(("openai", "httpx", "httpcore")) for r in caplog.records), "the client's own logs were seen"
    assert API_KEY not in caplog.text and API_KEY not in "".join(capfd.readouterr())


@pytest.mark.parametrize(
    "env, message",
    [
        ({"OPENAI_API_KEY": "sk-wrong-key-0000"}, "refused the API key"),
        ({"OPENAI_API_KEY": API_KEY, "OPENAI_BASE_URL": "http://127.0.0.1:{dead}/v1"}, "cannot reach the LLM server"),
        ({"OPENAI_API_KEY": API_KEY, "RAG_LLM_TIMEOUT": "0.001"}, "did not answer in time"),
    ],
)
def test_llm_failures_are_readable_and_keep_the_passages(settings, llm_server, indexed, env, message, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    env = {"OPENAI_BASE_URL": llm_server, "RAG_OPENAI_MODEL": "local", **env}
    env["OPENAI_BASE_URL"] = env["OPENAI_BASE_URL"].format(dead=free_port())
    rag = rag_for(settings, **env)
    for stream in (
        rag.stream_ask("When does the staff cafeteria open?", AskOptions(indexed, top_k=2)),
        rag.chat_session(AskOptions(indexed, top_k=2)).stream_chat("When does the staff cafeteria open?"),
    ):
        events = list(stream)
        failure = next(e for e in events if isinstance(e, Failure))
        assert message in failure.message
        assert env["OPENAI_API_KEY"] not in failure.message
        done = events[-1]
        assert isinstance(done, Done) and done.answer.error == failure.message
        assert done.answer.sources and done.answer.sources[0].file == "plain.txt"
    assert env["OPENAI_API_KEY"] not in caplog.text and env["OPENAI_API_KEY"] not in "".join(capfd.readouterr())


def test_an_llm_rerank_asks_the_server_and_keeps_every_passage(settings, llm_server, indexed, caplog):
    """RAG_LLM_RERANK with the real server: the model's reply is read (no failure), and with as
    many candidates as passages handed on, it can re-order them but never drop one."""
    caplog.set_level(logging.DEBUG, logger="rag.retrieval.rerank")
    env = {"OPENAI_BASE_URL": llm_server, "OPENAI_API_KEY": API_KEY, "RAG_OPENAI_MODEL": "local"}
    questions = [Question("At what pressure does the Zephyr pump operate?", "manual.pdf", evidence="42 bar"),
                 Question("When does the staff cafeteria open?", "plain.txt")]
    plain = rag_for(settings, **env).evaluate(questions, indexed, "hybrid", (3,))[0]
    reranked = rag_for(settings, **env, RAG_LLM_RERANK="3").evaluate(questions, indexed, "hybrid", (3,))[0]
    assert [o.rank for o in plain.outcomes] == [1, 1]
    assert all(o.rank for o in reranked.outcomes), reranked.outcomes  # re-ordered within the three, not lost
    assert "LLM rerank failed" not in caplog.text
    rated = re.findall(r"LLM rerank: (\d+) of (\d+) candidates rated", caplog.text)
    assert len(rated) == 2 and all(total == "3" for _, total in rated), caplog.text
