"""The OpenAPI 3.1 document of the API, generated from the models in ``wire.py`` (the ones the
handlers answer with) and the pipeline's own ``input.schema`` when it has one - so the
document cannot drift from what the server validates and returns. Every refusal is documented
as ``application/problem+json`` with the problem types that operation can answer with."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from pydantic.json_schema import models_json_schema

from stream_engine.api.problems import KIND_STATUS, PROBLEM_TYPE, TYPE_BASE, ProblemKind
from stream_engine.api.wire import COMPONENTS
from stream_engine.config.compiled import CompiledPipeline

COMPONENT_PATH = "#/components/schemas/"
REF = COMPONENT_PATH + "{model}"
JSON = "application/json"
RECORD = "Record"

K = ProblemKind
#: What any caller of a guarded endpoint can be refused for (key, scope, rate, readiness).
ADMISSION = (K.UNAUTHORIZED, K.FORBIDDEN, K.RATE_LIMITED, K.NOT_READY)
#: What a request body can be refused for (the first stage's own checks included).
BODY = (
    K.INVALID_JSON, K.NOT_AN_OBJECT, K.INVALID_RECORD_ID, K.TOO_LARGE, K.TOO_MANY_RECORDS,
    K.LIMIT_EXCEEDED, K.SCHEMA_INVALID, K.MISSING_KEY_FIELD,
)  # fmt: skip
DECIDE = (*ADMISSION, *BODY, K.BROKER_UNAVAILABLE, K.INVALID_PARAMETER, K.OVERLOADED)
SUBMIT = (*ADMISSION, *BODY, K.BROKER_UNAVAILABLE)
READ = (*ADMISSION, K.NOT_FOUND)
#: Headers a problem of this status always carries.
PROBLEM_HEADERS: dict[int, dict[str, str]] = {
    401: {"WWW-Authenticate": "How to authenticate (Bearer, realm stream-engine)"},
    429: {"Retry-After": "Seconds until the key may call again"},
    503: {"Retry-After": "Seconds to wait before retrying"},
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def _headers(described: dict[str, str], required: bool = True) -> dict[str, Any]:
    return {
        name: {"description": text, "required": required, "schema": {"type": "string"}}
        for name, text in described.items()
    }


def _json(
    schema: dict[str, Any], description: str, headers: dict[str, Any] | None = None
) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": {JSON: {"schema": schema}}}
    if headers:
        response["headers"] = headers
    return response


def problem_type(kind: ProblemKind) -> str:
    """The ``type`` URI of a kind of problem."""
    return TYPE_BASE + kind.value


def _refusals(kinds: Iterable[ProblemKind]) -> dict[str, Any]:
    """The problem responses of an operation: per status, its kinds' titles and ``type``s."""
    by_status: dict[int, list[ProblemKind]] = {}
    for kind in kinds:
        by_status.setdefault(KIND_STATUS[kind][0], []).append(kind)
    out: dict[str, Any] = {}
    for status in sorted(by_status):
        chosen = sorted(by_status[status])
        schema = {
            "allOf": [_ref("Problem")],
            "properties": {
                "status": {"const": status},
                "type": {"enum": [problem_type(kind) for kind in chosen]},
            },
        }
        response: dict[str, Any] = {
            "description": "; ".join(KIND_STATUS[kind][1] for kind in chosen),
            "content": {PROBLEM_TYPE: {"schema": schema}},
        }
        if status in PROBLEM_HEADERS:
            response["headers"] = _headers(PROBLEM_HEADERS[status])
        out[str(status)] = response
    return out


def record_schema(schema: dict[str, Any] | None) -> dict[str, Any]:
    """``input.schema`` as the ``Record`` component: its ``$schema`` and ``$id`` dropped (the
    document's dialect is 2020-12, which is what the workers validate with) and its local
    ``$ref``s (``#/$defs/...``, ``#``) rebased onto the component, so they resolve inside the
    document (as do refs that name the schema's own ``$id``). A subschema with its own ``$id``
    is kept as it is: its refs have their own base."""
    if schema is None:
        return {"type": "object", "description": "One input record of the pipeline"}
    own_id = schema.get("$id")
    record = {key: value for key, value in schema.items() if key not in ("$schema", "$id")}
    rebased: dict[str, Any] = _rebase(
        record, COMPONENT_PATH + RECORD, own_id if isinstance(own_id, str) else None
    )
    rebased.setdefault("description", "One input record of the pipeline")
    return rebased


def _rebase(node: Any, base: str, own_id: str | None) -> Any:
    if isinstance(node, list):
        return [_rebase(item, base, own_id) for item in node]
    if not isinstance(node, dict) or isinstance(node.get("$id"), str):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "$ref" and isinstance(value, str):
            out[key] = _rebased_ref(value, base, own_id)
        else:
            out[key] = _rebase(value, base, own_id)
    return out


def _rebased_ref(ref: str, base: str, own_id: str | None) -> str:
    """A ref into the schema itself, pointing into the component instead."""
    if own_id is not None and (ref == own_id or ref.startswith(own_id + "#")):
        ref = ref[len(own_id) :] or "#"
    if ref == "#" or ref.startswith("#/"):
        return base + ref[1:]
    return ref


