"""PII protection: what a configured PII field's value becomes wherever the engine writes it for
people (rule messages and details, reasons, dead-letter headers, logs and - when asked -
decisions' data).

Two modes. ``mask`` keeps the last four characters and stars the rest, keeping the length
(``123-45-6789`` → ``*******6789``; four characters or fewer → ``****``), except for dates:
a value that reads as a date (or comes from a field listed in ``date_fields``) keeps nothing
(``**********``), or only its year with ``dates: year`` (``1985-**-**``). ``hash`` writes
``sha256:`` and the first 16 hex digits of HMAC-SHA256 with the configured key (plain SHA-256
without one), so equal values stay joinable without being readable.

A PII field is a top-level key or a dotted path (``applicant.ssn``: ``ssn`` inside the object
``applicant``, in each element where ``applicant`` is a list); a dotted entry also protects a
top-level key spelled exactly so. Finding a record's values in free text costs time linear in
the record and the text, however many values a record holds.

The inter-stage envelope's ``data`` keeps the real values: later stages need them.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from stream_engine.core.pii_find import (
    FEW,
    GRAM_BUDGET,
    SHORT,
    Finder,
    distinct,
    holds_value,
    longest_first,
    numeric,
    output_texts,
    present,
    value_text,
    values_at,
)
from stream_engine.core.result import RuleResult
from stream_engine.core.state import DeadLetter

PiiMode = Literal["mask", "hash"]
#: What a mask keeps of a date: nothing (``hide``) or its year (``year``).
DateMask = Literal["hide", "year"]

#: Characters a mask keeps at the end of a value.
KEEP = 4
MASK_CHAR = "*"
HASH_PREFIX = "sha256:"
#: A masked date: fixed, so that neither its length nor its format shows.
HIDDEN_DATE = MASK_CHAR * 10

_SEP = r"[-/. ]"
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?"
_DAY = r"\d{1,2}(?:st|nd|rd|th)?\.?"
#: The shapes a date is recognised by (after ``strip``): every form ``MinimumAge`` reads as a
#: date by default (its formats, zero-padded or not, and ISO dates, week dates and date-times)
#: and more: day-first orders, two-digit years, English month names; each may be followed by
#: a time.
_DATE = re.compile(
    rf"""(?:
        (?P<y1>\d{{4}}){_SEP}\d{{1,2}}{_SEP}\d{{1,2}}
      | \d{{1,2}}{_SEP}\d{{1,2}}{_SEP}(?:(?P<y2>\d{{4}})|\d{{2}})
      | (?P<compact>\d{{6,8}})
      | (?P<y3>\d{{4}})-?W\d{{2}}(?:-?\d)?
      | {_DAY}\s*{_MONTH},?\s*(?P<y4>\d{{4}})
      | {_MONTH}\s*{_DAY},?\s*(?P<y5>\d{{4}})
      | (?P<y6>\d{{4}}){_SEP}{_MONTH}{_SEP}\d{{1,2}}
    )(?:[T ]\d.*)?""",
    re.IGNORECASE | re.VERBOSE | re.DOTALL,
)
_YEARS = range(1800, 2200)


def date_year(text: str) -> str | None:
    """``None`` unless ``text`` reads as a date; then its four-digit year, or ``""`` when the
    year is written with two digits."""
    match = _DATE.fullmatch(text.strip())
    if match is None:
        return None
    compact = match.group("compact")
    if compact is None:
        return next((y for y in match.group("y1", "y2", "y3", "y4", "y5", "y6") if y), "")
    return _compact_year(compact)


def _compact_year(digits: str) -> str | None:
    """The year of eight digits read as YYYYMMDD, DDMMYYYY or MMDDYYYY, or of six or seven
    read as ``MinimumAge`` reads them (``%Y%m%d`` unpadded); ``None`` when they are no date."""
    if len(digits) == 8:
        for year, month, day in (
            (digits[:4], digits[4:6], digits[6:]),
            (digits[4:], digits[2:4], digits[:2]),
            (digits[4:], digits[:2], digits[2:4]),
        ):
            if int(year) in _YEARS and 1 <= int(month) <= 12 and 1 <= int(day) <= 31:
                return year
        return None
    try:
        born = datetime.strptime(digits, "%Y%m%d")
    except ValueError:
        return None
    return digits[:4] if born.year in _YEARS else None


@dataclass(frozen=True, slots=True)
class PiiPolicy:
    """How PII fields are protected (``pii:`` in the pipeline file)."""

    mode: PiiMode = "mask"
    hash_key: bytes | None = field(default=None, repr=False)
    mask_decisions: bool = False
    dates: DateMask = "hide"
    #: Fields whose values a mask treats as dates whatever they look like.
    date_fields: tuple[str, ...] = ()
    #: Rules may show values they derive from PII fields (an age from a date of birth).
    reveal_derived: bool = False


def _covers(listed: str, name: str) -> bool:
    """Whether the PII entry ``listed`` is ``name``, inside it, or holds it (as dotted paths)."""
    return listed == name or listed.startswith(name + ".") or name.startswith(listed + ".")


@dataclass(frozen=True, slots=True)
class PiiInputs:
    """What a rule learns of the pipeline's PII at load (``Rule.learn_pii``)."""

    fields: frozenset[str] = frozenset()
    reveal_derived: bool = False

    def holds(self, name: str) -> bool:
        """Whether the field ``name`` is, holds or is inside a PII field."""
        return any(_covers(listed, name) for listed in self.fields)

    def hides(self, name: str) -> bool:
        """Whether values a rule derives from the field ``name`` must stay out of its messages
        and details: it holds PII and ``pii.reveal_derived`` is off."""
        return not self.reveal_derived and self.holds(name)


