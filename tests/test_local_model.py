"""The local model's child process, with real processes: killed mid-answer, a file that is not a
model, a model that dies loading, and the app going away (no model process is left behind)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from rag.answering.events import Done, Failure, Sources, Token
from rag.errors import ConfigError
from rag.models.llm import packaged_gguf
from rag.models.local_model import LocalModelServer, check_gguf
from rag.options import AskOptions
from tests.helpers import ROOT, clean_environ, until

pytestmark = pytest.mark.llm

PUMP = "At what pressure does the Zephyr pump operate?"


@pytest.fixture(scope="module")
def indexed(rag, corpus) -> str:
    rag.ingest([corpus["manual.pdf"], corpus["plain.txt"]], "local_model")
    return "local_model"


def test_a_model_killed_mid_answer_costs_that_answer_only(llm_rag, indexed):
    server = llm_rag.llm.server
    first_pid = server.pid
    llm_rag.ask(PUMP, AskOptions(indexed, top_k=2, retrieve_only=True))  # models loaded: the next ask is quick
    # Frozen, the model takes the question and cannot answer it; killed a moment later, it dies
    # with the question in hand, whatever the speed of this machine.
    os.kill(first_pid, signal.SIGSTOP)
    killer = threading.Timer(3.0, os.kill, (first_pid, signal.SIGKILL))
    killer.start()
    try:
        events = list(llm_rag.stream_ask(PUMP, AskOptions(indexed, top_k=2)))
    finally:
        killer.join()
    assert isinstance(events[0], Sources) and events[0].citations[0].file == "manual.pdf"
    [failure] = [e for e in events if isinstance(e, Failure)]
    assert failure.message == (
        "the local model stopped: it was killed by SIGKILL; it is being restarted, ask again in a moment"
    )
    done = events[-1]
    assert isinstance(done, Done) and done.answer.error == failure.message
    assert done.answer.sources == events[0].citations, "the answer's sources stay"

    until(lambda: server.pid not in (None, first_pid), timeout=120)  # restarted without being asked
    again = list(llm_rag.stream_ask(PUMP, AskOptions(indexed, top_k=2)))
    assert sum(isinstance(e, Token) for e in again) > 3, "the next answer streams"
    assert not any(isinstance(e, Failure) for e in again) and again[-1].answer.answer
    assert server.restarts >= 1


def test_a_file_that_is_not_a_model_is_refused_before_anything_starts(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"<html>a download page, saved as a model</html>")
    with pytest.raises(ConfigError, match="is not a GGUF model file"):
        check_gguf(fake)
    with pytest.raises(ConfigError, match="does not exist"):
        LocalModelServer(tmp_path / "missing.gguf", context_window=512, threads=1)


@pytest.mark.parametrize(
    "model, message",
    [
        ("not-a-model.gguf", "is not a GGUF model file (llama.cpp reads only GGUF)"),
        ("truncated.gguf", "the local model truncated.gguf could not start: it exited with status 1"),
    ],
)
def test_the_cli_reports_a_model_that_cannot_load_in_one_line(tmp_path, model, message):
    path = tmp_path / model
    if model == "truncated.gguf":  # a real model's header, cut short: llama.cpp fails loading it
        path.write_bytes(packaged_gguf().read_bytes()[: 1 << 20])
    else:
        path.write_bytes(b"PK\x03\x04 a zip file, not a model")
    note = tmp_path / "note.txt"
    note.write_text("The pump room opens at seven in the morning.\n")
    env = clean_environ(RAG_DATA_DIR=str(tmp_path / "data"), RAG_LLM="local", RAG_GGUF_PATH=str(path))
    for command in (["ingest", str(note)], ["ask", "When does the pump room open?"]):
        result = subprocess.run(
            [sys.executable, "-m", "rag", *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
        )
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.stderr


APP_WITH_A_MODEL = textwrap.dedent(
    """
    import signal, sys, time
    from pathlib import Path
    from rag.models.local_model import LocalModelServer
    # Ctrl-C as in a terminal: a process started in the background by a non-interactive shell
    # (as CI may start the tests) inherits SIGINT ignored, and Python then keeps it ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    server = LocalModelServer(Path(sys.argv[1]), context_window=512, threads=1)
    server.ensure_running()
    print(server.pid, flush=True)
    time.sleep(600)
    """
)


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_no_model_process_outlives_the_app(how):
    """Ctrl-C, a polite stop, or a kill: the model process goes with the process that started it."""
    app = subprocess.Popen(
        [sys.executable, "-c", APP_WITH_A_MODEL, str(packaged_gguf())], cwd=ROOT, env=clean_environ(),
        stdout=subprocess.PIPE, text=True,
    )
    try:
        model_pid = int(app.stdout.readline())
        assert _alive(model_pid)
        app.send_signal(how)
        app.wait(30)
        until(lambda: not _alive(model_pid), timeout=15)
    finally:
        app.kill()
        app.wait()


def _alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie nobody has reaped yet."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")