def _refs(node: Any) -> Iterator[str]:
    """Every component a node refers to (by name)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(COMPONENT_PATH):
                yield value[len(COMPONENT_PATH) :].split("/", 1)[0]
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _reachable(schemas: dict[str, Any], paths: dict[str, Any]) -> dict[str, Any]:
    """Only the components the paths use, directly or through another component (pydantic
    also lists the enums it inlined)."""
    seen: set[str] = set()
    todo = list(_refs(paths))
    while todo:
        name = todo.pop()
        if name not in seen and name in schemas:
            seen.add(name)
            todo.extend(_refs(schemas[name]))
    return {name: schema for name, schema in schemas.items() if name in seen}


def _parameters(pipeline: CompiledPipeline) -> dict[str, dict[str, Any]]:
    api = pipeline.config.api
    return {
        "timeout_ms": {
            "name": "timeout_ms",
            "in": "query",
            "required": False,
            "description": f"How long to wait for the decision (default {api.timeout_ms}, "
            f"at most {api.max_timeout_ms})",
            "schema": {"type": "integer", "minimum": 1, "maximum": api.max_timeout_ms},
        },
        "Record-Id": {
            "name": "Record-Id",
            "in": "header",
            "required": False,
            "description": "The id of a single record, for a pipeline without input.key_field "
            "(else generated and returned)",
            "schema": {"type": "string", "pattern": "^[!-~]{1,256}$"},
        },
        "record_id": {
            "name": "record_id",
            "in": "path",
            "required": True,
            "description": "The record's id (URL-encoded)",
            "schema": {"type": "string", "minLength": 1},
        },
    }


def _paths(pipeline: CompiledPipeline, anonymous: bool) -> dict[str, Any]:
    """Every route the app serves (``ApiApp.application``), with its answers."""
    guarded: list[dict[str, list[str]]] = [{"apiKey": []}, {"bearer": []}]
    if anonymous:
        guarded.insert(0, {})
    params = _parameters(pipeline)
    records = {"anyOf": [_ref(RECORD), _ref("BatchRequest")]}
    body = {
        "required": True,
        "description": 'One record, or {"records": [...]} (published together, or none)',
        "content": {JSON: {"schema": records}},
    }
    decision = {"oneOf": [_ref("DecisionModel"), _ref("DeadLetterAnswer")]}
    location = _headers({"Location": "Where to poll the decision (a single record)"}, False)
    return {
        "/v1/decide": {
            "post": {
                "operationId": "decide",
                "summary": "Publish records and wait for their decisions",
                "parameters": [params["timeout_ms"], params["Record-Id"]],
                "requestBody": body,
                "security": guarded,
                "responses": {
                    "200": _json(
                        {"oneOf": [*decision["oneOf"], _ref("BatchDecisions")]},
                        "The decision (of a batch: every decision, in request order)",
                    ),
                    "202": _json(
                        {"oneOf": [_ref("Pending"), _ref("BatchDecisions")]},
                        "Published, not decided within timeout_ms: poll the links",
                        location,
                    ),
                    **_refusals(DECIDE),
                },
            }
        },
        "/v1/records": {
            "post": {
                "operationId": "submit",
                "summary": "Publish records without waiting for their decisions",
                "parameters": [params["Record-Id"]],
                "requestBody": body,
                "security": guarded,
                "responses": {
                    "202": _json(_ref("Accepted"), "Acknowledged by the broker (acks=all)"),
                    **_refusals(SUBMIT),
                },
            }
        },
        "/v1/decisions/{record_id}": {
            "get": {
                "operationId": "decision",
                "summary": "The latest decision of a record",
                "parameters": [params["record_id"]],
                "security": guarded,
                "responses": {
                    "200": _json(decision, "The latest decision known"),
                    **_refusals(READ),
                },
            }
        },
        "/v1/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "security": [],
                "responses": {
                    "200": _json(
                        {"type": "object", "required": ["openapi", "info", "paths"]},
                        "OpenAPI 3.1",
                    )
                },
            }
        },
        "/health": {
            "get": {
                "operationId": "health",
                "summary": "Whether the process answers",
                "security": [],
                "responses": {"200": _json(_ref("Health"), "The process is alive")},
            }
        },
        "/ready": {
            "get": {
                "operationId": "ready",
                "summary": "Whether the API serves (connected, view rebuilt)",
                "security": [],
                "responses": {
                    "200": _json(_ref("Health"), "Serving"),
                    "503": _json(_ref("Health"), "Starting: the view is being rebuilt"),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "The API's metrics, Prometheus text format",
                "security": [],
                "responses": {
                    "200": {
                        "description": "Prometheus exposition format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
    }


def document(
    pipeline: CompiledPipeline, version: str = "1", anonymous: bool = False
) -> dict[str, Any]:
    """The OpenAPI 3.1 document for this pipeline's API (``anonymous``: callers may come
    without a key, as under ``dev`` or ``api.anonymous``)."""
    _, defs = models_json_schema([(model, "validation") for model in COMPONENTS], ref_template=REF)
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    schemas[RECORD] = record_schema(pipeline.config.input.schema_)
    plan = pipeline.plan
    paths = _paths(pipeline, anonymous or pipeline.config.api.anonymous)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"stream_engine: {plan.name}",
            "version": f"{version} (config {plan.version}, {plan.config_hash[:12]})",
            "description": pipeline.config.description or "Decisions of a stream_engine pipeline",
        },
        "paths": paths,
        "components": {
            "schemas": _reachable(schemas, paths),
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
        },
    }
