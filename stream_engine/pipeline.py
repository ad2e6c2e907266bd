"""Loading a pipeline file with the built-in rule and service libraries wired in."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from stream_engine.config.compiler import compile_pipeline
from stream_engine.config.loader import load_effective
from stream_engine.core.breaker import BreakerState
from stream_engine.rules import RULES
from stream_engine.services import SERVICES

if TYPE_CHECKING:
    from stream_engine.config.compiled import CompiledPipeline


def load_pipeline(
    path: str | Path,
    environment: str | None = None,
    environ: Mapping[str, str] | None = None,
    breaker_listener: Callable[[str, BreakerState], None] | None = None,
    allow_outside: bool = False,
) -> CompiledPipeline:
    """Read, overlay, interpolate, validate and compile a pipeline file. The files it names
    must be inside its directory unless ``allow_outside``.

    Raises ``ConfigError``/``ConfigErrors`` with every problem located."""
    effective = load_effective(path, environment, environ)
    return compile_pipeline(effective, RULES, SERVICES, breaker_listener, allow_outside)
