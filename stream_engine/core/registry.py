"""Registries of rule and service classes. A configuration can only name what is registered
here: no import-by-path, no eval. Third parties register by decorator or entry point."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from stream_engine.errors import RegistryError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name → class, filled by built-ins, decorators and one entry-point group."""

    def __init__(self, kind: str, entry_point_group: str | None = None) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._classes: dict[str, T] = {}
        self._entry_points_loaded = entry_point_group is None

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator: ``@RULES.register("MyRule")``."""

        def add(cls: T) -> T:
            self.add(name, cls)
            return cls

        return add

    def add(self, name: str, cls: T) -> None:
        """Register ``cls`` under ``name``; a second, different class under one name is an error."""
        existing = self._classes.get(name)
        if existing is not None and existing is not cls:
            raise RegistryError(f"{self.kind} class '{name}' is already registered")
        self._classes[name] = cls

    def get(self, name: str) -> T:
        """The class registered as ``name``; the error suggests close names."""
        self._load_entry_points()
        try:
            return self._classes[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._classes, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise RegistryError(f"unknown {self.kind} class '{name}'{hint}") from None

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        self._load_entry_points()
        return sorted(self._classes)

    def __contains__(self, name: object) -> bool:
        self._load_entry_points()
        return name in self._classes

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded or self.entry_point_group is None:
            return
        self._entry_points_loaded = True
        for entry in entry_points(group=self.entry_point_group):
            self.add(entry.name, entry.load())
