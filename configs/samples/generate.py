"""Write the synthetic sample records of the example pipelines, with a known mix of good and
bad ones. Deterministic: the same files, byte for byte, on every run.

    python configs/samples/generate.py

The mix is listed in configs/samples/README.md (and checked by tests/unit/cli/test_examples.py).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent

FIRST = [
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Carlos",
    "Karen",
    "Wei",
    "Nancy",
    "Priya",
    "Lisa",
    "Omar",
    "Betty",
    "Ivan",
    "Sandra",
    "Kenji",
    "Ashley",
    "Ahmed",
    "Emily",
    "Luis",
    "Donna",
    "Chen",
    "Michelle",
    "Fatima",
    "Carol",
    "Andre",
    "Amanda",
]
MIDDLE = ["", "", "", "A.", "Lee", "Marie", "J.", "Ann", "Michael", "Rose", "K.", "Elena"]
LAST = [
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
    "Green",
    "Okafor",
    "Patel",
    "Kim",
    "Novak",
    "Rossi",
]
OCCUPATIONS = [
    "teacher",
    "nurse",
    "software engineer",
    "accountant",
    "electrician",
    "pharmacist",
    "sales manager",
    "chef",
    "architect",
    "paramedic",
    "graphic designer",
    "mechanic",
]
STREETS = [
    "Main St",
    "Oak Ave",
    "Maple Dr",
    "Cedar Ln",
    "Park Blvd",
    "Elm St",
    "Lake Rd",
    "Hill St",
    "River Rd",
    "Sunset Blvd",
]
DOMAINS = ["example.com", "example.org", "example.net", "mail.example.com"]

# (city, state, zip code, area codes) - zip prefixes match the state, area codes the city.
ALLOWED_CITIES = [
    ("Los Angeles", "CA", "90012", ["213", "310"]),
    ("San Francisco", "CA", "94103", ["415"]),
    ("San Diego", "CA", "92101", ["619"]),
    ("New York", "NY", "10001", ["212", "646"]),
    ("Buffalo", "NY", "14202", ["716"]),
    ("Houston", "TX", "77002", ["713"]),
    ("Dallas", "TX", "75201", ["214"]),
    ("Austin", "TX", "78701", ["512"]),
    ("Miami", "FL", "33130", ["305"]),
    ("Orlando", "FL", "32801", ["407"]),
    ("Chicago", "IL", "60601", ["312", "773"]),
    ("Philadelphia", "PA", "19103", ["215"]),
    ("Pittsburgh", "PA", "15222", ["412"]),
    ("Columbus", "OH", "43215", ["614"]),
    ("Cleveland", "OH", "44114", ["216"]),
    ("Atlanta", "GA", "30303", ["404"]),
    ("Charlotte", "NC", "28202", ["704"]),
    ("Raleigh", "NC", "27601", ["919"]),
    ("Detroit", "MI", "48226", ["313"]),
]
OTHER_CITIES = [
    ("Seattle", "WA", "98101", ["206"]),
    ("Portland", "OR", "97204", ["503"]),
    ("Las Vegas", "NV", "89101", ["702"]),
    ("Phoenix", "AZ", "85004", ["602"]),
    ("Denver", "CO", "80202", ["303"]),
]


class Maker:
    """Builds records from one seeded random stream."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def pick(self, items: list) -> object:  # type: ignore[type-arg]
        return self.rng.choice(items)

    def phone(self, area: str, line: str | None = None) -> str:
        line = line or f"01{self.rng.randint(0, 99):02d}"
        style = self.rng.randint(0, 4)
        if style == 0:
            return f"({area}) 555-{line}"
        if style == 1:
            return f"{area}-555-{line}"
        if style == 2:
            return f"+1 {area} 555 {line}"
        if style == 3:
            return f"{area}.555.{line}"
        return f"1{area}555{line}"

    def ssn(self, ending: str | None = None) -> str:
        area = self.rng.randint(100, 665)
        group = self.rng.randint(1, 99)
        serial = self.rng.randint(1, 99) * 100 + self.rng.randint(1, 99)
        text = f"{area:03d}-{group:02d}-{serial:04d}"
        return text[:-2] + ending if ending else text

    def birth_date(self, young: bool = False) -> str:
        year = self.rng.randint(2011, 2014) if young else self.rng.randint(1950, 2001)
        return f"{year}-{self.rng.randint(1, 12):02d}-{self.rng.randint(1, 28):02d}"

    def messy(self, text: str) -> str:
        """Stray whitespace, as forms deliver it."""
        roll = self.rng.random()
        if roll < 0.15:
            return f"  {text} "
        if roll < 0.25:
            return f"{text}\t"
        return text

    def email(self, first: str, last: str) -> str:
        local = self.pick(
            [f"{first}.{last}", f"{first[0]}{last}", f"{first}{self.rng.randint(1, 99)}"]
        )
        address = f"{local}@{self.pick(DOMAINS)}"
        return address.upper() if self.rng.random() < 0.15 else address.lower()


