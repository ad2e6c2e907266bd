"""Topic names: what Kafka accepts as one, the names a pipeline's topics take (defaults and
``topics.names``), and the checks that every name given is used and no two topics coincide."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Annotated, Any, NamedTuple

from pydantic import AfterValidator, Field

from stream_engine.config.base_model import ConfigModel
from stream_engine.config.source import PathKey
from stream_engine.core.outcome import OutputKind

TOPIC_PATTERN = r"^[A-Za-z0-9._-]{1,249}$"
TOPIC_RULE = "1 to 249 letters, digits, '.', '_' or '-', and not '.' or '..'"
#: Where the names are written in a pipeline file.
NAMES_AT: PathKey = ("topics", "names")


def is_topic_name(value: object) -> bool:
    """Whether Kafka accepts ``value`` as a topic name (``TOPIC_RULE``)."""
    return (
        isinstance(value, str)
        and value not in (".", "..")
        and re.fullmatch(TOPIC_PATTERN, value) is not None
    )


def _topic_name(value: str) -> str:
    if not is_topic_name(value):
        raise ValueError(f"'{value}' is not a valid topic name ({TOPIC_RULE})")
    return value


TopicName = Annotated[str, AfterValidator(_topic_name)]


class TopicUse(NamedTuple):
    """One topic of a pipeline: its kind (``input``, ``stage`` or an output kind), the stage
    that consumes it (None for outputs), its name, and the key under ``topics.names`` that set
    it (None: the default name)."""

    kind: str
    stage: str | None
    topic: str
    key: tuple[str, ...] | None


class TopicNamesConfig(ConfigModel):
    """Topic names that replace the defaults (``<pipeline>.input``, ``<pipeline>.stage.<s>``,
    ``<pipeline>.decisions`` / ``.rejected`` / ``.review`` / ``.dlq``). ``topic_name_problems``
    checks that ``stages`` names existing stages and that no two of a pipeline's topics
    coincide."""

    input: TopicName | None = None
    decisions: TopicName | None = None
    rejected: TopicName | None = None
    review: TopicName | None = None
    dlq: TopicName | None = None
    stages: dict[str, TopicName] = Field(default_factory=dict)

    def uses(self, pipeline: str, stages: Sequence[str]) -> list[TopicUse]:
        """Every topic of ``pipeline`` whose enabled stages are ``stages`` (in order): the
        first stage consumes ``input`` (default ``<p>.input``), the others ``<p>.stage.<s>``,
        a ``stages`` entry winning over both (the compiler refuses an ``input`` that the
        first stage's entry contradicts); then ``<p>.decisions|rejected|review|dlq``."""
        out: list[TopicUse] = []
        for position, stage in enumerate(stages):
            kind = "input" if position == 0 else "stage"
            if stage in self.stages:
                out.append(TopicUse(kind, stage, self.stages[stage], ("stages", stage)))
            elif position == 0 and self.input:
                out.append(TopicUse(kind, stage, self.input, ("input",)))
            else:
                default = f"{pipeline}.input" if position == 0 else f"{pipeline}.stage.{stage}"
                out.append(TopicUse(kind, stage, default, None))
        for kind in OutputKind:
            name: str | None = getattr(self, kind)
            out.append(
                TopicUse(kind, None, name or f"{pipeline}.{kind}", (kind,) if name else None)
            )
        return out


class TopicsConfig(ConfigModel):
    """Where the topic settings live (partitions, replication, retention, cleanup policy) and
    any names that replace the defaults."""

    file: str | None = None
    names: TopicNamesConfig = Field(default_factory=TopicNamesConfig)


def topic_name_problems(
    raw: Mapping[str, Any], pipeline: Any, stages: Sequence[str], enabled: Sequence[str]
) -> Iterator[tuple[PathKey, str]]:
    """The problems of a ``topics.names`` block ``raw`` (as written) in a pipeline whose
    stages are ``stages`` (``enabled``: those that run, in order): every stage it names
    exists, and no two topics coincide (each enabled stage, decisions, rejected, review and
    dlq has its own). A shared topic is reported once, at the name configured last. Names that
    break the topic-name pattern are reported by the model and left out here."""
    named = raw.get("stages")
    for stage in named if isinstance(named, dict) else ():
        if stage not in stages:
            close = difflib.get_close_matches(stage, list(stages), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            yield (*NAMES_AT, "stages", stage), f"unknown stage '{stage}'{hint}"
    if not isinstance(pipeline, str):
        return
    valid = _valid_topic_names(raw)
    first = enabled[0] if enabled else None
    if valid.input and first in valid.stages and valid.stages[first] != valid.input:
        yield (
            (*NAMES_AT, "input"),
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
        yield (*NAMES_AT, *at.key), f"topic '{topic}' is also used by {others}"


def _valid_topic_names(raw: Mapping[str, Any]) -> TopicNamesConfig:
    """The names of a ``topics.names`` block that are valid topic names (the others are
    reported where they are written), so one bad name does not hide other problems."""
    names = {k: raw[k] for k in ("input", *OutputKind) if is_topic_name(raw.get(k))}
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
