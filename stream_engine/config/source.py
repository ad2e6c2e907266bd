"""Reading a pipeline file: YAML or JSON into plain values, with the line of every key kept so
errors can point into the file, and duplicate keys refused (PyYAML would silently keep one)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

from stream_engine.errors import ConfigError, ConfigErrors

PathKey = tuple[str | int, ...]


def format_location(path: PathKey) -> str:
    """A location as users read it: ``stages.dq.rules.r.dependencies[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass
class Source:
    """A parsed document and the line (1-based) where each path of it was written."""

    path: Path | None
    data: dict[str, Any]
    lines: dict[PathKey, int] = field(default_factory=dict)

    def line_of(self, path: PathKey) -> int | None:
        """The line of ``path``, or of its nearest ancestor that has one."""
        for end in range(len(path), 0, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None


_YAML = "tag:yaml.org,2002:"
#: The only YAML tags a pipeline file may use (implicit or written out): plain data. Anything
#: else - ``!!python/object/apply:os.system``, ``!!binary``, a local ``!Ref`` - is an error,
#: never constructed.
_SCALAR_TAGS = frozenset(
    _YAML + name for name in ("null", "bool", "int", "float", "str", "timestamp")
)
_VALUE_TAG = _YAML + "value"  # a lone '=' - read as the text '='


def _tag_error(node: yaml.Node) -> str | None:
    """Why a node's tag is refused, or None when it is plain data."""
    if isinstance(node, yaml.MappingNode):
        allowed = node.tag == _YAML + "map"
    elif isinstance(node, yaml.SequenceNode):
        allowed = node.tag == _YAML + "seq"
    else:
        allowed = node.tag in _SCALAR_TAGS or node.tag == _VALUE_TAG
    if allowed:
        return None
    shown = "!!" + node.tag.removeprefix(_YAML) if node.tag.startswith(_YAML) else node.tag
    return (
        f"YAML tag '{shown}' is not allowed: a pipeline file holds plain values only "
        "(strings, numbers, booleans, null, lists and mappings)"
    )


class _Composer:
    """Builds plain values from a composed YAML node tree, noting lines and duplicate keys."""

    def __init__(self) -> None:
        self.constructor = yaml.SafeLoader("")
        self.lines: dict[PathKey, int] = {}
        self.errors: list[ConfigError] = []

    def refuse(self, node: yaml.Node, path: PathKey) -> bool:
        """Record an error and return True when ``node`` carries a tag that is not plain data."""
        problem = _tag_error(node)
        if problem is not None:
            self.errors.append(
                ConfigError(format_location(path), problem, node.start_mark.line + 1)
            )
        return problem is not None

    def build(self, node: yaml.Node, path: PathKey) -> Any:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if self.refuse(node, path):
            return None
        if isinstance(node, yaml.MappingNode):
            explicit = sum(1 for key, _ in node.value if key.tag != "tag:yaml.org,2002:merge")
            self.constructor.flatten_mapping(node)
            merged = len(node.value) - explicit
            out: dict[str, Any] = {}
            explicit_keys: set[str] = set()
            for position, (key_node, value_node) in enumerate(node.value):
                if not isinstance(key_node, yaml.ScalarNode):
                    self.errors.append(
                        ConfigError(format_location(path), "a key must be a plain value")
                    )
                    continue
                if self.refuse(key_node, path):
                    continue
                key = self.scalar(key_node, path)
                if not isinstance(key, str | int | float | bool) or key is None:
                    self.errors.append(
                        ConfigError(format_location(path), f"unsupported key {key!r}")
                    )
                    continue
                key = str(key)
                child = (*path, key)
                if position < merged:  # from a YAML merge key (<<): explicit keys override it
                    out[key] = self.build(value_node, child)
                    continue
                if key in explicit_keys:
                    self.errors.append(
                        ConfigError(
                            format_location(child),
                            f"duplicate key (first at line {self.lines[child]}, "
                            f"again at line {key_node.start_mark.line + 1})",
                        )
                    )
                    continue
                explicit_keys.add(key)
                self.lines[child] = key_node.start_mark.line + 1
                out[key] = self.build(value_node, child)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        value = self.scalar(node, path)
        if hasattr(value, "isoformat"):
            return value.isoformat()
        return value

    def scalar(self, node: yaml.ScalarNode, path: PathKey) -> Any:
        """A plain scalar's value (``!!int abc`` and the like become located errors)."""
        if node.tag == _VALUE_TAG:
            return node.value
        try:
            return self.constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError):
            shown = "!!" + node.tag.removeprefix(_YAML)
            self.errors.append(
                ConfigError(
                    format_location(path),
                    f"{node.value!r} is not a valid {shown}",
                    node.start_mark.line + 1,
                )
            )
            return None


def parse_text(text: str, path: Path | None = None) -> Source:
    """Parse YAML (JSON is YAML too, but a ``.json`` file is read strictly as JSON)."""
    name = str(path) if path else "<config>"
    if path is not None and path.suffix.lower() == ".json":
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise ConfigError(name, f"not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(name, "the top level must be a mapping")
        return Source(path, data)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        raise ConfigError(where, f"not valid YAML: {exc.problem or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(name, f"not valid YAML: {exc}") from exc
    if node is None:
        raise ConfigError(name, "the file is empty")
    composer = _Composer()
    data = composer.build(node, ())
    if composer.errors:
        raise ConfigErrors(composer.errors)
    if not isinstance(data, dict):
        raise ConfigError(name, "the top level must be a mapping")
    return Source(path, data, composer.lines)


def read_source(path: str | Path) -> Source:
    """Read and parse a pipeline file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(str(file), "no such file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(file), f"cannot read: {exc}") from exc
    return parse_text(text, file)


def walk_lines(mapping: Mapping[PathKey, int], prefix: PathKey) -> dict[PathKey, int]:
    """The lines recorded under ``prefix``, re-rooted so ``prefix`` disappears from the paths."""
    size = len(prefix)
    return {path[size:]: line for path, line in mapping.items() if path[:size] == prefix}
