"""Compiling the ``stages`` block: each stage's options and condition, each rule built from
its registered class and bound to its services, dependencies checked and ordered in levels."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from stream_engine.config.cel_checks import (
    Earlier,
    StateReads,
    check_expression,
    check_expressions,
    compile_expression,
)
from stream_engine.config.compile_services import bind_services, known_services, retry_policy
from stream_engine.config.models import NAME_RULE, PipelineConfig, RuleConfig, StageConfig, is_name
from stream_engine.config.problems import Problems
from stream_engine.config.source import PathKey, format_location
from stream_engine.core.expr import RECORD_SCOPE
from stream_engine.core.pii import PiiInputs
from stream_engine.core.plan import (
    RuleSpec,
    StagePlan,
    dependency_levels,
    find_cycle,
    ordering_edges,
)
from stream_engine.core.registry import Registry
from stream_engine.core.service import GuardedService
from stream_engine.core.stores import StoreSpec

#: rule id → (stage position, stage name, enabled).
RuleIndex = Mapping[str, tuple[int, str, bool]]


class StageCompiler:
    """Builds the plan of every stage, recording the problems of each stage and rule."""

    def __init__(
        self,
        problems: Problems,
        rules: Registry[Any],
        services: Mapping[str, GuardedService],
        declared_services: Any,
        pii_inputs: PiiInputs,
        top: PipelineConfig | None,
    ) -> None:
        self.problems = problems
        self.rules = rules
        self.services = services
        self.declared_services = declared_services
        self.pii_inputs = pii_inputs
        self.default_timeout = top.execution.default_timeout_s if top else None
        self.max_parallel = top.execution.max_parallel_rules if top else 8
        secret = top.pii.hash_key if top else None
        self.hash_key = None if secret is None else secret.get_secret_value().encode("utf-8")
        self.key_field = top.input.key_field if top else None
        self._first = True
        #: Each ``state.<rule>.<name>`` read, checked once every rule is built.
        self.state_reads = StateReads()

    def compile(self, raw: Any) -> list[StagePlan]:
        """The plan of each stage of ``raw`` (the ``stages`` block) whose options parse."""
        if raw is None:
            self.problems.error(("stages",), "required")
            return []
        if not isinstance(raw, dict) or not raw:
            self.problems.error(
                ("stages",), "must be a mapping of stage name to stage, with at least one"
            )
            return []
        index = self._rule_index(raw)
        plans: list[StagePlan] = []
        bodies = list(raw.values())
        for position, (stage_name, body) in enumerate(raw.items()):
            #: No enabled stage before this one: its records arrive as they were published.
            self._first = not any(
                isinstance(b, dict) and b.get("enabled", True) is not False
                for b in bodies[:position]
            )
            plan = self._stage(stage_name, position, body, index)
            if plan is not None:
                plans.append(plan)
        self.state_reads.check(self.problems)
        return plans

    def _stage(self, name: str, position: int, body: Any, index: RuleIndex) -> StagePlan | None:
        path: PathKey = ("stages", name)
        if not is_name(name):
            self.problems.error(
                path, f"not a valid stage name ({NAME_RULE}): it is part of topic and group names"
            )
        if not isinstance(body, dict):
            self.problems.error(path, "a stage must be a mapping")
            return None
        options = self.problems.parse(StageConfig, {**body, "rules": {}}, path)
        condition = compile_expression(self.problems, body.get("condition"), (*path, "condition"))
        if condition is not None:
            earlier = Earlier(index, position, None, ())
            where = (*path, "condition")
            check_expression(
                self.problems, condition, RECORD_SCOPE, where, earlier, self.state_reads
            )
        specs = self._rules(name, position, body.get("rules"), index)
        if options is None:
            return None
        if not specs and options.enabled:
            self.problems.warnings.append(f"stages.{name}: has no enabled rules")
        stores = self._stores(name, specs, first=self._first)
        return StagePlan(
            name=name,
            index=position,
            rules=tuple(specs),
            levels=self._levels(name, specs),
            enabled=options.enabled,
            fail_fast=options.fail_fast,
            parallel=options.parallel,
            max_parallel_rules=options.max_parallel_rules or self.max_parallel,
            timeout_s=options.timeout_s,
            condition=condition,
            description=options.description,
            stores=stores,
        )

    def _stores(self, stage: str, specs: list[RuleSpec], first: bool) -> tuple[StoreSpec, ...]:
        """The stores of the stage's stateful rules, each bound to its rule; every one must
        share one key, by which the stage's records are partitioned."""
        stores: list[StoreSpec] = []
        for spec in specs:
            fields = spec.rule.state_key()
            if fields is None:
                continue
            hashed = any(self.pii_inputs.holds(f) for f in fields)
            store = StoreSpec(spec.rule_id, stage, fields, self.hash_key, hashed)
            spec.rule.bind_store(spec.rule_id, store)
            stores.append(store)
        keys = {store.key_fields for store in stores}
        if len(keys) > 1:
            listed = "; ".join(f"{s.name} by {', '.join(s.key_fields)}" for s in stores)
            self.problems.error(
                ("stages", stage, "rules"),
                f"stateful rules keep state by different keys ({listed}): a stage's records "
                "are partitioned by one key, so put rules with another key in another stage",
            )
        elif stores and first and stores[0].key_fields != (self.key_field,):
            self.problems.error(
                ("stages", stage, "rules", stores[0].name, "params", "key"),
                f"the first stage receives records keyed by their id ({self._id_name()}), "
                f"not by {', '.join(stores[0].key_fields)}: put a stage before it (the next "
                "stage's records are produced keyed by its state key)",
            )
        return tuple(stores)

    def _id_name(self) -> str:
        return f"input.key_field {self.key_field}" if self.key_field else "no input.key_field"

    def _rule_index(self, stages: dict[str, Any]) -> dict[str, tuple[int, str, bool]]:
        """rule id → (stage position, stage name, enabled); duplicates are errors."""
        index: dict[str, tuple[int, str, bool]] = {}
        for position, (stage_name, body) in enumerate(stages.items()):
            rules = body.get("rules") if isinstance(body, dict) else None
            if not isinstance(rules, dict):
                if rules is not None:
                    self.problems.error(
                        ("stages", stage_name, "rules"), "must be a mapping of rule id to rule"
                    )
                continue
            stage_on = body.get("enabled", True) is not False
            for rule_id, rule in rules.items():
                if rule_id in index:
                    other = index[rule_id][1]
                    self.problems.error(
                        ("stages", stage_name, "rules", rule_id),
                        f"rule id already used in stage '{other}' (ids are unique per pipeline)",
                    )
                    continue
                rule_on = not (isinstance(rule, dict) and rule.get("enabled") is False)
                index[rule_id] = (position, stage_name, stage_on and rule_on)
        return index

    def _rules(self, stage: str, position: int, raw: Any, index: RuleIndex) -> list[RuleSpec]:
        """The specs of the stage's enabled rules that compile."""
        specs: list[RuleSpec] = []
        if not isinstance(raw, dict):
            return specs
        for rule_id, body in raw.items():
            if index.get(rule_id, (position, stage))[1] != stage:
                continue
            spec = self._rule(stage, position, rule_id, body, index)
            if spec is not None:
                specs.append(spec)
        return specs

    def _rule(
        self, stage: str, position: int, rule_id: str, body: Any, index: RuleIndex
    ) -> RuleSpec | None:
        problems = self.problems
        path: PathKey = ("stages", stage, "rules", rule_id)
        config = problems.parse(RuleConfig, body, path)
        if config is None:
            return None
        self._check_dependencies(rule_id, position, config, index, path)
        earlier = Earlier(index, position, rule_id, tuple(config.dependencies))
        when = compile_expression(problems, config.when, (*path, "when"))
        if when is not None:
            check_expression(
                problems, when, RECORD_SCOPE, (*path, "when"), earlier, self.state_reads
            )
        cls = problems.lookup(self.rules, config.class_, (*path, "class"))
        if cls is None:
            return None
        params: PathKey = (*path, "params")
        try:
            rule = cls.from_params(config.params)
        except ValidationError as exc:
            problems.validation_errors(cls.Params, exc, params)
            # reported with the other errors, not once they are fixed
            names = cls.service_names(config.params)
            known_services(problems, names, self.services, self.declared_services, params)
            return None
        self.state_reads.expose(rule_id, rule)
        check_expressions(problems, rule.expressions(), params, earlier, self.state_reads)
        if not bind_services(problems, rule, self.services, self.declared_services, params):
            return None
        if not config.enabled:
            return None
        where = format_location(params)
        problems.warnings.extend(f"{where}.{note}" for note in rule.learn_pii(self.pii_inputs))
        is_async = RuleSpec.detect_async(rule)
        return RuleSpec(
            rule_id=rule_id,
            stage=stage,
            rule=rule,
            dependencies=tuple(config.dependencies),
            cross_stage_dependencies=tuple(config.cross_stage_dependencies),
            requires=tuple(dict.fromkeys([*config.requires, *rule.requires()])),
            provides=tuple(dict.fromkeys([*config.provides, *rule.provides()])),
            when=when,
            on_fail=config.on_fail,
            on_error=config.on_error,
            cost=config.cost,
            retry=retry_policy(config.retry),
            timeout_s=config.timeout_s or (self.default_timeout if is_async else None),
            description=config.description,
            is_async=is_async,
        )

    def _check_dependencies(
        self, rule_id: str, position: int, config: RuleConfig, index: RuleIndex, path: PathKey
    ) -> None:
        """Each dependency names another rule that runs before this one, in the list that
        says where it runs (``dependencies``: this stage; ``cross_stage_dependencies``:
        an earlier one); warn of a disabled one, which skips this rule."""
        for key, same_stage in (("dependencies", True), ("cross_stage_dependencies", False)):
            for i, dep in enumerate(getattr(config, key)):
                where = (*path, key, i)
                if dep == rule_id:
                    self.problems.error(where, "a rule cannot depend on itself")
                    continue
                found = index.get(dep)
                if found is None:
                    close = difflib.get_close_matches(dep, list(index), n=1)
                    hint = f" (did you mean '{close[0]}'?)" if close else ""
                    self.problems.error(where, f"unknown rule '{dep}'{hint}")
                    continue
                self._check_dependency(rule_id, position, dep, found, same_stage, where, index)

    def _check_dependency(
        self,
        rule_id: str,
        position: int,
        dep: str,
        found: tuple[int, str, bool],
        same_stage: bool,
        where: PathKey,
        index: RuleIndex,
    ) -> None:
        dep_position, dep_stage, dep_enabled = found
        if dep_position > position:
            self.problems.error(
                where, f"rule '{dep}' is in later stage '{dep_stage}', which runs after this one"
            )
        elif same_stage and dep_position < position:
            self.problems.error(
                where,
                f"rule '{dep}' is in earlier stage '{dep_stage}': "
                "list it under cross_stage_dependencies",
            )
        elif not same_stage and dep_position == position:
            self.problems.error(where, f"rule '{dep}' is in this stage: list it under dependencies")
        elif not dep_enabled and index.get(rule_id, (0, "", False))[2]:
            self.problems.warnings.append(
                f"{format_location(where)}: '{dep}' (stage '{dep_stage}') is disabled, "
                f"so '{rule_id}' will always be skipped"
            )

    def _levels(self, stage: str, specs: list[RuleSpec]) -> tuple[tuple[RuleSpec, ...], ...]:
        cycle = find_cycle(ordering_edges(specs))
        if cycle is not None:
            self.problems.error(
                ("stages", stage, "rules", cycle[0], "dependencies"),
                "dependency cycle: " + " -> ".join(cycle),
            )
            return ()
        return dependency_levels(specs)
