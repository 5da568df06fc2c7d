"""The local GGUF model, run by llama.cpp in a supervised child process.

Why a child process: llama.cpp is native code, and a crash inside it (a segfault on some CPUs,
an out-of-memory kill) must cost one answer, not the app with every session in it. The model
is served by llama.cpp's OpenAI-compatible server (`rag.models.local_model_server`) on a loopback
port with a random API key, and reached through the same OpenAI client as any other server.
One server per model file serves every session of the process; it is health-checked before
use, restarted as soon as it dies, and stopped when the app stops.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO, Any

from rag.errors import ConfigError, LLMError, first_line

GGUF_MAGIC = b"GGUF"
START_TIMEOUT = 120.0  # loading reads the whole file; a large model on a slow disk takes a while
HEALTH_POLL_SECONDS = 0.2
STOP_TIMEOUT = 5.0
EXIT_NOTICE_SECONDS = 2.0  # a dropped connection and the process' exit status arrive a moment apart


class LocalModelStopped(LLMError):
    """The model process died: this answer is lost, the next one is served by a restarted process."""


def check_gguf(path: Path) -> None:
    """Refuse, before anything starts, a model path that is missing or not a GGUF file."""
    if not path.is_file():
        raise ConfigError(f"RAG_GGUF_PATH {str(path)!r} does not exist: give the path of a .gguf model file")
    with path.open("rb") as handle:
        if handle.read(4) != GGUF_MAGIC:
            raise ConfigError(f"RAG_GGUF_PATH {str(path)!r} is not a GGUF model file (llama.cpp reads only GGUF)")


class LocalModelServer:
    """llama.cpp's server for one GGUF file, as a child process this object looks after.

    `ensure_running()` starts it (or starts it again after it died) and returns its URL once it
    answers; a watcher thread restarts it as soon as it dies, so the next question does not wait
    for the model to load. `close()` stops it; so does the end of this process (atexit), and the
    child exits by itself when this process is killed.
    """

    def __init__(self, model_path: Path, *, context_window: int, threads: int,
                 start_timeout: float = START_TIMEOUT, api_key: str | None = None, embedding: bool = False) -> None:
        check_gguf(model_path)
        self.model_path = model_path
        self.context_window = context_window
        self.threads = threads
        self.start_timeout = start_timeout
        self.embedding = embedding  # serve /v1/embeddings too (an embedding server for tests and benchmarks)
        self.api_key = api_key or secrets.token_urlsafe(24)  # only this process may use the model
        self.port = _free_port()
        self.restarts = 0
        self._lock = threading.RLock()
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._closed = False
        atexit.register(self.close)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        """The model process' id while it runs (what an operator, or a test, would kill)."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def ensure_running(self) -> subprocess.Popen[bytes]:
        """The running model process, once it answers at `url`; starts it first if need be."""
        with self._lock:
            if self._closed:
                raise LLMError("the local model was shut down with the app")
            if self._process is not None and self._process.poll() is None:
                return self._process
            if self._process is not None:
                self.restarts += 1
            return self._start()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
        atexit.unregister(self.close)

    # ---------------------------------------------------------------------------------------

    def _start(self) -> subprocess.Popen[bytes]:
        if self._log is not None:
            self._log.close()
        self._log = tempfile.TemporaryFile()  # what llama.cpp says, for the error if it dies loading
        command = [
            sys.executable, "-m", "rag.models.local_model_server", "--model", str(self.model_path),
            "--port", str(self.port), "--n-ctx", str(self.context_window), "--threads", str(self.threads),
            "--parent-pid", str(os.getpid()), *(["--embedding"] if self.embedding else []),
        ]
        # A session of its own: Ctrl-C in the app's terminal reaches the app, which stops this
        # process itself, instead of killing it under an answer in progress.
        process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        assert process.stdin is not None
        process.stdin.write(self.api_key.encode() + b"\n")
        process.stdin.close()
        self._process = process
        try:
            self._wait_until_healthy(process)
        except LLMError:
            if process.poll() is None:
                process.kill()
                process.wait()
            raise
        threading.Thread(target=self._watch, args=(process,), name="local-model-watch", daemon=True).start()
        return process

    def _wait_until_healthy(self, process: subprocess.Popen[bytes]) -> None:
        request = urllib.request.Request(f"{self.url}/models", headers={"Authorization": f"Bearer {self.api_key}"})
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise LLMError(
                    f"the local model {self.model_path.name} could not start: it {_describe_exit(process.returncode)}"
                    f"{self._log_tail()}"
                )
            try:
                with urllib.request.urlopen(request, timeout=2):
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(HEALTH_POLL_SECONDS)
        raise LLMError(f"the local model {self.model_path.name} did not start in {self.start_timeout:.0f} s")

    def _watch(self, process: subprocess.Popen[bytes]) -> None:
        """Restart the server as soon as it dies, unless it was stopped on purpose."""
        process.wait()
        with self._lock:
            if self._closed or self._process is not process:
                return
            with contextlib.suppress(LLMError):  # a failed restart is reported by the next question
                self.ensure_running()

    def _log_tail(self) -> str:
        """The last line the process wrote (llama.cpp's or Python's own last word on the failure)."""
        if self._log is None:
            return ""
        self._log.seek(0)
        lines = [line.strip() for line in self._log.read().decode(errors="replace").splitlines() if line.strip()]
        return f": {first_line(lines[-1], 300)}" if lines else ""


class Guard:
    """Turns a failed request into `LocalModelStopped` when the model process died under it.

    Any other failure (a timeout, a bad request) is left as it is, for the usual message.
    """

    def __init__(self, server: LocalModelServer) -> None:
        self._server = server

    @contextlib.contextmanager
    def call(self) -> Iterator[None]:
        process = self._server.ensure_running()
        try:
            yield
        except Exception as exc:
            _raise_if_died(process, exc)
            raise

    @contextlib.asynccontextmanager
    async def acall(self) -> AsyncIterator[None]:
        process = await asyncio.to_thread(self._server.ensure_running)
        try:
            yield
        except Exception as exc:
            await asyncio.to_thread(_raise_if_died, process, exc)
            raise

    def stream(self, items: Iterator[Any]) -> Iterator[Any]:
        with self.call():
            yield from items

    async def astream(self, items: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async with self.acall():
            async for item in items:
                yield item


_servers: dict[tuple[str, int, int], LocalModelServer] = {}
_servers_lock = threading.Lock()


def shared_server(model_path: Path, *, context_window: int, threads: int) -> LocalModelServer:
    """The one server for this model file in this process, running: every session shares it."""
    key = (str(model_path.resolve()), context_window, threads)
    with _servers_lock:
        server = _servers.get(key)
        if server is None:
            server = _servers[key] = LocalModelServer(model_path, context_window=context_window, threads=threads)
    try:
        server.ensure_running()  # a model that cannot load is reported now, not at the first question
    except LLMError as exc:
        raise ConfigError(first_line(exc, 900)) from exc
    return server


def _raise_if_died(process: subprocess.Popen[bytes], exc: BaseException) -> None:
    """`LocalModelStopped` if the process that served the failed call is gone (the watcher may
    already have started its successor: this asks about the one that was called)."""
    if isinstance(exc, LLMError):
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(EXIT_NOTICE_SECONDS)
    if process.returncode is not None:
        raise LocalModelStopped(
            f"the local model stopped: it {_describe_exit(process.returncode)}; "
            "it is being restarted, ask again in a moment"
        ) from exc


def _describe_exit(returncode: int) -> str:
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-returncode).name}"
    return f"exited with status {returncode}"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
