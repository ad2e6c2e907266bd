"""The client tools against a running broker: topics, publish, tail and the Python client."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import orjson
from harness import samples

from stream_engine.runtime.cluster.topics import pipeline_topics


def cli(*args: str, stdin: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stream_engine", *args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


async def test_topics_create_is_idempotent_and_list_shows_partition_counts(make_pipeline, broker):
    pipeline = make_pipeline()
    config = str(pipeline.effective.path)
    names = pipeline_topics(pipeline)

    first = await asyncio.to_thread(cli, "topics", "create", config, "--broker", broker)
    again = await asyncio.to_thread(cli, "topics", "create", config, "--broker", broker)
    listed = await asyncio.to_thread(cli, "topics", "list", config, "--broker", broker)

    assert first.returncode == 0, first.stderr
    assert first.stdout.decode().count("created") == len(names.all())
    assert again.returncode == 0
    assert again.stdout.decode().count("exists") == len(names.all())
    table = listed.stdout.decode()
    assert "missing" not in table
    dlq_row = next(line for line in table.splitlines() if names.dlq in line)
    assert "2" in dlq_row.split(names.dlq)[1], "the onboarding dlq is declared with 2 partitions"


async def test_publish_from_stdin_then_tail_shows_decisions_and_dead_letters(
    make_pipeline, kafka, running, broker
):
    pipeline = make_pipeline()
    config = str(pipeline.effective.path)
    records = samples()[:20]
    lines = b"\n".join(orjson.dumps(r) for r in records) + b"\n\xff not json\n"
    await running(pipeline, kafka)

    sent = await asyncio.to_thread(cli, "publish", config, "-", "--broker", broker, stdin=lines)
    tailed = await asyncio.to_thread(
        cli, "tail", config, "all", "--from-beginning", "--count", "21", "--broker", broker
    )

    assert sent.returncode == 0, sent.stderr
    assert "published 21 record(s)" in sent.stderr.decode()
    assert tailed.returncode == 0, tailed.stderr
    shown = [orjson.loads(line) for line in tailed.stdout.splitlines()]
    decided = {m["record_id"] for m in shown if "record_id" in m}
    letters = [m for m in shown if "headers" in m]
    assert decided == {r["application_id"] for r in records}
    assert len(letters) == 1
    assert letters[0]["headers"]["dlq.reason"] == "decode_error"


async def test_the_python_client_publishes_and_waits_for_each_records_outcome(
    make_pipeline, kafka, running, client_for
):
    pipeline = make_pipeline()
    records = samples()[:10]
    await running(pipeline, kafka)
    client = await client_for(pipeline)

    await client.publish_many(records)
    found = await client.wait_for([r["application_id"] for r in records], timeout_s=60)

    assert set(found) == {r["application_id"] for r in records}
    assert {m["status"] for m in found.values()} <= {"approved", "rejected", "review"}


def test_a_command_against_an_unreachable_broker_fails_in_one_line(make_pipeline):
    config = str(make_pipeline().effective.path)

    result = cli("topics", "list", config, "--broker", "127.0.0.1:1")

    assert result.returncode == 1
    assert "Traceback" not in result.stderr.decode()
    assert "error: broker 127.0.0.1:1" in result.stderr.decode()


def test_run_refuses_a_stage_that_is_not_enabled_in_one_line(make_pipeline, broker):
    config = str(make_pipeline().effective.path)

    result = cli("run", config, "--broker", broker, "--stage", "nope", timeout=30)

    assert result.returncode == 1
    assert "error: --stage: not an enabled stage: nope" in result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()
