"""stream_engine: a Kafka-native, configuration-driven, multi-stage rule engine.

The public API, importable from the package itself::

    from stream_engine import (Client, HttpClient, SyncHttpClient, ApiError, load_pipeline,
                               register_rule, register_service, ConfiguredRule, RuleParams,
                               RuleContext, Verdict, passed, failed, StreamEngineError,
                               ConfigError)

Names are loaded on first use, so ``import stream_engine`` (and the CLI) stays light: the Kafka
client behind ``Client`` is imported only when ``Client`` is, aiohttp only when an
``HttpClient`` opens its session.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Each public name and the module that defines it.
_EXPORTS = {
    "Client": "stream_engine.client",
    "HttpClient": "stream_engine.http_client",
    "SyncHttpClient": "stream_engine.http_client",
    "ApiError": "stream_engine.http_client",
    "load_pipeline": "stream_engine.pipeline",
    "register_rule": "stream_engine.rules.base",
    "register_service": "stream_engine.services.base",
    "ConfiguredRule": "stream_engine.rules.base",
    "RuleParams": "stream_engine.rules.base",
    "RuleContext": "stream_engine.core.rule",
    "Verdict": "stream_engine.core.result",
    "passed": "stream_engine.core.result",
    "failed": "stream_engine.core.result",
    "StreamEngineError": "stream_engine.errors",
    "ConfigError": "stream_engine.errors",
}

__all__ = [
    "ApiError",
    "Client",
    "ConfigError",
    "ConfiguredRule",
    "HttpClient",
    "RuleContext",
    "RuleParams",
    "StreamEngineError",
    "SyncHttpClient",
    "Verdict",
    "__version__",
    "failed",
    "load_pipeline",
    "passed",
    "register_rule",
    "register_service",
]

if TYPE_CHECKING:
    from stream_engine.client import Client
    from stream_engine.core.result import Verdict, failed, passed
    from stream_engine.core.rule import RuleContext
    from stream_engine.errors import ConfigError, StreamEngineError
    from stream_engine.http_client import ApiError, HttpClient, SyncHttpClient
    from stream_engine.pipeline import load_pipeline
    from stream_engine.rules.base import ConfiguredRule, RuleParams, register_rule
    from stream_engine.services.base import register_service


def __getattr__(name: str) -> Any:
    """A public name, imported from its module the first time it is asked for."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'stream_engine' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
