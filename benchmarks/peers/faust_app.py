"""The onboarding rules as plain faust agents, written the straightforward way: one agent per
stage topic (the same five hops), ``async for key, value in stream.items()``, run the stage,
``await topic.send(...)`` per record. JSON values (faust's ``json`` serializer); faust acks
each event when the agent takes the next one and commits acked offsets periodically.

    python -m benchmarks.peers.faust_app --broker HOST:PORT --prefix P --group G [--stages ...]
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Callable, Coroutine
from typing import Any

import faust
from faust.types import StreamT, TopicT

from benchmarks.peers.common import PeerOptions, destination, parse_peer_args, step


def make_app(options: PeerOptions, datadir: str) -> faust.App:
    """A faust app on existing topics (no declaring, no leader topic, no web server), with a
    short session timeout for the embedded broker and its data directory out of the cwd."""
    return faust.App(
        f"{options.group}.{'+'.join(options.stages)}",
        broker=f"kafka://{options.broker}",
        value_serializer="json",
        key_serializer="raw",
        broker_session_timeout=options.session_timeout_ms / 1000.0,
        broker_heartbeat_interval=max(0.1, options.session_timeout_ms / 6000.0),
        consumer_auto_offset_reset="earliest",
        topic_allow_declare=False,
        topic_disable_leader=True,
        web_enabled=False,
        store="memory://",
        datadir=datadir,
        autodiscover=False,
    )


def stage_agent(
    stage: str, topics: dict[str, TopicT], options: PeerOptions
) -> Callable[[StreamT[Any]], Coroutine[Any, Any, None]]:
    """The agent of one stage."""

    async def process(stream: StreamT[Any]) -> None:
        async for key, value in stream.items():
            record_id = key.decode() if isinstance(key, bytes) else key
            kind, out = step(stage, record_id, value)
            await topics[destination(options.topology, stage, kind)].send(key=key, value=out)

    return process


def build(app: faust.App, options: PeerOptions) -> None:
    """One agent per stage of ``options.stages``."""
    topics = {name: app.topic(name) for name in options.topology.all_topics()}
    for stage in options.stages:
        source = topics[options.topology.stage_input(stage)]
        app.agent(source, name=f"stage.{stage}")(stage_agent(stage, topics, options))


def main(options: PeerOptions) -> None:
    """Run a worker until SIGTERM/SIGINT."""
    with tempfile.TemporaryDirectory(prefix="bench-faust-") as datadir:
        app = make_app(options, datadir)
        build(app, options)
        for name in ("faust", "aiokafka", "mode"):
            logging.getLogger(name).setLevel(logging.WARNING)
        with contextlib.suppress(SystemExit):
            faust.Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main(parse_peer_args(__doc__ or ""))
