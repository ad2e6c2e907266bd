"""The limit: a raw aiokafka pass-through over the same five hops, no rules.

Each hop (stage topic → next stage topic, the last into ``decisions``) runs one consumer in
its own group: ``getmany`` a batch, JSON-decode and re-encode every value (orjson), send all of
it, wait for every acknowledgement (acks=all), then commit the batch's offsets. One process may
run every hop (``--stages`` all, one shared producer) or some of them.

    python -m benchmarks.peers.raw_aiokafka --broker HOST:PORT --prefix P --group G
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from benchmarks.peers.common import PeerOptions, parse_peer_args

BATCH = 10_000


def consumer_for(options: PeerOptions, stage: str) -> AIOKafkaConsumer:
    """A manual-commit consumer of ``stage``'s topic in the hop's own group."""
    return AIOKafkaConsumer(
        options.topology.stage_input(stage),
        bootstrap_servers=options.broker,
        group_id=f"{options.group}.{stage}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=options.session_timeout_ms,
        heartbeat_interval_ms=max(100, options.session_timeout_ms // 6),
        max_poll_records=BATCH,
        fetch_max_wait_ms=50,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )


async def hop(options: PeerOptions, stage: str, producer: AIOKafkaProducer) -> None:
    """Forward ``stage``'s topic to the next one until cancelled."""
    target = options.topology.next_topic(stage)
    consumer = consumer_for(options, stage)
    await consumer.start()
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=BATCH)
            if not batches:
                continue
            futures = []
            for messages in batches.values():
                for message in messages:
                    value = orjson.dumps(orjson.loads(message.value))
                    futures.append(await producer.send(target, value, key=message.key))
            await asyncio.gather(*futures)
            await consumer.commit()
    finally:
        await consumer.stop()


async def main(options: PeerOptions) -> None:
    """Run the hops of ``options.stages`` until SIGTERM/SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    producer = AIOKafkaProducer(
        bootstrap_servers=options.broker,
        acks="all",
        enable_idempotence=False,
        linger_ms=5,
        max_batch_size=1024 * 1024,
    )
    await producer.start()
    tasks = [asyncio.ensure_future(hop(options, stage, producer)) for stage in options.stages]
    try:
        done, _ = await asyncio.wait(
            [*tasks, asyncio.ensure_future(stop.wait())], return_when=asyncio.FIRST_COMPLETED
        )
        for task in done:
            failure = task.exception()
            if failure is not None:
                raise failure
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
        await producer.stop()


if __name__ == "__main__":
    asyncio.run(main(parse_peer_args(__doc__ or "")))
