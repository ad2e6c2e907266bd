"""Benchmark input: N distinct onboarding applications made from the 300 samples.

Copy ``i`` is sample ``i % 300`` with a unique ``application_id`` and, so that no system can
answer from a cache, a different e-mail local part, SSN serial and phone subscriber number -
each changed only when the change keeps the field's validity class (a valid e-mail stays
valid and an invalid one invalid; a valid US phone stays valid; an SSN keeps its format and
whether it ends in ``00``, which the credit bureau rule looks at). So the mix of decisions
stays that of the samples.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import phonenumbers
from email_validator import EmailNotValidError, validate_email

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "configs/samples/customer_onboarding.jsonl"
KEY_FIELD = "application_id"
_SSN = re.compile(r"[0-9]{3}-?[0-9]{2}-?[0-9]{4}")
_LAST_FOUR_DIGITS = re.compile(r"(\d)(\D*)(\d)(\D*)(\d)(\D*)(\d)(\D*)$")


@dataclass(frozen=True, slots=True)
class BenchRecord:
    """One input record: its id (the Kafka key) and its JSON value."""

    record_id: str
    value: bytes


def load_samples(path: Path = SAMPLES) -> list[dict[str, Any]]:
    """The sample applications, one JSON object per line."""
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def record_id(index: int) -> str:
    """The unique ``application_id`` of copy ``index``."""
    return f"APP-BENCH-{index:08d}"


def email_is_valid(value: str) -> bool:
    """Syntax check as the pipeline does it (after trimming and lower-casing)."""
    try:
        validate_email(value.strip().lower(), check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


def phone_is_valid(value: str) -> bool:
    """A valid phone number for the US default region (libphonenumber's full check)."""
    try:
        return bool(phonenumbers.is_valid_number(phonenumbers.parse(value, "US")))
    except phonenumbers.NumberParseException:
        return False


def vary_email(value: Any, variant: int) -> Any:
    """``local@domain`` → ``local<variant>@domain`` (the caller checks it is safe)."""
    local, _, domain = value.rpartition("@")
    return f"{local}{variant}@{domain}"


def vary_phone(value: Any, variant: int) -> Any:
    """A different subscriber number (the last four digits) in the same format; the area code
    and exchange stay."""
    match = _LAST_FOUR_DIGITS.search(value)
    assert match is not None
    digits = int("".join(match.group(1, 3, 5, 7)))
    new = f"{(digits + variant * 7919) % 10000:04d}"
    tail = "".join(d + sep for d, sep in zip(new, match.group(2, 4, 6, 8), strict=True))
    return value[: match.start()] + tail


def vary_ssn(value: Any, variant: int) -> Any:
    """A different serial (the last four digits) in the same format; an SSN ending in ``00``
    keeps that ending, any other never gets it."""
    serial = int(value[-4:])
    if serial % 100 == 0:
        new = (serial // 100 + variant) % 100 * 100
    else:
        new = (serial + variant * 101) % 10000
        if new % 100 == 0:
            new += 1
    return f"{value[:-4]}{new:04d}"


#: Variants tried before a field is varied at all: the change must keep the validity class
#: for all of them (the validity of these fields does not depend on the varied digits).
PROBES = (1, 7, 300, 4321, 9999, 123457)


def email_varies(value: Any) -> bool:
    """An e-mail can take a numeric suffix on its local part without changing its validity."""
    if not isinstance(value, str) or "@" not in value:
        return False
    local = value.rpartition("@")[0]
    if not local or not local[-1].isalnum():
        return False
    valid = email_is_valid(value)
    return all(email_is_valid(vary_email(value, v)) == valid for v in PROBES)


def phone_varies(value: Any) -> bool:
    """A valid phone whose subscriber number can change with the number staying valid."""
    if not isinstance(value, str) or _LAST_FOUR_DIGITS.search(value) is None:
        return False
    return phone_is_valid(value) and all(phone_is_valid(vary_phone(value, v)) for v in PROBES)


def ssn_varies(value: Any) -> bool:
    """An SSN in the pipeline's format (anything else is left as it is)."""
    return isinstance(value, str) and _SSN.fullmatch(value) is not None


VARIATIONS: dict[str, tuple[Callable[[Any], bool], Callable[[Any, int], Any]]] = {
    "email": (email_varies, vary_email),
    "phone": (phone_varies, vary_phone),
    "ssn": (ssn_varies, vary_ssn),
}


def variable_fields(sample: dict[str, Any]) -> tuple[str, ...]:
    """The fields of ``sample`` that copies may vary."""
    return tuple(
        name for name, (safe, _) in VARIATIONS.items() if name in sample and safe(sample[name])
    )


def make_record(
    sample: dict[str, Any], index: int, variant: int, fields: tuple[str, ...]
) -> dict[str, Any]:
    """Copy ``index`` of ``sample``: unique id; ``fields`` varied unless ``variant`` is 0."""
    record = copy.copy(sample)
    record[KEY_FIELD] = record_id(index)
    if variant:
        for name in fields:
            record[name] = VARIATIONS[name][1](record[name], variant)
    return record


def generate(count: int, samples: list[dict[str, Any]] | None = None) -> Iterator[dict[str, Any]]:
    """``count`` distinct records, cycling through the samples."""
    pool = samples if samples is not None else load_samples()
    plans = [variable_fields(sample) for sample in pool]
    for index in range(count):
        position, variant = index % len(pool), index // len(pool)
        yield make_record(pool[position], index, variant, plans[position])


def bench_records(count: int, samples: list[dict[str, Any]] | None = None) -> list[BenchRecord]:
    """The records encoded for Kafka (key = id, value = JSON)."""
    return [BenchRecord(r[KEY_FIELD], orjson.dumps(r)) for r in generate(count, samples)]


def warmup_records(count: int = 20) -> list[BenchRecord]:
    """Records with ids of their own (``WARMUP-...``, in the key and the value), never
    counted: they go through a system before the measured ones in rate mode."""
    out = []
    for record in generate(count):
        record[KEY_FIELD] = f"WARMUP-{record[KEY_FIELD]}"
        out.append(BenchRecord(record[KEY_FIELD], orjson.dumps(record)))
    return out
