"""The CEL of a configuration: each ``${VAR}`` in it inserted as a literal, and each expression
compiled and checked against the scope it runs in, so what would fail on every record is an
error at load."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

from pydantic import BaseModel

from stream_engine.config.loader import EffectiveConfig, interpolate_cel
from stream_engine.config.models import CEL, PipelineConfig
from stream_engine.config.problems import Problems
from stream_engine.config.source import PathKey, value_at
from stream_engine.core.expr import RESULTS, STATE, Expression, Scope
from stream_engine.core.registry import Registry
from stream_engine.core.rule import Placed, Rule
from stream_engine.errors import ConfigError, ExpressionError, RegistryError


@dataclass(frozen=True)
class Earlier:
    """Which rules have results when an expression runs: those of earlier stages and, for a
    rule's expressions, its dependencies (``rule`` is None for a stage condition)."""

    index: Mapping[str, tuple[int, str, bool]]
    position: int
    rule: str | None
    dependencies: tuple[str, ...]

    def problem(self, name: str, what: str = "result") -> str | None:
        """Why ``results.<name>`` (or ``state.<name>``: ``what`` is "state") has no value
        here, or None when it has one."""
        found = self.index.get(name)
        if found is None:
            close = difflib.get_close_matches(name, list(self.index), n=1)
            return f"unknown rule '{name}'" + (f" (did you mean '{close[0]}'?)" if close else "")
        position, stage, _ = found
        if name == self.rule:
            return f"a rule cannot read its own {what}"
        if position > self.position:
            return f"rule '{name}' is in later stage '{stage}', which runs after this one"
        if position == self.position and self.rule is None:
            return f"rule '{name}' is in this stage, whose rules run after its condition"
        if position == self.position and name not in self.dependencies:
            return f"rule '{name}' is in this stage: list it under dependencies so it runs first"
        return None


