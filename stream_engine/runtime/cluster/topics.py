"""Topic settings (partitions, replication, retention, cleanup policy) declared in the file a
pipeline's ``topics.file`` names (the examples' are under ``configs/topics/``), and creating or
listing a pipeline's topics with aiokafka's admin client.

A stateful rule's changelog (kind ``state``) is compacted and has exactly the partitions of its
stage's topic - partition p holds the state of input partition p - so ``kinds.state`` may set
neither its partitions nor a cleanup policy without ``compact``, and it inherits neither from
``defaults`` (nor their retention, which is for topics that delete)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

from stream_engine.config.compiled import TOPICS_FILE
from stream_engine.config.source import PathKey, Source, format_location, read_source
from stream_engine.core.outcome import OutputKind
from stream_engine.errors import ConfigError, ConfigErrors
from stream_engine.runtime.cluster.settings import MAX_TRANSPORT_BYTES, KafkaSettings, connected
from stream_engine.runtime.cluster.topic_names import STATE_KIND, TopicNames, topic_names

if TYPE_CHECKING:
    from stream_engine.config.compiled import CompiledPipeline

DEFAULTS_FILE = Path(__file__).with_name("topic_defaults.yaml")  # shipped in the package
TOPIC_EXISTS = 36


class TopicSettings(BaseModel):
    """Settings of one kind of topic; unset values fall back to ``defaults``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    partitions: int | None = Field(None, ge=1, le=10_000)
    replication_factor: int | None = Field(None, ge=1, le=10)
    retention_ms: int | None = Field(None, ge=-1)
    cleanup_policy: Literal["delete", "compact", "compact,delete"] | None = None
    max_message_bytes: int | None = Field(None, ge=1024, le=MAX_TRANSPORT_BYTES)


#: The kinds of topic (the keys of a topics file's ``kinds``): a pipeline's input, a later
#: stage's, the outputs, and the stateful rules' changelogs.
TOPIC_KINDS: tuple[str, ...] = (
    "input",
    "stage",
    *(kind.value for kind in OutputKind),
    STATE_KIND,
)

#: What ``defaults`` give a changelog: not its partitions (its stage topic's), cleanup policy
#: (compact) or retention (compacted topics keep every key's last value).
_STATE_INHERITS = ("replication_factor", "max_message_bytes")


def _topic_kind(value: object) -> str:
    """``value`` if it is a topic kind; else the error a ``Literal`` of the kinds gives."""
    if isinstance(value, str) and value in TOPIC_KINDS:
        return str(value)
    expected = ", ".join(repr(kind) for kind in TOPIC_KINDS[:-1]) + f" or {TOPIC_KINDS[-1]!r}"
    raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": expected})


TopicKind = Annotated[str, PlainValidator(_topic_kind)]


class TopicsFile(BaseModel):
    """A topics file: settings for every topic, then per kind."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    defaults: TopicSettings = Field(default_factory=TopicSettings)
    kinds: dict[TopicKind, TopicSettings] = Field(default_factory=dict)


@dataclass(frozen=True)
class TopicSpec:
    """One topic to create."""

    name: str
    kind: str
    partitions: int
    replication_factor: int
    config: dict[str, str]


def settings_file(pipeline: CompiledPipeline) -> Path:
    """The topics file a pipeline names (resolved by the compiler, relative to the pipeline
    file), else the defaults."""
    return pipeline.files.get(TOPICS_FILE, DEFAULTS_FILE)


#: Every key a topics file may hold: an error's location names these only, never a key of
#: the file's own (the file may be anything the configuration pointed at).
_KEYS = frozenset({"defaults", "kinds", *TOPIC_KINDS, *TopicSettings.model_fields})


def load_topics_file(path: Path) -> TopicsFile:
    """Read and validate a topics file. Errors give the line and the keys a topics file may
    have, never the file's text."""
    source = read_source(path, echo=False)
    try:
        declared = TopicsFile.model_validate(source.data)
    except ValidationError as exc:
        raise ConfigErrors(
            [_topics_error(path, source, item) for item in exc.errors(include_url=False)]
        ) from None
    problems = _state_problems(path, source, declared.kinds.get(STATE_KIND))
    if problems:
        raise ConfigErrors(problems)
    return declared


def _state_problems(path: Path, source: Source, state: TopicSettings | None) -> list[ConfigError]:
    """What ``kinds.state`` may not say: a changelog's partitions are its stage topic's, and
    it is compacted (a deleting policy would lose the state of keys not written lately)."""
    if state is None:
        return []
    out = []
    if state.partitions is not None:
        loc: PathKey = ("kinds", STATE_KIND, "partitions")
        text = (
            "a changelog has the partitions of its stage's topic (its partition p holds the "
            "state of input partition p): remove it"
        )
        out.append(ConfigError(f"{path.name}: {format_location(loc)}", text, source.line_of(loc)))
    if state.cleanup_policy == "delete":
        loc = ("kinds", STATE_KIND, "cleanup_policy")
        text = "a changelog must be compacted ('compact' or 'compact,delete'), else state is lost"
        out.append(ConfigError(f"{path.name}: {format_location(loc)}", text, source.line_of(loc)))
    return out


