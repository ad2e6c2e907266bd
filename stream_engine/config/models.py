"""Pydantic models of the pipeline file. They are the source of truth for its shape."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    Field,
    PositiveFloat,
    SecretStr,
    ValidationInfo,
    field_validator,
)

from stream_engine.config.api_models import ApiConfig
from stream_engine.config.base_model import ConfigModel
from stream_engine.config.topic_names import TopicsConfig
from stream_engine.core.expr import Expression
from stream_engine.core.outcome import ErrorKind, OnError, OnFail
from stream_engine.core.retry import DEFAULT_RETRY_ON
from stream_engine.errors import ExpressionError

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,119}$"
#: The shortest envelope key accepted: below it, one signed envelope lets a key be guessed.
MIN_KEY_BYTES = 16
#: What a pipeline, stage or consumer-group prefix may be called: it is part of topic names
#: (``<pipeline>.stage.<stage>``: two names of 120 fit Kafka's 249), consumer groups,
#: transactional ids and faust's data directories.
NAME_RULE = "1 to 120 letters, digits, '.', '_' or '-', starting with a letter or digit"


class _CelMark:
    """The mark of a string that is CEL source, in ``Annotated[str, CEL]``."""

    def __repr__(self) -> str:
        return "CEL"


#: Marks a string field as a CEL expression: the compiler inserts each ``${VAR}`` in it as a
#: literal, never as expression text (``config.loader.interpolate_cel``).
CEL = _CelMark()
#: A string that is CEL source, compiled by whoever uses it (a stage condition, a ``when``).
CelText = Annotated[str, CEL]


def _compile_cel(source: str) -> str:
    try:
        Expression(source)
    except ExpressionError as exc:
        raise ValueError(str(exc)) from None
    return source


#: A string param that must compile as CEL (the error names the param's location).
CelSource = Annotated[str, CEL, AfterValidator(_compile_cel)]


class RetryConfig(ConfigModel):
    """Retries with exponential backoff: ``attempts`` counts the first try."""

    attempts: int = Field(3, ge=1, le=100)
    backoff_s: float = Field(0.2, ge=0)
    multiplier: float = Field(2.0, ge=1)
    max_backoff_s: float = Field(30.0, ge=0)
    jitter: float = Field(0.1, ge=0, le=1)
    retry_on: list[ErrorKind] = Field(default_factory=lambda: list(DEFAULT_RETRY_ON))


class CircuitBreakerConfig(ConfigModel):
    """Open after ``failure_threshold`` consecutive failures, probe after ``reset_timeout_s``."""

    failure_threshold: int = Field(5, ge=1)
    reset_timeout_s: PositiveFloat = 30.0
    half_open_max_calls: int = Field(1, ge=1)


class ServiceConfig(ConfigModel):
    """A service rules can call: a registered class, its params and its guards."""

    class_: str = Field(alias="class")
    params: dict[str, Any] = Field(default_factory=dict)
    timeout_s: PositiveFloat | None = Field(
        None, validation_alias=AliasChoices("timeout_s", "timeout_seconds")
    )
    retry: RetryConfig | None = None
    circuit_breaker: CircuitBreakerConfig | None = None
    description: str = ""


class RuleConfig(ConfigModel):
    """One rule: a registered class with its params and the options that govern it."""

    class_: str = Field(alias="class")
    params: dict[str, Any] = Field(default_factory=dict)
    description: str = ""
    enabled: bool = True
    dependencies: list[str] = Field(default_factory=list)
    cross_stage_dependencies: list[str] = Field(default_factory=list)
    requires: list[str] = Field(default_factory=list)
    provides: list[str] = Field(default_factory=list)
    when: CelText | None = None
    on_fail: OnFail = OnFail.REJECT
    on_error: OnError = OnError.DEAD_LETTER
    cost: float = Field(0.0, ge=0)
    retry: RetryConfig | None = None
    timeout_s: PositiveFloat | None = Field(
        None, validation_alias=AliasChoices("timeout_s", "timeout_seconds")
    )


class StageConfig(ConfigModel):
    """A stage: its rules and how they run (seed 000's stage options)."""

    enabled: bool = True
    description: str = ""
    fail_fast: bool = True
    parallel: bool = Field(False, validation_alias=AliasChoices("parallel", "parallel_execution"))
    max_parallel_rules: int | None = Field(None, ge=1)
    timeout_s: PositiveFloat | None = Field(
        None, validation_alias=AliasChoices("timeout_s", "timeout_seconds")
    )
    condition: CelText | None = None
    rules: dict[str, RuleConfig] = Field(default_factory=dict)


class ExecutionConfig(ConfigModel):
    """Pipeline-wide execution policy."""

    stop_on_stage_failure: bool = True
    max_parallel_rules: int = Field(8, ge=1)
    default_timeout_s: PositiveFloat | None = Field(
        30.0, validation_alias=AliasChoices("default_timeout_s", "default_timeout")
    )
    budget: float | None = Field(None, ge=0)
    budget_route: Literal["reject", "review", "complete", "dead_letter"] = "reject"
    #: The longest a record may hold the worker in synchronous rule code (a sync rule, a
    #: condition) before it is interrupted and the record dead-lettered ``timeout``.
    sync_limit_s: PositiveFloat = Field(0.5, le=60)


class InputLimitsConfig(ConfigModel):
    """Bounds on each input record, checked when it enters (``limit_exceeded`` past them)."""

    max_depth: int = Field(32, ge=2, le=200)
    max_string_length: int = Field(65_536, ge=16, le=16 * 1024 * 1024)
    max_items: int = Field(10_000, ge=1, le=1_000_000)


class InputTimestampsConfig(ConfigModel):
    """Which producer timestamps are believed: one further ahead of the worker's clock, or
    older, is replaced by the arrival time for latency (the record notes it)."""

    max_ahead_s: float = Field(300.0, ge=0)
    max_age_s: float = Field(7 * 24 * 3600.0, gt=0)


class InputConfig(ConfigModel):
    """How input records are identified (and, optionally, checked)."""

    key_field: str | None = None
    tenant_field: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    limits: InputLimitsConfig = Field(default_factory=InputLimitsConfig)
    timestamps: InputTimestampsConfig = Field(default_factory=InputTimestampsConfig)


def is_name(value: object) -> bool:
    """Whether ``value`` may name a pipeline, a stage or a group prefix (``NAME_RULE``)."""
    return isinstance(value, str) and re.fullmatch(NAME_PATTERN, value) is not None


def _name(value: str) -> str:
    if not is_name(value):
        raise ValueError(f"not a valid name ({NAME_RULE}): it is part of topic and group names")
    return value


#: A pipeline, stage or group-prefix name.
Name = Annotated[str, AfterValidator(_name)]


class KafkaConfig(ConfigModel):
    """How to reach the brokers. ``--broker`` / ``STREAM_ENGINE_BROKER`` override the servers;
    the password usually comes from ``${VAR}``. Secrets never appear in output."""

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    client_id: str | None = None


class PiiConfig(ConfigModel):
    """How the fields listed in ``pii_fields`` are protected wherever the engine writes them
    for people: rule messages and details, reasons, dead-letter headers, logs, and - with
    ``mask_decisions`` - the data of decisions. The inter-stage envelope keeps real values.

    ``mask`` keeps the last four characters (``*******6789``) and nothing of a date
    (``**********``; ``dates: year`` keeps the year, ``1985-**-**``): a value is a date when it
    reads as one, or when its field is listed in ``date_fields``. ``hash`` writes ``sha256:``
    and 16 hex digits of HMAC-SHA256 keyed by ``hash_key`` (use ``${VAR}``), or of plain
    SHA-256 when no key is given. Rules keep values they derive from PII fields (an age from a
    date of birth) out of their messages and details unless ``reveal_derived``."""

    mode: Literal["mask", "hash"] = "mask"
    hash_key: SecretStr | None = None
    mask_decisions: bool = False
    dates: Literal["hide", "year"] = "hide"
    date_fields: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    reveal_derived: bool = False

    @field_validator("hash_key")
    @classmethod
    def _not_empty(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            raise ValueError("must not be empty (is its environment variable set to ''?)")
        return value


METRICS_HOST = "127.0.0.1"
METRICS_IDLE_TIMEOUT_S = 5.0
METRICS_MAX_CONNECTIONS = 64


class RuntimeConfig(ConfigModel):
    """How stage agents consume and produce."""

    #: ``batch``: aiokafka batches straight into the core; ``faust``: faust agents.
    driver: Literal["batch", "faust"] = "batch"
    processing_guarantee: Literal["at_least_once", "exactly_once"] = "at_least_once"
    batch_size: int = Field(500, ge=1, le=100_000)
    batch_wait_ms: int = Field(50, ge=1, le=60_000)
    max_message_bytes: int = Field(1_048_576, ge=1024)
    session_timeout_s: float = Field(10.0, gt=0)
    heartbeat_interval_s: float = Field(1.0, gt=0)
    commit_interval_s: float = Field(1.0, gt=0)
    group_prefix: Name | None = None
    shutdown_timeout_s: float = Field(30.0, gt=0)
    #: Loopback only by default; ``0.0.0.0`` to be scraped from other hosts or containers.
    metrics_host: str = METRICS_HOST
    metrics_port: int = Field(9464, ge=0, le=65535)
    #: An idle metrics connection (no request yet, half a request, none after a response) is
    #: closed after this long.
    metrics_idle_timeout_s: float = Field(METRICS_IDLE_TIMEOUT_S, gt=0, le=3600)
    #: Open metrics connections at most; one more closes the oldest.
    metrics_max_connections: int = Field(METRICS_MAX_CONNECTIONS, ge=1, le=10_000)
    #: Sign every message a worker writes and verify every envelope before trusting it
    #: (HMAC-SHA256). ``false`` (or ``off``) only explicitly: then anyone who can write to a
    #: stage topic can decide for it.
    envelope_auth: bool = True
    #: Keys by id (``${VAR}``): the one named by ``envelope_key_id`` (default: the first)
    #: signs, every one listed verifies - so a key rotates by listing the new one first.
    envelope_keys: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,32}$")], SecretStr] = (
        Field(default_factory=dict)
    )
    envelope_key_id: str | None = None
    #: A record whose processing hits an internal error is tried alone this many times in
    #: all before it is dead-lettered ``internal_error``.
    poison_attempts: int = Field(3, ge=1, le=100)

    @field_validator("envelope_keys")
    @classmethod
    def _keys_long_enough(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for key_id, secret in value.items():
            if len(secret.get_secret_value().encode("utf-8")) < MIN_KEY_BYTES:
                raise ValueError(
                    f"key '{key_id}' is shorter than {MIN_KEY_BYTES} bytes; use 32 random "
                    "bytes, e.g. the output of 'openssl rand -hex 32'"
                )
        return value

    @field_validator("envelope_key_id")
    @classmethod
    def _signing_key_listed(cls, value: str | None, info: ValidationInfo) -> str | None:
        keys = info.data.get("envelope_keys")
        if value is not None and isinstance(keys, dict) and value not in keys:
            known = ", ".join(keys) or "none"
            raise ValueError(f"'{value}' is not a key of envelope_keys (listed: {known})")
        return value

    @field_validator("processing_guarantee")
    @classmethod
    def _transactions_need_batch(cls, value: str, info: ValidationInfo) -> str:
        if value == "exactly_once" and info.data.get("driver") == "faust":
            raise ValueError("exactly_once needs runtime.driver: batch (Kafka transactions)")
        return value


class StateConfig(ConfigModel):
    """Where stateful rules keep their stores (each also in a compacted changelog topic)."""

    #: ``memory`` (the default) or ``rocksdb``: on disk, for state larger than memory.
    store: Literal["memory", "rocksdb"] = "memory"
    #: The directory of on-disk stores (one per stage, rule and partition under it).
    path: str = "state"


class PipelineConfig(ConfigModel):
    """A whole pipeline file, after environment overlay and ``${VAR}`` interpolation."""

    pipeline: Name
    version: str = "unversioned"
    description: str = ""
    input: InputConfig = Field(default_factory=InputConfig)
    execution: ExecutionConfig = Field(
        default_factory=ExecutionConfig,
        validation_alias=AliasChoices("execution", "execution_settings"),
    )
    pii_fields: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    pii: PiiConfig = Field(default_factory=PiiConfig)
    services: dict[str, ServiceConfig] = Field(default_factory=dict)
    stages: dict[Name, StageConfig] = Field(min_length=1)
    samples: str | None = None
    topics: TopicsConfig = Field(default_factory=TopicsConfig)
    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