class Masker:
    """Protects one pipeline's PII fields. Built once per executor; costs nothing per record
    when the pipeline lists no PII field (the executor then has no masker at all)."""

    __slots__ = (
        "_date_fields",
        "_dated",
        "_key",
        "_paths",
        "dates",
        "fields",
        "mask_decisions",
        "mode",
    )

    def __init__(self, fields: Sequence[str], policy: PiiPolicy | None = None) -> None:
        policy = policy or PiiPolicy()
        self.fields = tuple(dict.fromkeys(fields))
        self.mode = policy.mode
        self.mask_decisions = policy.mask_decisions
        self.dates = policy.dates
        self._key = policy.hash_key
        #: Dotted entries as paths, unless a listed field already holds them whole.
        self._paths = tuple(
            (name, tuple(name.split(".")))
            for name in self.fields
            if "." in name and not any(name.startswith(f + ".") for f in self.fields)
        )
        self._date_fields = frozenset(policy.date_fields)
        slots = [*self.fields, *(name for name, _ in self._paths)]
        #: Positions in ``values`` of the fields listed in ``date_fields``.
        self._dated = tuple(i for i, name in enumerate(slots) if name in self._date_fields)

    @classmethod
    def for_fields(cls, fields: Sequence[str], policy: PiiPolicy | None = None) -> Masker | None:
        """A masker, or None when there is nothing to protect."""
        return cls(fields, policy) if fields else None

    # -- values -----------------------------------------------------------------------------

    def protect_text(self, text: str, as_date: bool = False) -> str:
        """One value as text, masked or hashed (``as_date``: it is a date whatever its shape)."""
        if self.mode == "hash":
            raw = text.encode("utf-8")
            if self._key is not None:
                digest = hmac.new(self._key, raw, hashlib.sha256).hexdigest()
            else:
                digest = hashlib.sha256(raw).hexdigest()
            return HASH_PREFIX + digest[:16]
        if len(text) <= KEEP:
            return MASK_CHAR * KEEP
        year = date_year(text)
        if year is not None:
            return f"{year}-**-**" if self.dates == "year" and year else HIDDEN_DATE
        if as_date:
            return HIDDEN_DATE
        return MASK_CHAR * (len(text) - KEEP) + text[-KEEP:]

    def protect(self, value: Any, as_date: bool = False) -> Any:
        """A PII field's value, protected: scalars become masked (or hashed) text, lists and
        objects are protected element by element, null stays null."""
        if value is None:
            return None
        if isinstance(value, Mapping):
            return {k: self.protect(v, as_date) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.protect(v, as_date) for v in value]
        return self.protect_text(value_text(value), as_date)

    def data(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of a record with every PII field protected (absent fields stay absent; the
        record itself is not changed)."""
        dated = self._date_fields
        out = dict(data)
        for name in self.fields:
            if name in out:
                out[name] = self.protect(out[name], name in dated)
        for name, parts in self._paths:
            if parts[0] in out:
                out[parts[0]] = self._protect_at(out[parts[0]], parts[1:], name in dated)
        return out

    def _protect_at(self, value: Any, parts: Sequence[str], as_date: bool) -> Any:
        """A copy of ``value`` with what lies at ``parts`` protected."""
        if not parts:
            return self.protect(value, as_date)
        if isinstance(value, Mapping):
            if parts[0] not in value:
                return value
            return {**value, parts[0]: self._protect_at(value[parts[0]], parts[1:], as_date)}
        if isinstance(value, list | tuple):
            return [self._protect_at(item, parts, as_date) for item in value]
        return value

    # -- free text --------------------------------------------------------------------------

    def needles(self, data: Mapping[str, Any]) -> list[str]:
        """The record's PII values as text, longest first: what must not appear in messages."""
        return longest_first(distinct(self.values(data)))

    def values(self, data: Mapping[str, Any]) -> tuple[Any, ...]:
        """The record's raw PII values (cheap: what the executor keeps at a stage's start)."""
        if not self._paths:
            return tuple([data.get(name) for name in self.fields])
        nested = [values_at(data, parts) or None for _, parts in self._paths]
        return (*[data.get(name) for name in self.fields], *nested)

    def dated(self, *values: tuple[Any, ...]) -> frozenset[str]:
        """The texts, among ``values`` (from ``values``), of the fields listed in
        ``date_fields``: what is masked as a date whatever its shape."""
        if not self._dated:
            return frozenset()
        return frozenset(distinct([v[i] for v in values for i in self._dated]))

    def scrub(self, text: str, needles: Sequence[str], dated: Collection[str] = ()) -> str:
        """``text`` with every occurrence of the record's PII values (longest first) protected."""
        if len(needles) > FEW:
            return Finder(needles).scrub(text, self._replacer(dated))
        for needle in needles:
            if needle not in text:
                continue
            protected = self.protect_text(needle, needle in dated)
            if len(needle) >= SHORT:
                text = text.replace(needle, protected)
            else:
                pattern = rf"(?<![0-9A-Za-z]){re.escape(needle)}(?![0-9A-Za-z])"
                text = re.sub(pattern, protected.replace("\\", r"\\"), text)
        return text

    def scrub_value(self, value: Any, needles: Sequence[str], dated: Collection[str] = ()) -> Any:
        """A rule's details with PII values protected: strings (keys too) are scrubbed, a number
        equal to a PII value is replaced by its protected text."""
        if len(needles) > FEW:
            finder = Finder(needles)
            replace = self._replacer(dated)
            return self._scrub_tree(
                value, lambda text: finder.scrub(text, replace), finder.known, dated
            )
        return self._scrub_tree(
            value, lambda text: self.scrub(text, needles, dated), needles, dated
        )

    def _scrub_tree(
        self,
        value: Any,
        scrub: Callable[[str], str],
        known: Collection[str],
        dated: Collection[str],
    ) -> Any:
        if isinstance(value, str):
            return scrub(value) if value else value
        if isinstance(value, Mapping):
            return {
                (scrub(k) if isinstance(k, str) else k): self._scrub_tree(v, scrub, known, dated)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self._scrub_tree(v, scrub, known, dated) for v in value]
        if isinstance(value, int | float) and not isinstance(value, bool):
            text = str(value)
            return self.protect_text(text, text in dated) if text in known else value
        return value

    def _replacer(self, dated: Collection[str]) -> Callable[[str], str]:
        """Each value's protected form, computed once per value."""
        done: dict[str, str] = {}

        def replace(needle: str) -> str:
            protected = done.get(needle)
            if protected is None:
                protected = done[needle] = self.protect_text(needle, needle in dated)
            return protected

        return replace

    def stage(
        self,
        results: Sequence[tuple[str, RuleResult]],
        letter: DeadLetter | None,
        before: tuple[Any, ...],
        data: Mapping[str, Any],
    ) -> None:
        """After a stage: scrub the results it produced and its dead letter, with the PII values
        the record had when the stage started (``before``, from ``values``) and has now (rules
        may change them). Runs on every result of every stage, so the checks allocate nothing;
        only a result that holds a value is rewritten."""
        after = self.values(data)
        found: Collection[str] = distinct(before if after == before else (*before, *after))
        if not found:
            return
        dated = self.dated(before, after) if self._dated else ()
        if len(found) > FEW:
            found = self._narrow(results, letter, found, dated)
            if not found:
                return
        needles = tuple(found)
        numbers = numeric(needles)
        ordered: list[str] = []  # longest first, sorted only when something must be replaced
        for _, result in results:
            message = result.message
            if message:
                for needle in needles:
                    if needle in message:
                        ordered = ordered or longest_first(found)
                        result.message = self.scrub(message, ordered, dated)
                        break
            details = result.details
            if details and holds_value(details, needles, numbers):
                ordered = ordered or longest_first(found)
                result.details = self.scrub_value(details, ordered, dated)
        if letter is not None and letter.message:
            letter.message = self.scrub(letter.message, ordered or longest_first(found), dated)

    def _narrow(
        self,
        results: Sequence[tuple[str, RuleResult]],
        letter: DeadLetter | None,
        found: Collection[str],
        dated: Collection[str],
    ) -> Collection[str]:
        """For a record with many PII values: the few of them that occur in what the stage
        wrote, for ``stage`` to replace value by value; or none, once the output is scrubbed
        with one automaton (many values occur in it, or it is too long to look up)."""
        texts = output_texts(results, letter)
        lengths = {len(needle) for needle in found}
        if sum(map(len, texts)) * sum(lengths) <= GRAM_BUDGET:
            found = present(found, lengths, texts)
            if len(found) <= FEW:
                return found
        self._stage_many(results, letter, Finder(found), dated)
        return ()

    def _stage_many(
        self,
        results: Sequence[tuple[str, RuleResult]],
        letter: DeadLetter | None,
        finder: Finder,
        dated: Collection[str],
    ) -> None:
        """``stage`` for a record whose output quotes many of its PII values: one automaton."""
        replace = self._replacer(dated)

        def scrub(text: str) -> str:
            return finder.scrub(text, replace)

        for _, result in results:
            if result.message:
                result.message = scrub(result.message)
            if result.details:
                result.details = self._scrub_tree(result.details, scrub, finder.known, dated)
        if letter is not None and letter.message:
            letter.message = scrub(letter.message)
