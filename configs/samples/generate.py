"""Write the synthetic sample records of the example pipelines, with a known mix of good and
bad ones. Standard library only, and deterministic: the same files, byte for byte, on every run.

    python configs/samples/generate.py            # write the .jsonl files
    python configs/samples/generate.py --check    # also run `stream-engine eval` over them and
                                                  # print, per category, what was decided

The mix is listed in configs/samples/README.md (and checked by tests/unit/cli/test_examples.py).
Everything is made up: names from common-name lists, real US cities with one of their real zip
codes and area codes, phone numbers in the fictional 555-01xx range (valid US numbers: 555 is
an exchange, not an area code), e-mail addresses on reserved example domains, random SSNs.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import sys
import unicodedata
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CONFIGS = HERE.parent

Record = dict[str, Any]
Maker = Callable[["Gen", int], Record]

FEMALE = [
    "Mary", "Patricia", "Jennifer", "Linda", "Elizabeth", "Barbara", "Susan", "Jessica",
    "Sarah", "Karen", "Nancy", "Priya", "Lisa", "Betty", "Sandra", "Ashley", "Emily", "Donna",
    "Michelle", "Fatima", "Carol", "Amanda", "Renée", "Zoë", "Aaliyah", "Siobhan", "Mei",
    "Ingrid", "Camila", "Nadia", "Grace", "Olivia", "Chloe", "Leah", "Anika",
]  # fmt: skip
MALE = [
    "James", "Robert", "John", "Michael", "David", "William", "Richard", "Joseph", "Thomas",
    "Carlos", "Wei", "Omar", "Ivan", "Kenji", "Ahmed", "Luis", "Chen", "Andre", "José",
    "Mateo", "Dmitri", "Tariq", "Kwame", "Rahul", "Hiroshi", "Samuel", "Ethan", "Diego",
    "Marcus",
]  # fmt: skip
FIRST = FEMALE + MALE
MIDDLE_FEMALE = ["Marie", "Ann", "Rose", "Elena", "Louise", "Grace", "Jean", "Lynn"]
MIDDLE_MALE = ["Michael", "James", "Alexander", "Lee", "Wei", "Edward", "Jose", "Paul"]
INITIALS = ["A.", "J.", "K.", "R.", "M.", "T."]
LAST = [
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Taylor", "Moore",
    "Jackson", "Martin", "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark",
    "Ramirez", "Lewis", "Robinson", "Walker", "Young", "Allen", "King", "Wright", "Scott",
    "Torres", "Nguyen", "Hill", "Flores", "Green", "Okafor", "Patel", "Kim", "Novak", "Rossi",
    "O'Brien", "Kowalski", "Schmidt", "Haddad", "Yamamoto", "Ivanova", "Chowdhury", "Mensah",
    "Smith-Jones", "de la Cruz", "Van Buren", "Fitzgerald", "Andersson", "Abernathy", "Castillo",
]  # fmt: skip
SUFFIXES = ["Jr.", "Sr.", "II", "III"]
TITLES = ["Dr.", "Mr.", "Ms.", "Mrs."]
OCCUPATIONS = [
    "teacher", "nurse", "software engineer", "accountant", "electrician", "pharmacist",
    "sales manager", "chef", "architect", "paramedic", "graphic designer", "mechanic",
    "attorney", "dental hygienist", "civil engineer", "retail associate", "data analyst",
    "truck driver", "physical therapist", "small business owner",
]  # fmt: skip
STREETS = [
    "Main St", "Oak Ave", "Maple Dr", "Cedar Ln", "Park Blvd", "Elm St", "Lake Rd", "Hill St",
    "River Rd", "Sunset Blvd", "Washington Ave", "Lincoln Way", "Pine St", "2nd Ave",
    "Highland Ave", "Chestnut St", "Broad St", "Willow Ct",
]  # fmt: skip
UNITS = ["", "", "", "", "Apt 2B", "Apt 14", "Unit 7", "Suite 300", "#5C", "Apt 1203"]
DOMAINS = [
    "example.com", "example.com", "example.org", "example.net", "mail.example",
    "mail.example.com", "inbox.example.org",
]  # fmt: skip

# (city, state, real zip codes of the city, real area codes of the city). Every zip code's
# prefix belongs to its state (the zip_prefix table of customer_onboarding.yaml).
ALLOWED_CITIES = [
    ("Los Angeles", "CA", ["90012", "90017", "90028", "90036"], ["213", "323", "310"]),
    ("San Francisco", "CA", ["94103", "94110", "94117", "94122"], ["415", "628"]),
    ("San Diego", "CA", ["92101", "92103", "92109"], ["619", "858"]),
    ("Sacramento", "CA", ["95814", "95816", "95819"], ["916"]),
    ("San Jose", "CA", ["95110", "95112", "95126"], ["408", "669"]),
    ("New York", "NY", ["10001", "10011", "10025", "10128"], ["212", "646", "917"]),
    ("Brooklyn", "NY", ["11201", "11215", "11238"], ["718", "347"]),
    ("Buffalo", "NY", ["14201", "14202", "14222"], ["716"]),
    ("Rochester", "NY", ["14604", "14607", "14620"], ["585"]),
    ("Houston", "TX", ["77002", "77006", "77019"], ["713", "281", "832"]),
    ("Dallas", "TX", ["75201", "75204", "75214"], ["214", "469", "972"]),
    ("Austin", "TX", ["78701", "78704", "78751"], ["512", "737"]),
    ("San Antonio", "TX", ["78205", "78209", "78212"], ["210"]),
    ("El Paso", "TX", ["79901", "79902", "79912"], ["915"]),
    ("Miami", "FL", ["33130", "33131", "33137"], ["305", "786"]),
    ("Orlando", "FL", ["32801", "32803", "32806"], ["407", "321"]),
    ("Tampa", "FL", ["33602", "33606", "33609"], ["813"]),
    ("Jacksonville", "FL", ["32202", "32204", "32207"], ["904"]),
    ("Chicago", "IL", ["60601", "60614", "60622", "60647"], ["312", "773", "872"]),
    ("Springfield", "IL", ["62701", "62702", "62704"], ["217"]),
    ("Philadelphia", "PA", ["19103", "19104", "19147"], ["215", "267"]),
    ("Pittsburgh", "PA", ["15222", "15213", "15217"], ["412"]),
    ("Columbus", "OH", ["43215", "43201", "43214"], ["614"]),
    ("Cleveland", "OH", ["44114", "44113", "44102"], ["216"]),
    ("Cincinnati", "OH", ["45202", "45206", "45220"], ["513"]),
    ("Atlanta", "GA", ["30303", "30308", "30309"], ["404", "470", "678"]),
    ("Savannah", "GA", ["31401", "31404", "31405"], ["912"]),
    ("Charlotte", "NC", ["28202", "28203", "28205"], ["704", "980"]),
    ("Raleigh", "NC", ["27601", "27603", "27605"], ["919", "984"]),
    ("Detroit", "MI", ["48226", "48201", "48207"], ["313"]),
    ("Grand Rapids", "MI", ["49503", "49504", "49506"], ["616"]),
    ("Ann Arbor", "MI", ["48103", "48104"], ["734"]),
]
# States outside customer_onboarding's geographic_eligibility list, zip codes still consistent.
OTHER_CITIES = [
    ("Seattle", "WA", ["98101", "98109", "98122"], ["206"]),
    ("Spokane", "WA", ["99201", "99203"], ["509"]),
    ("Portland", "OR", ["97204", "97209", "97214"], ["503", "971"]),
    ("Las Vegas", "NV", ["89101", "89109"], ["702", "725"]),
    ("Reno", "NV", ["89501", "89502"], ["775"]),
    ("Phoenix", "AZ", ["85004", "85008"], ["602"]),
    ("Tucson", "AZ", ["85701", "85705"], ["520"]),
    ("Denver", "CO", ["80202", "80206"], ["303", "720"]),
    ("Boston", "MA", ["02108", "02116"], ["617", "857"]),
]
# The zip-prefix patterns of the allowed states (copied from customer_onboarding.yaml), used
# only to pick a zip code that surely does NOT belong to a record's state.
ZIP_PATTERNS = {
    "CA": "^9[0-6]", "NY": "^(1[0-4]|005)", "TX": "^(7[5-9]|733|885)", "FL": "^3[2-4]",
    "IL": "^6[0-2]", "PA": "^1[5-9]", "OH": "^4[3-5]", "GA": "^(3[01]|39[89])",
    "NC": "^2[78]", "MI": "^4[89]",
}  # fmt: skip

# Names and values the simulated services of the example pipelines single out.
KYC_FAILS = ["Mallory", "Impostor"]
SANCTIONED = ["Escobar", "Blacklisted"]
PEPS = ["Politico", "Senator"]
UNRESOLVABLE = ["Unknown", "Nobody"]
UNTRACEABLE = ["Ghost", "Phantom"]


class Gen:
    """Builds records from one seeded random stream."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.current = ("", "", "")  # the (first, middle, last) name of the latest person

    def pick(self, items: list[Any]) -> Any:
        return self.rng.choice(items)

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    # -- people ------------------------------------------------------------------------------
    def person(self, last: str | None = None) -> tuple[str, str, str]:
        """(first, middle, last): a middle name for about half, an initial for a fifth."""
        first = str(self.pick(FIRST))
        roll = self.rng.random()
        if roll < 0.3:
            middle = str(self.pick(MIDDLE_FEMALE if first in FEMALE else MIDDLE_MALE))
        elif roll < 0.5:
            middle = str(self.pick(INITIALS))
        else:
            middle = ""
        self.current = (first, middle, last or str(self.pick(LAST)))
        return self.current

    def full_name(self, first: str, middle: str, last: str, plain: bool = False) -> str:
        """As applicants type it: mostly "First Middle Last", sometimes "Last, First", with a
        title or a suffix, in capitals, with stray spaces. ``plain`` keeps "First Middle Last"
        (stray spaces aside), so that a screening service sees the last name as written."""
        given = " ".join(part for part in (first, middle) if part)
        roll = self.rng.random()
        if plain or roll < 0.70:
            name = f"{given} {last}"
        elif roll < 0.78:
            name = f"{last}, {given}"
        elif roll < 0.85:
            name = f"{given} {last} {self.pick(SUFFIXES)}"
        elif roll < 0.91:
            name = f"{self.pick(TITLES)} {given} {last}"
        elif roll < 0.96:
            name = f"{given} {last}".upper()
        else:
            name = f"{given}  {last}"
        return self.messy(name)

    def messy(self, text: str) -> str:
        """Stray whitespace, as web forms deliver it."""
        roll = self.rng.random()
        if roll < 0.12:
            return f"  {text} "
        if roll < 0.18:
            return f"{text}\t"
        if roll < 0.22:
            return f" {text}"
        return text

    def email(self, first: str, last: str) -> str:
        f, last_ascii = ascii_word(first), ascii_word(last)
        local = self.pick(
            [
                f"{f}.{last_ascii}",
                f"{f}.{last_ascii}",
                f"{f[0]}{last_ascii}",
                f"{f}_{last_ascii}",
                f"{f}{self.rng.randint(1, 99)}",
                f"{f}.{last_ascii}+bank",
            ]
        )
        address = f"{local}@{self.pick(DOMAINS)}"
        roll = self.rng.random()
        if roll < 0.12:
            return address.upper()
        if roll < 0.22:
            return address[0].upper() + address[1:]
        return address

    # -- places and numbers ------------------------------------------------------------------
    def place(self, cities: list[Any]) -> tuple[str, str, str, str]:
        city, state, zips, areas = self.pick(cities)
        return city, state, str(self.pick(zips)), str(self.pick(areas))

    def street(self) -> str:
        unit = str(self.pick(UNITS))
        line = f"{self.rng.randint(10, 9899)} {self.pick(STREETS)}"
        if unit:
            line += f", {unit}" if self.chance(0.5) else f" {unit}"
        return self.messy(line)

    def phone(self, area: str, line: str | None = None) -> str:
        """A US number in one of the ways people write them; by default in the fictional
        555-0100..555-0199 range."""
        line = line or f"01{self.rng.randint(0, 99):02d}"
        return str(
            self.pick(
                [
                    f"({area}) 555-{line}",
                    f"({area}) 555-{line}",
                    f"{area}-555-{line}",
                    f"{area}-555-{line}",
                    f"+1 {area} 555 {line}",
                    f"{area}.555.{line}",
                    f"{area}555{line}",
                    f"1-{area}-555-{line}",
                    f"+1 ({area}) 555-{line}",
                    f"+1{area}555{line}",
                    f" {area} 555 {line} ",
                ]
            )
        )

    def ssn(self, ending: str | None = None) -> str:
        """A random SSN-shaped number (area 100-665, never 000/666/9xx); ``ending`` fixes the
        last two digits. Mostly 123-45-6789, sometimes without dashes."""
        while True:
            area, group = self.rng.randint(100, 665), self.rng.randint(1, 99)
            serial = self.rng.randint(1, 99) * 100 + self.rng.randint(1, 99)
            text = f"{area:03d}-{group:02d}-{serial:04d}"
            if ending:
                text = text[:-2] + ending
            elif text.endswith("00"):
                continue
            return text.replace("-", "") if self.chance(0.1) else text

    def birth_date(self, minor: bool = False) -> str:
        """An adult born 1950-2001 (24 or more in 2026), or a minor born 2012-2015 (eleven to
        fourteen in 2026): far from an 18th birthday, so the decision does not move soon."""
        year = self.rng.randint(2012, 2015) if minor else self.rng.randint(1950, 2001)
        month, day = self.rng.randint(1, 12), self.rng.randint(1, 28)
        if self.chance(0.1):
            return f"{month:02d}/{day:02d}/{year}"
        return f"{year}-{month:02d}-{day:02d}"

    def timestamp(self) -> str:
        return (
            f"2026-11-{self.rng.randint(1, 23):02d}T{self.rng.randint(0, 23):02d}:"
            f"{self.rng.randint(0, 59):02d}:{self.rng.randint(0, 59):02d}Z"
        )


