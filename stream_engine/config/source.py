"""Reading a pipeline file: YAML or JSON into plain values, with the line of every key kept so
errors can point into the file, and duplicate keys refused (PyYAML would silently keep one).

Reading is bounded, so no file can exhaust the host: its size, its nesting depth and the number
of values it expands to (YAML aliases repeat a value each time they are used: nine levels of
nine aliases make 387 million values out of 500 bytes) all have limits far above any real
pipeline, and going past one is a located error naming the limit."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import orjson
import yaml

from stream_engine.config.yaml_errors import explain
from stream_engine.errors import ConfigError, ConfigErrors

PathKey = tuple[str | int, ...]

#: The largest pipeline (or topics, or cases) file read; the largest example has 17 KB.
MAX_FILE_BYTES = 4 * 1024 * 1024
#: The deepest nesting of mappings and lists, aliases expanded; the examples nest 9 deep.
MAX_DEPTH = 100
#: The most values (scalars, lists, mappings, keys) a file may expand to, aliases included; the
#: largest example has 1,200.
MAX_VALUES = 200_000
#: The most values one use of a YAML alias (``*name``) may expand to.
MAX_ALIAS_VALUES = 10_000

_PLAIN_KEY = re.compile(r"[^\s\[\]\"']+")


def value_at(data: Mapping[str, Any], path: PathKey) -> Any:
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


def format_location(path: PathKey) -> str:
    """A location as users read it: ``stages.dq.rules.r.dependencies[0]``; a key with spaces,
    brackets, quotes or control characters is shown quoted (``stages["a b\\n"]``), so a location
    is always one line."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(str(part)) and str(part).isprintable():
            out += f".{part}" if out else str(part)
        else:
            out += f"[{orjson.dumps(str(part)).decode()}]"
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


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, composing at most ``MAX_DEPTH`` levels and ``MAX_VALUES`` values
    with aliases expanded, and refusing an alias to a value it is part of (a cycle). PyYAML
    composes one alias as one node, shared; the limits count what the node tree will become."""

    def __init__(self, text: str, file_name: str, echo: bool) -> None:
        super().__init__(text)
        self.file_name = file_name
        self.echo = echo
        self.depth = 0  # mappings and lists open around the node being composed
        self.reached = 0  # the deepest level reached inside it, aliases expanded
        self.values = 0
        self.spans: dict[int, tuple[int, int]] = {}  # id(node) -> (values, levels), expanded

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event: yaml.Event = self.peek_event()  # type: ignore[no-untyped-call]
        base, outer = self.depth, self.reached
        self.reached = base
        if isinstance(event, yaml.AliasEvent):
            self.expand(event)
            node = super().compose_node(parent, index)
        else:
            first = self.values
            self.count(event, 1)
            if isinstance(event, yaml.CollectionStartEvent):
                self.depth += 1
                self.reach(event, self.depth)
            node = super().compose_node(parent, index)
            self.depth = base
            self.spans[id(node)] = (self.values - first, self.reached - base)
        self.reached = max(outer, self.reached)
        return node

    def expand(self, event: yaml.AliasEvent) -> None:
        """Count what one use of an alias adds: its anchored value, as deep as it goes."""
        node = self.anchors.get(event.anchor)
        if node is None:
            return  # an undefined alias: PyYAML reports it
        alias = f"alias '*{event.anchor}'" if self.echo else "an alias"
        span = self.spans.get(id(node))
        if span is None:
            self.refuse(event, f"{alias} refers to a value it is part of (a cycle)")
        values, levels = span
        if values > MAX_ALIAS_VALUES:
            self.refuse(
                event,
                f"{alias} expands to {values:,} values; one alias may expand to at most "
                f"{MAX_ALIAS_VALUES:,} (the limit)",
            )
        self.count(event, values)
        self.reach(event, self.depth + levels, alias)

    def count(self, event: yaml.Event, values: int) -> None:
        self.values += values
        if self.values > MAX_VALUES:
            self.refuse(
                event,
                f"the file expands to more than {MAX_VALUES:,} values (the limit; "
                "a YAML alias counts its value each time it is used)",
            )

    def reach(self, event: yaml.Event, depth: int, alias: str | None = None) -> None:
        self.reached = max(self.reached, depth)
        if depth > MAX_DEPTH:
            what = f"{alias} nests values" if alias else "mappings and lists nest"
            self.refuse(event, f"{what} more than {MAX_DEPTH} levels deep (the limit)")

    def refuse(self, event: yaml.Event, message: str) -> NoReturn:
        mark = event.start_mark
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{self.file_name}{where}", message)


class _Composer:
    """Builds plain values from a composed YAML node tree, noting lines and duplicate keys.
    Without ``echo`` (a file the configuration refers to) no error quotes the file's text: it
    names the file and the line."""

    def __init__(self, file_name: str, echo: bool = True) -> None:
        self.constructor = yaml.SafeLoader("")
        self.lines: dict[PathKey, int] = {}
        self.errors: list[ConfigError] = []
        self.file_name = file_name
        self.echo = echo
        self.flattened: dict[int, int] = {}  # id(mapping node) -> entries from merge keys

    def error(self, path: PathKey, message: str, line: int | None = None) -> None:
        """Record an error at ``path`` (at the file when the file's text must not be echoed)."""
        location = format_location(path) if self.echo else self.file_name
        self.errors.append(ConfigError(location, message, line))

    def refuse(self, node: yaml.Node, path: PathKey) -> bool:
        """Record an error and return True when ``node`` carries a tag that is not plain data."""
        problem = _tag_error(node)
        if problem is not None:
            if not self.echo:
                problem = "a YAML tag is not allowed: the file holds plain values only"
            self.error(path, problem, node.start_mark.line + 1)
        return problem is not None

    def merged(self, node: yaml.MappingNode) -> int:
        """Resolve the merge keys (``<<``) of a mapping once (an alias shares the node);
        returns how many leading entries came from them."""
        known = self.flattened.get(id(node))
        if known is None:
            explicit = sum(1 for key, _ in node.value if key.tag != _YAML + "merge")
            self.constructor.flatten_mapping(node)
            known = self.flattened[id(node)] = len(node.value) - explicit
        return known

    def build(self, node: yaml.Node, path: PathKey) -> Any:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if self.refuse(node, path):
            return None
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        value = self.scalar(node, path)
        if hasattr(value, "isoformat"):
            return value.isoformat()
        return value

    def mapping(self, node: yaml.MappingNode, path: PathKey) -> dict[str, Any]:
        merged = self.merged(node)
        out: dict[str, Any] = {}
        explicit_keys: set[str] = set()
        for position, (key_node, value_node) in enumerate(node.value):
            if not isinstance(key_node, yaml.ScalarNode):
                self.error(path, "a key must be a plain value", key_node.start_mark.line + 1)
                continue
            if self.refuse(key_node, path):
                continue
            key = self.scalar(key_node, path)
            if not isinstance(key, str | int | float | bool) or key is None:
                shown = f" {key!r}" if self.echo else ""
                self.error(path, f"unsupported key{shown}", key_node.start_mark.line + 1)
                continue
            key = str(key)
            child = (*path, key)
            if position < merged:  # from a YAML merge key (<<): explicit keys override it
                out[key] = self.build(value_node, child)
                continue
            if key in explicit_keys:
                again = key_node.start_mark.line + 1
                self.error(
                    child,
                    f"duplicate key (first at line {self.lines[child]}, again at line {again})",
                )
                continue
            explicit_keys.add(key)
            self.lines[child] = key_node.start_mark.line + 1
            out[key] = self.build(value_node, child)
        return out

    def scalar(self, node: yaml.ScalarNode, path: PathKey) -> Any:
        """A plain scalar's value (``!!int abc`` and the like become located errors)."""
        if node.tag == _VALUE_TAG:
            return node.value
        try:
            return self.constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError):
            shown = "!!" + node.tag.removeprefix(_YAML)
            message = f"{node.value!r} is not a valid {shown}" if self.echo else "an invalid value"
            self.error(path, message, node.start_mark.line + 1)
            return None


