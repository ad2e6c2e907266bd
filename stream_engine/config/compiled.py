"""What compiling a pipeline file yields: its plan, its services and what validation noticed.

A leaf: the modules that hold or pass a compiled pipeline import it without the compiler."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from stream_engine.config.loader import EffectiveConfig
    from stream_engine.config.models import PipelineConfig
    from stream_engine.config.source import PathKey
    from stream_engine.core.breaker import CircuitBreaker
    from stream_engine.core.plan import PipelinePlan
    from stream_engine.core.service import GuardedService

#: The files a pipeline file may name (the keys of ``CompiledPipeline.files``), and where.
TOPICS_FILE = "topics.file"
SAMPLES_FILE = "samples"
REFERENCED_FILES: tuple[PathKey, ...] = (("topics", "file"), ("samples",))


@dataclass
class CompiledPipeline:
    """A validated pipeline: the core plan, its services, and what validation noticed."""

    plan: PipelinePlan
    config: PipelineConfig
    effective: EffectiveConfig
    services: dict[str, GuardedService]
    breakers: dict[str, CircuitBreaker]
    warnings: list[str] = field(default_factory=list)
    #: The files it names (``TOPICS_FILE``, ``SAMPLES_FILE``), resolved, absent when unset.
    files: dict[str, Path] = field(default_factory=dict)

    async def close(self) -> None:
        """Release the services' resources (HTTP connection pools)."""
        for guarded in self.services.values():
            close = getattr(guarded.service, "close", None)
            if close is not None:
                await close()
