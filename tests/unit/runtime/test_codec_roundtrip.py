"""Decode and encode on generated input: any bytes decode to a record or a dead letter -
never an exception - and any record within the limits travels through an envelope and a
decision with exactly the data it entered with."""

from __future__ import annotations

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from runtime_helpers import message, onboarding

from stream_engine.core.decision import Decision
from stream_engine.core.outcome import Status
from stream_engine.core.state import RecordState
from stream_engine.runtime.stage.codec import Codec, Rejected

CODEC = Codec(onboarding().plan)
SETTINGS = settings(
    max_examples=150, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck)
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=30,
)
records = st.dictionaries(st.text(max_size=10), values, max_size=8)


@SETTINGS
@given(st.binary(max_size=300))
def test_any_bytes_decode_to_a_record_or_a_dead_letter_never_an_exception(raw):
    for first in (True, False):
        outcome = CODEC.decode(message(raw), "preprocessing", first)
        assert isinstance(outcome, RecordState | Rejected)


@SETTINGS
@given(records)
def test_any_record_within_the_limits_keeps_its_data_through_an_envelope_and_a_decision(record):
    raw = orjson.dumps(record)
    state = CODEC.decode(message(raw), "preprocessing", first=True)
    assert isinstance(state, RecordState), getattr(state, "letter", None)
    envelope = CODEC.envelope(state)
    later = CODEC.decode(message(envelope, topic="x.stage.data_quality"), "data_quality", False)
    assert isinstance(later, RecordState)
    assert later.data == record
    assert later.record_id == state.record_id
    decision = Decision(later, Status.APPROVED, "post_processing", [], {}, 0.0, "p", "v", "h")
    assert orjson.loads(CODEC.decision(decision))["data"] == record
