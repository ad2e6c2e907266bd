"""The customer-onboarding rules of ``configs/customer_onboarding.yaml``, written by hand as
plain Python functions - what a team without stream_engine would write for a Quix Streams or
faust application. The benchmark's peers run these; no stream_engine import anywhere.

Same semantics as the YAML (and the built-in rules behind it): whitespace trimming, E.164
phone normalisation and validation (``phonenumbers``), e-mail syntax (``email-validator``,
no DNS), name parsing, required fields, the zip/state table, the SSN pattern, minimum age 18,
accepted states, deterministic simulated services (a hash of the request's key fields gives
a number in [0, 1); the YAML's formulas on top), a weighted risk score and a deterministic
customer id.

Each stage function takes the record's data (changing it in place, as preprocessing does) and
returns a :class:`StageResult`: ``forward`` to the next stage, or ``reject`` / ``review`` /
``dead_letter`` with the reasons. After the last stage a forwarded record is approved.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal

import orjson
import phonenumbers
from email_validator import EmailNotValidError, validate_email
from phonenumbers import NumberParseException, PhoneNumber

Route = Literal["forward", "reject", "review", "dead_letter"]
Data = dict[str, Any]

#: Which decision status a stopping route gives; ``forward`` past the last stage is approved.
STATUS_OF_ROUTE: dict[str, str] = {
    "reject": "rejected",
    "review": "review",
    "dead_letter": "dead_letter",
}
_PRIORITY: dict[str, int] = {"forward": 0, "review": 1, "reject": 2, "dead_letter": 3}


@dataclass(slots=True)
class StageResult:
    """Where a record goes after a stage, and why."""

    route: Route = "forward"
    reasons: list[str] = field(default_factory=list)

    def stop(self, route: Route, reason: str) -> None:
        """Record a failure; the strongest route wins (dead_letter > reject > review)."""
        if _PRIORITY[route] > _PRIORITY[self.route]:
            self.route = route
        self.reasons.append(reason)


class ServiceError(Exception):
    """A simulated service could not answer (a bad field type, as CEL would refuse it)."""


# --- helpers -------------------------------------------------------------------------------


def is_missing(value: Any) -> bool:
    """None, or blank text."""
    return value is None or (isinstance(value, str) and not value.strip())


def text(value: Any) -> str | None:
    """Non-blank text, else None."""
    return value if isinstance(value, str) and value.strip() else None


def as_double(value: Any) -> float:
    """A number as CEL's ``double()`` would take it; anything else is a service error."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ServiceError(f"not a number: {type(value).__name__}")
    try:
        return float(value)
    except ValueError:
        raise ServiceError("not a number") from None


def unit_random(seed: int, key: Any, name: str) -> float:
    """A number in [0, 1) from a service's seed, the request's key fields and a response field
    name: the same request always gets the same answer."""
    base = hashlib.blake2b(
        orjson.dumps([seed, key], option=orjson.OPT_SORT_KEYS), digest_size=16
    ).digest()
    digest = hashlib.blake2b(name.encode(), digest_size=8, key=base).digest()
    return int.from_bytes(digest, "big") / 2**64


def keyed(seed: int, data: Data, *fields: str) -> Callable[[str], float]:
    """``rand`` of one simulated service for this record: a function of the field name."""
    key = [data.get(name) for name in fields]
    return lambda name: unit_random(seed, key, name)


# --- preprocessing -------------------------------------------------------------------------

_SPACES = re.compile(r"\s+")
TRIMMED = ("name", "email", "address", "city", "state", "zip_code")


def trim_whitespace(data: Data) -> None:
    """Strip and collapse whitespace in the text fields; upper-case the state."""
    for name in TRIMMED:
        value = data.get(name)
        if isinstance(value, str):
            clean = _SPACES.sub(" ", value.strip())
            data[name] = clean.upper() if name == "state" else clean


def parse_phone(raw: str) -> PhoneNumber | None:
    """A US-default parse, None when it is not a phone number at all."""
    try:
        return phonenumbers.parse(raw, "US")
    except NumberParseException:
        return None


