"""A real Milvus server on this machine, without Docker: `python -m rag milvus-server`.

The PyPI package `milvus` (2.3.5) ships the Milvus standalone binary (with an embedded etcd and
local storage). `LocalMilvusServer` starts it with its data under a folder of ours and a fixed
client port, waits until it answers its health check, and stops it cleanly; the app then uses it
with `MILVUS_URI=http://127.0.0.1:PORT`, exactly as it would use a Docker or cloud deployment.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from rag.errors import RagError

DEFAULT_PORT = 19530
HOST = "127.0.0.1"
STOP_TIMEOUT = 20.0


class MilvusServerError(RagError):
    """The local Milvus server could not be started (package missing, port busy, crash)."""


def milvus_package_version() -> str | None:
    """The version of the `milvus` package (the server it ships), or None if it is not installed."""
    try:
        import milvus
    except ImportError:
        return None
    return str(getattr(milvus, "__version__", "")) or None


def port_in_use(port: int, host: str = "") -> bool:
    """True if something listens on `port` (or it cannot be bound for another reason)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR: a port whose last connections are in TIME_WAIT is free, a listener is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def free_port() -> int:
    """A TCP port that is free right now (for tests and throwaway servers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _reusable_config_class() -> type:
    from milvus import MilvusServerConfig

    class ReusableConfig(MilvusServerConfig):
        """Port probes with SO_REUSEADDR, as Milvus' own listeners: a port in TIME_WAIT after a
        restart is free, not "busy"."""

        def try_bind_port(self, port):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((HOST, port))
                sock.listen()
                return sock
            except (OSError, ValueError, OverflowError):
                sock.close()
                return None

    return ReusableConfig


class LocalMilvusServer:
    """Milvus standalone 2.3.5 from the `milvus` package, as a context manager.

    >>> with LocalMilvusServer(Path("data/milvus-server"), port=19530) as server:
    ...     print(server.uri)  # http://127.0.0.1:19530
    """

    def __init__(
        self,
        data_dir: Path | str,
        port: int = DEFAULT_PORT,
        startup_timeout: float = 180.0,
        stop_timeout: float = STOP_TIMEOUT,
        authorization: bool = False,
    ) -> None:
        if not 1 <= int(port) <= 65535:
            raise MilvusServerError(f"port must be between 1 and 65535, not {port}")
        self.data_dir = Path(data_dir).resolve()
        self.port = int(port)
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout  # then SIGKILL: 2.3.5 sometimes retries its own stopped parts
        self.authorization = authorization  # users and passwords; Milvus' default user is root:Milvus
        self._server: Any = None
        self._lock = threading.Lock()

    @property
    def uri(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def version(self) -> str | None:
        return milvus_package_version()

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def running(self) -> bool:
        proc = self._process
        return proc is not None and proc.poll() is None

    @property
    def pid(self) -> int | None:
        proc = self._process
        return proc.pid if proc is not None else None

    @property
    def _process(self) -> subprocess.Popen | None:
        return getattr(self._server, "server_proc", None) if self._server is not None else None

    def start(self) -> LocalMilvusServer:
        with self._lock:
            if self.running:
                return self
            try:
                from milvus import MilvusServer
            except ImportError:
                raise MilvusServerError(
                    "the local Milvus server needs the `milvus` package: pip install milvus==2.3.5"
                ) from None
            if port_in_use(self.port):
                raise MilvusServerError(
                    f"port {self.port} is busy (another Milvus, or another program, listens there): "
                    "stop it or choose another port with --port"
                )
            self.data_dir.mkdir(parents=True, exist_ok=True)
            server = MilvusServer(self._config(), wait_for_started=False)
            server.set_base_dir(str(self.data_dir))
            # In `configs`, a port that cannot be bound is an error; set only through
            # `listen_port`, the package would silently move to the next free port.
            server.config.update(proxy_port=self.port)
            server.listen_port = self.port
            self._server = server
            try:
                server.start()
                self._wait_started(server)
            except RuntimeError as exc:
                self._stop_locked()
                if "bind failed" in str(exc) and "proxy_port" in str(exc):
                    raise MilvusServerError(
                        f"port {self.port} is busy: stop what listens there or choose another port with --port"
                    ) from None
                raise MilvusServerError(f"Milvus could not start: {exc}; see the logs in {self.log_dir}") from None
            except (OSError, MilvusServerError) as exc:
                self._stop_locked()
                if isinstance(exc, MilvusServerError):
                    raise
                raise MilvusServerError(f"cannot start Milvus in {self.data_dir}: {exc}") from None
            except BaseException:
                self._stop_locked()
                raise
            return self

    def _config(self) -> Any:
        """The package's config, with the embedded etcd on free ports of its own.

        The embedded etcd otherwise listens on 2379 and 2380 whatever the template says, so a
        second local server (another checkout, a test run) would fail with "address already in
        use". Its ports are kept in the data folder, so a restart finds its etcd where it was.
        """
        import json

        from milvus import MilvusServerConfig

        configs = self.data_dir / "configs"
        configs.mkdir(parents=True, exist_ok=True)
        ports_file = configs / "rag-etcd-ports.json"
        try:
            client_port, peer_port = json.loads(ports_file.read_text())
            if port_in_use(client_port) or port_in_use(peer_port):
                raise ValueError("taken")
        except (OSError, ValueError, TypeError):
            client_port, peer_port = free_port(), free_port()
            while peer_port == client_port:
                peer_port = free_port()
            ports_file.write_text(json.dumps([client_port, peer_port]))
        client, peer = f"http://{HOST}:{client_port}", f"http://{HOST}:{peer_port}"
        etcd_yaml = configs / "embedded-etcd.yaml"
        etcd_yaml.write_text(
            f"name: default\nlisten-client-urls: {client}\nadvertise-client-urls: {client}\n"
            f"listen-peer-urls: {peer}\ninitial-advertise-peer-urls: {peer}\ninitial-cluster: default={peer}\n"
        )
        package = MilvusServerConfig()
        template = package.template_text
        anchor = "  use:\n    embed: true"
        if anchor not in template:
            raise MilvusServerError("unexpected config template in the `milvus` package: use milvus==2.3.5")
        template = template.replace(anchor, f"  config:\n    path: {etcd_yaml}\n{anchor}", 1)
        template_file = configs / "milvus.yaml.template"
        template_file.write_text(template)
        config = _reusable_config_class()(template=str(template_file))
        config.glog_conf_file = package.glog_conf_file  # only set for the default template
        config.set("etcd_port", client_port)  # unused by an embedded etcd, kept consistent
        config.set("authorization_enabled", self.authorization)
        return config

    def _wait_started(self, server: Any) -> None:
        """Until the health check answers; fails fast if Milvus exits or cannot bind a port."""
        import urllib.error
        import urllib.request

        url = f"http://{HOST}:{server.webservice_port}/healthz"
        stdout_log = self.log_dir / "milvus-stdout.log"
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            proc = server.server_proc
            if proc is None or proc.poll() is not None:
                raise MilvusServerError(f"Milvus exited while starting; see the logs in {self.log_dir}")
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if b"OK" in resp.read():
                        return
            except (urllib.error.URLError, OSError):
                pass
            try:
                with open(stdout_log, "rb") as fh:
                    fh.seek(0, 2)
                    fh.seek(max(0, fh.tell() - 65536))
                    tail = fh.read().decode("utf-8", "replace")
            except OSError:
                tail = ""
            if "address already in use" in tail:
                line = next(ln for ln in tail.splitlines() if "address already in use" in ln)
                where = line[line.find("listen tcp") :].split('"')[0].split("]")[0] if "listen tcp" in line else ""
                raise MilvusServerError(
                    f"Milvus cannot bind a port ({where or 'address already in use'}): another program uses it; "
                    f"see the logs in {self.log_dir}"
                )
            time.sleep(0.2)
        raise MilvusServerError(
            f"Milvus did not answer within {self.startup_timeout:.0f} s; see the logs in {self.log_dir}"
        )

    def stop(self) -> None:
        with self._lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        proc = getattr(server, "server_proc", None)
        if proc is not None and proc.poll() is None:
            proc.terminate()  # Milvus shuts down cleanly on SIGTERM
            try:
                proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        server.stop()  # closes the log files (the process is gone already)

    def __enter__(self) -> LocalMilvusServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(data_dir: Path, port: int = DEFAULT_PORT, out: Any = None) -> int:
    """Run a server until Ctrl-C (or SIGTERM); the `milvus-server` command."""
    import signal
    import sys

    out = out or sys.stdout
    server = LocalMilvusServer(data_dir, port)
    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.getsignal(sig) for sig in handled}

    def on_signal(signum, frame):  # SIGTERM (a service manager's stop) is a Ctrl-C too
        raise KeyboardInterrupt

    main_thread = threading.current_thread() is threading.main_thread()

    def shield() -> None:  # a second Ctrl-C must not leave Milvus half-stopped
        if main_thread:
            for sig in handled:
                signal.signal(sig, signal.SIG_IGN)
    if main_thread:  # also when started in the background, where SIGINT starts out ignored
        for sig in handled:
            signal.signal(sig, on_signal)
    try:
        print(f"starting Milvus {server.version or ''} (data in {server.data_dir}) ...", file=out, flush=True)
        try:
            server.start()
        except KeyboardInterrupt:
            shield()
            server.stop()
            print("stopped", file=out, flush=True)
            return 130
        print(f"Milvus is running. Use it with:\n  MILVUS_URI={server.uri}", file=out)
        print("Press Ctrl-C to stop.", file=out, flush=True)
        try:
            while server.running:
                time.sleep(0.5)
        except KeyboardInterrupt:
            shield()
            print("stopping Milvus ...", file=out, flush=True)
            server.stop()
            print("stopped", file=out, flush=True)
            return 0
        server.stop()
        raise MilvusServerError(f"Milvus exited unexpectedly; see the logs in {server.log_dir}")
    finally:
        if main_thread:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