def parse_text(text: str, path: Path | None = None, echo: bool = True) -> Source:
    """Parse YAML (JSON is YAML too, but a ``.json`` file is read strictly as JSON), within
    ``MAX_DEPTH`` and ``MAX_VALUES``. Without ``echo`` errors never quote the text."""
    name = str(path) if path else "<config>"
    if path is not None and path.suffix.lower() == ".json":
        return _parse_json(text, path, name, echo)
    loader = _BoundedLoader(text, name, echo)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc, name, echo) from None
    except yaml.YAMLError as exc:
        raise ConfigError(name, "not valid YAML" + (f": {exc}" if echo else "")) from None
    finally:
        loader.dispose()
    if node is None:
        raise ConfigError(name, "the file is empty")
    composer = _Composer(name, echo)
    data = composer.build(node, ())
    if composer.errors:
        raise ConfigErrors(composer.errors)
    if not isinstance(data, dict):
        raise ConfigError(name, "the top level must be a mapping")
    return Source(path, data, composer.lines)


def _syntax_error(exc: yaml.MarkedYAMLError, name: str, echo: bool) -> ConfigError:
    """A YAML syntax error as one located line: what is wrong in plain words (only the place
    when the file's text must not be echoed)."""
    if not echo:
        mark = exc.problem_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        return ConfigError(where, "not valid YAML")
    problem = explain(exc)
    if problem is None:
        return ConfigError(name, f"not valid YAML: {exc.problem or exc}")
    at = f"line {problem.line}, column {problem.column}"
    where = f"{name}:{problem.line}:{problem.column}"
    return ConfigError(where, f"not valid YAML at {at}: {problem.sentence}")


