"""The OpenAPI document (``GET /v1/openapi.json``) is valid OpenAPI 3.1 for every example
pipeline, names every route the app serves, documents every refusal as problem details, and
carries a pipeline's ``input.schema`` as a ``Record`` component whose refs resolve."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from stream_engine.api.openapi import document
from stream_engine.api.problems import KIND_STATUS, PROBLEM_TYPE, TYPE_BASE, ProblemKind
from stream_engine.api.server import ApiServer
from stream_engine.config.compiled import CompiledPipeline
from stream_engine.config.schema import input_validator
from stream_engine.pipeline import load_pipeline
from stream_engine.runtime.cluster.settings import KafkaSettings

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
EXAMPLES = ("customer_onboarding", "lead_enrichment", "card_screening")
BASE = "urn:stream-engine:openapi"
#: Refused by aiohttp's router for any path, not by one operation.
ROUTER_ONLY = {ProblemKind.METHOD_NOT_ALLOWED}

#: An input schema as people write them: its own dialect and id, definitions under $defs,
#: refs by pointer, by the schema's own id, and to the root (a recursive "referrer").
INPUT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://example.test/application.schema.json",
    "type": "object",
    "required": ["application_id"],
    "properties": {
        "application_id": {"$ref": "#/$defs/id"},
        "annual_income": {"$ref": "https://example.test/application.schema.json#/$defs/money"},
        "contacts": {"type": "array", "items": {"$ref": "#/$defs/contact"}},
        "referrer": {"$ref": "#"},
    },
    "$defs": {
        "id": {"type": "string", "pattern": "^APP-[0-9-]+$"},
        "money": {"type": "number", "minimum": 0},
        "contact": {
            "type": "object",
            "required": ["kind"],
            "properties": {"kind": {"enum": ["email", "phone"]}},
        },
    },
}


@pytest.fixture(scope="module", params=EXAMPLES)
def pipeline(request: pytest.FixtureRequest) -> CompiledPipeline:
    return load_pipeline(CONFIGS / f"{request.param}.yaml")


@pytest.fixture(scope="module")
def schema_doc(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The document of a pipeline with ``INPUT_SCHEMA`` as its ``input.schema``."""
    return document(with_input_schema(tmp_path_factory.mktemp("schema"), INPUT_SCHEMA))


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in doc["paths"].items()
        for method, operation in item.items()
    ]


def record_validator(doc: dict[str, Any]) -> Draft202012Validator:
    """A validator of the document's ``Record`` component, refs resolved in the document."""
    registry: Registry[Any] = Registry().with_resource(
        BASE, Resource.from_contents(doc, default_specification=DRAFT202012)
    )
    return Draft202012Validator({"$ref": f"{BASE}#/components/schemas/Record"}, registry=registry)


def with_input_schema(tmp_path: Path, schema: dict[str, Any]) -> CompiledPipeline:
    """The onboarding example with ``input.schema`` set (its samples and topics files copied)."""
    data = yaml.safe_load((CONFIGS / "customer_onboarding.yaml").read_text())
    data["input"]["schema"] = schema
    for name in (data["samples"], data["topics"]["file"]):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes((CONFIGS / name).read_bytes())
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_pipeline(path)


def test_the_document_of_every_example_pipeline_is_valid_openapi_3_1(pipeline):
    doc = document(pipeline)
    assert doc["openapi"] == "3.1.0"
    validate(doc)


def test_the_document_under_dev_lets_callers_come_without_a_key(pipeline):
    doc = document(pipeline, anonymous=True)
    validate(doc)
    assert {} in doc["paths"]["/v1/decide"]["post"]["security"]
    assert {} not in document(pipeline)["paths"]["/v1/decide"]["post"]["security"]


