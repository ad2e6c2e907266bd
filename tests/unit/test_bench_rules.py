"""The benchmark's hand-written onboarding rules (what its Quix Streams and faust peers run)
decide like the pipeline file, and its record generator makes distinct, still-valid copies."""

from __future__ import annotations

import asyncio
import copy
import re
import sys
from pathlib import Path
from typing import Any

import phonenumbers
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.peers.common import kind_of, step  # noqa: E402
from benchmarks.peers.onboarding_rules import STAGES, decide  # noqa: E402
from benchmarks.records import (  # noqa: E402
    email_is_valid,
    generate,
    load_samples,
    phone_is_valid,
)
from stream_engine.offline import OfflineEvaluator  # noqa: E402
from stream_engine.pipeline import load_pipeline  # noqa: E402

SSN = re.compile(r"[0-9]{3}-?[0-9]{2}-?[0-9]{4}")


@pytest.fixture(scope="module")
def samples() -> list[dict[str, Any]]:
    return load_samples()


@pytest.fixture(scope="module")
def engine_decisions(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What ``stream-engine eval configs/customer_onboarding.yaml`` decides for the samples."""
    pipeline = load_pipeline(ROOT / "configs/customer_onboarding.yaml", environ={})
    evaluator = OfflineEvaluator(pipeline)

    async def run() -> list[dict[str, Any]]:
        try:
            return [d async for d in evaluator.decisions(copy.deepcopy(samples))]
        finally:
            await pipeline.close()

    return asyncio.run(run())


def test_hand_written_rules_decide_the_samples_like_the_pipeline(
    samples: list[dict[str, Any]], engine_decisions: list[dict[str, Any]]
) -> None:
    ours = [decide(copy.deepcopy(sample)) for sample in samples]
    same_status = sum(
        status == theirs["status"]
        for (status, _, _), theirs in zip(ours, engine_decisions, strict=True)
    )
    same_stage = sum(
        (status, stage) == (theirs["status"], theirs["decided_by_stage"])
        for (status, stage, _), theirs in zip(ours, engine_decisions, strict=True)
    )
    agreement = same_status / len(samples)
    print(f"status agreement {same_status}/{len(samples)}; with the stage {same_stage}")
    assert agreement >= 0.95, f"only {same_status}/{len(samples)} statuses agree"
    # Today they agree on every sample (the simulated services hash like SimulatedService).
    assert same_stage == len(samples)


def test_the_mix_of_decisions_is_the_pipelines(
    samples: list[dict[str, Any]], engine_decisions: list[dict[str, Any]]
) -> None:
    statuses = {d["status"] for d in engine_decisions}
    ours = {decide(copy.deepcopy(sample))[0] for sample in samples}
    assert ours == statuses == {"approved", "rejected", "review"}


def test_a_record_steps_through_the_stages_as_the_peers_run_it(
    samples: list[dict[str, Any]],
) -> None:
    for sample in samples[:40]:
        value: dict[str, Any] = copy.deepcopy(sample)
        key = sample["application_id"]
        for stage in STAGES:
            kind, value = step(stage, key, value)
            assert kind == kind_of(value)
            if kind != "next":
                break
        expected, stage_name, _ = decide(copy.deepcopy(sample))
        assert value["record_id"] == key
        assert (value["status"], value["decided_by_stage"]) == (expected, stage_name)


def test_the_generator_makes_unique_ids_and_keeps_fields_valid(
    samples: list[dict[str, Any]],
) -> None:
    count = 3 * len(samples) + 7
    records = list(generate(count, samples))
    assert len(records) == count
    assert len({r["application_id"] for r in records}) == count
    for index, record in enumerate(records):
        original = samples[index % len(samples)]
        phone, ssn, email = original.get("phone"), original.get("ssn"), original.get("email")
        if isinstance(phone, str) and phone_is_valid(phone):
            assert phone_is_valid(record["phone"]), (phone, record["phone"])
            number = phonenumbers.parse(record["phone"], "US")
            assert (
                str(number.national_number)[:6]
                == str(phonenumbers.parse(phone, "US").national_number)[:6]
            )
        if isinstance(email, str):
            assert email_is_valid(record["email"]) == email_is_valid(email)
        if isinstance(ssn, str):
            assert bool(SSN.fullmatch(record["ssn"])) == bool(SSN.fullmatch(ssn))
            assert record["ssn"].endswith("00") == ssn.endswith("00")


def test_copies_differ_from_their_sample(samples: list[dict[str, Any]]) -> None:
    records = list(generate(2 * len(samples), samples))
    varied = [
        (first, second)
        for first, second in zip(records[: len(samples)], records[len(samples) :], strict=True)
    ]
    phones = sum(a.get("phone") != b.get("phone") for a, b in varied)
    emails = sum(a.get("email") != b.get("email") for a, b in varied)
    ssns = sum(a.get("ssn") != b.get("ssn") for a, b in varied)
    assert min(phones, emails, ssns) > 0.8 * len(samples)


def test_copies_keep_the_samples_mix(samples: list[dict[str, Any]]) -> None:
    originals = [decide(copy.deepcopy(s))[0] for s in samples]
    copies = [decide(r)[0] for r in generate(3 * len(samples), samples)]
    for status in ("approved", "rejected", "review"):
        assert abs(copies.count(status) / 3 - originals.count(status)) <= 0.05 * len(samples)