def application(m: Maker, number: int, **overrides: object) -> dict[str, object]:
    city, state, zip_code, areas = m.pick(ALLOWED_CITIES)  # type: ignore[misc]
    first, last = str(m.pick(FIRST)), str(m.pick(LAST))
    middle = str(m.pick(MIDDLE))
    name = " ".join(part for part in (first, middle, last) if part)
    record: dict[str, object] = {
        "application_id": f"APP-2026-{number:06d}",
        "tenant": m.pick(["retail", "retail", "smb"]),
        "name": m.messy(name),
        "email": m.messy(m.email(first, last)),
        "phone": m.phone(str(m.pick(areas))),
        "address": m.messy(f"{m.rng.randint(10, 9999)} {m.pick(STREETS)}"),
        "city": city,
        "state": state if m.rng.random() < 0.8 else state.lower(),
        "zip_code": zip_code,
        "date_of_birth": m.birth_date(),
        "ssn": m.ssn(),
        "annual_income": m.rng.randint(48, 240) * 1000,
        "occupation": m.pick(OCCUPATIONS),
    }
    while str(record["ssn"]).endswith("00"):
        record["ssn"] = m.ssn()
    record.update(overrides)
    return record


def _missing(m: Maker, number: int) -> dict[str, object]:
    record = application(m, number)
    for field in m.rng.sample(
        ["address", "zip_code", "date_of_birth", "ssn", "email", "phone"], m.rng.randint(1, 3)
    ):
        record.pop(field)
    return record


def _elsewhere(m: Maker, number: int) -> dict[str, object]:
    city, state, zip_code, areas = m.pick(OTHER_CITIES)  # type: ignore[misc]
    return application(
        m, number, city=city, state=state, zip_code=zip_code, phone=m.phone(str(m.pick(areas)))
    )


def _named(last_names: list[str]) -> Callable[[Maker, int], dict[str, object]]:
    def make(m: Maker, number: int) -> dict[str, object]:
        first = str(m.pick(FIRST))
        last = str(m.pick(last_names))
        return application(m, number, name=f"{first} {last}", email=m.email(first, last))

    return make


