"""Compiled plans: each stage's rules sorted once, at load, into dependency levels."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stream_engine.core.expr import Expression
from stream_engine.core.outcome import OnError, OnFail, Route
from stream_engine.core.pii import PiiPolicy
from stream_engine.core.records import RecordLimits
from stream_engine.core.retry import RetryPolicy
from stream_engine.core.rule import Rule
from stream_engine.core.stores import StoreSpec


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """One configured rule: the rule object and every option that governs its evaluation."""

    rule_id: str
    stage: str
    rule: Rule[Any]
    dependencies: tuple[str, ...] = ()
    cross_stage_dependencies: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    provides: tuple[str, ...] = ()
    when: Expression | None = None
    on_fail: OnFail = OnFail.REJECT
    on_error: OnError = OnError.DEAD_LETTER
    cost: float = 0.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout_s: float | None = None
    description: str = ""
    is_async: bool = False

    @staticmethod
    def detect_async(rule: Rule[Any]) -> bool:
        """Whether ``rule.evaluate`` may have to be awaited: a coroutine function, or a
        rule that says so (``may_await``); decided once, at load."""
        return inspect.iscoroutinefunction(rule.evaluate) or rule.may_await


@dataclass(frozen=True, slots=True)
class StagePlan:
    """A stage ready to run: options from the config and its rules in dependency levels."""

    name: str
    index: int
    rules: tuple[RuleSpec, ...]
    levels: tuple[tuple[RuleSpec, ...], ...]
    enabled: bool = True
    fail_fast: bool = True
    parallel: bool = False
    max_parallel_rules: int = 8
    timeout_s: float | None = None
    condition: Expression | None = None
    description: str = ""
    #: The stores of its stateful rules, all keyed by the same fields.
    stores: tuple[StoreSpec, ...] = ()

    @property
    def key_fields(self) -> tuple[str, ...] | None:
        """The fields its records are partitioned by (its stores' key); None: the record id."""
        return self.stores[0].key_fields if self.stores else None

    @property
    def has_async(self) -> bool:
        """Whether any rule must be awaited (decides whether the stage timeout can cancel)."""
        return any(spec.is_async for spec in self.rules)


@dataclass(frozen=True, slots=True)
class PipelinePlan:
    """The whole pipeline: enabled and disabled stages in order, plus pipeline-wide policy."""

    name: str
    version: str
    config_hash: str
    stages: tuple[StagePlan, ...]
    stop_on_stage_failure: bool = True
    budget: float | None = None
    budget_route: Route = Route.REJECT
    key_field: str | None = None
    tenant_field: str | None = None
    pii_fields: tuple[str, ...] = ()
    pii: PiiPolicy = field(default_factory=PiiPolicy)
    environment: str | None = None
    #: Bounds on each input record, checked once as it enters.
    limits: RecordLimits = field(default_factory=RecordLimits)
    #: The longest a record may hold the worker in synchronous rule code (one stage).
    sync_limit_s: float = 0.5

    @property
    def active_stages(self) -> tuple[StagePlan, ...]:
        """The enabled stages, in pipeline order."""
        return tuple(stage for stage in self.stages if stage.enabled)

    def stage(self, name: str) -> StagePlan:
        """Look a stage up by name (KeyError when there is none)."""
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)

    def next_stage(self, name: str) -> StagePlan | None:
        """The enabled stage after ``name``, or None when ``name`` is the last one."""
        active = self.active_stages
        for position, stage in enumerate(active):
            if stage.name == name:
                return active[position + 1] if position + 1 < len(active) else None
        raise KeyError(name)


def ordering_edges(rules: Sequence[RuleSpec]) -> dict[str, list[str]]:
    """For each rule, the rules of the same stage that must run before it: its explicit
    ``dependencies`` and the rules that ``provide`` a field it ``requires``."""
    providers: dict[str, list[str]] = {}
    for spec in rules:
        for name in spec.provides:
            providers.setdefault(name, []).append(spec.rule_id)
    ids = {spec.rule_id for spec in rules}
    edges: dict[str, list[str]] = {}
    for spec in rules:
        before = [dep for dep in spec.dependencies if dep in ids]
        for name in spec.requires:
            before.extend(p for p in providers.get(name, ()) if p != spec.rule_id)
        edges[spec.rule_id] = list(dict.fromkeys(before))
    return edges


def find_cycle(edges: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A dependency cycle as a path ``[a, b, ..., a]``, or None when the graph is acyclic."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in edges.get(node, ()):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep not in state and dep in edges and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in edges:
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def dependency_levels(rules: Sequence[RuleSpec]) -> tuple[tuple[RuleSpec, ...], ...]:
    """Group rules into levels: every rule comes after all the rules it depends on, and rules
    of one level are independent. Declaration order is kept inside a level."""
    edges = ordering_edges(rules)
    level_of: dict[str, int] = {}
    remaining = list(rules)
    while remaining:
        placed = [spec for spec in remaining if all(dep in level_of for dep in edges[spec.rule_id])]
        if not placed:
            cycle = find_cycle(edges) or [spec.rule_id for spec in remaining]
            raise ValueError("dependency cycle: " + " -> ".join(cycle))
        for spec in placed:
            level_of[spec.rule_id] = 1 + max((level_of[d] for d in edges[spec.rule_id]), default=-1)
        remaining = [spec for spec in remaining if spec.rule_id not in level_of]
    depth = max(level_of.values(), default=-1) + 1
    return tuple(
        tuple(spec for spec in rules if level_of[spec.rule_id] == level) for level in range(depth)
    )
