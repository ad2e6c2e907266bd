"""Validate an effective configuration and compile it into the core's plan, in one pass.

Every problem is collected with its location, so a user sees all of them at once. Each part
(top level, each service, each stage, each rule, each rule's params) is checked on its own, so
one broken rule does not hide the problems of the others. This module runs the pass; each part
is compiled by its own module (``compile_services``, ``compile_stages``, ``cel_checks``,
``topic_names``, ``secret_checks``), recording into one ``Problems``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from stream_engine.config.cel_checks import cel_variables
from stream_engine.config.compile_services import compile_services
from stream_engine.config.compile_stages import StageCompiler
from stream_engine.config.compiled import REFERENCED_FILES, CompiledPipeline
from stream_engine.config.loader import EffectiveConfig
from stream_engine.config.models import PipelineConfig
from stream_engine.config.problems import Problems
from stream_engine.config.schema import SchemaProblem, input_validator
from stream_engine.config.secret_checks import check_envelope_keys, check_kafka, check_pii
from stream_engine.config.source import format_location, value_at
from stream_engine.config.topic_names import topic_name_problems
from stream_engine.core.breaker import BreakerState
from stream_engine.core.outcome import Route
from stream_engine.core.pii import PiiInputs, PiiPolicy
from stream_engine.core.plan import PipelinePlan, StagePlan
from stream_engine.core.records import RecordLimits
from stream_engine.core.registry import Registry
from stream_engine.errors import ConfigErrors


class Compiler(Problems):
    """Collects every error of one configuration while building its plan."""

    def __init__(
        self,
        effective: EffectiveConfig,
        rules: Registry[Any],
        services: Registry[Any],
        breaker_listener: Callable[[str, BreakerState], None] | None = None,
        allow_outside: bool = False,
    ) -> None:
        super().__init__(effective.lines)
        self.effective = effective
        self.allow_outside = allow_outside
        self.data = effective.data
        self.rules = rules
        self.service_classes = services
        self.breaker_listener = breaker_listener

    def compile(self) -> CompiledPipeline:
        """The compiled pipeline; raises ``ConfigErrors`` listing every problem."""
        self.effective = cel_variables(self.effective, self.rules, self.service_classes, self)
        self.data = data = self.effective.data
        # stages and services are checked one by one below: a stand-in keeps them out of this
        top = self.parse(PipelineConfig, {**data, "stages": {"s": {}}, "services": {}}, ())
        execution = top.execution if top else None
        services = compile_services(
            self,
            data.get("services"),
            execution.default_timeout_s if execution else None,
            self.service_classes,
            self.breaker_listener,
        )
        pii_inputs = PiiInputs()
        if top is not None:
            pii_inputs = PiiInputs(frozenset(top.pii_fields), top.pii.reveal_derived)
        stages = StageCompiler(
            self, self.rules, services, data.get("services"), pii_inputs, top
        ).compile(data.get("stages"))
        self._topic_names(data.get("stages"), stages)
        self._state_driver(top, stages)
        check_pii(self, data, self.effective.written, top)
        self._input_schema(top)
        check_envelope_keys(self, self.effective.written)
        check_kafka(self, top)
        files = self._files()
        if self.errors:
            raise ConfigErrors(self.errors)
        config = PipelineConfig.model_validate(data)
        plan = self._plan(config, stages)
        breakers = {n: g.breaker for n, g in services.items() if g.breaker is not None}
        return CompiledPipeline(
            plan, config, self.effective, services, breakers, self.warnings, files
        )

    def _plan(self, config: PipelineConfig, stages: list[StagePlan]) -> PipelinePlan:
        """The core's plan of a configuration that compiled without errors."""
        return PipelinePlan(
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

    def _state_driver(self, top: PipelineConfig | None, plans: list[StagePlan]) -> None:
        """Stateful rules need the batch driver: only it restores a partition's stores from
        their changelogs before processing it, so the faust driver would count from zero."""
        if top is None or top.runtime.driver != "faust":
            return
        stateful = [f"{p.name}.{s.name}" for p in plans if p.enabled for s in p.stores]
        if stateful:
            self.error(
                ("runtime", "driver"),
                f"stateful rules ({', '.join(stateful)}) need runtime.driver: batch - the faust "
                "driver does not restore their state from its changelog when a partition moves "
                "to another worker, so their counts would start again from nothing",
            )

    def _topic_names(self, raw_stages: Any, plans: list[StagePlan]) -> None:
        """Record the problems of ``topics.names`` (``topic_name_problems``), given which
        stages run: those compiled enabled, and those not compiled unless written disabled."""
        topics = self.data.get("topics")
        raw = topics.get("names") if isinstance(topics, dict) else None
        if not isinstance(raw, dict) or not isinstance(raw_stages, dict):
            return
        compiled = {plan.name: plan.enabled for plan in plans}
        enabled = [
            name
            for name, body in raw_stages.items()
            if compiled.get(name, not (isinstance(body, dict) and body.get("enabled") is False))
        ]
        pipeline = self.data.get("pipeline")
        for path, message in topic_name_problems(raw, pipeline, list(raw_stages), enabled):
            self.error(path, message)

    def _files(self) -> dict[str, Path]:
        """Each file the configuration names, resolved relative to its directory. One that
        resolves outside that directory (through ``..``, an absolute path or a symlink) is an
        error unless ``allow_outside``: a pipeline file reads only what its directory holds."""
        path = self.effective.path
        root = (path.parent if path is not None else Path.cwd()).resolve()
        files: dict[str, Path] = {}
        for location in REFERENCED_FILES:
            value = value_at(self.data, location)
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

    def _input_schema(self, top: PipelineConfig | None) -> None:
        """``input.schema`` is a JSON Schema whose every ``$ref`` resolves and whose patterns
        RE2 runs - checked now, so no record meets a schema that fails at run time."""
        if top is None or top.input.schema_ is None:
            return
        try:
            input_validator(top.input.schema_)
        except SchemaProblem as exc:
            self.error(("input", "schema"), str(exc))


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
