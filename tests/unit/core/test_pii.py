"""PII protection in the core: what a PII value becomes (mask or hash), and that the executor
scrubs every result, reason and dead letter a stage produces - while the record's own data
keeps the real values for the stages after it."""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import date, datetime
from typing import Any

import pytest
from core_builders import Raises, pipeline, spec, stage
from hypothesis import assume, given
from hypothesis import strategies as st

from stream_engine.core.executor import Executor
from stream_engine.core.outcome import OnError, Outcome
from stream_engine.core.pii import FEW, HIDDEN_DATE, Masker, PiiPolicy
from stream_engine.core.result import RuleResult, Verdict
from stream_engine.core.rule import Rule, RuleContext
from stream_engine.core.state import DeadLetter, DeadLetterReason, RecordState
from stream_engine.rules.dates import DEFAULT_FORMATS, parse_date

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
    assert masker().protect("+12125550147") == "********0147"


# -- dates ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "written",
    [
        "1985-06-14",
        "06/14/1985",
        "14.06.1985",
        "1985/06/14",
        "19850614",
        "14061985",
        "14/06/1985",
        "6/14/85",
        "1985-06-14T10:30:00+02:00",
        "1985-06-14 10:30",
        "14 June 1985",
        "June 14th, 1985",
        "1985-Jun-14",
        " 1985-06-14 ",
        "١٩٨٥-٠٦-١٤",
        "1985-W24-5",
        "1985614",
        "19850614T1030",
        "1985-06-14T10",
    ],
)
def test_a_mask_keeps_nothing_of_a_date_whatever_its_format(written):
    assert masker().protect(written) == HIDDEN_DATE


@given(st.dates(min_value=date(1800, 1, 1), max_value=date(2199, 12, 31)))
def test_no_date_minimum_age_can_parse_keeps_a_digit_when_masked(born):
    m = masker()
    for fmt in DEFAULT_FORMATS:
        assert m.protect(born.strftime(fmt)) == HIDDEN_DATE
    assert m.protect(datetime(born.year, born.month, born.day, 8, 5).isoformat()) == HIDDEN_DATE


LAYOUTS = (
    "{Y}-{m}-{d}",
    "{m}/{d}/{Y}",
    "{d}.{m}.{Y}",
    "{Y}/{m}/{d}",
    "{Y}{m}{d}",
    "{Y}-W{w}-{u}",
    "{Y}W{w}{u}",
    "{Y}-W{w}",
)
TIMES = ("", "T{h}", "T{h}:{n}", " {h}:{n}:{n}Z", "T{h}{n}", "T{h}:{n}:{n}.123+05:30")


@given(
    born=st.dates(min_value=date(1800, 1, 1), max_value=date(2199, 12, 31)),
    layout=st.sampled_from(LAYOUTS),
    time=st.sampled_from(TIMES),
    padded=st.tuples(st.booleans(), st.booleans()),
    week=st.integers(1, 52),
    weekday=st.integers(1, 7),
)
def test_every_value_minimum_age_reads_as_a_date_is_masked_whole(
    born, layout, time, padded, week, weekday
):
    month = f"{born.month:02d}" if padded[0] else str(born.month)
    day = f"{born.day:02d}" if padded[1] else str(born.day)
    written = (layout + time).format(
        Y=born.year, m=month, d=day, w=f"{week:02d}", u=weekday, h="08", n="05"
    )
    assume(parse_date(written, DEFAULT_FORMATS) is not None)
    assert masker().protect(written) == HIDDEN_DATE


def test_with_dates_year_a_mask_keeps_only_the_year():
    m = masker(dates="year")
    for written in ("1985-06-14", "06/14/1985", "19850614", "14 June 1985", "1985-06-14T10:30"):
        assert m.protect(written) == "1985-**-**", written
    assert m.protect("6/14/85") == HIDDEN_DATE  # a two-digit year is not shown either
    assert m.protect(SSN) == "*******6789"


def test_a_field_listed_in_date_fields_keeps_nothing_even_in_a_shape_not_recognised():
    m = Masker(("born",), PiiPolicy(date_fields=("born",)))
    assert m.data({"born": "14 juin 1985", "other": 1}) == {"born": HIDDEN_DATE, "other": 1}
    assert m.protect("14 juin 1985") == "********1985"  # elsewhere: not known to be a date


async def test_a_date_field_value_quoted_in_a_message_keeps_nothing():
    plan = pipeline(
        stage("dq", [spec("blocked", Quotes())]),
        pii_fields=("ssn", "date_of_birth"),
        pii=PiiPolicy(date_fields=("date_of_birth",)),
    )
    decision = await Executor(plan).run_record(record(date_of_birth="14 juin 1985"))
    assert decision.state.results["blocked"].message == (
        f"ssn '*******6789' (born {HIDDEN_DATE}) is on the block list"
    )