def normalize_phone(data: Data) -> None:
    """Rewrite a possible phone number in E.164; leave anything else for validation."""
    raw = text(data.get("phone"))
    if raw is None:
        return
    number = parse_phone(raw)
    if number is not None and phonenumbers.is_possible_number(number):
        data["phone"] = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def standardize_address(data: Data) -> None:
    """The simulated address service: a standardised address (failures do not stop)."""
    parts = [data.get(name) for name in ("address", "city", "state", "zip_code")]
    if any(is_missing(part) for part in parts) or not all(isinstance(p, str) for p in parts):
        return
    address, city, state, zip_code = parts
    data["address_standardized"] = f"{address}, {city}, {state} {zip_code}"
    data["address_deliverable"] = keyed(11, data, "address", "zip_code")("deliverable") < 0.98


TITLES = frozenset({"mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir", "rev"})
SUFFIXES = frozenset({"jr", "sr", "ii", "iii", "iv", "v", "phd", "md", "esq"})
PARTICLES = frozenset({"van", "von", "de", "del", "della", "da", "di", "la", "le", "st", "bin"})


def _bare(word: str) -> str:
    return word.strip(".").lower()


def split_name(full: str) -> tuple[str, str, str]:
    """(first, middle, last) from "First Middle Last" or "Last, First Middle"; titles and
    suffixes dropped, particles (van, de la...) kept with the last name."""
    last_words: list[str] = []
    words = full.split()
    if "," in full:
        before, _, after = full.partition(",")
        given = [w for w in after.replace(",", " ").split() if _bare(w) not in SUFFIXES]
        if given:  # "Last, First Middle"
            last_words, words = before.split(), given
        else:  # "First Last, Jr.": the comma only sets the suffix off
            words = before.split()
    words = [w for w in words if _bare(w) not in TITLES or len(words) == 1]
    if not last_words:
        while len(words) > 1 and _bare(words[-1]) in SUFFIXES:
            words.pop()
        if len(words) > 1:
            start = len(words) - 1
            while start > 1 and words[start - 1].lower() in PARTICLES:
                start -= 1
            words, last_words = words[:start], words[start:]
    if not words:
        return "", "", " ".join(last_words)
    return words[0], " ".join(words[1:]), " ".join(last_words)


def parse_name(data: Data) -> None:
    """Fill first/middle/last name from ``name`` (values already present are kept)."""
    full = text(data.get("name"))
    if full is None:
        return
    parts = split_name(full)
    for name, value in zip(("first_name", "middle_name", "last_name"), parts, strict=True):
        if value and not data.get(name):
            data[name] = value


def normalize_email(data: Data) -> None:
    """Lower-case the e-mail address."""
    value = text(data.get("email"))
    if value is not None:
        data["email"] = value.strip().lower()


def preprocessing(data: Data) -> StageResult:
    """Clean and normalise the application; never stops a record."""
    trim_whitespace(data)
    normalize_phone(data)
    standardize_address(data)
    parse_name(data)
    normalize_email(data)
    return StageResult()


# --- data quality ----------------------------------------------------------------------------