#: (category, how many, maker, expected status, deciding stage)
ONBOARDING_MIX: list[tuple[str, int, Callable[[Maker, int], dict[str, object]], str, str]] = [
    ("complete, valid application", 186, application, "approved", "post_processing"),
    ("missing required fields", 24, _missing, "rejected", "data_quality"),
    (
        "invalid e-mail address",
        9,
        lambda m, n: application(
            m,
            n,
            email=m.pick(
                [
                    "ana.lopez@",
                    "ana lopez@example.com",
                    "ana@@example.com",
                    "ana@example",
                    "ana.lopez@mailinator.com",
                ]
            ),
        ),
        "rejected",
        "data_quality",
    ),
    (
        "invalid phone number",
        9,
        lambda m, n: application(
            m, n, phone=m.pick(["(555) 123-4567", "(099) 555-0147", "555-0147", "(212) 555-014"])
        ),
        "rejected",
        "data_quality",
    ),
    (
        "zip code of another state",
        9,
        lambda m, n: application(
            m, n, city="New York", state="NY", zip_code="94103", phone=m.phone("212")
        ),
        "rejected",
        "data_quality",
    ),
    ("KYC identity not verified", 9, _named(["Mallory", "Impostor"]), "rejected", "compliance"),
    ("possible sanctions match", 6, _named(["Escobar", "Blacklisted"]), "review", "compliance"),
    ("politically exposed person", 6, _named(["Politico", "Senator"]), "review", "compliance"),
    (
        "high AML risk (occupation)",
        6,
        lambda m, n: application(m, n, occupation="money services"),
        "review",
        "compliance",
    ),
    (
        "under 18",
        12,
        lambda m, n: application(m, n, date_of_birth=m.birth_date(young=True)),
        "rejected",
        "business_rules",
    ),
    ("state outside the allowed list", 12, _elsewhere, "rejected", "business_rules"),
    (
        "credit score below 650",
        6,
        lambda m, n: application(m, n, ssn=m.ssn(ending="00")),
        "rejected",
        "business_rules",
    ),
    (
        "monthly income below 3,000",
        3,
        lambda m, n: application(m, n, annual_income=m.rng.randint(18, 30) * 1000),
        "rejected",
        "business_rules",
    ),
    (
        "debt-to-income above 0.43",
        3,
        lambda m, n: application(m, n, annual_income=60000, declared_monthly_debt=3200),
        "rejected",
        "business_rules",
    ),
]


def lead(m: Maker, number: int, phone: str | None = "", **overrides: object) -> dict[str, object]:
    city, state, _zip, areas = m.pick(ALLOWED_CITIES)  # type: ignore[misc]
    first, last = str(m.pick(FIRST)), str(m.pick(LAST))
    record: dict[str, object] = {
        "lead_id": f"LEAD-{number:06d}",
        "first_name": m.messy(first),
        "last_name": last,
        "city": city,
        "state": state,
        "email": m.email(first, last),
        "source": m.pick(["web_form", "partner_api", "event", "referral"]),
        "created_at": f"2026-11-{m.rng.randint(1, 23):02d}T{m.rng.randint(0, 23):02d}:"
        f"{m.rng.randint(0, 59):02d}:00Z",
    }
    if phone is not None:
        record["phone"] = phone or m.phone(str(m.pick(areas)))
    record.update(overrides)
    return record


LEAD_MIX: list[tuple[str, int, Callable[[Maker, int], dict[str, object]], str, str]] = [
    ("resolvable lead with a phone", 190, lead, "approved", "demographics"),
    (
        "no phone: paid skip trace, then over budget",
        40,
        lambda m, n: lead(m, n, phone=None),
        "review",
        "demographics",
    ),
    (
        "identity not resolvable",
        20,
        lambda m, n: lead(m, n, last_name=m.pick(["Unknown", "Nobody"])),
        "rejected",
        "identity",
    ),
    (
        "disconnected number",
        20,
        lambda m, n: lead(m, n, phone=m.phone(str(m.pick(["312", "415", "713"])), "0000")),
        "rejected",
        "phone_gatekeep",
    ),
    (
        "number on the Do Not Call list",
        20,
        lambda m, n: lead(m, n, phone=m.phone(str(m.pick(["312", "415", "713"])), "9999")),
        "completed",
        "dnc_scrub",
    ),
    (
        "no phone and skip trace finds none",
        10,
        lambda m, n: lead(m, n, phone=None, last_name=m.pick(["Ghost", "Phantom"])),
        "rejected",
        "identity",
    ),
]


def build(mix: list, seed: int) -> list[dict[str, object]]:  # type: ignore[type-arg]
    """Every record of a mix, shuffled deterministically, numbered in file order."""
    m = Maker(seed)
    makers = [maker for _, count, maker, _, _ in mix for _ in range(count)]
    m.rng.shuffle(makers)
    return [maker(m, number) for number, maker in enumerate(makers, 1)]


def write(path: Path, records: list[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def main() -> None:
    write(HERE / "customer_onboarding.jsonl", build(ONBOARDING_MIX, seed=2026))
    write(HERE / "lead_enrichment.jsonl", build(LEAD_MIX, seed=2027))


if __name__ == "__main__":
    main()
