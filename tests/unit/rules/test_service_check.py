"""ServiceCheck: build a request from the record, call a bound service, copy fields of the
answer into the record and judge it with CEL."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from stream_engine.core.outcome import Outcome, Route
from stream_engine.core.result import RuleResult, Verdict
from stream_engine.core.rule import RuleContext
from stream_engine.errors import RuleEvaluationError, ServiceClientError, ServiceError
from stream_engine.rules.service import ServiceCheck, service_name
from stream_engine.services.simulated import SimulatedService


class RecordingService:
    """A real in-process service: answers with a fixed response and keeps every request."""

    def __init__(self, response: dict[str, Any]) -> None:
        self.response = response
        self.requests: list[dict[str, Any]] = []

    async def call(self, request: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(request)
        return dict(self.response)


class FailingService:
    def __init__(self, error: ServiceError) -> None:
        self.error = error

    async def call(self, request: dict[str, Any]) -> dict[str, Any]:
        raise self.error


def check(service: Any, **params: Any) -> ServiceCheck:
    rule = ServiceCheck.from_params({"service": "svc", **params})
    rule.bind_services({"svc": service})
    assert isinstance(rule, ServiceCheck)
    return rule


async def run(
    rule: ServiceCheck, data: dict[str, Any], results: dict[str, RuleResult] | None = None
) -> tuple[Verdict, dict[str, Any]]:
    ctx = RuleContext(record_id="r1", data=data, results=results or {})
    return await rule.evaluate(ctx), ctx.data


RECORD = {"first_name": "Ada", "last_name": "Lovelace", "ssn": "123", "city": "London"}


# --- The request ---------------------------------------------------------------------------


async def test_without_a_request_mapping_the_whole_record_is_sent():
    service = RecordingService({})
    await run(check(service), dict(RECORD))
    assert service.requests == [RECORD]


async def test_request_fields_send_only_the_named_fields_under_their_own_names():
    service = RecordingService({})
    await run(check(service, request_fields=["ssn", "last_name"]), dict(RECORD))
    assert service.requests == [{"ssn": "123", "last_name": "Lovelace"}]


async def test_request_maps_request_keys_to_record_fields():
    service = RecordingService({})
    rule = check(service, request={"surname": "last_name", "tax_id": "ssn"})
    await run(rule, dict(RECORD))
    assert service.requests == [{"surname": "Lovelace", "tax_id": "123"}]


async def test_request_fields_and_request_combine_and_absent_fields_are_sent_as_null():
    service = RecordingService({})
    rule = check(service, request_fields=["ssn", "dob"], request={"surname": "last_name"})
    await run(rule, dict(RECORD))
    assert service.requests == [{"ssn": "123", "dob": None, "surname": "Lovelace"}]


async def test_request_static_values_are_added_and_win_over_record_fields():
    service = RecordingService({})
    rule = check(
        service,
        request_fields=["ssn", "city"],
        request_static={"include_pii": False, "city": "fixed"},
    )
    await run(rule, dict(RECORD))
    assert service.requests == [{"ssn": "123", "city": "fixed", "include_pii": False}]


async def test_request_static_alone_is_added_to_the_whole_record():
    service = RecordingService({})
    await run(check(service, request_static={"retention_days": 2555}), {"a": 1})
    assert service.requests == [{"a": 1, "retention_days": 2555}]


async def test_the_request_is_a_copy_the_service_cannot_use_to_change_the_record():
    service = RecordingService({})
    _, data = await run(check(service), {"a": 1})
    service.requests[0]["a"] = 2
    assert data == {"a": 1}


async def test_a_request_key_given_twice_is_rejected():
    with pytest.raises(ValidationError, match="request keys given twice: ssn"):
        ServiceCheck.from_params(
            {"service": "svc", "request_fields": ["ssn"], "request": {"ssn": "tax_id"}}
        )


# --- The response --------------------------------------------------------------------------


async def test_response_fields_are_copied_into_the_record_under_their_new_names():
    service = RecordingService({"verified": True, "risk": 0.2, "other": "x"})
    rule = check(service, response_fields={"verified": "kyc_verified", "risk": "kyc_risk"})
    verdict, data = await run(rule, dict(RECORD))
    assert verdict.outcome is Outcome.PASS
    assert data["kyc_verified"] is True
    assert data["kyc_risk"] == 0.2
    assert "other" not in data
    assert rule.provides() == ("kyc_verified", "kyc_risk")


async def test_a_response_field_the_service_did_not_return_is_not_written():
    rule = check(RecordingService({"a": 1}), response_fields={"a": "x", "b": "y"})
    _, data = await run(rule, {})
    assert data == {"x": 1}


async def test_details_fields_are_reported_in_the_verdict():
    rule = check(RecordingService({"a": 1, "b": 2, "c": 3}), details_fields=["a", "c", "zz"])
    verdict, _ = await run(rule, {})
    assert verdict.details == {"a": 1, "c": 3}


async def test_the_simulated_service_answers_feed_the_record():
    service = SimulatedService.from_params(
        "svc", {"fields": {"verified": "request.last_name != 'Mallory'"}}
    )
    rule = check(
        service,
        request_fields=["last_name"],
        response_fields={"verified": "identity_verified"},
        pass_when="response.verified",
    )
    ok, ok_data = await run(rule, {"last_name": "Lovelace"})
    bad, bad_data = await run(rule, {"last_name": "Mallory"})
    assert (ok.outcome, ok_data["identity_verified"]) == (Outcome.PASS, True)
    assert (bad.outcome, bad_data["identity_verified"]) == (Outcome.FAIL, False)


# --- Judging the answer --------------------------------------------------------------------


async def test_without_pass_when_any_answer_passes():
    verdict, _ = await run(check(RecordingService({"ok": False})), {})
    assert verdict.outcome is Outcome.PASS
    assert verdict.message == "svc: ok"


async def test_pass_when_true_passes():
    rule = check(RecordingService({"score": 700}), pass_when="response.score >= 650")
    verdict, _ = await run(rule, {})
    assert verdict.outcome is Outcome.PASS
    assert verdict.action is None


async def test_pass_when_false_fails_with_the_condition_in_the_message():
    rule = check(RecordingService({"score": 600}), pass_when="response.score >= 650")
    verdict, _ = await run(rule, {})
    assert verdict.outcome is Outcome.FAIL
    assert verdict.message == "svc: check failed (response.score >= 650)"
    assert verdict.action is None


async def test_pass_when_false_uses_the_fail_message_when_given():
    rule = check(
        RecordingService({"score": 600}),
        pass_when="response.score >= 650",
        fail_message="credit too low",
    )
    verdict, _ = await run(rule, {})
    assert verdict.message == "credit too low"


async def test_pass_when_can_compare_the_answer_with_the_record():
    rule = check(
        RecordingService({"name": "Lovelace"}), pass_when="response.name == data.last_name"
    )
    assert (await run(rule, {"last_name": "Lovelace"}))[0].outcome is Outcome.PASS
    assert (await run(rule, {"last_name": "Byron"}))[0].outcome is Outcome.FAIL


async def test_pass_when_can_read_earlier_results():
    rule = check(RecordingService({}), pass_when="results.kyc.outcome == 'PASS'")
    ok = {"kyc": RuleResult(stage="s", outcome=Outcome.PASS)}
    bad = {"kyc": RuleResult(stage="s", outcome=Outcome.FAIL)}
    assert (await run(rule, {}, ok))[0].outcome is Outcome.PASS
    assert (await run(rule, {}, bad))[0].outcome is Outcome.FAIL


async def test_response_fields_are_copied_on_fail_unless_copy_on_fail_is_off():
    copying = check(
        RecordingService({"score": 1}), pass_when="false", response_fields={"score": "s"}
    )
    keeping = check(
        RecordingService({"score": 1}),
        pass_when="false",
        response_fields={"score": "s"},
        copy_on_fail=False,
    )
    assert (await run(copying, {}))[1] == {"s": 1}
    assert (await run(keeping, {}))[1] == {}


@pytest.mark.parametrize(
    ("pass_when", "outcome"), [("true", Outcome.PASS), ("false", Outcome.FAIL)]
)
async def test_review_when_routes_to_review_keeping_the_pass_when_outcome(
    pass_when: str, outcome: Outcome
):
    rule = check(
        RecordingService({"risk": 0.8}),
        pass_when=pass_when,
        review_when="response.risk > 0.5",
        details_fields=["risk"],
    )
    verdict, _ = await run(rule, {})
    assert verdict.action is Route.REVIEW
    assert verdict.outcome is outcome
    assert verdict.message == "svc: needs manual review"
    assert verdict.details == {"risk": 0.8}


async def test_review_when_false_leaves_the_verdict_alone():
    rule = check(RecordingService({"risk": 0.1}), review_when="response.risk > 0.5")
    verdict, _ = await run(rule, {})
    assert verdict.action is None
    assert verdict.outcome is Outcome.PASS


async def test_complete_when_ends_the_record_early_as_completed_before_review_is_asked():
    rule = check(
        RecordingService({"existing_customer": True, "customer_id": "C1"}),
        complete_when="response.existing_customer",
        review_when="true",
        response_fields={"customer_id": "customer_id"},
    )
    verdict, data = await run(rule, {})
    assert verdict.action is Route.COMPLETE
    assert verdict.outcome is Outcome.PASS
    assert data["customer_id"] == "C1"


async def test_complete_when_sees_the_fields_just_copied_into_the_record():
    rule = check(
        RecordingService({"status": "done"}),
        response_fields={"status": "order_status"},
        complete_when="data.order_status == 'done'",
    )
    verdict, _ = await run(rule, {})
    assert verdict.action is Route.COMPLETE


async def test_complete_when_false_does_not_complete():
    rule = check(RecordingService({"existing_customer": False}), complete_when="false")
    verdict, _ = await run(rule, {})
    assert verdict.action is None


@pytest.mark.parametrize("param", ["pass_when", "review_when", "complete_when"])
def test_invalid_cel_conditions_are_rejected(param: str):
    with pytest.raises(ValidationError, match="invalid CEL expression"):
        ServiceCheck.from_params({"service": "svc", param: "response.ok &&"})


# --- Naming and binding the service --------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "name"),
    [("kyc", "kyc"), ("service:kyc", "kyc"), ("service:KYCService:kyc", "kyc")],
)
def test_service_prefixes_are_stripped(given: str, name: str):
    assert service_name(given) == name
    rule = ServiceCheck.from_params({"service": given})
    assert rule.params.service == name


async def test_a_prefixed_service_name_is_called_through_its_bare_name():
    service = RecordingService({"ok": True})
    rule = ServiceCheck.from_params({"service": "service:kyc", "pass_when": "response.ok"})
    rule.bind_services({"kyc": service})
    verdict = await rule.evaluate(RuleContext(record_id="r1", data={"a": 1}, results={}))
    assert verdict.outcome is Outcome.PASS
    assert verdict.message == "kyc: ok"
    assert service.requests == [{"a": 1}]


@pytest.mark.parametrize("given", ["", "service:"])
def test_an_empty_service_name_is_rejected(given: str):
    with pytest.raises(ValidationError, match="name a service"):
        ServiceCheck.from_params({"service": given})


def test_the_service_param_is_declared_for_binding():
    assert ServiceCheck.service_params == ("service",)


# --- Failures ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error", [ServiceError("svc: HTTP 503"), ServiceClientError("svc: HTTP 400")]
)
async def test_a_service_error_propagates_from_evaluate(error: ServiceError):
    rule = check(FailingService(error), response_fields={"a": "a"})
    ctx = RuleContext(record_id="r1", data={"x": 1}, results={})
    with pytest.raises(type(error)) as caught:
        await rule.evaluate(ctx)
    assert caught.value is error
    assert ctx.data == {"x": 1}


async def test_a_simulated_service_failure_propagates_from_evaluate():
    service = SimulatedService.from_params("svc", {"fail_rate": 1.0, "error_message": "down"})
    rule = check(service)
    with pytest.raises(ServiceError, match="svc: down"):
        await rule.evaluate(RuleContext(record_id="r1", data={}, results={}))


@pytest.mark.parametrize("where", ["response_fields", "details_fields"])
async def test_an_answer_value_json_cannot_carry_is_an_error_of_the_rule(where):
    value = {"risk": "risk_copy"} if where == "response_fields" else ["risk"]
    rule = check(RecordingService({"risk": float("inf")}), **{where: value})
    with pytest.raises(RuleEvaluationError, match="risk of the answer"):
        await run(rule, {})
