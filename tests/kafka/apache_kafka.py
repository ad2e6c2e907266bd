"""A real Apache Kafka 4.x broker for the tests: one KRaft node (broker and controller in one
JVM) on free loopback ports, run from the jars that Maven resolves from ``pom.xml`` beside this
file. The jars are copied once into ``target/lib`` (gitignored); later runs start offline.

    with ApacheKafka() as kafka:
        use(kafka.bootstrap)       # "127.0.0.1:PORT"
        kafka.restart()            # same data directory, same ports
        kafka.kill()               # SIGKILL, then kafka.start() recovers from the same data

Needs ``java`` (17 or newer; ``$JAVA_HOME/bin/java`` when set) and, the first time, ``mvn``.
Pure standard library plus aiokafka (used for the readiness check)."""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import IO

HERE = Path(__file__).resolve().parent
POM = HERE / "pom.xml"
LIB = HERE / "target" / "lib"
_STAMP = LIB / ".pom.sha256"  # written last: the copy in LIB is complete for this pom

_LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = OUT
# One line when the node is up ("Kafka Server started"), one when it stops.
logger.raft.name = kafka.server.KafkaRaftServer
logger.raft.level = INFO
"""


class KafkaStartError(RuntimeError):
    """The broker did not come up (the message ends with the tail of its log)."""


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def java_binary() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise KafkaStartError("Apache Kafka needs Java 17 or newer: no `java` on PATH")
    return found


def kafka_classpath() -> str:
    """The broker's classpath: every jar of ``target/lib``, copied there by Maven the first time
    (or again when ``pom.xml`` changed). Safe against concurrent callers (a file lock)."""
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()
    LIB.parent.mkdir(parents=True, exist_ok=True)
    with open(LIB.parent / ".lib.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (_STAMP.exists() and _STAMP.read_text().strip() == digest):
            mvn = shutil.which("mvn")
            if not mvn:
                raise KafkaStartError(
                    f"resolving the Kafka jars needs Maven (`mvn`); or copy them into {LIB}"
                )
            if LIB.exists():
                shutil.rmtree(LIB)
            result = subprocess.run(
                [
                    mvn,
                    "-q",
                    "-B",
                    "-f",
                    str(POM),
                    "dependency:copy-dependencies",
                    f"-DoutputDirectory={LIB}",
                    "-DincludeScope=runtime",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                raise KafkaStartError(
                    f"mvn could not resolve the Kafka jars (exit {result.returncode}):\n"
                    f"{(result.stdout + result.stderr)[-4000:]}"
                )
            _STAMP.write_text(digest + "\n")
    jars = sorted(LIB.glob("*.jar"))
    if not jars:
        raise KafkaStartError(f"no jars in {LIB}")
    return os.pathsep.join(str(jar) for jar in jars)


def random_cluster_id() -> str:
    """A cluster id as Kafka writes them (URL-safe base64 of 16 bytes); never starting with
    ``-`` so the storage tool does not take it for an option."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


