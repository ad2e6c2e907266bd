"""Split a full name into first, middle and last name."""

from __future__ import annotations

from pydantic import Field

from stream_engine.core.pii import PiiInputs
from stream_engine.core.result import Verdict, passed, skipped
from stream_engine.core.rule import RuleContext
from stream_engine.rules.base import (
    ConfiguredRule,
    RuleParams,
    field_param,
    register_rule,
    text_value,
)

PREFIXES = frozenset({"mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir", "rev"})
SUFFIXES = frozenset({"jr", "sr", "ii", "iii", "iv", "v", "phd", "md", "esq"})
PARTICLES = frozenset({"van", "von", "de", "del", "della", "da", "di", "la", "le", "st", "bin"})


def _is_suffix(word: str) -> bool:
    return word.strip(".").lower() in SUFFIXES


def split_name(full: str) -> tuple[str, str, str, str]:
    """(first, middle, last, suffix) from "First Middle Last", "Last, First Middle", with
    titles dropped and particles (van, de, ...) kept with the last name."""
    text = " ".join(full.replace(",", " , ").split())
    suffix = ""
    last_count = 0
    if " , " in text:
        last_part, _, rest = text.partition(" , ")
        given_words = [w for w in rest.split() if w != ","]
        # "Last, First Jr." / "Last, First, Jr." / "First Last, Jr.": a suffix ends the part
        # after the comma ("Smith, V" keeps V as the given name).
        ambiguous = len(given_words) == 1 and len(last_part.split()) == 1
        if given_words and _is_suffix(given_words[-1]) and not ambiguous:
            suffix = given_words.pop()
        if given_words:
            words = [*given_words, *last_part.split()]
            last_count = len(last_part.split())
        else:  # "First Last, Jr.": the comma only sets the suffix off
            words = last_part.split()
    else:
        words = [w for w in text.split() if w != ","]
    words = [w for w in words if w.strip(".").lower() not in PREFIXES or len(words) == 1]
    if len(words) > 1 and _is_suffix(words[-1]) and not last_count and not suffix:
        suffix = words.pop()
    if not words:
        return "", "", "", suffix
    if len(words) == 1:
        return words[0], "", "", suffix
    if last_count:
        last_words = words[-last_count:]
        given = words[:-last_count]
    else:
        start = len(words) - 1
        while start > 1 and words[start - 1].lower() in PARTICLES:
            start -= 1
        last_words, given = words[start:], words[:start]
    first = given[0] if given else ""
    middle = " ".join(given[1:])
    return first, middle, " ".join(last_words), suffix


class NameParsingParams(RuleParams):
    field: str = field_param(description="the field holding the full name")
    first_field: str = Field("first_name", description="where the first name is written")
    middle_field: str = Field("middle_name", description="where the middle name(s) are written")
    last_field: str = Field(
        "last_name", description="where the last name (with van, de... kept) is written"
    )
    suffix_field: str | None = Field(
        None, description="where a suffix (Jr., III, PhD...) is written (none: dropped)"
    )
    overwrite: bool = Field(
        False, description="true: replace values the target fields already hold"
    )


@register_rule("NameParsing")
class NameParsing(ConfiguredRule[NameParsingParams]):
    """Fill first/middle/last name fields from a full-name field (existing values are kept
    unless ``overwrite``)."""

    Params = NameParsingParams

    def provides(self) -> tuple[str, ...]:
        p = self.params
        fields = (p.first_field, p.middle_field, p.last_field)
        return (*fields, p.suffix_field) if p.suffix_field else fields

    def requires(self) -> tuple[str, ...]:
        return (self.params.field,)

    def learn_pii(self, pii: PiiInputs) -> list[str]:
        """Its message and details name fields only; the parts it writes are PII too."""
        if not pii.hides(self.params.field):
            return []
        exposed = [name for name in self.provides() if not pii.hides(name)]
        if not exposed:
            return []
        return [
            f"field: the parts of PII field '{self.params.field}' are written to "
            f"{', '.join(exposed)}, which are not protected: list them in pii_fields"
        ]

    def evaluate(self, ctx: RuleContext) -> Verdict:
        p = self.params
        full = text_value(ctx.data, p.field)
        if full is None:
            return skipped(f"no {p.field} to parse")
        first, middle, last, suffix = split_name(full)
        targets = [(p.first_field, first), (p.middle_field, middle), (p.last_field, last)]
        if p.suffix_field:
            targets.append((p.suffix_field, suffix))
        filled = []
        for name, value in targets:
            if value and (p.overwrite or not ctx.data.get(name)):
                ctx.data[name] = value
                filled.append(name)
        return passed(f"parsed {p.field}", filled=filled)
