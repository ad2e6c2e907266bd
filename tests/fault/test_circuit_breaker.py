"""A service failing 100%: the breaker opens, records follow on_error, and once the service
recovers the breaker half-opens and closes - with the metrics showing each state."""

from __future__ import annotations

from collections import Counter

from aiohttp import web
from harness import by_id, offline_decisions, read_outcomes, samples

from stream_engine.core.breaker import BreakerState
from stream_engine.runtime.cluster.broker import free_port
from stream_engine.runtime.cluster.topics import pipeline_topics


class KycServer:
    """A real HTTP identity service on loopback that fails with 503 until told to recover."""

    def __init__(self) -> None:
        self.healthy = False
        self.calls = Counter()
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.calls["healthy" if self.healthy else "failing"] += 1
        if not self.healthy:
            return web.json_response({"error": "down for maintenance"}, status=503)
        body = await request.json()
        return web.json_response(
            {"verified": True, "confidence_score": 0.97, "verification_id": f"KYC-{body['ssn']}"}
        )

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/verify", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return f"http://127.0.0.1:{self.port}/verify"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def test_a_failing_service_opens_the_breaker_and_it_closes_after_recovery(
    make_pipeline, kafka, running, client_for
):
    server = KycServer()
    url = await server.start()
    pipeline = make_pipeline(
        services__kyc={
            "class": "HttpJsonService",
            "params": {"url": url},
            "timeout_s": 2,
            "retry": {"attempts": 1},
            "circuit_breaker": {"failure_threshold": 3, "reset_timeout_s": 1.0},
        },
        runtime__batch_size=1,
    )
    decided = await offline_decisions(make_pipeline(), samples())
    reaching = [r for r in samples() if decided[r["application_id"]]["decided_by_stage"]
                not in ("preprocessing", "data_quality")]  # fmt: skip
    first, second = reaching[:8], reaching[8:14]
    seen: list[BreakerState] = []
    pipeline.breakers["kyc"].listen(lambda _, state: seen.append(state))
    worker = await running(pipeline, kafka)
    gauge = worker.metrics.values["circuit_breaker_state"]
    client = await client_for(pipeline)
    try:
        await client.publish_many(first)
        during = by_id(await read_outcomes(kafka, pipeline_topics(pipeline), len(first)))
        state_while_failing = gauge[("kyc",)]
        server.healthy = True
        await _sleep_past_reset(1.0)
        await client.publish_many(second)
        after = by_id(
            await read_outcomes(kafka, pipeline_topics(pipeline), len(first) + len(second))
        )
        state_after = gauge[("kyc",)]
    finally:
        await server.stop()

    letters = [during[r["application_id"]] for r in first]
    reasons = Counter(o.headers.get("dlq.reason") for o in letters if o.kind == "dlq")
    assert reasons["rule_error"] == 3, "three real failures open the breaker"
    assert reasons["circuit_open"] >= 1, "then records fail fast, following on_error"
    assert server.calls["failing"] == 3, "an open breaker sends nothing to the service"
    assert state_while_failing == 2
    assert seen[:3] == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]
    assert state_after == 0
    for record in second:
        outcome = after[record["application_id"]]
        assert outcome.kind != "dlq"
        assert outcome.body["results"]["kyc_identity_verification"]["outcome"] == "PASS"
    calls = worker.metrics.values["service_calls"]
    assert calls[("kyc", "service_error")] == 3
    assert calls[("kyc", "circuit_open")] == reasons["circuit_open"]
    assert calls[("kyc", "ok")] == len(second)


async def _sleep_past_reset(reset_timeout_s: float) -> None:
    import asyncio

    await asyncio.sleep(reset_timeout_s + 0.2)  # the breaker's own clock: a fixed wait is the spec
