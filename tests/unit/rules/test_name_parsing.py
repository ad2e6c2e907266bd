"""NameParsing: split a full name into first, middle, last (and suffix) fields."""

from __future__ import annotations

from typing import Any

import pytest

from stream_engine.core.outcome import Outcome
from stream_engine.core.result import Verdict
from stream_engine.core.rule import RuleContext
from stream_engine.rules.names import NameParsing, split_name


def run(rule: Any, data: dict[str, Any]) -> tuple[Verdict, dict[str, Any]]:
    ctx = RuleContext(record_id="r1", data=data, results={})
    return rule.evaluate(ctx), ctx.data


def parsing(**params: Any) -> Any:
    return NameParsing.from_params({"field": "full_name", **params})


@pytest.mark.parametrize(
    ("full", "expected"),
    [
        ("John Smith", ("John", "", "Smith", "")),
        ("  john   smith ", ("john", "", "smith", "")),
        ("John Michael Smith", ("John", "Michael", "Smith", "")),
        ("John Michael Paul Smith", ("John", "Michael Paul", "Smith", "")),
        ("Smith, John", ("John", "", "Smith", "")),
        ("Smith, John Michael", ("John", "Michael", "Smith", "")),
        ("Smith,John", ("John", "", "Smith", "")),
        ("Dr. John Smith", ("John", "", "Smith", "")),
        ("Mrs Jane Doe", ("Jane", "", "Doe", "")),
        ("Prof. Dr. Ada Lovelace", ("Ada", "", "Lovelace", "")),
        ("Smith, Dr. John", ("John", "", "Smith", "")),
        ("John Smith Jr.", ("John", "", "Smith", "Jr.")),
        ("John Smith III", ("John", "", "Smith", "III")),
        ("Mr. John Q. Public Sr", ("John", "Q.", "Public", "Sr")),
        ("John Smith, Jr.", ("John", "", "Smith", "Jr.")),
        ("Smith, John, Jr.", ("John", "", "Smith", "Jr.")),
        ("Smith, John Michael Jr.", ("John", "Michael", "Smith", "Jr.")),
        ("Smith, V", ("V", "", "Smith", "")),
        ("Ludwig van Beethoven", ("Ludwig", "", "van Beethoven", "")),
        ("Maria de la Cruz", ("Maria", "", "de la Cruz", "")),
        ("Johann Sebastian von Bach", ("Johann", "Sebastian", "von Bach", "")),
        ("van Gogh, Vincent", ("Vincent", "", "van Gogh", "")),
        ("Van Morrison", ("Van", "", "Morrison", "")),
        ("Madonna", ("Madonna", "", "", "")),
        ("Dr.", ("Dr.", "", "", "")),
    ],
)
def test_split_name(full: str, expected: tuple[str, str, str, str]):
    assert split_name(full) == expected


def test_simple_name_fills_first_and_last_and_reports_them():
    verdict, data = run(parsing(), {"full_name": "Ada Lovelace"})
    assert verdict.outcome is Outcome.PASS
    assert verdict.details == {"filled": ["first_name", "last_name"]}
    assert data["first_name"] == "Ada"
    assert data["last_name"] == "Lovelace"
    assert "middle_name" not in data


def test_middle_names_fill_the_middle_field():
    _, data = run(parsing(), {"full_name": "Augusta Ada King Lovelace"})
    assert (data["first_name"], data["middle_name"], data["last_name"]) == (
        "Augusta",
        "Ada King",
        "Lovelace",
    )


def test_last_comma_first_form_is_understood():
    _, data = run(parsing(), {"full_name": "Lovelace, Ada"})
    assert (data["first_name"], data["last_name"]) == ("Ada", "Lovelace")


def test_titles_are_dropped():
    _, data = run(parsing(), {"full_name": "Dr. Ada Lovelace"})
    assert (data["first_name"], data["last_name"]) == ("Ada", "Lovelace")
    assert "Dr." not in data.values()


def test_suffix_is_written_only_when_a_suffix_field_is_configured():
    _, without = run(parsing(), {"full_name": "John Smith Jr."})
    _, with_field = run(parsing(suffix_field="suffix"), {"full_name": "John Smith Jr."})
    assert without["last_name"] == "Smith"
    assert "Jr." not in without.values()
    assert with_field["suffix"] == "Jr."
    assert with_field["last_name"] == "Smith"


def test_a_suffix_after_a_comma_is_not_taken_for_a_given_name():
    _, data = run(parsing(suffix_field="suffix"), {"full_name": "Martin Luther King, Jr."})
    assert (data["first_name"], data["middle_name"], data["last_name"], data["suffix"]) == (
        "Martin",
        "Luther",
        "King",
        "Jr.",
    )


def test_particles_stay_with_the_last_name():
    _, data = run(parsing(), {"full_name": "Vincent van Gogh"})
    assert (data["first_name"], data["last_name"]) == ("Vincent", "van Gogh")
    assert "middle_name" not in data


def test_a_single_word_becomes_the_first_name():
    verdict, data = run(parsing(), {"full_name": "Cher"})
    assert verdict.details == {"filled": ["first_name"]}
    assert data == {"full_name": "Cher", "first_name": "Cher"}


def test_an_existing_first_name_is_kept_unless_overwrite():
    record = {"full_name": "Ada Lovelace", "first_name": "Augusta"}
    kept_verdict, kept = run(parsing(), dict(record))
    _, replaced = run(parsing(overwrite=True), dict(record))
    assert kept["first_name"] == "Augusta"
    assert kept["last_name"] == "Lovelace"
    assert kept_verdict.details == {"filled": ["last_name"]}
    assert replaced["first_name"] == "Ada"


@pytest.mark.parametrize("existing", ["", None])
def test_an_empty_existing_first_name_is_filled(existing: Any):
    _, data = run(parsing(), {"full_name": "Ada Lovelace", "first_name": existing})
    assert data["first_name"] == "Ada"


def test_custom_target_fields_are_used():
    rule = parsing(first_field="given", middle_field="other", last_field="family")
    assert rule.provides() == ("given", "other", "family")
    assert rule.requires() == ("full_name",)
    _, data = run(rule, {"full_name": "John Paul Jones"})
    assert (data["given"], data["other"], data["family"]) == ("John", "Paul", "Jones")


def test_suffix_field_is_among_the_provided_fields():
    assert parsing(suffix_field="suffix").provides() == (
        "first_name",
        "middle_name",
        "last_name",
        "suffix",
    )


@pytest.mark.parametrize("value", [None, "", "   ", 42])
def test_no_full_name_text_skips_and_writes_nothing(value: Any):
    verdict, data = run(parsing(), {"full_name": value})
    assert verdict.outcome is Outcome.SKIP
    assert data == {"full_name": value}


def test_seed_spelling_field_name_is_accepted():
    rule = NameParsing.from_params({"field_name": "name"})
    _, data = run(rule, {"name": "Ada Lovelace"})
    assert data["last_name"] == "Lovelace"