class ApacheKafka:
    """One KRaft node of Apache Kafka. Its ports and data directory are fixed when it is made,
    so ``restart()`` and ``kill()`` + ``start()`` come back at the same address with the same
    topics, offsets and committed groups.

    ``data_dir``: where the logs and metadata go (a temporary directory, removed on ``close()``,
    when not given). ``log_file``: the broker's stdout/stderr (``<work dir>/broker.log`` when not
    given). ``config``: extra or overriding ``server.properties`` entries. ``heap_mb``: the
    JVM's maximum heap."""

    def __init__(
        self,
        data_dir: Path | str | None = None,
        *,
        port: int = 0,
        controller_port: int = 0,
        log_file: Path | str | None = None,
        config: dict[str, str | int] | None = None,
        heap_mb: int = 512,
    ) -> None:
        self._owned_dir: Path | None = None
        if data_dir is None:
            self._owned_dir = Path(tempfile.mkdtemp(prefix="apache-kafka-"))
            data_dir = self._owned_dir / "data"
        self.data_dir = Path(data_dir).resolve()
        self.work_dir = self.data_dir.parent / f"{self.data_dir.name}.conf"
        self.port = port or free_port()
        self.controller_port = controller_port or free_port()
        while self.controller_port == self.port:
            self.controller_port = free_port()
        self.log_file = Path(log_file) if log_file else self.work_dir / "broker.log"
        self.extra_config = {k: str(v) for k, v in (config or {}).items()}
        self.heap_mb = heap_mb
        self.cluster_id: str | None = None
        self.started_in_s: float | None = None  # wall time of the last start()
        self._process: subprocess.Popen[bytes] | None = None
        self._log_handle: IO[bytes] | None = None
        atexit.register(self._kill_at_exit)

    # -- addresses and files ---------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """``host:port`` for clients."""
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def server_properties(self) -> dict[str, str]:
        host = "127.0.0.1"
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "listeners": f"PLAINTEXT://{host}:{self.port},CONTROLLER://{host}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{host}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "controller.quorum.voters": f"1@{host}:{self.controller_port}",
            "log.dirs": str(self.data_dir),
            "num.partitions": "4",
            "default.replication.factor": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # The tests use 3 s consumer sessions (as with the embedded broker); Kafka's
            # default minimum is 6 s.
            "group.min.session.timeout.ms": "1000",
            # After a SIGKILL the node re-registers only once its old session expired (9 s by
            # default); shorter, so kill() + start() is back in a few seconds.
            "broker.session.timeout.ms": "4000",
            "broker.heartbeat.interval.ms": "500",
            # stream_engine creates every topic it uses (`topics create`, faust's own
            # topics); a topic that appears by accident is a bug the tests should see.
            "auto.create.topics.enable": "false",
            "num.network.threads": "2",
            "num.io.threads": "4",
            "num.recovery.threads.per.data.dir": "2",
            "log.retention.check.interval.ms": "300000",
        }
        props.update(self.extra_config)
        return props

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return "(no broker log)"
        return "\n".join(text.splitlines()[-lines:])

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, timeout_s: float = 90.0) -> str:
        """Start the node (formatting the data directory the first time) and wait until a
        Kafka client gets metadata naming this broker; returns the bootstrap address."""
        if self.is_running():
            return self.bootstrap
        self._reap()  # a process that died on its own
        began = time.monotonic()
        deadline = began + timeout_s
        classpath = kafka_classpath()
        java = java_binary()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        properties = self.work_dir / "server.properties"
        properties.write_text(
            "".join(f"{key}={value}\n" for key, value in self.server_properties().items())
        )
        log4j = self.work_dir / "log4j2.properties"
        log4j.write_text(_LOG4J2)
        jvm = [
            java,
            f"-Xms{min(256, self.heap_mb)}m",
            f"-Xmx{self.heap_mb}m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j}",
            "-cp",
            classpath,
        ]
        if not (self.data_dir / "meta.properties").exists():
            self._format(jvm, properties)
        log = open(self.log_file, "ab")  # noqa: SIM115 - closed in _reap()
        log.write(f"--- starting Apache Kafka on {self.bootstrap} ---\n".encode())
        log.flush()
        self._log_handle = log
        self._process = subprocess.Popen(
            [*jvm, "kafka.Kafka", str(properties)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.work_dir,
            start_new_session=True,
        )
        try:
            self._wait_ready(deadline, timeout_s)
        except BaseException:
            self.kill()
            raise
        self.started_in_s = time.monotonic() - began
        return self.bootstrap

    def _format(self, jvm: list[str], properties: Path) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.cluster_id = random_cluster_id()
        result = subprocess.run(
            [
                *jvm,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                self.cluster_id,
                "-c",
                str(properties),
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if result.returncode != 0:
            raise KafkaStartError(
                f"kafka-storage format failed (exit {result.returncode}):\n"
                f"{(result.stdout + result.stderr)[-4000:]}"
            )

    def _wait_ready(self, deadline: float, timeout_s: float) -> None:
        assert self._process is not None
        last_error = "not tried"
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise KafkaStartError(
                    f"Apache Kafka exited with status {self._process.returncode} while "
                    f"starting:\n{self.log_tail()}"
                )
            if _port_open(self.port):
                try:
                    if _metadata_names_broker(self.bootstrap, node_id=1):
                        return
                    last_error = "metadata without this broker yet"
                except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
                    last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(0.2)
        raise KafkaStartError(
            f"Apache Kafka not ready on {self.bootstrap} within {timeout_s}s "
            f"(last check: {last_error}):\n{self.log_tail()}"
        )

    def stop(self, timeout_s: float = 30.0) -> None:
        """A clean shutdown (SIGTERM; SIGKILL after ``timeout_s``). The data stays."""
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)
        self._reap()

    def kill(self) -> None:
        """SIGKILL, as a crash: the next ``start()`` recovers from the same data."""
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=30)
        self._reap()

    def restart(self, timeout_s: float = 90.0, *, hard: bool = False) -> str:
        """Stop (or with ``hard``, kill) and start again on the same data and ports."""
        if hard:
            self.kill()
        else:
            self.stop()
        return self.start(timeout_s)

    def close(self) -> None:
        """Stop, and remove the data when it lives in a temporary directory of ours."""
        self.stop()
        if self._owned_dir is not None:
            shutil.rmtree(self._owned_dir, ignore_errors=True)
            self._owned_dir = None

    def _reap(self) -> None:
        self._process = None
        handle, self._log_handle = self._log_handle, None
        if handle is not None:
            handle.close()

    def _kill_at_exit(self) -> None:
        with contextlib.suppress(Exception):
            self.kill()

    def __enter__(self) -> ApacheKafka:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _metadata_names_broker(bootstrap: str, node_id: int) -> bool:
    """True when a real Kafka client (aiokafka) gets cluster metadata listing ``node_id``. Runs
    in a thread of its own so it works whether or not the caller has an event loop running."""
    result: list[object] = []

    def probe() -> None:
        async def ask() -> bool:
            from aiokafka.admin import AIOKafkaAdminClient

            admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
            try:
                await asyncio.wait_for(admin.start(), 5)
                cluster = await asyncio.wait_for(admin.describe_cluster(), 5)
                return any(b.get("node_id") == node_id for b in cluster.get("brokers", []))
            finally:
                await admin.close()

        try:
            result.append(asyncio.run(ask()))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            result.append(exc)

    thread = threading.Thread(target=probe, name="kafka-ready-probe", daemon=True)
    thread.start()
    thread.join(15)
    if not result:
        raise TimeoutError("the readiness probe hung")
    if isinstance(result[0], BaseException):
        raise result[0]
    return bool(result[0])


if __name__ == "__main__":  # a broker by hand: python tests/kafka/apache_kafka.py
    with ApacheKafka() as node:
        print(
            f"Apache Kafka on {node.bootstrap} (started in {node.started_in_s:.1f}s); Ctrl-C stops"
        )
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
