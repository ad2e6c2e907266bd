"""The errors and warnings of one configuration, each at its location, collected in one place
so the user sees all of them at once; and the wording of pydantic's errors for people."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar, Union

from pydantic import BaseModel, ValidationError

from stream_engine.config.source import PathKey, format_location
from stream_engine.core.registry import Registry
from stream_engine.errors import ConfigError, RegistryError

M = TypeVar("M", bound=BaseModel)


class Problems:
    """Every error (located, each once) and warning found while compiling a configuration."""

    def __init__(self, lines: Mapping[PathKey, int]) -> None:
        self.lines = lines
        self.errors: list[ConfigError] = []
        self.warnings: list[str] = []
        self._seen: set[tuple[str, str]] = set()

    def error(self, path: PathKey, message: str) -> None:
        """Record ``message`` at ``path`` (with the line it was read from), once."""
        location = format_location(path)
        if (location, message) in self._seen:
            return
        self._seen.add((location, message))
        line = self.lines.get(path) or _nearest_line(self.lines, path)
        self.errors.append(ConfigError(location, message, line))

    def parse(self, model: type[M], raw: Any, path: PathKey) -> M | None:
        """Validate ``raw`` against ``model``; record each pydantic error at its location."""
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            self.validation_errors(model, exc, path)
            return None

    def validation_errors(
        self, model: type[BaseModel], exc: ValidationError, path: PathKey
    ) -> None:
        """Record each error of ``exc`` (validating ``model`` at ``path``) at its location."""
        for item in exc.errors(include_url=False):
            loc = tuple(item["loc"])
            self.error((*path, *loc), _message(model, loc, item))

    def lookup(self, registry: Registry[Any], name: str, path: PathKey) -> Any:
        """The class registered as ``name``, or None with the error recorded at ``path``."""
        try:
            return registry.get(name)
        except RegistryError as exc:
            self.error(path, str(exc))
            return None


def _message(model: type[BaseModel], loc: tuple[Any, ...], item: Any) -> str:
    """A pydantic error as one short line, naming the key meant where one is misspelt."""
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


def _nearest_line(lines: Mapping[PathKey, int], path: PathKey) -> int | None:
    for end in range(len(path) - 1, 0, -1):
        line = lines.get(path[:end])
        if line is not None:
            return line
    return None
