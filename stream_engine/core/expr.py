"""CEL expressions: compiled once at load, evaluated against a record without running Python.

Converting a whole record into CEL values costs more than evaluating a small expression, so an
expression that only reads ``data.<field>`` (or ``request.<field>``...) is handed just those.

Every failure while compiling or evaluating is an ``ExpressionError``, and an evaluation's
work is bounded (see ``celfast``: source length and nesting, a cost budget per evaluation;
``celstdlib``: the extension functions' sizes).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import cel

from stream_engine.core.celcheck import (
    KNOWN_FUNCTIONS,
    call_problems,
    key_problems,
    variable_problems,
    zone_problems,
)
from stream_engine.core.celfast import (
    MAX_COST,
    RESERVED,
    CelError,
    Node,
    Unsupported,
    compile_fast,
)
from stream_engine.core.celshape import (
    Refused,
    bound_variables,
    calls,
    check_shape,
    comprehensions,
    rename_calls,
    selections,
    token_count,
)
from stream_engine.core.celstdlib import FUNCTIONS, MAX_LIST_ITEMS
from stream_engine.core.celtime import TIME_FUNCTIONS, UTC_TIMESTAMP
from stream_engine.core.result import RuleResult
from stream_engine.errors import ExpressionError

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_IDENT_ONLY = re.compile(_IDENT)
#: Literals CEL reads as values, not names.
_LITERALS = frozenset({"true", "false", "null", "in"})


def is_cel_name(name: str) -> bool:
    """Whether CEL can read ``name`` after a dot (``state.<rule>.<name>``): an identifier that
    is neither a reserved word nor a literal."""
    return bool(_IDENT_ONLY.fullmatch(name)) and name not in RESERVED | _LITERALS


#: Extension functions that make lists of up to ``MAX_LIST_ITEMS`` from a number or a string.
_PRODUCERS = frozenset({"range", "split"})
#: The variable that holds the decision time (``RuleContext.now``), where a place gives it.
NOW = "now"
#: The variable that holds the rules' results so far (``RuleContext.results``).
RESULTS = "results"
#: The variable that holds the running values of stateful rules: rule id → the
#: ``details["state"]`` of its result (an ``Aggregate``'s aggregates), built from ``results``.
STATE = "state"
_RENAMED = {"timestamp": UTC_TIMESTAMP}


@dataclass(frozen=True)
class Scope:
    """What a place gives its CEL expressions: the variables, and the keys of those whose
    keys are known when the configuration loads (a rule's ``vars``)."""

    variables: frozenset[str]
    keys: Mapping[str, frozenset[str]] = field(default_factory=dict)


#: What a stage condition and a rule's ``when`` see.
RECORD_SCOPE = Scope(frozenset({"data", RESULTS, STATE, NOW}))


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
    ``outcome``, ``message`` and ``details`` so far), ``state`` (the running values stateful
    rules put in their details, ``STATE``) and any extra variables a rule adds.
    cel-go's extension functions (``lowerAscii``, ``split``, ``math.abs``...) are available;
    they are wired in only for expressions that use them, as they cost time.

    Most expressions run on the fast path (``celfast``: closures over the Python values, no
    conversion). The rest go to the ``cel`` package; handing it a value costs about a
    microsecond per field, so each variable is passed narrowed to the fields the source reads.
    Comprehensions (``all``, ``exists``, ``exists_one``, ``map``, ``filter``) run only on the
    fast path, where they are linear and budgeted (the package's ``map`` and ``filter`` are
    quadratic): an expression that needs the package for anything else may not use them."""

    __slots__ = (
        "_allowance", "_fast", "_fields", "_functions", "_loops", "_program", "_reads_results",
        "source", "uses_now",
    )  # fmt: skip

    def __init__(self, source: str) -> None:
        self.source = source
        try:
            check_shape(source)
        except Refused as exc:
            raise ExpressionError(f"invalid CEL expression {_shown(source)}: {exc}") from None
        try:
            self._program = cel.compile(source)
        except (ValueError, RuntimeError, TypeError) as exc:
            raise ExpressionError(
                f"invalid CEL expression {source!r}: {_cel_message(exc)}"
            ) from exc
        used = set(self._program.functions())
        if "timestamp" in used:  # in UTC, as CEL has it (``celtime``); the source as written
            self._program = cel.compile(rename_calls(source, _RENAMED))
        unknown = sorted(
            name for name in used if name.isidentifier() and name not in KNOWN_FUNCTIONS
        )
        if unknown:
            raise ExpressionError(
                f"invalid CEL expression {source!r}: unknown function"
                + ("s " if len(unknown) > 1 else " ")
                + ", ".join(f"'{name}'" for name in unknown)
            )
        self._functions = {
            name: func for name, func in FUNCTIONS.items() if name.rsplit(".", 1)[-1] in used
        }
        self._functions.update(
            (name, func)
            for name, func in TIME_FUNCTIONS.items()
            if name in used or (name == UTC_TIMESTAMP and "timestamp" in used)
        )
        self._fields: dict[str, frozenset[str] | None] = {
            name: _selected_fields(source, name) for name in self._program.variables()
        }
        #: Whether the source reads ``now``: only then is the decision time handed to it.
        self.uses_now = NOW in self._fields
        #: Whether it reads ``results`` or ``state`` (both made from the results): only then
        #: are they looked at, so an expression that reads neither pays nothing for them.
        self._reads_results = RESULTS in self._fields or STATE in self._fields
        self._loops = comprehensions(source)
        produced = sum(MAX_LIST_ITEMS for name, _ in calls(source) if name in _PRODUCERS)
        self._allowance = MAX_COST // token_count(source) - produced
        self._fast: Node | None
        try:
            self._fast = compile_fast(source)
        except Unsupported as exc:
            self._fast = None
            loops = self._loops
            if loops:
                raise ExpressionError(
                    f"invalid CEL expression {source!r}: {', '.join(loops)} can be used only "
                    f"in expressions of the fast subset, and this one is not ({exc})"
                ) from None
        except RecursionError:
            raise ExpressionError(
                f"invalid CEL expression {_shown(source)}: nested too deeply"
            ) from None

    def problems(self, scope: Scope) -> list[str]:
        """What makes the expression fail on every record in ``scope``: a variable it does
        not give, a key of ``vars`` that is not there, a function called with a number of
        arguments it has no overload for. (``results.<rule>``: see ``keys_read``.)"""
        found = [
            *variable_problems(self.source, self._fields, scope.variables),
            *call_problems(self.source),
            *zone_problems(self.source),
        ]
        for name, known in scope.keys.items():
            found += key_problems(name, self._fields.get(name), known)
        return found

    def keys_read(self, variable: str) -> frozenset[str]:
        """The keys the source reads of ``variable`` as ``variable.key`` (``results.kyc``),
        none when it reads it otherwise too (``results[name]``), which cannot be checked."""
        return self._fields.get(variable) or frozenset()

    def names_read(self, variable: str) -> list[tuple[str, str | None]]:
        """Each ``variable.key.name`` the source reads as ``(key, name)``, ``name`` None
        when it reads the key otherwise (``state.agg``, ``state.agg[n]``)."""
        if variable not in self._fields or variable in bound_variables(self.source):
            return []
        return selections(self.source, variable)

    def variables(self) -> list[str]:
        """Identifiers the expression references (comprehension variables included)."""
        return list(self._fields)

    def evaluate(
        self,
        data: Mapping[str, Any] | None = None,
        results: Mapping[str, RuleResult] | None = None,
        extra: Mapping[str, Any] | None = None,
        now: datetime | None = None,
    ) -> Any:
        """Evaluate and return the CEL value as a Python value; ``now`` (the decision time)
        is handed over only when the source reads it."""
        if now is not None and self.uses_now:
            extra = {**extra, NOW: now} if extra else {NOW: now}
        if self._fast is not None:
            env: dict[str, Any] = dict(extra) if extra else {}
            if data is not None:
                env["data"] = data
            if results is not None and self._reads_results:
                fields = self._fields  # literal names: no global lookups on this path
                if "results" in fields:
                    env["results"] = _results(results, fields["results"])
                if "state" in fields:
                    env["state"] = _state(results, fields["state"])
            try:
                return self._fast(env)
            except CelError as exc:
                raise ExpressionError(f"{self.source!r}: {exc}") from None
            except Unsupported as exc:
                self._unsupported_value(exc)  # else the cel package decides
            except (RecursionError, MemoryError) as exc:
                raise ExpressionError(f"{self.source!r}: {_resource(exc)}") from None
        return self._reference(data, results, extra)

    def _unsupported_value(self, exc: Unsupported) -> None:
        """A value the fast path does not know (a uint, a timestamp...): fine for the cel
        package, unless the expression has a comprehension, which the package cannot bound."""
        if self._loops:
            raise ExpressionError(
                f"{self.source!r}: a comprehension over a {exc} is not supported"
            ) from None

    def _reference(
        self,
        data: Mapping[str, Any] | None,
        results: Mapping[str, RuleResult] | None,
        extra: Mapping[str, Any] | None,
    ) -> Any:
        """Evaluate on the ``cel`` package, each variable narrowed to the fields it reads."""
        fields = self._fields
        context: dict[str, Any] = {}
        if extra:
            for name, value in extra.items():
                if name in fields:
                    context[name] = _narrow(value, fields[name])
        if data is not None and "data" in fields:
            context["data"] = _narrow(data, fields["data"])
        if results is not None and self._reads_results:
            _result_variables(context, results, fields)
        if _weight(context.values(), self._allowance) > self._allowance:
            raise ExpressionError(
                f"{self.source!r}: evaluation cost limit exceeded (more than {MAX_COST:,} "
                "steps, estimated as the size of the values it reads times its length)"
            )
        try:
            if self._functions:
                return self._program.execute(cel.Context(context, self._functions))
            return self._program.execute(context)
        except KeyError as exc:
            raise ExpressionError(
                f"{self.source!r}: no such key {exc.args[0]!r} (guard it with has())"
            ) from exc
        except (ValueError, RuntimeError, TypeError, OverflowError, IndexError) as exc:
            message = _first_line(exc).replace(UTC_TIMESTAMP, "timestamp")
            raise ExpressionError(f"{self.source!r}: {message}") from exc
        except (RecursionError, MemoryError) as exc:
            raise ExpressionError(f"{self.source!r}: {_resource(exc)}") from None

    def evaluate_env(self, env: dict[str, Any]) -> Any:
        """Evaluate with every variable already in ``env`` (``data`` is the record as is);
        the hot callers build ``env`` once and reuse it."""
        if self._fast is not None:
            try:
                return self._fast(env)
            except CelError as exc:
                raise ExpressionError(f"{self.source!r}: {exc}") from None
            except Unsupported as exc:
                self._unsupported_value(exc)
            except (RecursionError, MemoryError) as exc:
                raise ExpressionError(f"{self.source!r}: {_resource(exc)}") from None
        extra = {k: v for k, v in env.items() if k != "data"}
        return self._reference(env.get("data"), None, extra)

    def is_true(
        self,
        data: Mapping[str, Any] | None = None,
        results: Mapping[str, RuleResult] | None = None,
        extra: Mapping[str, Any] | None = None,
        now: datetime | None = None,
    ) -> bool:
        """Evaluate a condition, which must produce a bool."""
        value = self.evaluate(data, results, extra, now)
        if not isinstance(value, bool):
            raise ExpressionError(
                f"{self.source!r}: a condition must be true or false, got {type(value).__name__}"
            )
        return value


def _weight(values: Any, limit: int) -> int:
    """The size of ``values`` - one per list or map element, one per 64 characters of a
    string - counted until it passes ``limit``: what the cel package's work on them grows
    with, each of an expression's nodes possibly visiting all of it."""
    total = 0
    stack = [iter(values)]
    while stack and total <= limit:
        for value in stack[-1]:
            if isinstance(value, str):
                total += 1 + (len(value) >> 6)
            elif isinstance(value, dict):
                total += 1 + len(value)
                stack.append(iter(value.values()))
                break
            elif isinstance(value, list | tuple):
                total += 1 + len(value)
                stack.append(iter(value))
                break
            else:
                total += 1
        else:
            stack.pop()
    return total


