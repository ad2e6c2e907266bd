"""PII protection: what a configured PII field's value becomes wherever the engine writes it for
people (rule messages and details, reasons, dead-letter headers, logs and - when asked -
decisions' data).

Two modes. ``mask`` keeps the last four characters and stars the rest, keeping the length
(``123-45-6789`` → ``*******6789``; four characters or fewer → ``****``). ``hash`` writes
``sha256:`` and the first 16 hex digits of HMAC-SHA256 with the configured key (plain SHA-256
without one), so equal values stay joinable without being readable.

The inter-stage envelope's ``data`` keeps the real values: later stages need them.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from stream_engine.core.result import RuleResult
from stream_engine.core.state import DeadLetter

PiiMode = Literal["mask", "hash"]

#: Characters a mask keeps at the end of a value.
KEEP = 4
MASK_CHAR = "*"
HASH_PREFIX = "sha256:"
#: Values shorter than this are replaced in free text only where they stand alone (not inside
#: a longer word or number), so a short value does not garble every message.
SHORT = 4


@dataclass(frozen=True, slots=True)
class PiiPolicy:
    """How PII fields are protected (``pii:`` in the pipeline file)."""

    mode: PiiMode = "mask"
    hash_key: bytes | None = field(default=None, repr=False)
    mask_decisions: bool = False


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def _leaves(value: Any) -> Iterable[str]:
    """The texts of a value's scalars (a PII field may hold a list or an object); booleans and
    nulls identify nobody and are not searched for."""
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, Mapping):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _leaves(item)
    else:
        yield _text(value)


class Masker:
    """Protects one pipeline's PII fields. Built once per executor; costs nothing per record
    when the pipeline lists no PII field (the executor then has no masker at all)."""

    __slots__ = ("_key", "fields", "mask_decisions", "mode")

    def __init__(self, fields: Sequence[str], policy: PiiPolicy | None = None) -> None:
        policy = policy or PiiPolicy()
        self.fields = tuple(dict.fromkeys(fields))
        self.mode = policy.mode
        self.mask_decisions = policy.mask_decisions
        self._key = policy.hash_key

    @classmethod
    def for_fields(cls, fields: Sequence[str], policy: PiiPolicy | None = None) -> Masker | None:
        """A masker, or None when there is nothing to protect."""
        return cls(fields, policy) if fields else None

    # -- values -----------------------------------------------------------------------------

    def protect_text(self, text: str) -> str:
        """One value as text, masked or hashed."""
        if self.mode == "hash":
            raw = text.encode("utf-8")
            if self._key is not None:
                digest = hmac.new(self._key, raw, hashlib.sha256).hexdigest()
            else:
                digest = hashlib.sha256(raw).hexdigest()
            return HASH_PREFIX + digest[:16]
        if len(text) <= KEEP:
            return MASK_CHAR * KEEP
        return MASK_CHAR * (len(text) - KEEP) + text[-KEEP:]

    def protect(self, value: Any) -> Any:
        """A PII field's value, protected: scalars become masked (or hashed) text, lists and
        objects are protected element by element, null stays null."""
        if value is None:
            return None
        if isinstance(value, Mapping):
            return {k: self.protect(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.protect(v) for v in value]
        return self.protect_text(_text(value))

    def data(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of a record with every PII field protected (absent fields stay absent)."""
        out = dict(data)
        for name in self.fields:
            if name in out:
                out[name] = self.protect(out[name])
        return out

    # -- free text --------------------------------------------------------------------------

    def needles(self, data: Mapping[str, Any]) -> list[str]:
        """The record's PII values as text, longest first: what must not appear in messages."""
        return _needles(self.values(data))

    def values(self, data: Mapping[str, Any]) -> tuple[Any, ...]:
        """The record's raw PII values (cheap: what the executor keeps at a stage's start)."""
        return tuple([data.get(name) for name in self.fields])

    def scrub(self, text: str, needles: Sequence[str]) -> str:
        """``text`` with every occurrence of the record's PII values protected."""
        for needle in needles:
            if needle not in text:
                continue
            if len(needle) >= SHORT:
                text = text.replace(needle, self.protect_text(needle))
            else:
                pattern = rf"(?<![0-9A-Za-z]){re.escape(needle)}(?![0-9A-Za-z])"
                text = re.sub(pattern, self.protect_text(needle), text)
        return text

    def scrub_value(self, value: Any, needles: Sequence[str]) -> Any:
        """A rule's details with PII values protected: strings (keys too) are scrubbed, a number
        equal to a PII value is replaced by its protected text."""
        if isinstance(value, str):
            return self.scrub(value, needles) if value else value
        if isinstance(value, Mapping):
            return {
                (self.scrub(k, needles) if isinstance(k, str) else k): self.scrub_value(v, needles)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.scrub_value(v, needles) for v in value]
        if isinstance(value, int | float) and not isinstance(value, bool):
            text = str(value)
            return self.protect_text(text) if text in needles else value
        return value

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
        needles = _needles(before)
        after = self.values(data)
        if after != before:
            needles = sorted(set(needles).union(_needles(after)), key=len, reverse=True)
        if not needles:
            return
        numbers = _numeric(needles)
        for _, result in results:
            message = result.message
            if message:
                for needle in needles:
                    if needle in message:
                        result.message = self.scrub(message, needles)
                        break
            details = result.details
            if details and _holds(details, needles, numbers):
                result.details = self.scrub_value(details, needles)
        if letter is not None and letter.message:
            letter.message = self.scrub(letter.message, needles)


def _needles(values: Iterable[Any]) -> list[str]:
    """PII values as texts, distinct, longest first."""
    found: list[str] = []
    for value in values:
        if value is None:
            continue
        if type(value) is str:
            if value and value not in found:
                found.append(value)
            continue
        for text in _leaves(value):
            if text and text not in found:
                found.append(text)
    if len(found) > 1:
        found.sort(key=len, reverse=True)
    return found


def _mentions(text: str, needles: Sequence[str]) -> bool:
    # a loop: any() over a generator costs twice as much, on every result's message
    for needle in needles:  # noqa: SIM110
        if needle in text:
            return True
    return False


def _numeric(needles: Sequence[str]) -> bool:
    """Whether any PII value reads as a number (only then are numbers in details compared)."""
    for needle in needles:  # noqa: SIM110 - a loop: this runs once per stage and record
        if needle.replace(".", "", 1).lstrip("-").isdigit():
            return True
    return False


def _holds(value: Any, needles: Sequence[str], numbers: bool) -> bool:
    """Whether a details value (or a key in it) contains a PII value. This runs on every
    result that has details, so the common shapes - an object of texts, numbers and lists of
    texts - are checked inline, with exact type tests first."""
    kind = type(value)
    if kind is str:
        return _mentions(value, needles)
    if kind is dict or isinstance(value, Mapping):
        for key, inner in value.items():
            if type(key) is str:
                for needle in needles:
                    if needle in key:
                        return True
            inner_kind = type(inner)
            if inner_kind is str:
                for needle in needles:
                    if needle in inner:
                        return True
            elif inner_kind is int or inner_kind is float:
                if numbers and str(inner) in needles:
                    return True
            elif inner is not None and inner_kind is not bool and _holds(inner, needles, numbers):
                return True
        return False
    if kind is list or kind is tuple:
        for item in value:
            if type(item) is str:
                for needle in needles:
                    if needle in item:
                        return True
            elif _holds(item, needles, numbers):
                return True
        return False
    if kind is int or kind is float:
        return numbers and str(value) in needles
    return False
