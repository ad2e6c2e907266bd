"""Dead-letter replay end to end: records dead-lettered while a service failed are decided
once it recovers and the replay runs."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from harness import by_id, offline_decisions, read_outcomes, samples

from stream_engine.runtime.topics import pipeline_topics


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stream_engine", *args],
        capture_output=True,
        timeout=120,
        check=False,
    )


async def test_dead_letters_of_a_failed_service_are_decided_after_it_recovers_and_replay_runs(
    make_pipeline, kafka, running, client_for, broker
):
    failing = make_pipeline(
        services__kyc__params__fail_rate=1.0,
        services__kyc__retry={"attempts": 1},
        services__kyc__circuit_breaker={"failure_threshold": 10_000, "reset_timeout_s": 1},
    )
    decided = await offline_decisions(make_pipeline(), samples())
    reaching = [r for r in samples() if decided[r["application_id"]]["decided_by_stage"]
                not in ("preprocessing", "data_quality")][:20]  # fmt: skip
    worker = await running(failing, kafka)
    client = await client_for(failing)
    await client.publish_many(reaching)
    first = by_id(await read_outcomes(kafka, pipeline_topics(failing), len(reaching)))
    await worker.stop()
    ids = {rid for rid, o in first.items() if o.kind == "dlq"}

    recovered = make_pipeline(pipeline=failing.plan.name)
    await running(recovered, kafka)
    config = str(recovered.effective.path)
    dry = await asyncio.to_thread(
        cli, "dlq", "replay", config, "--broker", broker, "--reason", "rule_error", "--dry-run"
    )
    other = await asyncio.to_thread(
        cli, "dlq", "replay", config, "--broker", broker, "--reason", "timeout"
    )
    done = await asyncio.to_thread(
        cli, "dlq", "replay", config, "--broker", broker, "--stage", "compliance"
    )
    outcomes = await read_outcomes(kafka, pipeline_topics(recovered), len(reaching) + len(ids))

    assert len(ids) >= 10, "most applications reaching compliance wait on KYC"
    assert {first[rid].headers["dlq.reason"] for rid in ids} == {"rule_error"}
    assert {first[rid].headers["dlq.rule"] for rid in ids} == {"kyc_identity_verification"}
    assert dry.returncode == 0, dry.stderr
    assert f"would replay {len(ids)}" in dry.stderr.decode()
    assert "replayed 0" in other.stderr.decode()
    assert done.returncode == 0, done.stderr
    assert f"replayed {len(ids)}" in done.stderr.decode()
    after = [o for o in outcomes if o.kind != "dlq" and o.record_id in ids]
    assert sorted(o.record_id for o in after) == sorted(ids), "each replayed record decided once"
    for outcome in after:
        want = decided[outcome.record_id]
        assert (outcome.status, outcome.stage) == (want["status"], want["decided_by_stage"])
        assert outcome.body["attempt"] == 2