REQUIRED = (
    "first_name",
    "last_name",
    "email",
    "phone",
    "address",
    "city",
    "state",
    "zip_code",
    "date_of_birth",
    "ssn",
)
DISPOSABLE_DOMAINS = frozenset(
    {
        "10minutemail.com",
        "guerrillamail.com",
        "mailinator.com",
        "maildrop.cc",
        "sharklasers.com",
        "tempmail.com",
        "temp-mail.org",
        "throwawaymail.com",
        "trashmail.com",
        "yopmail.com",
    }
)
ZIP_PREFIX_BY_STATE: dict[str, re.Pattern[str]] = {
    state: re.compile(pattern)
    for state, pattern in {
        "AL": "^3[56]",
        "AK": "^99[5-9]",
        "AZ": "^8[56]",
        "AR": "^7[12]",
        "CA": "^9[0-6]",
        "CO": "^8[01]",
        "CT": "^06",
        "DE": "^19[7-9]",
        "DC": "^20[0-5]",
        "FL": "^3[2-4]",
        "GA": "^(3[01]|39[89])",
        "HI": "^96[78]",
        "ID": "^83[2-8]",
        "IL": "^6[0-2]",
        "IN": "^4[67]",
        "IA": "^5[0-2]",
        "KS": "^6[67]",
        "KY": "^4[0-2]",
        "LA": "^7[01]",
        "ME": "^0(39|4)",
        "MD": "^2[01]",
        "MA": "^0[12]",
        "MI": "^4[89]",
        "MN": "^5[56]",
        "MS": "^3[89]",
        "MO": "^6[3-5]",
        "MT": "^59",
        "NE": "^6[89]",
        "NV": "^8[89]",
        "NH": "^03",
        "NJ": "^0[78]",
        "NM": "^8[78]",
        "NY": "^(1[0-4]|005)",
        "NC": "^2[78]",
        "ND": "^58",
        "OH": "^4[3-5]",
        "OK": "^7[34]",
        "OR": "^97",
        "PA": "^1[5-9]",
        "RI": "^02[89]",
        "SC": "^29",
        "SD": "^57",
        "TN": "^3[78]",
        "TX": "^(7[5-9]|733|885)",
        "UT": "^84",
        "VT": "^05",
        "VA": "^2[0-4]",
        "WA": "^9[89]",
        "WV": "^2[4-6]",
        "WI": "^5[34]",
        "WY": "^8[23]",
    }.items()
}
SSN = re.compile(r"[0-9]{3}-?[0-9]{2}-?[0-9]{4}")


