"""Service adapters rules can call. Importing this package registers the built-in ones."""

from stream_engine.services import http, simulated
from stream_engine.services.base import SERVICES, ConfiguredService, ServiceParams, register_service

__all__ = [
    "SERVICES",
    "ConfiguredService",
    "ServiceParams",
    "http",
    "register_service",
    "simulated",
]
