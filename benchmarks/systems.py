"""The systems under test: how each one's topics are made and which processes run it."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

from benchmarks.topology import STAGES, Topology

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs/customer_onboarding.yaml"
TOPICS_FILE = ROOT / "configs/topics/customer_onboarding.yaml"
STREAM_ENGINE = str(Path(sys.executable).with_name("stream-engine"))
BENCH_KEY = secrets.token_hex(32)


@dataclass(frozen=True)
class Context:
    """What every system's setup needs: the broker, a fresh topic prefix, a scratch folder,
    and the options that shape some systems."""

    bootstrap: str
    prefix: str
    workdir: Path
    driver: str | None
    guarantee: str | None
    raw_layout: str
    peer_layout: str
    session_timeout_ms: int

    @property
    def topology(self) -> Topology:
        """The system's topics."""
        return Topology(self.prefix)


Command = list[str]


@dataclass(frozen=True)
class System:
    """One system under test: a name (as in ``--systems`` and the JSON line), a description,
    and the commands of its processes (all started at once)."""

    name: str
    description: str
    commands: Callable[[Context], list[Command]]
    stream_engine: bool = False


def partitions() -> tuple[int, int]:
    """(partitions of every topic, of the dead-letter topic), from the pipeline's topics
    file, so the peers get the layout stream_engine gets."""
    spec = yaml.safe_load(TOPICS_FILE.read_text())
    default = int(spec["defaults"]["partitions"])
    dlq = int(spec.get("kinds", {}).get("dlq", {}).get("partitions", default))
    return default, dlq


def bench_config(context: Context) -> Path:
    """A copy of the onboarding pipeline named after the prefix (so its topics and consumer
    groups are fresh), its topics file copied beside it (a pipeline reads files in its own
    directory only) and no samples, a short session timeout (as ``dev`` uses on the embedded
    broker), and ``runtime.driver`` only when ``--driver`` was given."""
    config: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
    config["pipeline"] = context.prefix
    topics = context.workdir / f"{context.prefix}.topics.yaml"
    shutil.copyfile(TOPICS_FILE, topics)
    config["topics"]["file"] = topics.name
    config.pop("samples", None)
    runtime = config.setdefault("runtime", {})
    runtime["session_timeout_s"] = context.session_timeout_ms / 1000.0
    runtime["heartbeat_interval_s"] = min(0.5, context.session_timeout_ms / 6000.0)
    if context.driver:
        runtime["driver"] = context.driver
    if context.guarantee:
        runtime["processing_guarantee"] = context.guarantee
    path = context.workdir / f"{context.prefix}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def create_stream_engine_topics(context: Context, log: TextIO) -> Path:
    """Write the config copy and create its topics with ``stream-engine topics create``."""
    config = bench_config(context)
    subprocess.run(
        [STREAM_ENGINE, "topics", "create", str(config), "--broker", context.bootstrap],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        check=True,
        timeout=120,
    )
    return config


def _engine(context: Context, stages: list[str | None]) -> list[Command]:
    config = context.workdir / f"{context.prefix}.yaml"
    base = [STREAM_ENGINE, "run", str(config), "--broker", context.bootstrap, "--metrics-port"]
    return [[*base, "0", *(["--stage", stage] if stage else [])] for stage in stages]


def _peer(module: str, context: Context, per_stage: bool) -> list[Command]:
    groups = [[stage] for stage in STAGES] if per_stage else [list(STAGES)]
    return [
        [
            sys.executable,
            "-m",
            f"benchmarks.peers.{module}",
            "--broker",
            context.bootstrap,
            "--prefix",
            context.prefix,
            "--group",
            f"{context.prefix}.group",
            "--stages",
            ",".join(stages),
            "--session-timeout-ms",
            str(context.session_timeout_ms),
        ]
        for stages in groups
    ]


SYSTEMS: dict[str, System] = {
    system.name: system
    for system in (
        System(
            "stream_engine_one_worker",
            "stream_engine, all five stages in one `stream-engine run` worker",
            lambda c: _engine(c, [None]),
            stream_engine=True,
        ),
        System(
            "stream_engine_per_stage",
            "stream_engine, one `stream-engine run --stage S` worker per stage (5 processes)",
            lambda c: _engine(c, list(STAGES)),
            stream_engine=True,
        ),
        System(
            "raw_aiokafka",
            "the limit: aiokafka pass-through (getmany, JSON decode/encode, produce, acks, "
            "commit), no rules",
            lambda c: _peer("raw_aiokafka", c, c.raw_layout == "per-stage"),
        ),
        System(
            "quixstreams",
            "the peer: the rules by hand in a Quix Streams app (apply + to_topic)",
            lambda c: _peer("quix_app", c, c.peer_layout == "per-stage"),
        ),
        System(
            "faust_naive",
            "the rules by hand as plain faust agents (async for, await topic.send per record)",
            lambda c: _peer("faust_app", c, c.peer_layout == "per-stage"),
        ),
    )
}


@dataclass
class Processes:
    """The running processes of one system, each in its own session, logging to a file."""

    popens: list[subprocess.Popen[bytes]]
    log_path: Path

    @classmethod
    def start(cls, commands: list[Command], log_path: Path) -> Processes:
        """Start every command (cwd: the repository, so ``-m benchmarks...`` works)."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
        # Workers sign and verify envelopes: one key for the run, as a deployment gives one.
        env.setdefault("STREAM_ENGINE_ENVELOPE_KEY", "bench:" + BENCH_KEY)
        with log_path.open("ab") as log:
            popens = [
                subprocess.Popen(
                    command,
                    cwd=ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
                for command in commands
            ]
        return cls(popens, log_path)

    @property
    def pids(self) -> list[int]:
        """Process ids."""
        return [p.pid for p in self.popens]

    def exited(self) -> list[int]:
        """Exit codes of the processes that have ended."""
        return [code for p in self.popens if (code := p.poll()) is not None]

    def stop(self, grace_s: float = 20.0) -> None:
        """SIGTERM each, wait up to ``grace_s`` in total, then SIGKILL what is left (each
        process's own group: it and anything it started)."""
        for popen in self.popens:
            if popen.poll() is None:
                popen.send_signal(signal.SIGTERM)
        for popen in self.popens:
            try:
                popen.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                os.killpg(popen.pid, signal.SIGKILL)
                popen.wait(timeout=10)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the processes logged."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
