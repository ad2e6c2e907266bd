"""Workers come and go without losing records: a graceful stop commits what it finished, a
killed worker's uncommitted batches are consumed again after a restart, and processes running
the same stage split its partitions. ``dev`` uses only a broker it started, on a free port,
and that broker dies with it."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter

import psutil
import pytest
from broker_fixtures import ensure_topics
from harness import CONFIGS, WorkerProcess, by_id, numbered, read_outcomes

from stream_engine.errors import BrokerError
from stream_engine.runtime.cluster import broker as broker_module
from stream_engine.runtime.cluster.broker import EmbeddedBroker
from stream_engine.runtime.cluster.topics import pipeline_topics
from stream_engine.runtime.stage.processor import StageProcessor
from stream_engine.runtime.worker import StageWorker


async def wait_for_outcomes(kafka, pipeline, at_least: int, timeout_s: float = 60.0) -> None:
    """Return as soon as ``at_least`` outcomes are on the output topics."""
    await read_outcomes(kafka, pipeline_topics(pipeline), at_least, timeout_s, quiet_s=0)


async def test_sigterm_finishes_in_flight_work_and_exits_zero_and_a_new_worker_finishes_the_rest(
    make_pipeline, kafka, client_for, worker_process
):
    pipeline = make_pipeline(runtime__batch_size=50)
    records = numbered(10_000)
    await ensure_topics(pipeline, kafka)
    first = worker_process(pipeline.effective.path)
    await asyncio.to_thread(first.wait_ready)
    client = await client_for(pipeline)

    await client.publish_many(records)
    await wait_for_outcomes(kafka, pipeline, 100)
    first.signal(signal.SIGTERM)
    code = await asyncio.to_thread(first.wait, 60)
    done_by_first = len(await read_outcomes(kafka, pipeline_topics(pipeline), 0))
    second = worker_process(pipeline.effective.path)
    outcomes = await read_outcomes(kafka, pipeline_topics(pipeline), len(records), 120)
    second.kill()

    assert code == 0, first.log.read_text()
    assert done_by_first < len(records), "the stop came mid-stream"
    assert "stopped" in first.log.read_text()
    ids = Counter(o.record_id for o in outcomes)
    assert set(ids) == {r["application_id"] for r in records}
    assert sum(ids.values()) - len(ids) == 0, "a graceful stop commits all it produced"


async def test_a_worker_killed_mid_stream_loses_nothing_after_a_restart(
    make_pipeline, kafka, client_for, worker_process
):
    batch_size = 50
    pipeline = make_pipeline(runtime__batch_size=batch_size)
    records = numbered(10_000)
    await ensure_topics(pipeline, kafka)
    first = worker_process(pipeline.effective.path)
    await asyncio.to_thread(first.wait_ready)
    client = await client_for(pipeline)

    await client.publish_many(records)
    await wait_for_outcomes(kafka, pipeline, 200)
    first.kill()
    done_by_first = len(await read_outcomes(kafka, pipeline_topics(pipeline), 0))
    worker_process(pipeline.effective.path)
    outcomes = await read_outcomes(kafka, pipeline_topics(pipeline), len(records), 120)

    assert done_by_first < len(records), "the kill came mid-stream"
    ids = Counter(o.record_id for o in outcomes)
    assert set(ids) == {r["application_id"] for r in records}, "no record lost"
    duplicates = sum(ids.values()) - len(ids)
    stages = len(pipeline.plan.active_stages)
    partitions = 4
    # At most the uncommitted batches in flight at the kill, per stage and partition.
    assert duplicates <= batch_size * stages * partitions * 2


async def test_two_workers_of_one_stage_split_its_partitions(
    make_pipeline, kafka, running, client_for
):
    pipeline = make_pipeline()
    records = numbered(400)
    others = [s.name for s in pipeline.plan.active_stages if s.name != "data_quality"]
    await running(pipeline, kafka, others)
    left = await running(pipeline, kafka, ["data_quality"])
    right = await running(pipeline, kafka, ["data_quality"])
    await _until_assigned(left, right)
    client = await client_for(pipeline)

    await client.publish_many(records)
    outcomes = by_id(await read_outcomes(kafka, pipeline_topics(pipeline), len(records)))

    assert set(outcomes) == {r["application_id"] for r in records}
    mine, theirs = _assigned(left), _assigned(right)
    assert mine
    assert theirs
    assert not mine & theirs
    assert left.processed > 0
    assert right.processed > 0
    assert left.processed + right.processed >= sum(
        1 for o in outcomes.values() if o.stage != "preprocessing"
    )


def _assigned(worker) -> set:
    return {partition for agent in worker.agents for _, partition in agent.assignment()}


async def _until_assigned(*workers, timeout_s: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        sets = [_assigned(w) for w in workers]
        if all(sets) and sum(len(s) for s in sets) == 4:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"partitions not split within {timeout_s}s: {sets}")


async def test_an_internal_error_stops_the_worker_and_the_next_worker_decides_its_batch(
    make_pipeline, kafka, client_for, monkeypatch
):
    pipeline = make_pipeline(runtime__batch_size=50)
    records = numbered(300)
    await ensure_topics(pipeline, kafka)
    handle = StageProcessor.process

    async def broken(self: StageProcessor, batch: list) -> object:
        if self.stage.name == "compliance":
            raise RuntimeError("a bug in the engine")
        return await handle(self, batch)

    monkeypatch.setattr(StageProcessor, "process", broken)
    first = StageWorker(pipeline, kafka)
    await first.start()
    try:
        client = await client_for(pipeline)
        await client.publish_many(records)
        failure = await asyncio.wait_for(first.until_stopped(asyncio.Event()), 60)
    finally:
        await first.stop()
    monkeypatch.undo()  # the fix is deployed
    second = StageWorker(pipeline, kafka)
    await second.start()
    try:
        outcomes = await read_outcomes(kafka, pipeline_topics(pipeline), len(records), 120)
    finally:
        await second.stop()

    assert isinstance(failure, RuntimeError)
    assert str(failure) == "a bug in the engine"
    ids = Counter(o.record_id for o in outcomes)
    assert set(ids) == {r["application_id"] for r in records}, "no record lost"
    assert sum(ids.values()) == len(ids), "the failed batch was not committed, nor produced"


# -- dev and its embedded broker ------------------------------------------------------------------

ONBOARDING = str(CONFIGS / "customer_onboarding.yaml")


def dev_command(port: int, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream_engine", "dev", ONBOARDING, "--port", str(port),
         "--metrics-port", "0"],
        capture_output=True, text=True, timeout=timeout_s, check=False,
    )  # fmt: skip


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_dev_refuses_a_port_another_program_listens_on_in_one_line():
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        started = time.monotonic()

        result = dev_command(port)

    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: port {port} on 127.0.0.1 is in use (a broker left running, or another "
        "program); stop it, or choose another with --port 0"
    ]
    assert time.monotonic() - started < 20, "refused at once, not after a Kafka timeout"


def test_a_broker_refuses_when_what_answers_on_its_port_is_not_the_process_it_started(
    monkeypatch, tmp_path
):
    monkeypatch.setattr(broker_module, "port_in_use", lambda port: False)  # taken meanwhile
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        embedded = EmbeddedBroker(port, tmp_path / "tansu.log")

        with pytest.raises(BrokerError) as raised:
            embedded.start()

    assert str(raised.value).startswith(f"port {port} on 127.0.0.1 ")
    assert "--port 0" in str(raised.value)
    assert embedded.pid is None, "the broker it started is stopped"


def test_a_broker_started_here_is_the_one_that_answers_on_its_port(tmp_path):
    with EmbeddedBroker(0, tmp_path / "tansu.log") as embedded:
        assert broker_module.listens_on(embedded.pid, embedded.port)
        assert broker_module.port_in_use(embedded.port)
    assert not broker_module.port_in_use(embedded.port)


def test_a_dev_killed_by_sigkill_takes_its_broker_with_it(tmp_path):
    dev = WorkerProcess(
        ["dev", ONBOARDING, "--port", "0", "--metrics-port", "0"],
        tmp_path / "dev.log",
        ready_marker=b"broker:",
    )
    brokers: list[psutil.Process] = []
    try:
        dev.wait_ready()
        brokers = [p for p in psutil.Process(dev.process.pid).children(recursive=True)
                   if "--listener-url" in p.cmdline()]  # fmt: skip
        assert len(brokers) == 1, "dev started one broker"
        port = int(dev.log.read_text().split("broker: 127.0.0.1:")[1].split()[0])

        dev.process.send_signal(signal.SIGKILL)
        dev.process.wait(timeout=10)
        # The broker's main thread turns zombie before its other threads have exited and
        # its sockets are closed: wait for both, to a deadline.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (
            gone(brokers[0].pid) and not broker_module.port_in_use(port)
        ):
            time.sleep(0.05)

        assert gone(brokers[0].pid), "the broker outlived dev"
        assert not broker_module.port_in_use(port), "the next dev can have the port"
    finally:
        dev.kill()
        for orphan in brokers:  # so a failure leaves no broker behind
            with contextlib.suppress(psutil.NoSuchProcess):
                orphan.kill()


def metrics_listeners(worker: WorkerProcess) -> set[str]:
    """The addresses ``worker`` listens on for metrics (the port it printed)."""
    port = int(re.search(r"metrics: http://[^/]+:(\d+)/", worker.log.read_text())[1])
    sockets = psutil.Process(worker.process.pid).net_connections(kind="inet")
    return {s.laddr.ip for s in sockets if s.status == psutil.CONN_LISTEN and s.laddr.port == port}


async def test_a_worker_serves_metrics_on_loopback_unless_told_to_open_them(
    make_pipeline, kafka, driver, worker_process, monkeypatch
):
    if driver != "batch":
        pytest.skip("the endpoint is the same for both drivers")
    pipeline = make_pipeline()
    await ensure_topics(pipeline, kafka)
    closed = worker_process(pipeline.effective.path, "--stage", "preprocessing")
    monkeypatch.setenv("STREAM_ENGINE_METRICS_HOST", "0.0.0.0")  # as the container image sets
    opened = worker_process(pipeline.effective.path, "--stage", "preprocessing")
    flagged = worker_process(
        pipeline.effective.path, "--stage", "preprocessing", "--metrics-host", "127.0.0.2"
    )
    for worker in (closed, opened, flagged):
        await asyncio.to_thread(worker.wait_ready)

    assert metrics_listeners(closed) == {"127.0.0.1"}
    assert metrics_listeners(opened) == {"0.0.0.0"}
    assert metrics_listeners(flagged) == {"127.0.0.2"}, "the option beats the variable"