def email_problem(value: Any) -> str | None:
    """Why the e-mail address is not acceptable (syntax, disposable domain), or None."""
    if not isinstance(value, str):
        return "email must be text"
    try:
        info = validate_email(value, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as exc:
        return f"email is not a valid e-mail address: {exc}"
    if info.ascii_domain.lower() in DISPOSABLE_DOMAINS:
        return "email uses a disposable e-mail domain"
    return None


def phone_problem(value: Any) -> str | None:
    """Why the phone is not a valid US-default number without extension, or None."""
    if not isinstance(value, str):
        return "phone must be text"
    number = parse_phone(value)
    if number is None:
        return "phone is not a phone number"
    if not phonenumbers.is_valid_number(number):
        return "phone is not a valid phone number"
    if number.extension:
        return "phone has an extension, which is not allowed"
    return None


def zip_problem(data: Data) -> str | None:
    """The zip code's prefix must belong to the state (unknown states pass)."""
    pattern = ZIP_PREFIX_BY_STATE.get(str(data["state"]))
    if pattern is None or pattern.search(str(data["zip_code"])):
        return None
    return "zip_code does not belong to state"


def ssn_problem(value: Any) -> str | None:
    """The SSN must look like 123-45-6789 (dashes optional)."""
    if isinstance(value, dict | list) or not SSN.fullmatch(str(value)):
        return "ssn is not in the form 123-45-6789"
    return None


def consistency_problem(data: Data) -> str | None:
    """An ``area_code`` field, when given, must match the phone."""
    if "area_code" not in data:
        return None
    phone = data.get("phone")
    if isinstance(phone, str) and phone.startswith(f"+1{data['area_code']}"):
        return None
    return "area_code does not match phone"


def data_quality(data: Data) -> StageResult:
    """Completeness, then format and consistency; the first failure rejects."""
    result = StageResult()
    missing = [name for name in REQUIRED if is_missing(data.get(name))]
    if missing:
        result.stop("reject", "missing required field(s): " + ", ".join(missing))
        return result
    checks: list[Callable[[], str | None]] = [
        lambda: email_problem(data["email"]),
        lambda: phone_problem(data["phone"]),
        lambda: zip_problem(data),
        lambda: ssn_problem(data["ssn"]),
        lambda: consistency_problem(data),
    ]
    for check in checks:
        problem = check()
        if problem is not None:
            result.stop("reject", problem)
            return result
    return result


# --- compliance ------------------------------------------------------------------------------

UNVERIFIABLE = frozenset({"Mallory", "Impostor"})
SANCTIONED = frozenset({"Escobar", "Blacklisted"})
POLITICAL = frozenset({"Politico", "Senator"})


def kyc(data: Data) -> bool:
    """Identity verification: writes the verification id and confidence; True if verified."""
    rand = keyed(7, data, "ssn", "last_name", "date_of_birth")
    verified = data["last_name"] not in UNVERIFIABLE
    data["identity_confidence_score"] = 0.8 + rand("confidence_score") * 0.2 if verified else 0.2
    data["kyc_verification_id"] = f"KYC-{100000 + int(rand('verification_id') * 899999.0)}"
    return verified


def sanctions_score(data: Data) -> float:
    """OFAC screening match score."""
    if data["last_name"] in SANCTIONED:
        return 0.97
    return keyed(8, data, "first_name", "last_name")("match_score") * 0.4


def aml_risk(data: Data) -> float:
    """AML risk score; written into the record."""
    if data.get("occupation") == "money services":
        risk = 0.85
    else:
        risk = keyed(10, data, "ssn")("risk_score") * 0.6
    data["aml_risk_score"] = risk
    return risk


def compliance(data: Data) -> StageResult:
    """KYC (rejects), sanctions, PEP and AML (each sends to review)."""
    result = StageResult()
    verified = kyc(data)
    if not verified:
        result.stop("reject", "kyc_identity_verification: identity could not be verified")
    sanctions_ok = sanctions_score(data) < 0.85
    if not sanctions_ok:
        result.stop("review", "ofac_sanctions_screening: possible sanctions list match")
    pep_ok = sanctions_ok and data["last_name"] not in POLITICAL
    if sanctions_ok and not pep_ok:
        result.stop("review", "pep_screening: politically exposed person")
    if pep_ok and verified and aml_risk(data) >= 0.7:
        result.stop("review", "aml_risk_assessment: AML risk above threshold")
    return result


# --- business rules --------------------------------------------------------------------------

DATE_FORMATS = ("%Y-%m-%d", "%m/%d/%Y", "%d.%m.%Y", "%Y/%m/%d", "%Y%m%d")
ACCEPTED_STATES = frozenset({"CA", "NY", "TX", "FL", "IL", "PA", "OH", "GA", "NC", "MI"})
MINIMUM_AGE = 18


def parse_date(value: Any) -> date | None:
    """A date in one of the accepted formats (or ISO), None if none fits."""
    if not isinstance(value, str):
        return None
    raw = value.strip()
    for fmt in DATE_FORMATS:
        try:
            return datetime.strptime(raw, fmt).date()
        except ValueError:
            continue
    try:
        return datetime.fromisoformat(raw).date()
    except ValueError:
        return None


def age_problem(value: Any, today: date | None = None) -> str | None:
    """Strict: a missing, unparsable or future date fails, and so does an age under 18."""
    born = parse_date(value)
    today = today or datetime.now(UTC).date()
    if born is None or born > today:
        return "date_of_birth is not a valid past date"
    age = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
    return f"applicant is under {MINIMUM_AGE}" if age < MINIMUM_AGE else None


def credit_score(data: Data) -> int:
    """The simulated bureau's FICO 8 score; written into the record."""
    ssn = data["ssn"]
    if not isinstance(ssn, str):
        raise ServiceError("ssn must be text")
    score = 580 if ssn.endswith("00") else 660 + int(keyed(12, data, "ssn")("score") * 190.0)
    data["credit_score"] = score
    return score


def monthly_income(data: Data) -> float:
    """Declared annual income / 12 (0 without one); written into the record."""
    annual = data.get("annual_income")
    income = 0.0 if annual is None else as_double(annual) / 12.0
    data["monthly_income"] = income
    return income


def monthly_debt(data: Data) -> float:
    """Declared monthly debt, else the simulated aggregator's figure; written into the record."""
    declared = data.get("declared_monthly_debt")
    if declared is not None:
        debt = as_double(declared)
    else:
        debt = float(int(keyed(14, data, "ssn")("monthly_debt") * 1500.0))
    data["monthly_debt"] = debt
    return debt


def business_rules(data: Data) -> StageResult:
    """Age, credit score, income, debt-to-income and state: every failure rejects; a
    service that cannot answer dead-letters the record."""
    result = StageResult()
    try:
        age = age_problem(data.get("date_of_birth"))
        if age is not None:
            result.stop("reject", f"age_verification: {age}")
        credit_ok = age is None and credit_score(data) >= 650
        if age is None and not credit_ok:
            result.stop("reject", "credit_score_check: credit score below 650")
        income_ok = monthly_income(data) >= 3000.0
        if not income_ok:
            result.stop("reject", "income_verification: monthly income below 3000")
        if income_ok and credit_ok and monthly_debt(data) / data["monthly_income"] > 0.43:
            result.stop("reject", "debt_to_income_calculation: debt-to-income ratio above 0.43")
    except ServiceError as exc:
        result.stop("dead_letter", f"rule_error: {exc}")
    if data.get("state") not in ACCEPTED_STATES:
        result.stop("reject", "geographic_eligibility: state is not an accepted value")
    return result


# --- post-processing ------------------------------------------------------------------------

RISK_WEIGHTS = {"credit": 0.4, "aml": 0.3, "geographic": 0.2, "identity": 0.1}


#: The example pipeline's salt (``${CUSTOMER_ID_SALT:-...}``), so both make the same ids.
CUSTOMER_ID_SALT = os.environ.get("CUSTOMER_ID_SALT") or "example-salt-set-CUSTOMER_ID_SALT"


def customer_id(data: Data) -> str:
    """``CUST-`` and 12 hex digits of SHA-256 over the salt, e-mail, phone and SSN."""
    fields = ("email", "phone", "ssn")
    parts = [CUSTOMER_ID_SALT, *(str(data.get(name) or "").strip().lower() for name in fields)]
    return "CUST-" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:12].upper()


