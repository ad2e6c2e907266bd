"""Starting a Kafka client against a cluster that does not answer: one ``BrokerError`` naming
the cluster (never the password), within the connect timeout - not aiokafka's 40 s per server."""

from __future__ import annotations

import asyncio
import time

import pytest

from stream_engine.errors import BrokerError
from stream_engine.runtime.cluster.settings import KafkaSettings, reach

PASSWORD = "s3cr3t-Pa55word"


async def test_a_listener_that_never_answers_is_given_up_within_the_connect_timeout():
    held: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # accepts, reads nothing, answers nothing

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    kafka = KafkaSettings(bootstrap_servers=f"127.0.0.1:{port}")
    started = time.monotonic()
    try:
        with pytest.raises(BrokerError) as raised:
            await reach(kafka, timeout_s=0.5)
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()

    assert time.monotonic() - started < 5.0
    assert str(raised.value) == (
        f"broker 127.0.0.1:{port} (PLAINTEXT): no answer within 0.5s; is it running and reachable?"
    )


async def test_a_refused_connection_names_the_cluster_and_its_user_but_never_the_password():
    kafka = KafkaSettings(
        bootstrap_servers="127.0.0.1:1",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="engine",
        sasl_password=PASSWORD,
    )

    with pytest.raises(BrokerError) as raised:
        await reach(kafka, timeout_s=5.0)

    assert str(raised.value) == (
        "broker 127.0.0.1:1 (SASL_PLAINTEXT, SCRAM-SHA-512 as engine): cannot connect to any "
        "bootstrap server; is it running and reachable?"
    )
    assert PASSWORD not in repr(raised.value)