class StateReads:
    """The ``state.<rule>.<name>`` the pipeline's expressions read, checked once every rule
    is built (only a built rule says what it puts in state, and an expression may read a
    rule of its stage declared after it): the rule must put values there, that one among them.
    """

    def __init__(self) -> None:
        #: (where, rule, name or None) of each read, in the order found.
        self.reads: dict[tuple[PathKey, str, str | None], None] = {}
        #: rule id → (its class name, the names it puts in state or None).
        self.exposed: dict[str, tuple[str, tuple[str, ...] | None]] = {}

    def expose(self, rule_id: str, rule: Rule[Any]) -> None:
        """Note what a built rule puts in state."""
        self.exposed[rule_id] = (type(rule).__name__, rule.state_names())

    def note(self, path: PathKey, rule_id: str, name: str | None) -> None:
        """Note that the expression at ``path`` reads ``state.<rule_id>[.<name>]``."""
        self.reads[path, rule_id, name] = None

    def check(self, problems: Problems) -> None:
        """Record an error for each read of a rule that puts nothing in state, or of a
        name it does not put there (a rule that did not build is reported already)."""
        for path, rule_id, name in self.reads:
            found = self.exposed.get(rule_id)
            if found is None:
                continue
            cls, names = found
            if not names:
                problems.error(
                    path,
                    f"state.{rule_id}: rule '{rule_id}' ({cls}) keeps no values in state "
                    "(stateful rules such as Aggregate put their running values there)",
                )
            elif name is not None and name not in names:
                close = difflib.get_close_matches(name, names, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                problems.error(
                    path,
                    f"state.{rule_id}.{name}: rule '{rule_id}' ({cls}) keeps no value "
                    f"'{name}' in state (it keeps: {', '.join(names)}){hint}",
                )


def compile_expression(problems: Problems, source: Any, path: PathKey) -> Expression | None:
    """The expression ``source`` compiles to; None when it is absent or does not compile (the
    error recorded at ``path``)."""
    if not isinstance(source, str):
        return None
    try:
        return Expression(source)
    except ExpressionError as exc:
        problems.error(path, str(exc))
        return None


def check_expressions(
    problems: Problems,
    placed: list[Placed],
    path: PathKey,
    earlier: Earlier | None = None,
    state: StateReads | None = None,
) -> None:
    """Check each of a rule's or service's CEL params in the scope it runs in."""
    for place, expression, scope in placed:
        check_expression(problems, expression, scope, (*path, *place), earlier, state)


def check_expression(
    problems: Problems,
    expression: Expression,
    scope: Scope,
    path: PathKey,
    earlier: Earlier | None,
    state: StateReads | None = None,
) -> None:
    """What would fail on every record: an unknown variable, a ``vars`` key, a function
    called with the wrong arguments, ``results.<rule>`` or ``state.<rule>`` for a rule that
    has not run (what ``state.<rule>.<name>`` names is noted in ``state``, checked later)."""
    for problem in expression.problems(scope):
        problems.error(path, problem)
    if earlier is None:
        return
    if RESULTS in scope.variables:
        for name in sorted(expression.keys_read(RESULTS)):
            why = earlier.problem(name)
            if why is not None:
                problems.error(path, f"results.{name}: {why}")
    if STATE in scope.variables:
        reads = expression.names_read(STATE)
        for rule_id in sorted({rule_id for rule_id, _ in reads}):
            why = earlier.problem(rule_id, STATE)
            if why is not None:
                problems.error(path, f"state.{rule_id}: {why}")
            elif state is not None:
                for read, key in reads:
                    if read == rule_id:
                        state.note(path, rule_id, key)


def cel_variables(
    effective: EffectiveConfig,
    rules: Registry[Any],
    services: Registry[Any],
    problems: Problems,
) -> EffectiveConfig:
    """The configuration with every ``${VAR}`` in a CEL expression inserted as a literal
    (``interpolate_cel``) rather than as the plain text the loader put there. CEL strings
    are the fields and params marked ``CEL``: stage conditions, rules' ``when``, and the
    params of each rule and service class that declare them."""
    values: dict[PathKey, str] = {}
    for path in _cel_paths_of(effective.data, rules, services):
        written = value_at(effective.written, path)
        if not isinstance(written, str) or "$" not in written:
            continue
        found: list[ConfigError] = []
        values[path] = interpolate_cel(written, effective.environ, path, found)
        for problem in found:
            problems.error(path, problem.message)
    return effective.with_values(values)


def _cel_paths_of(
    data: Mapping[str, Any], rules: Registry[Any], services: Registry[Any]
) -> Iterator[PathKey]:
    """The paths of every CEL string of a configuration: its own fields, and the params of
    its services and rules."""
    yield from _cel_paths(PipelineConfig, data, ())
    for kind, registry in (("services", services), ("stages", rules)):
        owners = data.get(kind)
        for name, body in owners.items() if isinstance(owners, dict) else ():
            if kind == "services":
                yield from _params_cel_paths(registry, body, (kind, name))
                continue
            entries = body.get("rules") if isinstance(body, dict) else None
            for rule_id, rule in entries.items() if isinstance(entries, dict) else ():
                yield from _params_cel_paths(registry, rule, (kind, name, "rules", rule_id))


def _params_cel_paths(registry: Registry[Any], body: Any, path: PathKey) -> Iterator[PathKey]:
    """The CEL params of a rule or service entry (nothing when its class is unknown: the
    compile pass reports that)."""
    if not isinstance(body, dict) or not isinstance(body.get("class"), str):
        return
    try:
        cls = registry.get(body["class"])
    except RegistryError:
        return
    model = getattr(cls, "Params", None)
    if isinstance(model, type) and issubclass(model, BaseModel):
        yield from _cel_paths(model, body.get("params"), (*path, "params"))


def _cel_paths(annotation: Any, raw: Any, path: PathKey) -> Iterator[PathKey]:
    """The paths under ``raw`` holding a string that ``annotation`` (a model, possibly nesting
    models, lists, dicts, unions) marks as CEL."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        if any(meta is CEL for meta in args[1:]):
            if isinstance(raw, str):
                yield path
            return
        yield from _cel_paths(args[0], raw, path)
    elif origin in (Union, types.UnionType):
        found: dict[PathKey, None] = {}
        for option in args:
            found.update(dict.fromkeys(_cel_paths(option, raw, path)))
        yield from found
    elif origin in (list, tuple, set, frozenset, Sequence) and isinstance(raw, list) and args:
        for i, item in enumerate(raw):
            yield from _cel_paths(args[0], item, (*path, i))
    elif origin in (dict, Mapping) and isinstance(raw, dict) and len(args) == 2:
        for key, item in raw.items():
            yield from _cel_paths(args[1], item, (*path, key))
    elif (
        isinstance(annotation, type) and issubclass(annotation, BaseModel) and isinstance(raw, dict)
    ):
        yield from _model_cel_paths(annotation, raw, path)


def _model_cel_paths(
    model: type[BaseModel], raw: dict[str, Any], path: PathKey
) -> Iterator[PathKey]:
    for name, info in model.model_fields.items():
        key = next((k for k in _field_keys(name, info) if k in raw), None)
        if key is None:
            continue
        if any(meta is CEL for meta in info.metadata):
            if isinstance(raw[key], str):
                yield (*path, key)
            continue
        yield from _cel_paths(info.annotation, raw[key], (*path, key))


def _field_keys(name: str, info: Any) -> list[str]:
    """The keys a field may be written under: its alias, its validation aliases, its name."""
    keys = [info.alias] if info.alias else []
    alias = info.validation_alias
    choices = getattr(alias, "choices", [alias])
    keys += [choice for choice in choices if isinstance(choice, str)]
    return [*keys, name]
