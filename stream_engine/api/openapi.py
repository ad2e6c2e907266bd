"""The OpenAPI 3.1 document of the API, generated from the models in ``wire.py`` (the ones the
handlers answer with) and the pipeline's own ``input.schema`` when it has one - so the
document cannot drift from what the server validates and returns."""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from stream_engine.api.problems import KIND_STATUS, PROBLEM_TYPE
from stream_engine.api.wire import COMPONENTS
from stream_engine.config.compiled import CompiledPipeline

REF = "#/components/schemas/{model}"
JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM_TYPE: {"schema": _ref("Problem")}}}


def _refusals(*codes: int) -> dict[str, Any]:
    """Problem responses for the given status codes, each described by its kinds' titles."""
    out: dict[str, Any] = {}
    for code in codes:
        titles = sorted({title for status, title in KIND_STATUS.values() if status == code})
        out[str(code)] = _problem("; ".join(titles))
    return out


def document(pipeline: CompiledPipeline, version: str = "1") -> dict[str, Any]:
    """The OpenAPI 3.1 document for this pipeline's API."""
    _, defs = models_json_schema([(model, "validation") for model in COMPONENTS], ref_template=REF)
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    record = dict(pipeline.config.input.schema_ or {"type": "object"})
    record.pop("$schema", None)
    record.setdefault("description", "One input record of the pipeline")
    schemas["Record"] = record
    security: list[dict[str, list[str]]] = [{"apiKey": []}, {"bearer": []}]
    body = {
        "required": True,
        "content": {
            JSON: {"schema": {"oneOf": [_ref("Record"), _ref("BatchRequest")]}},
        },
    }
    api = pipeline.config.api
    plan = pipeline.plan
    decision = {"oneOf": [_ref("DecisionModel"), _ref("DeadLetterAnswer")]}
    refused = _refusals(400, 401, 403, 413, 422, 429, 503)
    timeout = {
        "name": "timeout_ms",
        "in": "query",
        "required": False,
        "description": f"How long to wait for the decision (default {api.timeout_ms}, "
        f"at most {api.max_timeout_ms})",
        "schema": {"type": "integer", "minimum": 1, "maximum": api.max_timeout_ms},
    }
    record_id = {
        "name": "Record-Id",
        "in": "header",
        "required": False,
        "description": "The id of a single record, for a pipeline without input.key_field "
        "(else generated and returned)",
        "schema": {"type": "string", "minLength": 1, "maxLength": 256},
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"stream_engine: {pipeline.plan.name}",
            "version": f"{version} (config {plan.version}, {plan.config_hash[:12]})",
            "description": pipeline.config.description or "Decisions of a stream_engine pipeline",
        },
        "paths": {
            "/v1/decide": {
                "post": {
                    "operationId": "decide",
                    "summary": "Publish records and wait for their decisions",
                    "parameters": [timeout, record_id],
                    "requestBody": body,
                    "security": security,
                    "responses": {
                        "200": _json(
                            {"oneOf": [*decision["oneOf"], _ref("BatchDecisions")]},
                            "The decision (of a batch: every decision, in request order)",
                        ),
                        "202": _json(
                            {"oneOf": [_ref("Pending"), _ref("BatchDecisions")]},
                            "Published, not decided within timeout_ms: poll the links",
                        ),
                        **refused,
                    },
                }
            },
            "/v1/records": {
                "post": {
                    "operationId": "submit",
                    "summary": "Publish records without waiting for their decisions",
                    "parameters": [record_id],
                    "requestBody": body,
                    "security": security,
                    "responses": {
                        "202": _json(_ref("Accepted"), "Acknowledged by the broker"),
                        **refused,
                    },
                }
            },
            "/v1/decisions/{record_id}": {
                "get": {
                    "operationId": "decision",
                    "summary": "The latest decision of a record",
                    "parameters": [
                        {
                            "name": "record_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                    ],
                    "security": security,
                    "responses": {
                        "200": _json(decision, "The latest decision known"),
                        "404": _problem("No decision known for this record"),
                        **_refusals(401, 403, 429, 503),
                    },
                }
            },
            "/v1/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "security": [],
                    "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")},
                }
            },
            "/health": {
                "get": {
                    "operationId": "health",
                    "security": [],
                    "responses": {"200": _json(_ref("Health"), "The process is alive")},
                }
            },
            "/ready": {
                "get": {
                    "operationId": "ready",
                    "security": [],
                    "responses": {
                        "200": _json(_ref("Health"), "Serving"),
                        "503": _json(_ref("Health"), "Starting: the view is being rebuilt"),
                    },
                }
            },
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
        },
    }