def test_numbers_that_are_not_dates_keep_their_last_four():
    m = masker()
    for value, masked in (("123456789", "*****6789"), ("22225555", "****5555"), ("1.2.3", "*.2.3")):
        assert m.protect(value) == masked


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
        "*******6789 and *******6789; born **********"
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
    assert result.message == "ssn '*******6789' (born **********) is on the block list"
    assert result.details == {
        "ssn": "*******6789",
        "seen": ["**********", {"again": "ssn=*******6789"}],
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
    assert decision.dead_letter.message == "ValueError: cannot parse **********"
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
    assert body["data"] == {"ssn": "*******6789", "date_of_birth": "**********", "name": "Jane"}
    assert SSN not in text_of(body)
    assert DOB not in text_of(body)
    assert state.data["ssn"] == SSN


async def test_without_pii_fields_the_executor_has_no_masker_and_changes_nothing():
    plan = pipeline(stage("dq", [spec("blocked", Quotes())]))
    executor = Executor(plan)
    decision = await executor.run_record(record())
    assert executor.masker is None
    assert SSN in decision.state.results["blocked"].message


# -- nested fields ----------------------------------------------------------------------


class QuotesField(Rule[None]):
    """A careless rule: quotes a whole field (an object, say) in its message and details."""

    def __init__(self, field: str):
        super().__init__(None)
        self.field = field

    def evaluate(self, ctx: RuleContext) -> Verdict:
        value = ctx.data.get(self.field)
        return Verdict(Outcome.FAIL, f"{self.field} is {value}", {"seen": value})


APPLICANT = {"name": "Jane", "ssn": SSN, "date_of_birth": DOB}


async def quoted(data: dict[str, Any], field: str, *pii_fields: str, **policy: Any) -> Any:
    plan = pipeline(
        stage("dq", [spec("quotes", QuotesField(field))]),
        pii_fields=pii_fields,
        pii=PiiPolicy(**policy),
    )
    return await Executor(plan).run_record(RecordState("r1", data))


async def test_a_dotted_pii_field_protects_the_value_inside_an_object():
    decision = await quoted({"applicant": dict(APPLICANT)}, "applicant", "applicant.ssn")
    result = decision.state.results["quotes"]
    assert SSN not in text_of(result.to_dict()) + text_of(decision.reasons)
    assert result.details == {"seen": {"name": "Jane", "ssn": "*******6789", "date_of_birth": DOB}}
    assert decision.state.data["applicant"]["ssn"] == SSN  # the record keeps the real value


async def test_a_dotted_pii_field_is_masked_in_the_decision_data_and_the_record_is_not():
    data = {"applicant": dict(APPLICANT), "id": 1}
    decision = await quoted(data, "id", "applicant.ssn", mask_decisions=True)
    assert decision.to_dict()["data"] == {
        "applicant": {"name": "Jane", "ssn": "*******6789", "date_of_birth": DOB},
        "id": 1,
    }
    assert decision.state.data["applicant"]["ssn"] == SSN


async def test_a_dotted_path_through_a_list_protects_every_element():
    people = [{"ssn": SSN}, {"ssn": "078-05-1120"}, {"name": "no ssn"}, "not an object"]
    decision = await quoted({"co": people}, "co", "co.ssn", mask_decisions=True)
    assert decision.to_dict()["data"]["co"] == [
        {"ssn": "*******6789"},
        {"ssn": "*******1120"},
        {"name": "no ssn"},
        "not an object",
    ]
    message = decision.state.results["quotes"].message
    assert SSN not in message
    assert "078-05-1120" not in message


async def test_a_top_level_key_spelled_with_a_dot_is_protected_and_so_is_the_path():
    data = {"applicant.ssn": SSN, "applicant": {"ssn": "078-05-1120"}}
    decision = await quoted(data, "applicant", "applicant.ssn", mask_decisions=True)
    assert decision.to_dict()["data"] == {
        "applicant.ssn": "*******6789",
        "applicant": {"ssn": "*******1120"},
    }


def test_a_path_inside_a_field_listed_whole_is_protected_once():
    m = Masker(("applicant", "applicant.ssn"), PiiPolicy(mode="hash", hash_key=b"k" * 16))
    once = m.protect(SSN)
    assert m.data({"applicant": {"ssn": SSN}}) == {"applicant": {"ssn": once}}


def test_a_missing_or_non_object_step_of_a_path_protects_nothing_and_breaks_nothing():
    m = Masker(("a.b.c",), PiiPolicy(mask_decisions=True))
    for data in ({}, {"a": None}, {"a": 5}, {"a": {"b": "text"}}, {"a": [1, [2]]}):
        assert m.data(data) == data
        assert m.needles(data) == []


# -- many values ------------------------------------------------------------------------


def ssns(count: int) -> list[str]:
    """``count`` distinct SSN-shaped values."""
    return [f"{i // 10000 + 100:03d}-{i // 100 % 100:02d}-{i % 10000:04d}" for i in range(count)]


def results_of(*messages: str, details: Any = None) -> list[tuple[str, RuleResult]]:
    return [
        (
            f"r{i}",
            RuleResult(
                stage="dq",
                outcome=Outcome.PASS,
                message=message,
                details=details if i == 0 else None,
            ),
        )
        for i, message in enumerate(messages)
    ]


def test_a_record_with_40000_pii_values_is_checked_in_linear_time():
    values = ssns(40_000)
    m = Masker(("ssn",))
    data = {"ssn": values}
    results = results_of("looks fine", "field_1 ok, score 0.25", details={"n": 3, "ok": ["a"]})
    started = time.perf_counter()
    m.stage(results, None, m.values(data), data)
    assert time.perf_counter() - started < 1.0  # quadratic before: 26 s on the reference host
    assert [r.message for _, r in results] == ["looks fine", "field_1 ok, score 0.25"]


def test_a_stage_quoting_10000_pii_values_has_each_replaced_in_linear_time():
    values = ssns(10_000)
    m = Masker(("ssn",))
    data = {"ssn": values}
    results = results_of(f"first {values[0]}, last {values[-1]}", details={"echo": list(values)})
    started = time.perf_counter()
    m.stage(results, None, m.values(data), data)
    assert time.perf_counter() - started < 3.0
    [(_, result)] = results
    assert result.message == "first *******0000, last *******9999"
    assert result.details == {"echo": [m.protect(v) for v in values]}


@pytest.mark.parametrize(
    ("count", "quoted", "padding"),
    [(4, 0, 0), (FEW + 1, 0, 0), (500, 40, 0), (500, 0, 60_000)],
    ids=["few values", "many, few quoted", "many quoted", "long output"],
)
def test_values_are_replaced_alike_however_many_a_record_has(count, quoted, padding):
    """Value by value, narrowed to those quoted, or with the automaton: the same answer."""
    values = [*ssns(count - 2), "42", DOB]
    m = Masker(("ids",))
    data = {"ids": values}
    more = " ".join(values[1 : 1 + quoted])
    results = results_of(
        f"ids {values[0]} and {values[-3]}; pin 42 but not 0.425 or 142; born {DOB}{more}",
        details={"pin": 42, values[0]: [DOB, "x"], "n": 7, "pad": "x" * padding},
    )
    m.stage(results, None, m.values(data), data)
    [(_, result)] = results
    assert result.message == (
        f"ids {m.protect(values[0])} and {m.protect(values[-3])}; "
        f"pin **** but not 0.425 or 142; born {HIDDEN_DATE}"
        + " ".join(m.protect(v) for v in values[1 : 1 + quoted])
    )
    assert result.details == {
        "pin": "****",
        m.protect(values[0]): [HIDDEN_DATE, "x"],
        "n": 7,
        "pad": "x" * padding,
    }


def test_a_stage_whose_output_quotes_many_values_is_scrubbed_with_one_automaton():
    values = ssns(200)
    m = Masker(("ids",))
    data = {"ids": values}
    results = results_of(" ".join(values[:50]), details={"all": " ".join(values)})
    m.stage(results, None, m.values(data), data)
    [(_, result)] = results
    assert result.message == " ".join(m.protect(v) for v in values[:50])
    assert result.details == {"all": " ".join(m.protect(v) for v in values)}


def test_needles_are_each_listed_once_longest_first():
    m = Masker(("a", "b"))
    assert m.needles({"a": ["x1", SSN, ["x1", {"k": SSN}]], "b": SSN}) == [SSN, "x1"]


def test_a_dead_letter_quoting_many_values_is_scrubbed_and_so_is_a_log_line():
    values = ssns(300)
    m = Masker(("ids",))
    data = {"ids": values}
    text = "cannot parse " + ", ".join(values[:30])
    letter = DeadLetter(DeadLetterReason.RULE_ERROR, "dq", text)
    m.stage(results_of(), letter, m.values(data), data)
    expected = "cannot parse " + ", ".join(m.protect(v) for v in values[:30])
    assert letter.message == expected
    assert m.scrub(text, m.needles(data)) == expected  # as the processor scrubs its log lines
    assert m.scrub_value({"e": text}, m.needles(data)) == {"e": expected}
