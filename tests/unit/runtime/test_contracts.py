"""The JSON Schemas committed under topics/schemas/ are exactly what the pydantic contract
models generate: a model change without regenerating the schemas fails here."""

from __future__ import annotations

import json

from runtime_helpers import REGENERATE, SCHEMAS

from stream_engine.runtime.stage.contracts import SCHEMAS as MODELS
from stream_engine.runtime.stage.contracts import schema_text, write_schemas


def test_committed_schemas_are_byte_for_byte_what_the_models_generate(tmp_path):
    written = write_schemas(tmp_path / "schemas")
    assert sorted(p.name for p in written) == sorted(f"{name}.schema.json" for name in MODELS)
    for path in written:
        committed = SCHEMAS / path.name
        assert committed.exists(), f"topics/schemas/{path.name} is missing; run `{REGENERATE}`"
        assert committed.read_text() == path.read_text(), (
            f"topics/schemas/{path.name} has drifted from the pydantic models in "
            f"stream_engine/runtime/stage/contracts.py; regenerate it with `{REGENERATE}` "
            "and commit the result"
        )


def test_no_committed_schema_is_left_over_from_a_removed_model():
    committed = sorted(p.name for p in SCHEMAS.glob("*.schema.json"))
    assert committed == sorted(f"{name}.schema.json" for name in MODELS), (
        f"topics/schemas/ holds schemas no model generates; delete them and run `{REGENERATE}`"
    )


def test_every_schema_is_draft_2020_12_with_its_own_id_and_forbids_unknown_fields():
    for name in MODELS:
        schema = json.loads(schema_text(name))
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["$id"] == f"https://stream-engine.dev/schemas/{name}.schema.json"
        assert schema["additionalProperties"] is False
