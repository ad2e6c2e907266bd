"""SimulatedService: deterministic CEL answers per request, latency and failure rate."""

from __future__ import annotations

import time
from typing import Any

import pytest
from pydantic import ValidationError

from stream_engine.errors import ServiceError
from stream_engine.services import SERVICES
from stream_engine.services.simulated import SimulatedService

FIELDS = {
    "verified": "request.last_name != 'Mallory'",
    "score": "int(rand * 1000000.0)",
    "risk": "rand",
}

REQUEST = {"last_name": "Lovelace", "ssn": "123-45-6789", "city": "London"}


def simulated(**params: Any) -> SimulatedService:
    service = SimulatedService.from_params("sim", {"fields": FIELDS, **params})
    assert isinstance(service, SimulatedService)
    return service


async def test_the_same_request_gets_the_same_answer_from_two_instances_with_the_same_seed():
    first = await simulated(seed=7).call(dict(REQUEST))
    second = await simulated(seed=7).call(dict(REQUEST))
    assert first == second
    assert set(first) == {"verified", "score", "risk"}


async def test_repeated_calls_to_one_instance_give_the_same_answer():
    service = simulated(seed=7)
    answers = [await service.call(dict(REQUEST)) for _ in range(5)]
    assert all(answer == answers[0] for answer in answers)
    assert service.calls == 5


async def test_the_key_order_of_the_request_does_not_matter():
    reordered = dict(reversed(list(REQUEST.items())))
    assert await simulated().call(reordered) == await simulated().call(dict(REQUEST))


async def test_different_seeds_give_different_answers():
    answers = [(await simulated(seed=seed).call(dict(REQUEST)))["score"] for seed in range(10)]
    assert len(set(answers)) == 10


async def test_different_requests_give_different_random_draws():
    service = simulated()
    scores = {(await service.call({**REQUEST, "ssn": str(n)}))["score"] for n in range(10)}
    assert len(scores) == 10


async def test_each_field_draws_its_own_random_number():
    service = SimulatedService.from_params("sim", {"fields": {"a": "rand", "b": "rand"}})
    answer = await service.call(dict(REQUEST))
    assert answer["a"] != answer["b"]


async def test_rand_is_in_the_unit_interval():
    service = simulated()
    for n in range(50):
        risk = (await service.call({**REQUEST, "n": n}))["risk"]
        assert 0.0 <= risk < 1.0


async def test_fields_are_cel_over_the_request():
    service = simulated()
    assert (await service.call({"last_name": "Lovelace"}))["verified"] is True
    assert (await service.call({"last_name": "Mallory"}))["verified"] is False


async def test_later_fields_can_read_earlier_ones_through_response():
    service = SimulatedService.from_params(
        "sim", {"fields": {"score": "int(rand * 100.0)", "approved": "response.score >= 0"}}
    )
    assert (await service.call({}))["approved"] is True


async def test_key_fields_decide_which_request_fields_matter():
    service = simulated(key_fields=["ssn"])
    base = await service.call(dict(REQUEST))
    other_city = await service.call({**REQUEST, "city": "Paris", "extra": 1})
    other_ssn = await service.call({**REQUEST, "ssn": "999-99-9999"})
    assert other_city["score"] == base["score"]
    assert other_ssn["score"] != base["score"]


async def test_without_key_fields_every_request_field_matters():
    service = simulated()
    base = await service.call(dict(REQUEST))
    other_city = await service.call({**REQUEST, "city": "Paris"})
    assert other_city["score"] != base["score"]


async def test_key_fields_that_are_absent_count_as_null():
    service = simulated(key_fields=["ssn", "dob"])
    with_null = await service.call({"last_name": "A", "ssn": "1", "dob": None})
    without = await service.call({"last_name": "B", "ssn": "1"})
    assert with_null["score"] == without["score"]


async def test_a_fail_rate_of_one_always_raises_a_service_error():
    service = simulated(fail_rate=1.0, error_message="kyc is down")
    for _ in range(5):
        with pytest.raises(ServiceError, match=r"^sim: kyc is down$"):
            await service.call(dict(REQUEST))


async def test_a_fail_rate_of_zero_never_raises():
    service = simulated(fail_rate=0.0)
    for n in range(50):
        await service.call({**REQUEST, "n": n})
    assert service.calls == 50


async def test_a_partial_fail_rate_fails_some_calls_reproducibly_for_a_seed():
    async def outcomes(seed: int) -> list[bool]:
        service = simulated(fail_rate=0.5, seed=seed)
        result = []
        for _ in range(40):
            try:
                await service.call(dict(REQUEST))
            except ServiceError:
                result.append(False)
            else:
                result.append(True)
        return result

    first = await outcomes(3)
    assert first == await outcomes(3)
    assert 0 < first.count(False) < 40


async def test_latency_delays_the_answer_by_at_least_the_configured_time():
    service = simulated(latency_ms=50)
    started = time.perf_counter()
    await service.call(dict(REQUEST))
    assert time.perf_counter() - started >= 0.05


async def test_latency_makes_the_service_one_that_may_suspend():
    assert simulated(latency_ms=1).may_suspend is True
    assert simulated(jitter_ms=1).may_suspend is True
    assert simulated().may_suspend is False


async def test_a_field_that_cannot_be_evaluated_raises_a_service_error_naming_it():
    service = SimulatedService.from_params("sim", {"fields": {"x": "request.missing + 1"}})
    with pytest.raises(ServiceError, match="sim: field x:"):
        await service.call({})


def test_an_invalid_cel_field_is_rejected_at_params_validation():
    with pytest.raises(ValidationError, match=r"fields\.bad: invalid CEL expression"):
        SimulatedService.from_params("sim", {"fields": {"ok": "true", "bad": "request.x &&"}})


@pytest.mark.parametrize(
    "params",
    [
        {"fail_rate": 1.5},
        {"fail_rate": -0.1},
        {"latency_ms": -1},
        {"jitter_ms": -1},
        {"unknown": True},
    ],
)
def test_out_of_range_or_unknown_params_are_rejected(params: dict[str, Any]):
    with pytest.raises(ValidationError):
        SimulatedService.from_params("sim", params)


def test_the_service_is_registered_under_its_configuration_name():
    assert SERVICES.get("SimulatedService") is SimulatedService


async def test_no_fields_gives_an_empty_answer():
    assert await SimulatedService.from_params("sim", {}).call({"a": 1}) == {}