def _parse_json(text: str, path: Path, name: str, echo: bool) -> Source:
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        detail = f": {exc}" if echo else f" (line {exc.lineno}, column {exc.colno})"
        raise ConfigError(name, f"not valid JSON{detail}") from None
    if not isinstance(data, dict):
        raise ConfigError(name, "the top level must be a mapping")
    too_deep = _deeper_than(data, MAX_DEPTH)
    if too_deep is not None:
        under = f" (under {format_location(too_deep[:3])})" if echo else ""
        raise ConfigError(name, f"nested more than {MAX_DEPTH} levels deep (the limit){under}")
    return Source(path, data)


def _deeper_than(data: Any, limit: int) -> PathKey | None:
    """The path of a mapping or list nested deeper than ``limit`` levels, or None (a loop,
    not recursion: orjson reads 1,024 levels)."""
    stack: list[tuple[Any, PathKey]] = [(data, ())]
    while stack:
        value, path = stack.pop()
        items: Any
        if isinstance(value, dict):
            items = value.items()
        elif isinstance(value, list):
            items = enumerate(value)
        else:
            continue
        if len(path) >= limit:
            return path
        stack.extend((child, (*path, key)) for key, child in items)
    return None


def read_source(path: str | Path, echo: bool = True) -> Source:
    """Read and parse a file of at most ``MAX_FILE_BYTES``. Without ``echo`` (a file the
    configuration refers to) errors never quote its text."""
    file = Path(path)
    try:
        with file.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(str(file), "no such file") from None
    except OSError as exc:
        raise ConfigError(str(file), f"cannot read: {exc.strerror or type(exc).__name__}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(
            str(file), f"larger than {MAX_FILE_BYTES // 1024 // 1024} MiB (the limit for a file)"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(str(file), f"cannot read: not UTF-8 (at byte {exc.start})") from None
    return parse_text(text, file, echo)


def walk_lines(mapping: Mapping[PathKey, int], prefix: PathKey) -> dict[PathKey, int]:
    """The lines recorded under ``prefix``, re-rooted so ``prefix`` disappears from the paths."""
    size = len(prefix)
    return {path[size:]: line for path, line in mapping.items() if path[:size] == prefix}