def test_every_component_schema_is_a_valid_json_schema_2020_12(pipeline):
    for schema in document(pipeline)["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)


def test_every_component_the_document_lists_is_used(pipeline):
    doc = document(pipeline)
    text = json.dumps(doc["paths"]) + json.dumps(doc["components"]["schemas"])
    unused = [
        name
        for name in doc["components"]["schemas"]
        if f'"#/components/schemas/{name}"' not in text
        and f'"#/components/schemas/{name}/' not in text
    ]
    assert not unused


def test_every_route_the_app_serves_is_documented_and_nothing_else(pipeline):
    server = ApiServer(pipeline, KafkaSettings(bootstrap_servers="127.0.0.1:9"), anonymous=True)
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in server.app().application().router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    documented = {(method, path) for path, method, _ in operations(document(pipeline))}
    assert served == documented


def test_every_refusal_is_documented_as_problem_details_only(pipeline):
    doc = document(pipeline)
    refusals = [
        (path, code, response)
        for path, _, operation in operations(doc)
        if operation["security"]
        for code, response in operation["responses"].items()
        if int(code) >= 400
    ]
    assert refusals
    for path, code, response in refusals:
        assert list(response["content"]) == [PROBLEM_TYPE], (path, code)
        schema = response["content"][PROBLEM_TYPE]["schema"]
        assert schema["allOf"] == [{"$ref": "#/components/schemas/Problem"}]
        assert schema["properties"]["status"] == {"const": int(code)}


def test_each_problem_type_is_documented_under_its_own_status(pipeline):
    documented: set[str] = set()
    for _, _, operation in operations(document(pipeline)):
        for code, response in operation["responses"].items():
            schema = response["content"].get(PROBLEM_TYPE, {}).get("schema")
            if schema is None:
                continue
            for uri in schema["properties"]["type"]["enum"]:
                kind = ProblemKind(uri.removeprefix(TYPE_BASE))
                assert KIND_STATUS[kind][0] == int(code), uri
                documented.add(uri)
    assert documented == {TYPE_BASE + kind.value for kind in set(ProblemKind) - ROUTER_ONLY}


def test_a_decide_that_times_out_documents_where_to_poll(pipeline):
    accepted = document(pipeline)["paths"]["/v1/decide"]["post"]["responses"]["202"]
    assert "Location" in accepted["headers"]
    schema = accepted["content"]["application/json"]["schema"]
    assert {"$ref": "#/components/schemas/Pending"} in schema["oneOf"]


def test_a_batch_body_matches_the_request_schema_of_a_pipeline_without_input_schema(pipeline):
    doc = document(pipeline)
    body = doc["paths"]["/v1/decide"]["post"]["requestBody"]["content"]["application/json"]
    registry: Registry[Any] = Registry().with_resource(
        BASE, Resource.from_contents(doc, default_specification=DRAFT202012)
    )
    pointer = "#/paths/~1v1~1decide/post/requestBody/content/application~1json/schema"
    validator = Draft202012Validator({"$ref": BASE + pointer}, registry=registry)
    assert "anyOf" in body["schema"]
    validator.validate({"records": [{"a": 1}, {"a": 2}]})
    validator.validate({"a": 1})


def test_an_input_schema_with_defs_and_refs_becomes_a_record_component_that_resolves(
    schema_doc,
):
    validate(schema_doc)
    record = schema_doc["components"]["schemas"]["Record"]
    assert "$schema" not in record
    assert "$id" not in record
    assert record["properties"]["application_id"] == {
        "$ref": "#/components/schemas/Record/$defs/id"
    }


@pytest.mark.parametrize(
    "record",
    [
        {"application_id": "APP-1", "annual_income": 10, "contacts": [{"kind": "email"}]},
        {"application_id": "APP-1", "referrer": {"application_id": "APP-2"}},
        {"application_id": "nope"},
        {"application_id": "APP-1", "annual_income": -1},
        {"application_id": "APP-1", "contacts": [{"kind": "fax"}]},
        {"application_id": "APP-1", "referrer": {"application_id": 7}},
        {"annual_income": 1},
    ],
)
def test_the_record_component_accepts_exactly_what_the_workers_accept(schema_doc, record):
    workers = input_validator(INPUT_SCHEMA).is_valid(record)
    assert record_validator(schema_doc).is_valid(record) is workers
