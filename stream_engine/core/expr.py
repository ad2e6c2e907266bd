"""CEL expressions: compiled once at load, evaluated against a record without running Python.

Converting a whole record into CEL values costs more than evaluating a small expression, so an
expression that only reads ``data.<field>`` (or ``results.<rule>``) is handed just those fields.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import cel
from cel.stdlib import STDLIB_FUNCTIONS

from stream_engine.core.result import RuleResult
from stream_engine.errors import ExpressionError

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def _selected_fields(source: str, variable: str) -> frozenset[str] | None:
    """The fields of ``variable`` the source reads as ``variable.field``; None when it uses the
    variable any other way (``data[k]``, ``'x' in data``...), which needs the whole value."""
    fields: set[str] = set()
    for match in re.finditer(rf"(?<![\w.]){variable}\b", source):
        rest = re.match(rf"\s*\.\s*({_IDENT})", source[match.end() :])
        if rest is None:
            return None
        fields.add(rest.group(1))
    return frozenset(fields)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Expression:
    """A compiled CEL expression over ``data`` (the record), ``results`` (each rule's
    ``outcome``, ``message`` and ``details`` so far) and any extra variables a rule adds.
    cel-go's extension functions (``lowerAscii``, ``split``, ``math.abs``...) are available;
    they are wired in only for expressions that use them, as they cost time."""

    __slots__ = ("_data_fields", "_functions", "_program", "_result_fields", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        try:
            self._program = cel.compile(source)
        except (ValueError, RuntimeError, TypeError) as exc:
            raise ExpressionError(
                f"invalid CEL expression {source!r}: {_cel_message(exc)}"
            ) from exc
        used = set(self._program.functions())
        self._functions = {
            name: func for name, func in STDLIB_FUNCTIONS.items() if name.rsplit(".", 1)[-1] in used
        }
        self._data_fields = _selected_fields(source, "data")
        self._result_fields = _selected_fields(source, "results")

    def variables(self) -> list[str]:
        """Identifiers the expression references (comprehension variables included)."""
        return list(self._program.variables())

    def evaluate(
        self,
        data: Mapping[str, Any] | None = None,
        results: Mapping[str, RuleResult] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Any:
        """Evaluate and return the CEL value as a Python value."""
        context: dict[str, Any] = dict(extra) if extra else {}
        if data is not None:
            context["data"] = self._pick(data)
        if results is not None:
            context["results"] = self._results(results)
        try:
            if self._functions:
                return self._program.execute(cel.Context(context, self._functions))
            return self._program.execute(context)
        except KeyError as exc:
            raise ExpressionError(
                f"{self.source!r}: no such key {exc.args[0]!r} (guard it with has())"
            ) from exc
        except (ValueError, RuntimeError, TypeError, OverflowError) as exc:
            raise ExpressionError(f"{self.source!r}: {_first_line(exc)}") from exc

    def is_true(
        self,
        data: Mapping[str, Any] | None = None,
        results: Mapping[str, RuleResult] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> bool:
        """Evaluate a condition, which must produce a bool."""
        value = self.evaluate(data, results, extra)
        if not isinstance(value, bool):
            raise ExpressionError(
                f"{self.source!r}: a condition must be true or false, got {type(value).__name__}"
            )
        return value

    def _pick(self, data: Mapping[str, Any]) -> Mapping[str, Any]:
        fields = self._data_fields
        if fields is None:
            return data
        return {name: data[name] for name in fields if name in data}

    def _results(self, results: Mapping[str, RuleResult]) -> dict[str, Any]:
        names = self._result_fields if self._result_fields is not None else results.keys()
        return {
            name: {
                "outcome": result.outcome.value,
                "message": result.message,
                "details": result.details or {},
            }
            for name in names
            if (result := results.get(name)) is not None
        }


def _cel_message(exc: BaseException) -> str:
    """The useful part of a CEL compile error: the line that names position and problem."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if "ERROR:" in line:
            return line.split("ERROR:", 1)[1].strip()
    return lines[0] if lines else type(exc).__name__