def ascii_word(text: str) -> str:
    """Lower-case ASCII letters of a name, for e-mail local parts (José → jose)."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z]", "", plain.lower())


# -- customer onboarding ---------------------------------------------------------------------


def application(
    g: Gen,
    number: int,
    last: str | None = None,
    cities: list[Any] = ALLOWED_CITIES,
    **overrides: Any,
) -> Record:
    """A complete, valid application; ``overrides`` replace fields."""
    city, state, zip_code, area = g.place(cities)
    first, middle, last_name = g.person(last)
    monthly_income = g.rng.randint(48, 240) * 1000 / 12
    record: Record = {
        "application_id": f"APP-2026-{number:06d}",
        "tenant": g.pick(["retail", "retail", "smb"]),
        "name": g.full_name(first, middle, last_name, plain=last is not None),
        "email": g.messy(g.email(first, last_name)),
        "phone": g.phone(area),
        "address": g.street(),
        "city": g.messy(city) if g.chance(0.3) else city,
        "state": g.pick([state, state, state, state, state.lower(), f" {state} "]),
        "zip_code": zip_code if g.chance(0.85) else f"{zip_code}-{g.rng.randint(1, 9999):04d}",
        "date_of_birth": g.birth_date(),
        "ssn": g.ssn(),
        "annual_income": int(monthly_income * 12),
        "occupation": g.pick(OCCUPATIONS),
    }
    if g.chance(0.3):  # some applicants declare their debts (always affordable here)
        record["declared_monthly_debt"] = g.rng.randint(0, int(monthly_income * 0.3))
    record.update(overrides)
    return record


def valid_application(g: Gen, number: int) -> Record:
    return application(g, number)


def numeric_zip(g: Gen, number: int) -> Record:
    """A valid application whose zip code arrives as a JSON number: the address service
    cannot build its request, normalize_address records ERROR and is skipped (on_error)."""
    record = application(g, number)
    record["zip_code"] = int(str(record["zip_code"])[:5])
    return record


def missing_fields(g: Gen, number: int) -> Record:
    """Required fields absent, null, blank or whitespace; or a name without a last name."""
    record = application(g, number)
    roll = g.rng.random()
    if roll < 0.2:
        record["name"] = g.messy(g.current[0])  # one word: no last name to parse
        return record
    fields = ["address", "zip_code", "date_of_birth", "ssn", "email", "phone", "city", "state"]
    for field in g.rng.sample(fields, g.rng.randint(1, 3)):
        how = g.rng.random()
        if how < 0.6:
            del record[field]
        elif how < 0.75:
            record[field] = None
        elif how < 0.9:
            record[field] = ""
        else:
            record[field] = "   "
    return record


def invalid_email(g: Gen, number: int) -> Record:
    record = application(g, number)
    first, last = ascii_word(g.current[0]), ascii_word(g.current[2])
    record["email"] = g.pick(
        [
            f"{first}.{last}@",
            f"{first} {last}@example.com",
            f"{first}@@example.com",
            f"{first}.{last}@example",
            f"{first}.{last}.example.com",
            f"{first}..{last}@example.com",
            f"{first}.{last}@example..com",
            f"{first}.{last}@mailinator.com",
            f"{first}@yopmail.com",
        ]
    )
    return record


def invalid_phone(g: Gen, number: int) -> Record:
    record = application(g, number)
    area = str(g.pick(["212", "312", "415", "713"]))
    record["phone"] = g.pick(
        [
            "(555) 123-4567",  # seed 000's number: 555 is not an area code
            "555-123-4567",
            "(123) 456-7890",
            f"(099) 555-01{g.rng.randint(10, 99)}",
            f"({area}) 055-01{g.rng.randint(10, 99)}",
            f"{area}-555-01{g.rng.randint(10, 99)}7",
            f"555-01{g.rng.randint(10, 99)}",
            f"{area}-555-0{g.rng.randint(10, 99)}",
            f"{area}-555-01{g.rng.randint(10, 99)} ext. {g.rng.randint(2, 99)}",
            "N/A",
        ]
    )
    return record


def zip_of_another_state(g: Gen, number: int) -> Record:
    """The city and state agree; the zip code belongs to a city of another state."""
    record = application(g, number)
    state = str(record["state"]).strip().upper()
    pattern = re.compile(ZIP_PATTERNS[state])
    while True:
        _city, other, zip_code, _area = g.place(ALLOWED_CITIES + OTHER_CITIES)
        if other != state and not pattern.search(zip_code):
            record["zip_code"] = zip_code
            return record


def minor(g: Gen, number: int) -> Record:
    record = application(g, number)
    record["date_of_birth"] = g.birth_date(minor=True)
    return record


def named(last_names: list[str]) -> Maker:
    """An application whose last name a screening service singles out."""

    def make(g: Gen, number: int) -> Record:
        return application(g, number, last=str(g.pick(last_names)))

    return make


def money_services(g: Gen, number: int) -> Record:
    return application(g, number, occupation="money services")


def outside_allowed_states(g: Gen, number: int) -> Record:
    return application(g, number, cities=OTHER_CITIES)


def low_credit(g: Gen, number: int) -> Record:
    record = application(g, number)
    record["ssn"] = g.ssn(ending="00")  # the simulated bureau scores these 580
    return record


def low_income(g: Gen, number: int) -> Record:
    record = application(g, number, annual_income=g.rng.randint(12, 34) * 1000)
    record.pop("declared_monthly_debt", None)
    return record


def over_indebted(g: Gen, number: int) -> Record:
    income = g.rng.randint(50, 120) * 1000
    ratio = g.rng.uniform(0.5, 0.9)
    return application(
        g, number, annual_income=income, declared_monthly_debt=int(income / 12 * ratio)
    )


#: (category, how many, maker, expected status, deciding stage)
ONBOARDING_MIX: list[tuple[str, int, Maker, str, str]] = [
    ("complete, valid application", 180, valid_application, "approved", "post_processing"),
    ("zip code sent as a number", 6, numeric_zip, "approved", "post_processing"),
    ("missing required fields", 24, missing_fields, "rejected", "data_quality"),
    ("invalid e-mail address", 9, invalid_email, "rejected", "data_quality"),
    ("invalid phone number", 9, invalid_phone, "rejected", "data_quality"),
    ("zip code of another state", 9, zip_of_another_state, "rejected", "data_quality"),
    ("KYC identity not verified", 9, named(KYC_FAILS), "rejected", "compliance"),
    ("possible sanctions match", 6, named(SANCTIONED), "review", "compliance"),
    ("politically exposed person", 6, named(PEPS), "review", "compliance"),
    ("high AML risk (occupation)", 6, money_services, "review", "compliance"),
    ("under 18", 9, minor, "rejected", "business_rules"),
    ("state outside the allowed list", 9, outside_allowed_states, "rejected", "business_rules"),
    ("credit score below 650", 6, low_credit, "rejected", "business_rules"),
    ("monthly income below 3,000", 6, low_income, "rejected", "business_rules"),
    ("debt-to-income above 0.43", 6, over_indebted, "rejected", "business_rules"),
]

#: what decides each category: the rule it fails ("" when none may fail; normalize_address is
#: on_fail: continue and so ignored), or for a decision without failed rules, its reason
ONBOARDING_RULES = {
    "complete, valid application": "",
    "zip code sent as a number": "",
    "missing required fields": "required_personal_info",
    "invalid e-mail address": "email_format_validation",
    "invalid phone number": "phone_format_validation",
    "zip code of another state": "zip_state_consistency",
    "KYC identity not verified": "kyc_identity_verification",
    "possible sanctions match": "ofac_sanctions_screening",
    "politically exposed person": "pep_screening",
    "high AML risk (occupation)": "aml_risk_assessment",
    "under 18": "age_verification",
    "state outside the allowed list": "geographic_eligibility",
    "credit score below 650": "credit_score_check",
    "monthly income below 3,000": "income_verification",
    "debt-to-income above 0.43": "debt_to_income_calculation",
}


# -- lead enrichment -------------------------------------------------------------------------

LEAD_SOURCES = ["web_form", "partner_api", "trade_show", "referral", "webinar", "cold_list"]
CAMPAIGNS = ["spring_refi", "home_equity_q4", "auto_loan_promo", "cc_balance_transfer"]
INTERESTS = ["mortgage", "auto_loan", "credit_card", "insurance", "solar", "home_security"]


def lead(
    g: Gen, number: int, phone: Any = "", last: str | None = None, line: str | None = None
) -> Record:
    """A lead from a web form or a partner. ``phone=""`` draws a number with an area code of
    the lead's city (ending in ``line`` if given), ``None`` leaves the phone out, anything else
    is used as it is."""
    city, state, zip_code, area = g.place(ALLOWED_CITIES)
    first, _middle, last_name = g.person(last)
    record: Record = {
        "lead_id": f"LEAD-{number:06d}",
        "first_name": g.messy(first),
        "last_name": last_name if last else g.messy(last_name),
        "email": g.email(first, last_name),
        "address": f"{g.rng.randint(10, 9899)} {g.pick(STREETS)}",
        "city": g.messy(city) if g.chance(0.2) else city,
        "state": state,
        "zip_code": zip_code,
        "source": g.pick(LEAD_SOURCES),
        "campaign": g.pick(CAMPAIGNS),
        "interest": g.pick(INTERESTS),
        "tcpa_consent": g.chance(0.9),
        "created_at": g.timestamp(),
    }
    if phone is not None:
        record["phone"] = phone if phone != "" else g.phone(area, line)
    return record


def lead_with_phone(g: Gen, number: int) -> Record:
    return lead(g, number)


def lead_without_phone(g: Gen, number: int) -> Record:
    """No usable phone: the key is absent, or null, empty or blank."""
    how = g.pick(["absent", "absent", "null", "empty", "blank"])
    record = lead(g, number, phone=None)
    if how != "absent":
        record["phone"] = {"null": None, "empty": "", "blank": "   "}[how]
    return record


def unresolvable(g: Gen, number: int) -> Record:
    last = str(g.pick(UNRESOLVABLE))
    return lead(g, number, phone="" if g.chance(0.7) else None, last=last)


def numbered(line: str) -> Maker:
    """A lead whose number (an area code of its city) ends in ``line``."""

    def make(g: Gen, number: int) -> Record:
        return lead(g, number, line=line)

    return make


def untraceable(g: Gen, number: int) -> Record:
    return lead(g, number, phone=None, last=str(g.pick(UNTRACEABLE)))


LEAD_MIX: list[tuple[str, int, Maker, str, str]] = [
    ("resolvable lead with a phone", 190, lead_with_phone, "approved", "demographics"),
    (
        "no phone: paid skip trace, then over budget",
        40,
        lead_without_phone,
        "review",
        "demographics",
    ),
    ("identity not resolvable", 20, unresolvable, "rejected", "identity"),
    ("disconnected number (ends 0000)", 20, numbered("0000"), "rejected", "phone_gatekeep"),
    ("number on the Do Not Call list (ends 9999)", 20, numbered("9999"), "completed", "dnc_scrub"),
    ("no phone and skip trace finds none", 10, untraceable, "rejected", "identity"),
]

LEAD_RULES = {
    "resolvable lead with a phone": "",
    "no phone: paid skip trace, then over budget": "budget_exceeded",
    "identity not resolvable": "resolve_identity",
    "disconnected number (ends 0000)": "carrier_lookup",
    "number on the Do Not Call list (ends 9999)": "dnc_check",
    "no phone and skip trace finds none": "skip_trace_phone",
}


# -- card screening --------------------------------------------------------------------------
#
# A timeline, not a shuffle: the velocity stage judges each card by its earlier transactions,
# so the file is six hours of transactions in the order they are published. Scenario cards
# (bursts, merchant sprays, big spenders) are used by nothing else; the pool's cards never
# make more than one transaction in 15 minutes, 400 at most each, so they trip no rule.

#: The timeline starts here (UTC); every transaction's timestamp is a whole second after it.
CARD_EPOCH = 1_793_865_600  # 2026-11-05T08:00:00Z
CARD_HOURS = 6
CURRENCIES = ["USD", "USD", "USD", "USD", "EUR", "GBP", "CAD"]
BAD_CURRENCIES = ["usd", "XXX", "BTC", "US$", "DOGE", "EURO", "dollars"]
CHANNELS = ["pos", "pos", "contactless", "ecommerce"]
MCCS = ["5411", "5812", "5541", "5999", "4121", "5732", "5311", "7011"]


def card_id(g: Gen) -> str:
    return "card_" + "".join(g.pick(list("0123456789abcdef")) for _ in range(16))


def merchant(g: Gen) -> str:
    return f"MER-{g.rng.randint(1, 99999):05d}"


def stamp(minute: float) -> str:
    """The timeline's ``minute`` as ISO text (whole seconds, UTC)."""
    moment = datetime.fromtimestamp(CARD_EPOCH + round(minute * 60), UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def transaction(g: Gen, card: str, minute: float, **overrides: Any) -> Record:
    """A valid transaction of ``card`` at ``minute``; its id is given once the file's order is
    known (``card_timeline``)."""
    record: Record = {
        "transaction_id": None,
        "card_id": card,
        "amount": round(g.rng.uniform(5, 400), 2),
        "currency": g.pick(CURRENCIES),
        "merchant_id": merchant(g),
        "mcc": g.pick(MCCS),
        "channel": g.pick(CHANNELS),
        "timestamp": stamp(minute),
    }
    record.update(overrides)
    return record


def missing_card_field(g: Gen, record: Record) -> None:
    name = str(g.pick(["card_id", "amount", "currency", "merchant_id", "timestamp"]))
    how = g.rng.random()
    if how < 0.6:
        del record[name]
    else:
        record[name] = None if how < 0.8 else ""


def not_positive(g: Gen, record: Record) -> None:
    record["amount"] = g.pick([0, 0.0, -round(g.rng.uniform(1, 500), 2)])


def unknown_currency(g: Gen, record: Record) -> None:
    record["currency"] = g.pick(BAD_CURRENCIES)


def bad_card_id(g: Gen, record: Record) -> None:
    good = str(record["card_id"])
    record["card_id"] = g.pick(
        [good.upper(), good[:-1], good + "0", good.replace("card_", "card-"), "4111111111111111"]
    )


#: (category, how many, maker or None when the timeline makes it, expected status, stage)
CARD_MIX: list[tuple[str, int, Any, str, str]] = [
    ("valid transaction", 235, None, "approved", "velocity"),
    ("a card's 4th transaction in 10 minutes", 6, None, "review", "velocity"),
    ("a card's 6th merchant in an hour", 5, None, "review", "velocity"),
    ("over 5,000 on one card in an hour", 6, None, "review", "velocity"),
    ("a transaction published again", 12, None, "rejected", "screening"),
    ("missing required field", 9, missing_card_field, "rejected", "screening"),
    ("amount zero or negative", 9, not_positive, "rejected", "screening"),
    ("currency not accepted", 9, unknown_currency, "rejected", "screening"),
    ("card_id not a card token", 9, bad_card_id, "rejected", "screening"),
]

CARD_RULES = {
    "valid transaction": "",
    "a card's 4th transaction in 10 minutes": "card_velocity",
    "a card's 6th merchant in an hour": "merchant_spread",
    "over 5,000 on one card in an hour": "hourly_spend_limit",
    "a transaction published again": "duplicate_transaction",
    "missing required field": "required_fields",
    "amount zero or negative": "amount_positive",
    "currency not accepted": "currency_accepted",
    "card_id not a card token": "card_id_format",
}

#: The pool: this many cards with five transactions each, and the rest with four.
POOL_CARDS = 40
POOL_OF_FIVE = 26


class Timeline:
    """Transactions with their category (an index in CARD_MIX) and the minute each is
    published (a republished one long after its timestamp)."""

    def __init__(self, g: Gen) -> None:
        self.g = g
        self.items: list[tuple[float, int, Record]] = []

    def add(self, minute: float, category: int, record: Record) -> Record:
        self.items.append((minute, category, record))
        return record

    def minute(self, span: float = 0) -> float:
        """A random minute of the timeline that leaves ``span`` minutes after it."""
        return self.g.rng.uniform(0, CARD_HOURS * 60 - span)

    def pool(self) -> list[tuple[float, Record]]:
        """The pool's transactions (category 0), at least 15 minutes apart per card."""
        made = []
        for i in range(POOL_CARDS):
            card = card_id(self.g)
            usual = [merchant(self.g) for _ in range(3)]
            steps = [self.g.rng.uniform(15, 85) for _ in range(4 if i < POOL_OF_FIVE else 3)]
            at = self.minute(sum(steps))
            for step in [0.0, *steps]:
                at += step
                shop = self.g.pick(usual) if self.g.chance(0.8) else merchant(self.g)
                made.append((at, self.add(at, 0, transaction(self.g, card, at, merchant_id=shop))))
        return made

    def bursts(self, count: int) -> None:
        """Three transactions within 3 minutes, and a fourth within 10 of the first."""
        for _ in range(count):
            card, at = card_id(self.g), self.minute(10)
            for offset in (0, 1.5, 3):
                self.add(at + offset, 0, transaction(self.g, card, at + offset))
            fourth = at + self.g.rng.uniform(4, 8)
            self.add(fourth, 1, transaction(self.g, card, fourth))

    def sprays(self, count: int) -> None:
        """Six merchants, eleven minutes apart: the sixth is one too many in an hour."""
        for _ in range(count):
            card, at = card_id(self.g), self.minute(56)
            for k in range(6):
                self.add(at + 11 * k, 2 if k == 5 else 0, transaction(self.g, card, at + 11 * k))

    def big_spenders(self, count: int) -> None:
        """Two purchases of 2,500 to 3,000 within the hour."""
        for _ in range(count):
            card, at = card_id(self.g), self.minute(50)
            for k, gap in enumerate((0, self.g.rng.uniform(15, 50))):
                amount = round(self.g.rng.uniform(2500, 3000), 2)
                record = transaction(self.g, card, at + gap, amount=amount)
                self.add(at + gap, 3 if k else 0, record)

    def republished(self, made: list[tuple[float, Record]], count: int) -> None:
        """Pool transactions published again, 3 minutes to 2 hours later, unchanged."""
        for at, record in self.g.rng.sample(made, count):
            self.add(at + self.g.rng.uniform(3, 120), 4, record)

    def refused(self) -> None:
        """Transactions the record checks refuse, each on a card of its own."""
        for category, (_, count, spoil, _, _) in enumerate(CARD_MIX):
            if spoil is None:
                continue
            for _ in range(count):
                at = self.minute()
                record = transaction(self.g, card_id(self.g), at)
                spoil(self.g, record)
                self.add(at, category, record)


def card_timeline(seed: int) -> list[tuple[int, Record]]:
    """Every card transaction with its category, in the order they are published, numbered
    in that order (a republished one keeps the number it was first published with)."""
    g = Gen(seed)
    line = Timeline(g)
    made = line.pool()
    line.bursts(6)
    line.sprays(5)
    line.big_spenders(6)
    line.republished(made, 12)
    line.refused()
    ordered = sorted(line.items, key=lambda item: item[0])  # stable: ties keep their order
    number = 0
    out = []
    for _, category, record in ordered:
        if record["transaction_id"] is None:
            number += 1
            record["transaction_id"] = f"TX-2026-{number:06d}"
        out.append((category, dict(record)))
    return out


# -- files -----------------------------------------------------------------------------------


def categories(mix: list[tuple[str, int, Maker, str, str]], seed: int) -> list[int]:
    """The index in ``mix`` of every record, in file order (a deterministic shuffle)."""
    order = [i for i, (_, count, _, _, _) in enumerate(mix) for _ in range(count)]
    random.Random(seed).shuffle(order)
    return order


def labelled(mix: list[tuple[str, int, Any, str, str]], seed: int) -> list[tuple[int, Record]]:
    """Every record of a mix with the index of its category, in file order: shuffled
    deterministically and numbered in that order, or for the card mix, a timeline."""
    if mix is CARD_MIX:
        return card_timeline(seed)
    g = Gen(seed)
    return [(i, mix[i][2](g, number)) for number, i in enumerate(categories(mix, seed), 1)]


def build(mix: list[tuple[str, int, Any, str, str]], seed: int) -> list[Record]:
    """Every record of a mix, in file order."""
    return [record for _, record in labelled(mix, seed)]


def write(path: Path, records: list[Record]) -> None:
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    path.write_bytes(lines.encode("utf-8"))


PIPELINES = [
    ("customer_onboarding", ONBOARDING_MIX, ONBOARDING_RULES, 2026),
    ("lead_enrichment", LEAD_MIX, LEAD_RULES, 2027),
    ("card_screening", CARD_MIX, CARD_RULES, 2028),
]


def check(name: str, mix: list[tuple[str, int, Any, str, str]], rules: dict[str, str]) -> bool:
    """Run ``stream-engine eval`` over a sample file; print, per category, the decisions seen;
    True when every record was decided as its category says."""
    seed = next(s for n, _, _, s in PIPELINES if n == name)
    cli = shutil.which("stream-engine") or str(Path(sys.executable).parent / "stream-engine")
    out = subprocess.run(
        [cli, "eval", str(CONFIGS / f"{name}.yaml"), "--input", str(HERE / f"{name}.jsonl")],
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    decisions = [json.loads(line) for line in out.splitlines()]
    seen: dict[int, Counter[tuple[str, str, str]]] = {i: Counter() for i in range(len(mix))}
    order = [i for i, _ in labelled(mix, seed)]
    for i, decision in zip(order, decisions, strict=True):
        failed = sorted(r for rs in decision["failed_rules"].values() for r in rs)
        why = ",".join(r for r in failed if r != "normalize_address")  # on_fail: continue
        if not why and decision["reasons"]:
            why = decision["reasons"][0].split(":")[0]
        seen[i][(decision["status"], decision["decided_by_stage"], why)] += 1
    ok = True
    print(f"\n{name}: {len(decisions)} decisions")
    for i, (category, count, _, status, stage) in enumerate(mix):
        wanted = (status, stage, rules[category])
        good = seen[i] == Counter({wanted: count})
        ok = ok and good
        print(f"  {'ok ' if good else 'BAD'} {category}: {count} expected {wanted}")
        if not good:
            for got, n in seen[i].most_common():
                print(f"        got {n} x {got}")
    totals = Counter((d["status"], d["decided_by_stage"]) for d in decisions)
    for (status, stage), n in sorted(totals.items()):
        print(f"  {status:>9} by {stage}: {n}")
    return ok


def main() -> None:
    for name, mix, _, seed in PIPELINES:
        write(HERE / f"{name}.jsonl", build(mix, seed))
    if "--check" in sys.argv[1:]:
        results = [check(name, mix, rules) for name, mix, rules, _ in PIPELINES]
        sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