def risk_score(data: Data) -> float:
    """Weighted composite risk of the components present (weights renormalised)."""
    components: dict[str, float] = {}
    if isinstance(data.get("credit_score"), int | float):
        components["credit"] = (850.0 - data["credit_score"]) / 850.0
    if isinstance(data.get("aml_risk_score"), int | float):
        components["aml"] = data["aml_risk_score"]
    components["geographic"] = data["geographic_risk_score"]
    if isinstance(data.get("identity_confidence_score"), int | float):
        components["identity"] = 1.0 - data["identity_confidence_score"]
    weights = sum(RISK_WEIGHTS[name] for name in components)
    return round(sum(v * RISK_WEIGHTS[n] for n, v in components.items()) / weights, 6)


def post_processing(data: Data) -> StageResult:
    """Customer id, risk score and category (high goes to review), audit id, notification."""
    result = StageResult()
    data["customer_id"] = customer_id(data)
    data["geographic_risk_score"] = 0.6 if data.get("state") in ("FL", "TX") else 0.2
    score = risk_score(data)
    category = "low" if score < 0.3 else "medium" if score < 0.7 else "high"
    data["composite_risk_score"], data["risk_category"] = score, category
    if category == "high":
        result.stop("review", f"risk_score_calculation: score {score:.3f} (high)")
    audit = keyed(15, data, "customer_id", "application_id")("audit_id")
    data["audit_id"] = f"AUD-{int(audit * 1_000_000_000.0)}"
    return result


# --- the pipeline ----------------------------------------------------------------------------

STAGES: dict[str, Callable[[Data], StageResult]] = {
    "preprocessing": preprocessing,
    "data_quality": data_quality,
    "compliance": compliance,
    "business_rules": business_rules,
    "post_processing": post_processing,
}


def decide(record: Data) -> tuple[str, str, list[str]]:
    """Run every stage in one go (for tests): (status, deciding stage, reasons)."""
    for name, stage in STAGES.items():
        result = stage(record)
        if result.route != "forward":
            return STATUS_OF_ROUTE[result.route], name, result.reasons
    return "approved", name, []
