"""The peer: the onboarding rules as a Quix Streams application, one streaming dataframe per
stage topic (same five hops as stream_engine), written the way the Quix docs show: JSON
topics, ``apply`` the stage, ``to_topic`` with a callable that picks the next stage's topic
or an output topic. At-least-once (Quix's default): offsets are committed at checkpoints,
after the producer has flushed.

    python -m benchmarks.peers.quix_app --broker HOST:PORT --prefix P --group G [--stages ...]
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from typing import Any

from quixstreams import Application
from quixstreams.models import Topic

from benchmarks.peers.common import (
    PeerOptions,
    destination,
    kind_of,
    parse_peer_args,
    step,
)
from benchmarks.topology import Topology


def make_app(options: PeerOptions, state_dir: str) -> Application:
    """A Quix application on existing topics, with a short session timeout (the embedded
    broker makes a group join wait half of it)."""
    return Application(
        broker_address=options.broker,
        consumer_group=f"{options.group}.{'+'.join(options.stages)}",
        auto_offset_reset="earliest",
        consumer_extra_config={
            "session.timeout.ms": options.session_timeout_ms,
            "heartbeat.interval.ms": max(100, options.session_timeout_ms // 6),
        },
        auto_create_topics=False,
        use_changelog_topics=False,
        state_dir=state_dir,
        loglevel="WARNING",
    )


def router(
    topology: Topology, stage: str, topics: dict[str, Topic]
) -> Callable[[Any, Any, int, Any], Topic]:
    """The ``to_topic`` callable: the topic of the step's output kind."""

    def choose(value: Any, key: Any, timestamp: int, headers: Any) -> Topic:
        return topics[destination(topology, stage, kind_of(value))]

    return choose


def build(app: Application, options: PeerOptions) -> None:
    """One dataframe per stage: decode, run the stage, produce where its result goes."""
    topology = options.topology
    topics = {
        name: app.topic(name, key_deserializer="str", key_serializer="str")
        for name in topology.all_topics()
    }
    for stage in options.stages:
        sdf = app.dataframe(topics[topology.stage_input(stage)])
        sdf = sdf.apply(
            lambda value, key, timestamp, headers, stage=stage: step(stage, key, value)[1],
            metadata=True,
        )
        sdf = sdf.to_topic(router(topology, stage, topics))


def main(options: PeerOptions) -> None:
    """Run until SIGTERM/SIGINT."""
    with tempfile.TemporaryDirectory(prefix="bench-quix-") as state_dir:
        app = make_app(options, state_dir)
        build(app, options)
        app.run()


if __name__ == "__main__":
    main(parse_peer_args(__doc__ or ""))
