"""Hostile input: random bytes, deeply nested JSON, huge values, wrong types for every rule's
fields, odd Unicode and a generated corpus. No agent dies, every bad record gets an outcome
(undecodable ones dead-lettered with their reason), and the good records around them are
decided as usual."""

from __future__ import annotations

import random

import orjson
from harness import by_id, offline_decisions, read_outcomes, samples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_engine.runtime.topics import pipeline_topics

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
FIELDS = [
    "application_id", "name", "email", "phone", "address", "city", "state", "zip_code",
    "date_of_birth", "ssn", "annual_income", "occupation", "declared_monthly_debt",
]  # fmt: skip


def corpus(count: int) -> list[dict]:
    """Records made by hypothesis: the onboarding fields with arbitrary JSON values."""
    found: list[dict] = []

    @settings(max_examples=count, database=None, suppress_health_check=list(HealthCheck))
    @given(st.fixed_dictionaries({}, optional=dict.fromkeys(FIELDS[1:], JSON)))
    def collect(record: dict) -> None:
        found.append(record)

    collect()
    return [r | {"application_id": f"GEN-{i}"} for i, r in enumerate(found)]


def wrong_types(base: dict) -> list[dict]:
    """One record per field with a value of the wrong type, and one with all of them wrong."""
    odd = [12345, ["a", "b"], {"nested": True}, True, -1.5e308, None]
    records = [
        base | {"application_id": f"WRONG-{field}", field: odd[i % len(odd)]}
        for i, field in enumerate(FIELDS[1:])
    ]
    records.append(
        {f: odd[i % len(odd)] for i, f in enumerate(FIELDS[1:])} | {"application_id": "WRONG-ALL"}
    )
    return records  # fmt: skip


UNICODE = [
    "\u202eevil\u202c Smith",  # right-to-left override
    "Zoë\u200b Ångström",  # zero-width space, combining marks
    "李小龍",
    "🦄 Unicorn 🚀",
    "nul\x00byte",
    "a" * 10_000,
]


def raw_messages() -> list[tuple[str, bytes, str]]:
    """(key, value, expected dead-letter reason) for input that is not a record at all."""
    rng = random.Random(7)
    huge = orjson.dumps({"application_id": "HUGE-VALUE", "notes": "x" * 5_000_000})
    return [
        ("RANDOM-BYTES", bytes(rng.getrandbits(8) for _ in range(512)), "decode_error"),
        ("DEEP-JSON", b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "decode_error"),
        ("HUGE-VALUE", huge, "too_large"),
        ("LATIN1", '{"application_id": "LATIN1", "name": "Zoë"}'.encode("latin-1"), "decode_error"),
        ("EMPTY", b"", "decode_error"),
        ("ARRAY", b"[1, 2, 3]", "decode_error"),
        ("BIGINT", b'{"application_id": "BIGINT", "annual_income": 1' + b"0" * 400 + b"}", ""),
    ]


async def test_hostile_records_never_stop_an_agent_and_the_good_ones_are_decided(
    make_pipeline, kafka, running, client_for
):
    pipeline = make_pipeline()
    good = samples()
    decided = await offline_decisions(make_pipeline(), good)
    approved = next(r for r in good if decided[r["application_id"]]["status"] == "approved")
    odd_names = [approved | {"application_id": f"UNI-{i}", "name": name}
                 for i, name in enumerate(UNICODE)]  # fmt: skip
    hostile = [*wrong_types(approved), *odd_names, *corpus(150)]
    raw = raw_messages()
    await running(pipeline, kafka)
    client = await client_for(pipeline)

    # Good records with hostile ones in between, so a stuck agent would hold good ones back.
    queue, raw_queue = list(hostile), list(raw)
    for index, record in enumerate(good):
        await client.publish(record)
        if index % 2 == 0 and queue:
            await client.publish(queue.pop())
        if index % 40 == 0 and raw_queue:
            key, value, _ = raw_queue.pop()
            await client.publish(value, key=key)
    assert not raw_queue, "every raw message sits between good records"
    await client.publish_many(queue)
    expected = len(good) + len(hostile) + len(raw)
    found = await read_outcomes(kafka, pipeline_topics(pipeline), expected, 180, strict=False)
    outcomes = by_id(found)
    ids = [r["application_id"] for r in (*good, *hostile)] + [key for key, _, _ in raw]
    assert [i for i in ids if i not in outcomes] == [], "records without an outcome"

    for record in good:
        got = outcomes[record["application_id"]]
        want = decided[record["application_id"]]
        assert (got.status, got.stage) == (want["status"], want["decided_by_stage"])
    for key, _, reason in raw:
        assert key in outcomes, f"{key} got no outcome"
        if reason:
            assert outcomes[key].headers["dlq.reason"] == reason, key
    missing = [r["application_id"] for r in hostile if r["application_id"] not in outcomes]
    assert missing == []
    assert len(hostile) > 150