def _shown(source: str) -> str:
    """The source for a message: its start only, when it is long."""
    return repr(source if len(source) <= 80 else source[:60] + "...")


def _resource(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "a value nested too deeply to evaluate"
    return "out of memory while evaluating"


def _narrow(value: Any, fields: frozenset[str] | None) -> Any:
    if fields is None or not isinstance(value, Mapping):
        return value
    return {name: value[name] for name in fields if name in value}


def _results(results: Mapping[str, RuleResult], names: frozenset[str] | None) -> dict[str, Any]:
    return {
        name: {
            "outcome": result.outcome.value,
            "message": result.message,
            "details": result.details or {},
        }
        for name in (results.keys() if names is None else names)
        if (result := results.get(name)) is not None
    }


def _state(results: Mapping[str, RuleResult], names: frozenset[str] | None) -> dict[str, Any]:
    """``state``: each result's ``details["state"]`` (a rule's running values), for the
    results whose details hold one; a rule without one (skipped, or not run) is not there,
    so ``state.agg`` fails as a missing ``results`` key does, and ``has(state.agg)`` is false.
    """
    out: dict[str, Any] = {}
    for name in results.keys() if names is None else names:
        result = results.get(name)
        if result is None:
            continue
        details = result.details  # a WireResult reads its wire form here
        if details and type(value := details.get(STATE)) is dict:
            out[name] = value
    return out


def _result_variables(
    env: dict[str, Any],
    results: Mapping[str, RuleResult],
    fields: Mapping[str, frozenset[str] | None],
) -> None:
    """Put into ``env`` the variables made from the results that the source reads
    (``results``, ``state``), each narrowed to the rules it names."""
    if RESULTS in fields:
        env[RESULTS] = _results(results, fields[RESULTS])
    if STATE in fields:
        env[STATE] = _state(results, fields[STATE])


def _cel_message(exc: BaseException) -> str:
    """The useful part of a CEL compile error: the line that names position and problem."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if "ERROR:" in line:
            message = line.split("ERROR:", 1)[1].strip()
            return message.split(" expecting {", 1)[0]
    return lines[0] if lines else type(exc).__name__
