"""What the configuration refuses in a CEL expression when it loads, though CEL would fail only
at evaluation: a function it does not know, a variable its place does not give, a call with
a number of arguments no overload takes, a time zone that is none, a ``vars`` key not there."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from stream_engine.core.celfast import literal_arguments
from stream_engine.core.celshape import Call, bound_variables, call_arities
from stream_engine.core.celstdlib import FUNCTIONS
from stream_engine.core.celtime import ACCESSORS, TimeZoneError, zone

#: Every function an expression may call: CEL's standard definitions (macros, conversions,
#: strings, timestamps, optionals) and the extension functions wired in from ``cel.stdlib``.
#: Operators (``_==_``, ``@in``...) are not identifiers and are always allowed. A name outside
#: this list is refused when the configuration loads - CEL would only fail at evaluation.
KNOWN_FUNCTIONS = frozenset(
    {
        "all", "exists", "exists_one", "filter", "has", "map",
        "bool", "bytes", "double", "dyn", "int", "string", "type", "uint",
        "contains", "endsWith", "matches", "size", "startsWith",
        "duration", "timestamp", "getDate", "getDayOfMonth", "getDayOfWeek", "getDayOfYear",
        "getFullYear", "getHours", "getMilliseconds", "getMinutes", "getMonth", "getSeconds",
        "hasValue", "of", "ofNonZeroValue", "optMap", "optFlatMap", "or", "orValue", "value",
        "max", "min",
        *(name.rsplit(".", 1)[-1] for name in FUNCTIONS),
    }
)  # fmt: skip


#: Namespaces of functions (``math.abs``, ``optional.of``): not variables.
NAMESPACES = frozenset({"optional", *(name.split(".", 1)[0] for name in FUNCTIONS if "." in name)})
#: Type names an expression may mention (``type(x) == int``): not variables either.
_TYPE_NAMES = frozenset(
    {"bool", "bytes", "double", "dyn", "int", "list", "map", "null_type", "string", "type",
     "uint", "google"}
)  # fmt: skip
#: How each standard function may be called: (as a method?, number of arguments).
_STANDARD_ARITIES: dict[str, frozenset[tuple[bool, int]]] = {
    **{name: frozenset({(False, 1)}) for name in (
        "bool", "bytes", "double", "dyn", "int", "string", "type", "uint", "duration",
        "timestamp", "has", "optional.of", "optional.ofNonZeroValue",
    )},
    **{name: frozenset({(True, 0), (True, 1)}) for name in ACCESSORS},
    **{name: frozenset({(True, 2)}) for name in ("all", "exists", "exists_one", "filter")},
    "map": frozenset({(True, 2), (True, 3)}),
    "size": frozenset({(False, 1), (True, 0)}),
    "contains": frozenset({(True, 1)}),
    "startsWith": frozenset({(True, 1)}),
    "endsWith": frozenset({(True, 1)}),
    "matches": frozenset({(True, 1), (False, 2)}),
    "hasValue": frozenset({(True, 0)}),
    "value": frozenset({(True, 0)}),
    "orValue": frozenset({(True, 1)}),
    "or": frozenset({(True, 1)}),
    "optMap": frozenset({(True, 2)}),
    "optFlatMap": frozenset({(True, 2)}),
}  # fmt: skip


def _extension_arities(name: str, function: Callable[..., Any]) -> frozenset[tuple[bool, int]]:
    """How an extension function may be called, from its signature (a namespaced one only
    as a function; the others as a method on their first argument too); empty: any way."""
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return frozenset()
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return frozenset()
    required = sum(1 for p in parameters if p.default is p.empty)
    counts = range(required, len(parameters) + 1)
    ways = {(False, n) for n in counts}
    if "." not in name:
        ways |= {(True, n - 1) for n in counts if n >= 1}
    return frozenset(ways)


def _arities() -> dict[str, frozenset[tuple[bool, int]]]:
    table = dict(_STANDARD_ARITIES)
    for name, function in FUNCTIONS.items():
        ways = _extension_arities(name, function)
        if not ways:
            table.pop(name, None)  # variadic: any number
        else:
            table[name] = table.get(name, frozenset()) | ways
    return table


#: How each function with a fixed number of arguments may be called.
ARITIES = _arities()


def shape(call: Call | tuple[bool, int], name: str) -> str:
    method, count = (call.method, call.args) if isinstance(call, Call) else call
    args = ", ".join("abcd"[:count]) if count <= 4 else f"{count} arguments"
    return f"x.{name}({args})" if method else f"{name}({args})"


def variable_problems(source: str, variables: Iterable[str], given: frozenset[str]) -> list[str]:
    """A variable the source reads (``variables``) that its place does not give (``given``)."""
    allowed = given | NAMESPACES | _TYPE_NAMES | bound_variables(source)
    unknown = [name for name in variables if name not in allowed]
    listed = ", ".join(sorted(given))
    return [
        f"unknown variable '{name}' (here: {listed})" + _hint(name, dict.fromkeys(given, ""))
        for name in unknown
    ]


def call_problems(source: str) -> list[str]:
    """A function called with a number of arguments it has no overload for."""
    found: list[str] = []
    for call in call_arities(source, NAMESPACES):
        ways = ARITIES.get(call.name)
        if ways and (call.method, call.args) not in ways:
            shapes = " or ".join(shape(way, call.name) for way in sorted(ways))
            found.append(f"no overload {shape(call, call.name)}: call it as {shapes}")
    return found


def zone_problems(source: str) -> list[str]:
    """A time zone written as a literal (``t.getHours('Europe/Lodnon')``) that is none."""
    found: list[str] = []
    for name, text in literal_arguments(source, frozenset(ACCESSORS)):
        try:
            zone(text)
        except TimeZoneError as exc:
            found.append(f"{name}({text!r}): {exc}")
    return found


def _hint(name: str, known: Mapping[str, str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def key_problems(name: str, reads: frozenset[str] | None, known: frozenset[str]) -> list[str]:
    """``vars.elevatd`` when ``vars`` has only ``elevated``."""
    listed = ", ".join(sorted(known)) or "none"
    return [
        f"{name}.{key}: no such key in {name} (defined: {listed})"
        + _hint(key, dict.fromkeys(known, ""))
        for key in sorted((reads or frozenset()) - known)
    ]
