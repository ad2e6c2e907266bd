"""Validate an effective configuration and compile it into the core's plan, in one pass.

Every problem is collected with its location, so a user sees all of them at once. Each part
(top level, each service, each stage, each rule, each rule's params) is checked on its own, so
one broken rule does not hide the problems of the others.
"""

from __future__ import annotations

import difflib
import random
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, Union

from pydantic import BaseModel, ValidationError

from stream_engine.config.compiled import REFERENCED_FILES, CompiledPipeline
from stream_engine.config.loader import EffectiveConfig, interpolate_cel, written_literally
from stream_engine.config.models import (
    CEL,
    NAME_RULE,
    OUTPUT_KINDS,
    CircuitBreakerConfig,
    PipelineConfig,
    RetryConfig,
    RuleConfig,
    ServiceConfig,
    StageConfig,
    TopicNamesConfig,
    TopicUse,
    is_name,
    is_topic_name,
)
from stream_engine.config.schema import SchemaProblem, input_validator
from stream_engine.config.source import PathKey, format_location
from stream_engine.core.breaker import BreakerState, CircuitBreaker
from stream_engine.core.expr import RECORD_SCOPE, Expression, Scope
from stream_engine.core.outcome import Route
from stream_engine.core.pii import PiiInputs, PiiPolicy
from stream_engine.core.plan import (
    PipelinePlan,
    RuleSpec,
    StagePlan,
    dependency_levels,
    find_cycle,
    ordering_edges,
)
from stream_engine.core.records import RecordLimits
from stream_engine.core.registry import Registry
from stream_engine.core.retry import RetryPolicy
from stream_engine.core.rule import Placed
from stream_engine.core.service import GuardedService
from stream_engine.errors import ConfigError, ConfigErrors, ExpressionError, RegistryError

M = TypeVar("M", bound=BaseModel)

NO_RETRY = RetryPolicy()
#: Below this many bytes a ``pii.hash_key`` draws a warning: with one value and its hash (an
#: applicant's own SSN and a decision), a short key is found by trying keys (a 1-character key
#: fell in 0.13 s); 16 random bytes are out of reach.
MIN_HASH_KEY_BYTES = 16


def retry_policy(config: RetryConfig | None) -> RetryPolicy:
    """The core's retry policy from its config block (no block: a single attempt)."""
    if config is None:
        return NO_RETRY
    return RetryPolicy(
        attempts=config.attempts,
        backoff_s=config.backoff_s,
        multiplier=config.multiplier,
        max_backoff_s=config.max_backoff_s,
        jitter=config.jitter,
        retry_on=frozenset(config.retry_on),
    )


