"""MinimumAge: parse a date of birth, compute the age on a fixed day, judge the range."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from stream_engine.core.outcome import Outcome
from stream_engine.core.result import Verdict
from stream_engine.core.rule import RuleContext
from stream_engine.rules.dates import MinimumAge, age_on, parse_date

AS_OF = "2024-06-15"


def rule(**params: Any) -> Any:
    return MinimumAge.from_params({"field": "dob", "minimum_age": 18, "as_of": AS_OF, **params})


def run(r: Any, data: dict[str, Any]) -> tuple[Verdict, dict[str, Any]]:
    ctx = RuleContext(record_id="r1", data=data, results={})
    return r.evaluate(ctx), ctx.data


def test_exactly_eighteen_on_the_birthday_passes():
    verdict, _ = run(rule(), {"dob": "2006-06-15"})
    assert verdict.outcome is Outcome.PASS
    assert verdict.details == {"age": 18}


def test_one_day_short_of_eighteen_fails():
    verdict, _ = run(rule(), {"dob": "2006-06-16"})
    assert verdict.outcome is Outcome.FAIL
    assert verdict.message == "applicant is under 18"
    assert verdict.details == {"age": 17}


def test_a_leap_day_birthday_comes_of_age_on_the_first_of_march():
    born_leap = {"dob": "2004-02-29"}
    before = MinimumAge.from_params({"field": "dob", "minimum_age": 18, "as_of": "2022-02-28"})
    on = MinimumAge.from_params({"field": "dob", "minimum_age": 18, "as_of": "2022-03-01"})
    assert run(before, dict(born_leap))[0].details == {"age": 17}
    assert run(on, dict(born_leap))[0].details == {"age": 18}


@pytest.mark.parametrize(
    "text",
    [
        "2000-01-31",
        "01/31/2000",
        "31.01.2000",
        "2000/01/31",
        "20000131",
        " 2000-01-31 ",
        "2000-01-31T23:59:00",
        "2000-01-31T08:00:00+02:00",
    ],
)
def test_dates_in_any_supported_format_parse_to_the_same_day(text: str):
    assert parse_date(text, ["%Y-%m-%d", "%m/%d/%Y", "%d.%m.%Y", "%Y/%m/%d", "%Y%m%d"]) == date(
        2000, 1, 31
    )
    verdict, _ = run(rule(), {"dob": text})
    assert verdict.outcome is Outcome.PASS
    assert verdict.details == {"age": 24}


def test_custom_formats_replace_the_defaults():
    r = rule(formats=["%d %B %Y"])
    assert run(r, {"dob": "31 January 2000"})[0].outcome is Outcome.PASS
    # 01/31/2000 is not one of the configured formats, nor ISO.
    assert run(r, {"dob": "01/31/2000"})[0].outcome is Outcome.FAIL


@pytest.mark.parametrize("value", ["not a date", "2000-02-30", "13/01/2000", 20000131])
def test_an_unparsable_date_fails_in_strict_mode(value: Any):
    verdict, _ = run(rule(), {"dob": value})
    assert verdict.outcome is Outcome.FAIL
    assert verdict.message == "dob is not a date"


@pytest.mark.parametrize("value", ["not a date", "2000-02-30", 20000131])
def test_an_unparsable_date_skips_when_not_strict(value: Any):
    verdict, _ = run(rule(verification_strict=False), {"dob": value})
    assert verdict.outcome is Outcome.SKIP
    assert verdict.message == "dob is not a date"


def test_a_future_date_fails_in_strict_mode():
    verdict, data = run(rule(age_field="age"), {"dob": "2024-06-16"})
    assert verdict.outcome is Outcome.FAIL
    assert verdict.message == "dob is in the future"
    assert "age" not in data


def test_a_future_date_skips_when_not_strict():
    verdict, _ = run(rule(verification_strict=False), {"dob": "2030-01-01"})
    assert verdict.outcome is Outcome.SKIP
    assert verdict.message == "dob is in the future"


def test_born_today_is_age_zero_not_the_future():
    verdict, _ = run(rule(minimum_age=0), {"dob": AS_OF})
    assert verdict.outcome is Outcome.PASS
    assert verdict.details == {"age": 0}


@pytest.mark.parametrize(("strict", "outcome"), [(True, Outcome.FAIL), (False, Outcome.SKIP)])
@pytest.mark.parametrize("data", [{}, {"dob": None}, {"dob": ""}])
def test_a_missing_date_fails_when_strict_and_skips_otherwise(
    data: dict[str, Any], strict: bool, outcome: Outcome
):
    verdict, _ = run(rule(verification_strict=strict), data)
    assert verdict.outcome is outcome
    assert verdict.message == "no dob"


def test_age_field_is_written_with_the_computed_age():
    r = rule(age_field="age")
    assert r.provides() == ("age",)
    verdict, data = run(r, {"dob": "1990-06-16"})
    assert verdict.outcome is Outcome.PASS
    assert data["age"] == 33


def test_age_field_is_written_even_when_the_applicant_is_too_young():
    verdict, data = run(rule(age_field="age"), {"dob": "2010-01-01"})
    assert verdict.outcome is Outcome.FAIL
    assert data["age"] == 14


def test_no_age_field_means_nothing_is_written():
    r = rule()
    assert r.provides() == ()
    _, data = run(r, {"dob": "1990-01-01"})
    assert data == {"dob": "1990-01-01"}


def test_maximum_age_fails_an_applicant_over_it():
    r = rule(maximum_age=65)
    over = run(r, {"dob": "1958-06-14"})[0]
    at = run(r, {"dob": "1958-06-16"})[0]
    assert over.outcome is Outcome.FAIL
    assert over.message == "applicant is over 65"
    assert over.details == {"age": 66}
    assert at.outcome is Outcome.PASS


def test_without_as_of_the_age_is_computed_on_todays_utc_date():
    before = datetime.now(UTC).date()
    born = date(before.year - 30, 1, 1)
    r = MinimumAge.from_params({"field": "dob", "minimum_age": 18, "age_field": "age"})
    verdict, data = run(r, {"dob": born.isoformat()})
    after = datetime.now(UTC).date()
    assert verdict.outcome is Outcome.PASS
    assert age_on(born, before) == 30
    assert data["age"] in {age_on(born, before), age_on(born, after)}


def test_seed_spellings_date_field_and_min_age_are_accepted():
    r = MinimumAge.from_params({"date_field": "born", "min_age": 21, "as_of": AS_OF})
    assert run(r, {"born": "2003-06-15"})[0].outcome is Outcome.PASS
    assert run(r, {"born": "2003-06-16"})[0].outcome is Outcome.FAIL


@pytest.mark.parametrize(
    "params",
    [
        {"field": "dob"},
        {"field": "dob", "minimum_age": -1},
        {"field": "dob", "minimum_age": 151},
        {"field": "dob", "minimum_age": 18, "formats": []},
        {"field": "dob", "minimum_age": 18, "as_of": "not a date"},
    ],
    ids=["no-minimum", "negative", "too-old", "no-formats", "bad-as-of"],
)
def test_minimum_age_rejects_bad_params(params: dict[str, Any]):
    with pytest.raises(ValidationError):
        MinimumAge.from_params(params)


def _without_fast_path(text: str) -> date | None:
    """parse_date as it was before the ISO fast path: strptime, then fromisoformat."""
    for parse in (lambda t: datetime.strptime(t, "%Y-%m-%d"), datetime.fromisoformat):
        try:
            return parse(text.strip()).date()
        except ValueError:
            continue
    return None


@given(
    st.one_of(
        st.dates().map(date.isoformat),
        st.text(alphabet="0123456789-", min_size=8, max_size=12),
        st.from_regex(r"\A\d{4}-\d{2}-\d{2}\Z"),
    )
)
def test_the_iso_fast_path_reads_every_text_as_strptime_does(text):
    assert parse_date(text, ["%Y-%m-%d"]) == _without_fast_path(text)


@pytest.mark.parametrize("text", ["2000-02-30", "0000-01-01", "2000-13-01", "2000-1-011"])
def test_an_iso_shaped_text_that_is_not_a_date_is_not_one_on_the_fast_path_either(text):
    assert parse_date(text, ["%Y-%m-%d"]) is None


@pytest.mark.parametrize(
    ("now", "outcome"), [("2024-06-14", Outcome.FAIL), ("2024-06-15", Outcome.PASS)]
)
def test_without_as_of_the_age_is_counted_on_the_decision_date(now: str, outcome: Outcome):
    r = MinimumAge.from_params({"field": "dob", "minimum_age": 18})
    moment = datetime.fromisoformat(now + "T12:00:00+00:00")
    ctx = RuleContext(record_id="r1", data={"dob": "2006-06-15"}, results={}, now=moment)
    assert r.evaluate(ctx).outcome is outcome
