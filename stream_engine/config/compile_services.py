"""Compiling the ``services`` block: each service built from its registered class, guarded by
its timeout, retries and circuit breaker; and binding rules to the services they name."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError

from stream_engine.config.cel_checks import check_expressions
from stream_engine.config.models import CircuitBreakerConfig, RetryConfig, ServiceConfig
from stream_engine.config.problems import Problems
from stream_engine.config.source import PathKey, format_location
from stream_engine.core.breaker import BreakerState, CircuitBreaker
from stream_engine.core.registry import Registry
from stream_engine.core.retry import RetryPolicy
from stream_engine.core.service import GuardedService

NO_RETRY = RetryPolicy()


def retry_policy(config: RetryConfig | None) -> RetryPolicy:
    """The core's retry policy from its config block (no block: a single attempt)."""
    if config is None:
        return NO_RETRY
    return RetryPolicy(
        attempts=config.attempts,
        backoff_s=config.backoff_s,
        multiplier=config.multiplier,
        max_backoff_s=config.max_backoff_s,
        jitter=config.jitter,
        retry_on=frozenset(config.retry_on),
    )


def compile_services(
    problems: Problems,
    raw: Any,
    default_timeout: float | None,
    classes: Registry[Any],
    breaker_listener: Callable[[str, BreakerState], None] | None,
) -> dict[str, GuardedService]:
    """Each service of ``raw`` (the ``services`` block) that compiles, by name; the problems
    of the others are recorded."""
    out: dict[str, GuardedService] = {}
    if not isinstance(raw, dict):
        if raw is not None:
            problems.error(("services",), "must be a mapping of service name to service")
        return out
    for name, body in raw.items():
        path: PathKey = ("services", name)
        config = problems.parse(ServiceConfig, body, path)
        if config is None:
            continue
        cls = problems.lookup(classes, config.class_, (*path, "class"))
        if cls is None:
            continue
        try:
            instance = cls.from_params(name, config.params)
        except ValidationError as exc:
            problems.validation_errors(cls.Params, exc, (*path, "params"))
            continue
        for param, message in instance.warnings():
            problems.warnings.append(f"{format_location((*path, 'params', param))}: {message}")
        check_expressions(problems, instance.expressions(), (*path, "params"))
        out[name] = GuardedService(
            name,
            instance,
            timeout_s=config.timeout_s or default_timeout,
            retry=retry_policy(config.retry),
            breaker=_breaker(name, config.circuit_breaker, breaker_listener),
            rng=random.Random(),
        )
    return out


def _breaker(
    name: str,
    config: CircuitBreakerConfig | None,
    listener: Callable[[str, BreakerState], None] | None,
) -> CircuitBreaker | None:
    if config is None:
        return None
    return CircuitBreaker(
        name,
        failure_threshold=config.failure_threshold,
        reset_timeout_s=config.reset_timeout_s,
        half_open_max_calls=config.half_open_max_calls,
        on_state_change=listener,
    )


def bind_services(
    problems: Problems,
    rule: Any,
    services: Mapping[str, GuardedService],
    declared: Any,
    path: PathKey,
) -> bool:
    """Bind the services the rule's params name; False when one is unknown or broken."""
    names = {p: getattr(rule.params, p) for p in rule.service_params}
    if not known_services(problems, names, services, declared, path):
        return False
    rule.bind_services({name: services[name] for name in names.values()})
    return True


def known_services(
    problems: Problems,
    names: Mapping[str, Any],
    services: Mapping[str, GuardedService],
    declared: Any,
    path: PathKey,
) -> bool:
    """Whether every service ``names`` (param → name) gives is compiled; one that is not
    ``declared`` (the ``services`` block) is an error at its param (a declared but broken
    one has its own errors)."""
    ok = True
    for param, name in names.items():
        if name in services:
            continue
        ok = False
        if not (isinstance(declared, dict) and name in declared):
            known = (
                ", ".join(sorted(declared)) if isinstance(declared, dict) and declared else "none"
            )
            problems.error((*path, param), f"unknown service '{name}' (defined: {known})")
    return ok