def _unwrap(annotation: Any) -> Any:
    """The model or container inside Optional[...] / Annotated[...]."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _unwrap(options[0]) if len(options) == 1 else annotation
    return annotation


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that owns the last key of ``loc`` (for 'did you mean' hints)."""
    current: Any = model
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            fields = current.model_fields
            name = next((n for n, f in fields.items() if part in (n, f.alias)), None)
            if name is None:
                return None
            current = _unwrap(fields[name].annotation)
        else:
            args = typing.get_args(current)
            if not args:
                return None
            current = _unwrap(args[-1])
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _field_names(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _spelling_of(model: type[BaseModel], key: str) -> str | None:
    """The key ``key`` is another accepted spelling of (seed 000's ``timeout_seconds`` of
    ``timeout_s``), or None: pydantic reads the first spelling given and calls the other
    unknown."""
    for name, info in model.model_fields.items():
        choices = getattr(info.validation_alias, "choices", None) or []
        if key in choices and key != (info.alias or name):
            return info.alias or name
    return None


class Compiler:
    """Collects every error of one configuration while building its plan."""

    def __init__(
        self,
        effective: EffectiveConfig,
        rules: Registry[Any],
        services: Registry[Any],
        breaker_listener: Callable[[str, BreakerState], None] | None = None,
        allow_outside: bool = False,
    ) -> None:
        self.effective = effective
        self.allow_outside = allow_outside
        self.data = effective.data
        self.rules = rules
        self.service_classes = services
        self.breaker_listener = breaker_listener
        self.errors: list[ConfigError] = []
        self.warnings: list[str] = []
        self._seen: set[tuple[str, str]] = set()
        #: What each rule learns of the pipeline's PII (``Rule.learn_pii``).
        self.pii_inputs = PiiInputs()

    # -- error collection -------------------------------------------------------------------

    def error(self, path: PathKey, message: str) -> None:
        location = format_location(path)
        if (location, message) in self._seen:
            return
        self._seen.add((location, message))
        self.errors.append(
            ConfigError(
                location,
                message,
                self.effective.lines.get(path) or _nearest_line(self.effective.lines, path),
            )
        )

    def parse(self, model: type[M], raw: Any, path: PathKey) -> M | None:
        """Validate ``raw`` against ``model``; record each pydantic error at its location."""
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            for item in exc.errors(include_url=False):
                loc = tuple(item["loc"])
                self.error((*path, *loc), self._message(model, loc, item))
            return None

    @staticmethod
    def _message(model: type[BaseModel], loc: tuple[Any, ...], item: Any) -> str:
        kind = item["type"]
        if kind == "missing":
            return "required"
        if kind == "extra_forbidden":
            owner = _model_at(model, loc[:-1])
            twice = _spelling_of(owner, str(loc[-1])) if owner else None
            if twice is not None:
                return (
                    f"another spelling of '{twice}', which is given too (an environment "
                    "overlay in the other spelling?): keep one"
                )
            known = _field_names(owner) if owner else []
            close = difflib.get_close_matches(str(loc[-1]), known, n=1)
            if close:
                return f"unknown key (did you mean '{close[0]}'?)"
            return "unknown key" + (f" (allowed: {', '.join(known)})" if known else "")
        message = str(item["msg"])
        return message.removeprefix("Value error, ")

    # -- the pass ---------------------------------------------------------------------------

    def compile(self) -> CompiledPipeline:
        self.effective = self._cel_variables()
        self.data = data = self.effective.data
        # stages and services are checked one by one below: a stand-in keeps them out of this
        top = self.parse(PipelineConfig, {**data, "stages": {"s": {}}, "services": {}}, ())
        execution = top.execution if top else None
        services = self._services(
            data.get("services"), execution.default_timeout_s if execution else None
        )
        if top is not None:
            self.pii_inputs = PiiInputs(frozenset(top.pii_fields), top.pii.reveal_derived)
        stages = self._stages(data.get("stages"), top, services)
        self._topic_names(data.get("stages"), stages)
        self._pii(top)
        self._input_schema(top)
        self._envelope_keys()
        self._kafka(top)
        files = self._files()
        if self.errors:
            raise ConfigErrors(self.errors)
        config = PipelineConfig.model_validate(data)
        assert top is not None
        plan = PipelinePlan(
            name=config.pipeline,
            version=config.version,
            config_hash=self.effective.config_hash,
            stages=tuple(stages),
            stop_on_stage_failure=config.execution.stop_on_stage_failure,
            budget=config.execution.budget,
            budget_route=Route(config.execution.budget_route),
            key_field=config.input.key_field,
            tenant_field=config.input.tenant_field,
            pii_fields=tuple(config.pii_fields),
            pii=PiiPolicy(
                mode=config.pii.mode,
                hash_key=(
                    config.pii.hash_key.get_secret_value().encode("utf-8")
                    if config.pii.hash_key is not None
                    else None
                ),
                mask_decisions=config.pii.mask_decisions,
                dates=config.pii.dates,
                date_fields=tuple(config.pii.date_fields),
                reveal_derived=config.pii.reveal_derived,
            ),
            environment=self.effective.environment,
            limits=RecordLimits(**config.input.limits.model_dump()),
            sync_limit_s=config.execution.sync_limit_s,
        )
        breakers = {n: g.breaker for n, g in services.items() if g.breaker is not None}
        return CompiledPipeline(
            plan, config, self.effective, services, breakers, self.warnings, files
        )

    def _cel_variables(self) -> EffectiveConfig:
        """The configuration with every ``${VAR}`` in a CEL expression inserted as a literal
        (``interpolate_cel``) rather than as the plain text the loader put there. CEL strings
        are the fields and params marked ``CEL``: stage conditions, rules' ``when``, and the
        params of each rule and service class that declare them."""
        values: dict[PathKey, str] = {}
        for path in self._cel_paths():
            written = _at(self.effective.written, path)
            if not isinstance(written, str) or "$" not in written:
                continue
            problems: list[ConfigError] = []
            values[path] = interpolate_cel(written, self.effective.environ, path, problems)
            for problem in problems:
                self.error(path, problem.message)
        return self.effective.with_values(values)

    def _cel_paths(self) -> Iterator[PathKey]:
        data = self.data
        yield from _cel_paths(PipelineConfig, data, ())
        for kind, registry in (("services", self.service_classes), ("stages", self.rules)):
            owners = data.get(kind)
            for name, body in owners.items() if isinstance(owners, dict) else ():
                if kind == "services":
                    yield from self._params_cel_paths(registry, body, (kind, name))
                    continue
                rules = body.get("rules") if isinstance(body, dict) else None
                for rule_id, rule in rules.items() if isinstance(rules, dict) else ():
                    path = (kind, name, "rules", rule_id)
                    yield from self._params_cel_paths(registry, rule, path)

    @staticmethod
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

    def _files(self) -> dict[str, Path]:
        """Each file the configuration names, resolved relative to its directory. One that
        resolves outside that directory (through ``..``, an absolute path or a symlink) is an
        error unless ``allow_outside``: a pipeline file reads only what its directory holds."""
        path = self.effective.path
        root = (path.parent if path is not None else Path.cwd()).resolve()
        files: dict[str, Path] = {}
        for location in REFERENCED_FILES:
            value = _at(self.data, location)
            if not isinstance(value, str) or not value:
                continue  # a wrong type is reported by the top-level parse
            try:
                target = (root / value).resolve()
            except (OSError, RuntimeError, ValueError):
                self.error(location, f"{value!r} is not a usable path")
                continue
            if not self.allow_outside and not target.is_relative_to(root):
                self.error(
                    location,
                    f"{value!r} is outside the configuration's directory {str(root)!r} "
                    "(pass --allow-outside to read it)",
                )
                continue
            files[format_location(location)] = target
        return files

    def _kafka(self, top: PipelineConfig | None) -> None:
        """Warn where the connection gives a secret away."""
        if top is None:
            return
        kafka = top.kafka
        if kafka.security_protocol == "SASL_PLAINTEXT" and kafka.sasl_mechanism in (None, "PLAIN"):
            self.warnings.append(
                "kafka.security_protocol: SASL_PLAINTEXT with the PLAIN mechanism sends the "
                "password in clear text; use SASL_SSL, or a SCRAM mechanism"
            )

    def _envelope_keys(self) -> None:
        """A key written into the file travels with every copy of it: warn, and say how."""
        written = self.effective.written.get("runtime")
        keys = written.get("envelope_keys") if isinstance(written, dict) else None
        for key_id, value in keys.items() if isinstance(keys, dict) else ():
            if written_literally(value):
                self.warnings.append(
                    f"runtime.envelope_keys.{key_id}: the key is written in the file; give it "
                    "as ${VAR} (or $STREAM_ENGINE_ENVELOPE_KEY) so it stays out of the file"
                )

    def _input_schema(self, top: PipelineConfig | None) -> None:
        """``input.schema`` is a JSON Schema whose every ``$ref`` resolves and whose patterns
        RE2 runs - checked now, so no record meets a schema that fails at run time."""
        if top is None or top.input.schema_ is None:
            return
        try:
            input_validator(top.input.schema_)
        except SchemaProblem as exc:
            self.error(("input", "schema"), str(exc))

    def _pii(self, top: PipelineConfig | None) -> None:
        """``pii_fields`` lists each field once, as a name or a dotted path; ``date_fields``
        are among them; warn where the protection is weaker than it looks (record ids taken
        from a PII field, a hash key that is missing, short or written in the file, a ``pii``
        section that protects nothing)."""
        seen = self._pii_fields(self.data.get("pii_fields"))
        if top is None:
            return
        pii = top.pii
        for i, name in enumerate(pii.date_fields):
            if name not in seen:
                self.error(("pii", "date_fields", i), f"'{name}' is not listed in pii_fields")
        configured = isinstance(self.data.get("pii"), dict) and bool(self.data["pii"])
        if configured and not top.pii_fields:
            self.warnings.append("pii: no pii_fields are listed, so nothing is protected")
        if not top.pii_fields:
            return
        self._hash_key(pii.mode, pii.hash_key.get_secret_value() if pii.hash_key else None)
        for key in ("key_field", "tenant_field"):
            field_name = getattr(top.input, key)
            if field_name in seen:
                self.warnings.append(
                    f"input.{key}: '{field_name}' is a PII field, and its value is carried "
                    "unprotected (Kafka keys, record ids, dead-letter headers, decisions)"
                )

    def _pii_fields(self, raw: Any) -> set[str]:
        """The names ``pii_fields`` lists; a name listed twice, or a path with an empty part
        (``applicant..ssn``), is an error at its place."""
        seen: set[str] = set()
        for i, name in enumerate(raw if isinstance(raw, list) else ()):
            if not isinstance(name, str) or not name:
                continue
            if name in seen:
                self.error(("pii_fields", i), f"'{name}' is listed twice")
            elif "" in name.split("."):
                self.error(
                    ("pii_fields", i),
                    f"'{name}' has an empty part: name a field, or a path like applicant.ssn",
                )
            seen.add(name)
        return seen

    def _hash_key(self, mode: str, key: str | None) -> None:
        """Warnings about ``pii.hash_key``: missing in hash mode, unused in mask mode, too
        short, or written in the file instead of read from the environment."""
        if mode == "hash" and key is None:
            self.warnings.append(
                "pii.mode: hash without pii.hash_key is plain SHA-256, which a dictionary of "
                "all SSNs or dates of birth reverses; set pii.hash_key: ${VAR}"
            )
        if key is None:
            return
        if mode == "mask":
            self.warnings.append("pii.hash_key: only used with pii.mode: hash")
            return
        size = len(key.encode("utf-8"))
        if size < MIN_HASH_KEY_BYTES:
            self.warnings.append(
                f"pii.hash_key: {size} byte(s) is short: anyone who knows one value and its "
                "hash can find a short key by trying keys, and then reverse every hash; use "
                f"at least {MIN_HASH_KEY_BYTES} random bytes (e.g. openssl rand -hex 32)"
            )
        written = self.effective.written.get("pii")
        if isinstance(written, dict) and written_literally(written.get("hash_key")):
            self.warnings.append(
                "pii.hash_key: written in the file (as text or a ${VAR:-default}): anyone who "
                "can read the file or its history can reverse the hashes; read it from the "
                "environment only, hash_key: ${PII_HASH_KEY}"
            )

    def _services(self, raw: Any, default_timeout: float | None) -> dict[str, GuardedService]:
        out: dict[str, GuardedService] = {}
        if not isinstance(raw, dict):
            if raw is not None:
                self.error(("services",), "must be a mapping of service name to service")
            return out
        for name, body in raw.items():
            path: PathKey = ("services", name)
            config = self.parse(ServiceConfig, body, path)
            if config is None:
                continue
            cls = self._lookup(self.service_classes, config.class_, (*path, "class"))
            if cls is None:
                continue
            try:
                instance = cls.from_params(name, config.params)
            except ValidationError as exc:
                self._params_errors(cls.Params, exc, (*path, "params"))
                continue
            for param, message in instance.warnings():
                self.warnings.append(f"{format_location((*path, 'params', param))}: {message}")
            self._check_expressions(instance.expressions(), (*path, "params"))
            out[name] = GuardedService(
                name,
                instance,
                timeout_s=config.timeout_s or default_timeout,
                retry=retry_policy(config.retry),
                breaker=self._breaker(name, config.circuit_breaker),
                rng=random.Random(),
            )
        return out

    def _breaker(self, name: str, config: CircuitBreakerConfig | None) -> CircuitBreaker | None:
        if config is None:
            return None
        return CircuitBreaker(
            name,
            failure_threshold=config.failure_threshold,
            reset_timeout_s=config.reset_timeout_s,
            half_open_max_calls=config.half_open_max_calls,
            on_state_change=self.breaker_listener,
        )

    def _lookup(self, registry: Registry[Any], name: str, path: PathKey) -> Any:
        try:
            return registry.get(name)
        except RegistryError as exc:
            self.error(path, str(exc))
            return None

    def _params_errors(self, model: type[BaseModel], exc: ValidationError, path: PathKey) -> None:
        for item in exc.errors(include_url=False):
            loc = tuple(item["loc"])
            self.error((*path, *loc), self._message(model, loc, item))

    def _stages(
        self, raw: Any, top: PipelineConfig | None, services: Mapping[str, GuardedService]
    ) -> list[StagePlan]:
        if raw is None:
            self.error(("stages",), "required")
            return []
        if not isinstance(raw, dict) or not raw:
            self.error(("stages",), "must be a mapping of stage name to stage, with at least one")
            return []
        index = self._rule_index(raw)
        plans: list[StagePlan] = []
        default_timeout = top.execution.default_timeout_s if top else None
        max_parallel = top.execution.max_parallel_rules if top else 8
        for position, (stage_name, body) in enumerate(raw.items()):
            path: PathKey = ("stages", stage_name)
            if not is_name(stage_name):
                self.error(
                    path,
                    f"not a valid stage name ({NAME_RULE}): it is part of topic and group names",
                )
            if not isinstance(body, dict):
                self.error(path, "a stage must be a mapping")
                continue
            options = self.parse(StageConfig, {**body, "rules": {}}, path)
            condition = self._expression(body.get("condition"), (*path, "condition"))
            if condition is not None:
                earlier = Earlier(index, position, None, ())
                self._check_expression(condition, RECORD_SCOPE, (*path, "condition"), earlier)
            specs = self._rules(
                stage_name, position, body.get("rules"), index, services, default_timeout
            )
            if options is None:
                continue
            if not specs and options.enabled:
                self.warnings.append(f"stages.{stage_name}: has no enabled rules")
            levels = self._levels(stage_name, specs)
            plans.append(
                StagePlan(
                    name=stage_name,
                    index=position,
                    rules=tuple(specs),
                    levels=levels,
                    enabled=options.enabled,
                    fail_fast=options.fail_fast,
                    parallel=options.parallel,
                    max_parallel_rules=options.max_parallel_rules or max_parallel,
                    timeout_s=options.timeout_s,
                    condition=condition,
                    description=options.description,
                )
            )
        return plans

    def _topic_names(self, raw_stages: Any, plans: list[StagePlan]) -> None:
        """``topics.names``: every stage it names exists, and no two topics of the pipeline
        coincide (each enabled stage, decisions, rejected, review and dlq has its own). A
        shared topic is reported once, at the name configured last. Names that break the
        topic-name pattern are reported by the top-level parse and left out here."""
        topics = self.data.get("topics")
        raw = topics.get("names") if isinstance(topics, dict) else None
        if not isinstance(raw, dict) or not isinstance(raw_stages, dict):
            return
        where: PathKey = ("topics", "names")
        named = raw.get("stages")
        for stage in named if isinstance(named, dict) else ():
            if stage not in raw_stages:
                close = difflib.get_close_matches(stage, list(raw_stages), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                self.error((*where, "stages", stage), f"unknown stage '{stage}'{hint}")
        pipeline = self.data.get("pipeline")
        if not isinstance(pipeline, str):
            return
        compiled = {plan.name: plan.enabled for plan in plans}
        enabled = [
            name
            for name, body in raw_stages.items()
            if compiled.get(name, not (isinstance(body, dict) and body.get("enabled") is False))
        ]
        valid = _valid_topic_names(raw)
        first = enabled[0] if enabled else None
        if valid.input and first in valid.stages and valid.stages[first] != valid.input:
            self.error(
                (*where, "input"),
                f"'{valid.input}' would be ignored: the first stage, '{first}', reads "
                f"topics.names.stages.{first} ('{valid.stages[first]}'); keep one of the two",
            )
        sharing: dict[str, list[TopicUse]] = {}
        for use in valid.uses(pipeline, enabled):
            sharing.setdefault(use.topic, []).append(use)
        for topic, uses in sharing.items():
            configured = [use for use in uses if use.key is not None]
            if len(uses) < 2 or not configured:
                continue
            at = configured[-1]
            assert at.key is not None
            others = _and([_topic_user(use) for use in uses if use is not at])
            self.error((*where, *at.key), f"topic '{topic}' is also used by {others}")

    def _rule_index(self, stages: dict[str, Any]) -> dict[str, tuple[int, str, bool]]:
        """rule id → (stage position, stage name, enabled); duplicates are errors."""
        index: dict[str, tuple[int, str, bool]] = {}
        for position, (stage_name, body) in enumerate(stages.items()):
            rules = body.get("rules") if isinstance(body, dict) else None
            if not isinstance(rules, dict):
                if rules is not None:
                    self.error(
                        ("stages", stage_name, "rules"), "must be a mapping of rule id to rule"
                    )
                continue
            stage_on = body.get("enabled", True) is not False
            for rule_id, rule in rules.items():
                if rule_id in index:
                    other = index[rule_id][1]
                    self.error(
                        ("stages", stage_name, "rules", rule_id),
                        f"rule id already used in stage '{other}' (ids are unique per pipeline)",
                    )
                    continue
                rule_on = not (isinstance(rule, dict) and rule.get("enabled") is False)
                index[rule_id] = (position, stage_name, stage_on and rule_on)
        return index

    def _expression(self, source: Any, path: PathKey) -> Expression | None:
        if not isinstance(source, str):
            return None
        try:
            return Expression(source)
        except ExpressionError as exc:
            self.error(path, str(exc))
            return None

    def _rules(
        self,
        stage: str,
        position: int,
        raw: Any,
        index: Mapping[str, tuple[int, str, bool]],
        services: Mapping[str, GuardedService],
        default_timeout: float | None,
    ) -> list[RuleSpec]:
        specs: list[RuleSpec] = []
        if not isinstance(raw, dict):
            return specs
        for rule_id, body in raw.items():
            path: PathKey = ("stages", stage, "rules", rule_id)
            if index.get(rule_id, (position, stage))[1] != stage:
                continue
            config = self.parse(RuleConfig, body, path)
            if config is None:
                continue
            self._check_dependencies(rule_id, stage, position, config, index, path)
            earlier = Earlier(index, position, rule_id, tuple(config.dependencies))
            when = self._expression(config.when, (*path, "when"))
            if when is not None:
                self._check_expression(when, RECORD_SCOPE, (*path, "when"), earlier)
            cls = self._lookup(self.rules, config.class_, (*path, "class"))
            if cls is None:
                continue
            try:
                rule = cls.from_params(config.params)
            except ValidationError as exc:
                self._params_errors(cls.Params, exc, (*path, "params"))
                # reported with the other errors, not once they are fixed
                self._known_services(cls.service_names(config.params), services, (*path, "params"))
                continue
            self._check_expressions(rule.expressions(), (*path, "params"), earlier)
            if not self._bind(rule, services, (*path, "params")):
                continue
            if not config.enabled:
                continue
            where = format_location((*path, "params"))
            self.warnings.extend(f"{where}.{note}" for note in rule.learn_pii(self.pii_inputs))
            is_async = RuleSpec.detect_async(rule)
            specs.append(
                RuleSpec(
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
                    timeout_s=config.timeout_s or (default_timeout if is_async else None),
                    description=config.description,
                    is_async=is_async,
                )
            )
        return specs

    def _bind(self, rule: Any, services: Mapping[str, GuardedService], path: PathKey) -> bool:
        """Bind the services the rule's params name; False when one is unknown or broken."""
        names = {p: getattr(rule.params, p) for p in rule.service_params}
        if not self._known_services(names, services, path):
            return False
        rule.bind_services({name: services[name] for name in names.values()})
        return True

    def _known_services(
        self, names: Mapping[str, Any], services: Mapping[str, GuardedService], path: PathKey
    ) -> bool:
        """Whether every service ``names`` (param → name) gives is compiled; an undeclared
        one is an error at its param (a declared but broken one has its own errors)."""
        ok = True
        declared = self.data.get("services")
        for param, name in names.items():
            if name in services:
                continue
            ok = False
            if not (isinstance(declared, dict) and name in declared):
                known = (
                    ", ".join(sorted(declared))
                    if isinstance(declared, dict) and declared
                    else "none"
                )
                self.error((*path, param), f"unknown service '{name}' (defined: {known})")
        return ok

    def _check_expressions(
        self, placed: list[Placed], path: PathKey, earlier: Earlier | None = None
    ) -> None:
        """Check each of a rule's or service's CEL params in the scope it runs in."""
        for place, expression, scope in placed:
            self._check_expression(expression, scope, (*path, *place), earlier)

    def _check_expression(
        self, expression: Expression, scope: Scope, path: PathKey, earlier: Earlier | None
    ) -> None:
        """What would fail on every record: an unknown variable, a ``vars`` key, a function
        called with the wrong arguments, ``results.<rule>`` for a rule that has not run."""
        for problem in expression.problems(scope):
            self.error(path, problem)
        if earlier is not None and "results" in scope.variables:
            for name in sorted(expression.keys_read("results")):
                why = earlier.problem(name)
                if why is not None:
                    self.error(path, f"results.{name}: {why}")

    def _check_dependencies(
        self,
        rule_id: str,
        stage: str,
        position: int,
        config: RuleConfig,
        index: Mapping[str, tuple[int, str, bool]],
        path: PathKey,
    ) -> None:
        for key, same_stage in (("dependencies", True), ("cross_stage_dependencies", False)):
            for i, dep in enumerate(getattr(config, key)):
                where = (*path, key, i)
                if dep == rule_id:
                    self.error(where, "a rule cannot depend on itself")
                    continue
                found = index.get(dep)
                if found is None:
                    close = difflib.get_close_matches(dep, list(index), n=1)
                    hint = f" (did you mean '{close[0]}'?)" if close else ""
                    self.error(where, f"unknown rule '{dep}'{hint}")
                    continue
                dep_position, dep_stage, dep_enabled = found
                if dep_position > position:
                    self.error(
                        where,
                        f"rule '{dep}' is in later stage '{dep_stage}', which runs after this one",
                    )
                elif same_stage and dep_position < position:
                    self.error(
                        where,
                        f"rule '{dep}' is in earlier stage '{dep_stage}': "
                        "list it under cross_stage_dependencies",
                    )
                elif not same_stage and dep_position == position:
                    self.error(where, f"rule '{dep}' is in this stage: list it under dependencies")
                elif not dep_enabled and index.get(rule_id, (0, "", False))[2]:
                    self.warnings.append(
                        f"{format_location(where)}: '{dep}' (stage '{dep_stage}') is disabled, "
                        f"so '{rule_id}' will always be skipped"
                    )

    def _levels(self, stage: str, specs: list[RuleSpec]) -> tuple[tuple[RuleSpec, ...], ...]:
        cycle = find_cycle(ordering_edges(specs))
        if cycle is not None:
            self.error(
                ("stages", stage, "rules", cycle[0], "dependencies"),
                "dependency cycle: " + " -> ".join(cycle),
            )
            return ()
        return dependency_levels(specs)


@dataclass(frozen=True)
class Earlier:
    """Which rules have results when an expression runs: those of earlier stages and, for a
    rule's expressions, its dependencies (``rule`` is None for a stage condition)."""

    index: Mapping[str, tuple[int, str, bool]]
    position: int
    rule: str | None
    dependencies: tuple[str, ...]

    def problem(self, name: str) -> str | None:
        """Why ``results.<name>`` has no value here, or None when it has one."""
        found = self.index.get(name)
        if found is None:
            close = difflib.get_close_matches(name, list(self.index), n=1)
            return f"unknown rule '{name}'" + (f" (did you mean '{close[0]}'?)" if close else "")
        position, stage, _ = found
        if name == self.rule:
            return "a rule cannot read its own result"
        if position > self.position:
            return f"rule '{name}' is in later stage '{stage}', which runs after this one"
        if position == self.position and self.rule is None:
            return f"rule '{name}' is in this stage, whose rules run after its condition"
        if position == self.position and name not in self.dependencies:
            return f"rule '{name}' is in this stage: list it under dependencies so it runs first"
        return None


def _valid_topic_names(raw: Mapping[str, Any]) -> TopicNamesConfig:
    """The names of a ``topics.names`` block that are valid topic names (the others are
    reported where they are written), so one bad name does not hide other problems."""
    names = {k: raw[k] for k in ("input", *OUTPUT_KINDS) if is_topic_name(raw.get(k))}
    stages = raw.get("stages")
    names["stages"] = (
        {s: t for s, t in stages.items() if is_topic_name(t)} if isinstance(stages, dict) else {}
    )
    return TopicNamesConfig.model_validate(names)


def _topic_user(use: TopicUse) -> str:
    if use.stage is None:
        return f"the {use.kind} output"
    return f"stage '{use.stage}'" + (" (the input)" if use.kind == "input" else "")


def _and(items: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


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


def _at(data: Mapping[str, Any], path: PathKey) -> Any:
    """The value at ``path`` of nested mappings and lists, or None."""
    value: Any = data
    for part in path:
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
            value = value[part]
        else:
            return None
    return value


def _nearest_line(lines: Mapping[PathKey, int], path: PathKey) -> int | None:
    for end in range(len(path) - 1, 0, -1):
        line = lines.get(path[:end])
        if line is not None:
            return line
    return None


def compile_pipeline(
    effective: EffectiveConfig,
    rules: Registry[Any],
    services: Registry[Any],
    breaker_listener: Callable[[str, BreakerState], None] | None = None,
    allow_outside: bool = False,
) -> CompiledPipeline:
    """Validate and compile; raises ``ConfigErrors`` listing every problem. ``allow_outside``
    lets the configuration name files outside its own directory."""
    return Compiler(effective, rules, services, breaker_listener, allow_outside).compile()
