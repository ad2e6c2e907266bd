"""The rule and service classes a pipeline can name, described for people: what each class
does, and each param's type, default and meaning, read from its params model."""

from __future__ import annotations

import inspect
import types
from datetime import date
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from stream_engine.config.models import CEL
from stream_engine.core.registry import Registry

_SIMPLE = {
    str: "text",
    int: "integer",
    float: "number",
    bool: "true|false",
    date: "date (YYYY-MM-DD)",
    SecretStr: "text (secret)",
}


def type_text(annotation: Any, metadata: tuple[Any, ...] | list[Any] = ()) -> str:
    """A param's type as a YAML author reads it: ``fail|skip|pass``, ``list of text``, ``CEL``."""
    if CEL in metadata:
        return "CEL"
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is Annotated:
        return type_text(args[0], args[1:])
    if origin is Literal:
        return "|".join(str(arg) for arg in args)
    if origin is Union or origin is types.UnionType:
        kept = [type_text(arg) for arg in args if arg is not type(None)]
        text = " or ".join(kept)
        return f"{text} or null" if len(kept) < len(args) else text
    if origin is list:
        return f"list of {type_text(args[0])}" if args else "list"
    if origin is dict:
        return f"map of {type_text(args[0])} → {type_text(args[1])}" if args else "map"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "object"
    return _SIMPLE.get(annotation, "any")


def _default(info: FieldInfo) -> Any:
    """The default as JSON shows it (a factory's value; a secret never)."""
    if info.default_factory is not None:
        return info.default_factory()  # type: ignore[call-arg]
    if info.default is PydanticUndefined:
        return None
    value = info.default
    return value.isoformat() if isinstance(value, date) else value


def _nested(annotation: Any) -> tuple[type[BaseModel], str] | None:
    """The params model inside a list or map param, with the path suffix of its items."""
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is Union or origin is types.UnionType:
        for arg in args:
            found = _nested(arg)
            if found is not None:
                return found
        return None
    if origin is list and args:
        inner = args[0]
        suffix = "[]"
    elif origin is dict and len(args) == 2:
        inner = args[1]
        suffix = ".<name>"
    else:
        inner = annotation
        suffix = ""
    if isinstance(inner, type) and issubclass(inner, BaseModel):
        return inner, suffix
    return None


def describe_params(model: type[BaseModel], prefix: str = "") -> dict[str, dict[str, Any]]:
    """Every param of ``model`` (and of the models its params hold, as ``checks[].expr``):
    type, required, default, description and the other spellings accepted."""
    described: dict[str, dict[str, Any]] = {}
    for name, info in model.model_fields.items():
        key = prefix + name
        choices = getattr(info.validation_alias, "choices", None) or []
        described[key] = {
            "type": type_text(info.annotation, info.metadata),
            "required": info.is_required(),
            "default": None if info.is_required() else _default(info),
            "description": info.description or "",
            "aliases": [c for c in choices if isinstance(c, str) and c != name],
        }
        nested = _nested(info.annotation)
        if nested is not None:
            inner, suffix = nested
            described.update(describe_params(inner, f"{key}{suffix}."))
    return described


def describe_class(cls: type[Any]) -> dict[str, Any]:
    """One class: its whole description (its docstring, re-flowed) and its params."""
    params = describe_params(cls.Params)
    return {
        "description": " ".join((inspect.getdoc(cls) or "").split()).replace("``", "`"),
        "params": params,
        "required": [name for name, p in params.items() if p["required"] and "." not in name],
    }


def catalogue(registry: Registry[Any], name: str | None = None) -> dict[str, dict[str, Any]]:
    """Name → description of every class in ``registry`` (or of the one named: its
    ``RegistryError`` suggests close names)."""
    names = [name] if name is not None else registry.names()
    return {each: describe_class(registry.get(each)) for each in names}
