"""PII protection in the core: what a PII value becomes (mask or hash), and that the executor
scrubs every result, reason and dead letter a stage produces - while the record's own data
keeps the real values for the stages after it."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from core_builders import Raises, pipeline, spec, stage

from stream_engine.core.executor import Executor
from stream_engine.core.outcome import OnError, Outcome
from stream_engine.core.pii import Masker, PiiPolicy
from stream_engine.core.result import Verdict
from stream_engine.core.rule import Rule, RuleContext
from stream_engine.core.state import RecordState

SSN = "123-45-6789"
DOB = "1985-03-15"


class Quotes(Rule[None]):
    """A careless third-party rule: quotes the record's SSN and date of birth."""

    def __init__(self, outcome: Outcome = Outcome.FAIL):
        super().__init__(None)
        self.outcome = outcome

    def evaluate(self, ctx: RuleContext) -> Verdict:
        ssn, born = ctx.data.get("ssn"), ctx.data.get("date_of_birth")
        return Verdict(
            self.outcome,
            f"ssn {ssn!r} (born {born}) is on the block list",
            {"ssn": ssn, "seen": [born, {"again": f"ssn={ssn}"}], ssn: "as a key"},
        )


class Rewrites(Rule[None]):
    """Normalises the SSN (drops the dashes), after quoting the old one."""

    def evaluate(self, ctx: RuleContext) -> Verdict:
        old = ctx.data["ssn"]
        ctx.data["ssn"] = old.replace("-", "")
        return Verdict(Outcome.PASS, f"normalised {old} to {ctx.data['ssn']}")


def masker(**policy: Any) -> Masker:
    return Masker(("ssn", "date_of_birth"), PiiPolicy(**policy))


def record(**data: Any) -> RecordState:
    return RecordState("r1", {"ssn": SSN, "date_of_birth": DOB, "name": "Jane", **data})


def text_of(value: Any) -> str:
    return repr(value)


# -- what a value becomes ---------------------------------------------------------------


def test_mask_keeps_the_last_four_characters_and_the_length():
    assert masker().protect(SSN) == "*******6789"
    assert masker().protect(DOB) == "******3-15"


def test_mask_hides_a_value_of_four_characters_or_fewer_entirely():
    assert masker().protect("1234") == "****"
    assert masker().protect("12") == "****"


def test_hash_is_sha256_prefixed_hmac_with_the_configured_key():
    expected = hmac.new(b"k3y", SSN.encode(), hashlib.sha256).hexdigest()[:16]
    assert masker(mode="hash", hash_key=b"k3y").protect(SSN) == "sha256:" + expected


def test_hash_without_a_key_is_plain_sha256():
    expected = hashlib.sha256(SSN.encode()).hexdigest()[:16]
    assert masker(mode="hash").protect(SSN) == "sha256:" + expected


def test_numbers_lists_and_objects_are_protected_element_by_element_and_null_stays_null():
    m = masker()
    assert m.protect(123456789) == "*****6789"
    assert m.protect([SSN, None]) == ["*******6789", None]
    assert m.protect({"old": SSN}) == {"old": "*******6789"}
    assert m.protect(None) is None


def test_a_masked_copy_of_a_record_leaves_the_record_and_other_fields_alone():
    data = {"ssn": SSN, "name": "Jane"}
    assert masker().data(data) == {"ssn": "*******6789", "name": "Jane"}
    assert data["ssn"] == SSN


def test_every_occurrence_of_a_value_in_text_is_replaced_longest_value_first():
    m = masker()
    needles = m.needles({"ssn": SSN, "date_of_birth": DOB})
    assert m.scrub(f"{SSN} and {SSN}; born {DOB}", needles) == (
        "*******6789 and *******6789; born ******3-15"
    )


def test_a_short_value_is_replaced_only_where_it_stands_alone():
    m = Masker(("pin",))
    needles = m.needles({"pin": "42"})
    assert m.scrub("pin 42 rejected, score 0.425", needles) == "pin **** rejected, score 0.425"


# -- the executor -----------------------------------------------------------------------


async def test_results_and_reasons_of_a_stage_never_quote_a_pii_value():
    plan = pipeline(stage("dq", [spec("blocked", Quotes())]), pii_fields=("ssn", "date_of_birth"))
    decision = await Executor(plan).run_record(record())
    result = decision.state.results["blocked"]
    for text in (text_of(result.to_dict()), text_of(decision.reasons)):
        assert SSN not in text
        assert DOB not in text
    assert result.message == "ssn '*******6789' (born ******3-15) is on the block list"
    assert result.details == {
        "ssn": "*******6789",
        "seen": ["******3-15", {"again": "ssn=*******6789"}],
        "*******6789": "as a key",
    }


async def test_a_passing_result_is_scrubbed_too():
    plan = pipeline(stage("dq", [spec("echo", Quotes(Outcome.PASS))]), pii_fields=("ssn",))
    decision = await Executor(plan).run_record(record())
    assert SSN not in text_of(decision.state.results["echo"].to_dict())


async def test_a_dead_letter_message_quoting_a_value_is_scrubbed():
    plan = pipeline(
        stage("dq", [spec("bug", Raises(ValueError(f"cannot parse {DOB}")))]),
        pii_fields=("date_of_birth",),
    )
    decision = await Executor(plan).run_record(record())
    assert decision.dead_letter is not None
    assert decision.dead_letter.message == "ValueError: cannot parse ******3-15"
    assert DOB not in text_of(decision.reasons)


async def test_a_value_a_rule_rewrote_is_scrubbed_in_its_old_and_new_form():
    plan = pipeline(stage("pre", [spec("normalise", Rewrites(None))]), pii_fields=("ssn",))
    state = record()
    outcome = await Executor(plan).run_stage(plan.stages[0], state)
    [(_, result)] = outcome.results
    assert result.message == "normalised *******6789 to *****6789"


async def test_the_record_data_keeps_real_values_for_the_next_stage():
    plan = pipeline(
        stage("dq", [spec("blocked", Quotes(), on_error=OnError.FAIL)]), pii_fields=("ssn",)
    )
    state = record()
    await Executor(plan).run_stage(plan.stages[0], state)
    assert state.data["ssn"] == SSN


async def test_decisions_keep_real_data_by_default_but_their_results_are_scrubbed():
    plan = pipeline(stage("dq", [spec("blocked", Quotes())]), pii_fields=("ssn",))
    body = (await Executor(plan).run_record(record())).to_dict()
    assert body["data"]["ssn"] == SSN
    assert SSN not in text_of(body["results"]) + text_of(body["reasons"])


async def test_with_mask_decisions_a_decision_data_is_masked_and_the_record_is_not():
    plan = pipeline(
        stage("dq", [spec("blocked", Quotes())]),
        pii_fields=("ssn", "date_of_birth"),
        pii=PiiPolicy(mask_decisions=True),
    )
    state = record()
    body = (await Executor(plan).run_record(state)).to_dict()
    assert body["data"] == {"ssn": "*******6789", "date_of_birth": "******3-15", "name": "Jane"}
    assert SSN not in text_of(body)
    assert DOB not in text_of(body)
    assert state.data["ssn"] == SSN


async def test_without_pii_fields_the_executor_has_no_masker_and_changes_nothing():
    plan = pipeline(stage("dq", [spec("blocked", Quotes())]))
    executor = Executor(plan)
    decision = await executor.run_record(record())
    assert executor.masker is None
    assert SSN in decision.state.results["blocked"].message