def _topics_error(path: Path, source: Source, item: ErrorDetails) -> ConfigError:
    """One located line for a pydantic error in a topics file, naming only known keys."""
    loc: PathKey = tuple(item["loc"])
    known = 0
    while known < len(loc) and (isinstance(loc[known], int) or loc[known] in _KEYS):
        known += 1
    message = str(item["msg"])
    if item["type"] == "extra_forbidden":
        allowed = ("defaults", "kinds") if known == 0 else tuple(TopicSettings.model_fields)
        message = f"unknown key (allowed: {', '.join(allowed)})"
    where = format_location(loc[:known])
    return ConfigError(
        f"{path.name}: {where}" if where else path.name, message, source.line_of(loc)
    )


def topic_specs(pipeline: CompiledPipeline) -> list[TopicSpec]:
    """Every topic of the pipeline with its settings."""
    names = pipeline_topics(pipeline)
    declared = load_topics_file(settings_file(pipeline))
    specs: list[TopicSpec] = []
    for name, kind in names.kinds():
        merged: dict[str, Any] = {
            "partitions": 1,
            "replication_factor": 1,
            "retention_ms": None,
            "cleanup_policy": None,
            "max_message_bytes": None,
        }
        defaults = declared.defaults.model_dump()
        if kind == STATE_KIND:
            defaults = {k: v for k, v in defaults.items() if k in _STATE_INHERITS}
            merged["cleanup_policy"] = "compact"
        for layer in (defaults, _dumped(declared.kinds.get(kind))):
            merged.update({k: v for k, v in layer.items() if v is not None})
        config = {}
        if merged["retention_ms"] is not None:
            config["retention.ms"] = str(merged["retention_ms"])
        if merged["cleanup_policy"] is not None:
            config["cleanup.policy"] = merged["cleanup_policy"]
        if merged["max_message_bytes"] is not None:
            config["max.message.bytes"] = str(merged["max_message_bytes"])
        specs.append(
            TopicSpec(name, kind, merged["partitions"], merged["replication_factor"], config)
        )
    return _mirrored(specs, names)


def _dumped(settings: TopicSettings | None) -> dict[str, Any]:
    return {} if settings is None else settings.model_dump()


def _mirrored(specs: list[TopicSpec], names: TopicNames) -> list[TopicSpec]:
    """The specs with each changelog given its stage topic's partitions."""
    partitions = {spec.name: spec.partitions for spec in specs}
    source = dict(names.changelogs())
    return [
        replace(spec, partitions=partitions[source[spec.name]]) if spec.name in source else spec
        for spec in specs
    ]


def pipeline_topics(pipeline: CompiledPipeline) -> TopicNames:
    """The pipeline's topic names, with the config's overrides."""
    return topic_names(pipeline.plan, pipeline.config.topics.names)


async def create_topics(
    specs: list[TopicSpec], kafka: KafkaSettings, timeout_ms: int = 30_000
) -> dict[str, str]:
    """Create what is missing: ``{topic: "created" | "exists"}``. Idempotent."""
    admin = AIOKafkaAdminClient(**kafka.aiokafka(), request_timeout_ms=timeout_ms)
    async with connected(admin, kafka):
        response = await admin.create_topics(
            [
                NewTopic(
                    s.name,
                    num_partitions=s.partitions,
                    replication_factor=s.replication_factor,
                    topic_configs=s.config,
                )
                for s in specs
            ],
            timeout_ms=timeout_ms,
        )
        outcome: dict[str, str] = {}
        for error in response.topic_errors:
            name, code = error[0], error[1]
            if code == 0:
                outcome[name] = "created"
            elif code == TOPIC_EXISTS:
                outcome[name] = "exists"
            else:
                message = error[2] if len(error) > 2 else ""
                raise ConfigError(
                    f"topic {name}", f"could not be created (error {code}: {message})"
                )
        return outcome


async def describe_topics(names: list[str], kafka: KafkaSettings) -> dict[str, int | None]:
    """Partition count of each topic (None when it does not exist)."""
    admin = AIOKafkaAdminClient(**kafka.aiokafka())
    async with connected(admin, kafka):
        existing = set(await admin.list_topics())
        present = [n for n in names if n in existing]
        described = await admin.describe_topics(present) if present else []
        counts = {t["topic"]: len(t["partitions"]) for t in described}
        return {name: counts.get(name) for name in names}
