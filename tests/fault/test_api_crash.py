"""An API process SIGKILLed with decide and submit calls in flight loses no record it
acknowledged: every call answered 200 or 202 before the kill has its record decided, as a
fresh API started afterwards reports. Calls cut off by the kill may or may not have been
published; nothing is asserted of them but that there were some. Runs on both brokers."""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass, field

import aiohttp
from api_helpers import APPROVED, REJECTED, ApiProcess, decision_of, tiny_pipeline, wait_ready
from broker_fixtures import ensure_topics

from stream_engine.api.server import running_api
from stream_engine.runtime.worker import StageWorker

#: Callers looping at once (even ones decide, odd ones submit), and the answers they get before
#: the kill.
CALLERS = 16
KILL_AFTER = 80


@dataclass
class Tally:
    """What the callers saw: record ids acknowledged, and calls sent before the kill that got
    no answer."""

    acknowledged: list[str] = field(default_factory=list)
    cut_off: list[str] = field(default_factory=list)
    killed: bool = False
    enough: asyncio.Event = field(default_factory=asyncio.Event)


async def test_an_api_process_killed_with_calls_in_flight_loses_no_acknowledged_record(
    broker, kafka, tmp_path
):
    pipeline = tiny_pipeline(tmp_path, broker, runtime__batch_size=50)
    config = pipeline.effective.path
    await ensure_topics(pipeline, kafka)
    worker = StageWorker(pipeline, kafka)
    await worker.start()
    doomed = ApiProcess.serve(config, broker, log=tmp_path / "doomed.log")
    tally = Tally()
    try:
        url = await asyncio.to_thread(doomed.wait_listening)
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, url)
            callers = [
                asyncio.ensure_future(_caller(session, url, i, tally)) for i in range(CALLERS)
            ]
            await asyncio.wait_for(tally.enough.wait(), 60)
            tally.killed = True
            doomed.kill()  # SIGKILL
            await asyncio.gather(*callers)
        # A fresh API (in this process: its parts are those of ``serve``) rebuilds its view
        # from the output topics and answers for every acknowledged record.
        async with running_api(pipeline, kafka) as fresh, aiohttp.ClientSession() as session:
            await wait_ready(session, fresh.url)
            decided = await asyncio.gather(
                *(decision_of(session, fresh.url, rid, 60) for rid in tally.acknowledged)
            )
    finally:
        doomed.kill()
        await worker.stop()

    print(f"\napi crash: {len(tally.acknowledged)} acknowledged, {len(tally.cut_off)} cut off")
    assert doomed.process.returncode == -signal.SIGKILL
    assert len(tally.acknowledged) >= KILL_AFTER
    assert tally.cut_off, "calls were in flight at the kill"
    assert [d["record_id"] for d in decided] == tally.acknowledged, "every one decided"


async def _caller(session: aiohttp.ClientSession, url: str, index: int, tally: Tally) -> None:
    """Send calls one after another until the API process is killed."""
    path = "/v1/decide" if index % 2 == 0 else "/v1/records"
    sent = 0
    while not tally.killed:
        record_id = f"crash-{index}-{sent}"
        record = {"id": record_id, **(APPROVED if sent % 2 else REJECTED)}
        sent += 1
        try:
            async with session.post(f"{url}{path}", json=record) as response:
                status = response.status
                await response.read()
        except (TimeoutError, aiohttp.ClientError):
            tally.cut_off.append(record_id)
            return
        assert status in (200, 202), status
        tally.acknowledged.append(record_id)
        if len(tally.acknowledged) >= KILL_AFTER:
            tally.enough.set()
