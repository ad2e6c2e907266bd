"""``input.schema``: a JSON Schema checked when the configuration loads - the schema itself, and
every ``$ref`` in it resolving - so a record can never meet a schema that fails at run time.
Its ``pattern`` and ``patternProperties`` run on RE2 (linear time, as CEL's ``matches``), never
on a backtracking engine that one crafted string could hold for seconds."""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import re2
from jsonschema import Draft202012Validator, ValidationError, validators
from jsonschema.exceptions import SchemaError
from jsonschema.protocols import Validator
from referencing.exceptions import Unresolvable

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False


class SchemaProblem(ValueError):
    """Why a configured schema cannot be used; the message is for the located config error."""


@lru_cache(maxsize=1024)
def _regex(pattern: str) -> Any:
    return re2.compile(pattern, _OPTIONS)


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not _regex(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(
    validator: Any, patterns: dict[str, Any], instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        regex = _regex(pattern)
        for key, value in instance.items():
            if regex.search(key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


_InputValidator: Any = validators.extend(  # type: ignore[no-untyped-call]
    Draft202012Validator,
    {"pattern": _pattern, "patternProperties": _pattern_properties},
)


def _refs_and_patterns(node: Any, path: str = "") -> Iterator[tuple[str, str, str]]:
    """(kind, value, where) for every ``$ref`` and regular expression in a schema."""
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}" if path else key
            if key == "$ref" and isinstance(value, str):
                yield "ref", value, where
            elif key == "pattern" and isinstance(value, str):
                yield "pattern", value, where
            elif key == "patternProperties" and isinstance(value, dict):
                for pattern in value:
                    yield "pattern", pattern, f"{where}[{pattern!r}]"
            yield from _refs_and_patterns(value, where)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _refs_and_patterns(value, f"{path}[{i}]")


def input_validator(schema: dict[str, Any]) -> Validator:
    """A validator for ``input.schema``, or ``SchemaProblem`` saying what is wrong with it: not
    a JSON Schema, a ``$ref`` that does not resolve (remote references are never fetched), a
    pattern RE2 cannot run."""
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise SchemaProblem(f"not a valid JSON Schema: {exc.message}") from None
    validator = _InputValidator(schema)
    resolver = validator._resolver  # the root resolver; refs under a nested $id are left out
    nested_ids = _has_nested_id(schema)
    for kind, value, where in _refs_and_patterns(schema):
        if kind == "pattern":
            try:
                _regex(value)
            except re2.error as exc:
                raise SchemaProblem(
                    f"{where}: RE2 cannot run the pattern {value!r} ({_text(exc)})"
                ) from None
        elif not nested_ids:
            try:
                resolver.lookup(value)
            except Unresolvable:
                raise SchemaProblem(
                    f"{where}: '$ref' {value!r} does not resolve (remote schemas are never "
                    "fetched: put the definition under $defs)"
                ) from None
    return validator  # type: ignore[no-any-return]


def _has_nested_id(node: Any, top: bool = True) -> bool:
    """Whether a subschema sets its own ``$id`` (its refs resolve against another base)."""
    if isinstance(node, dict):
        if not top and isinstance(node.get("$id"), str):
            return True
        return any(_has_nested_id(value, False) for value in node.values())
    if isinstance(node, list):
        return any(_has_nested_id(value, False) for value in node)
    return False


def _text(exc: BaseException) -> str:
    message = exc.args[0] if exc.args else exc
    return message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)
