"""The options, arguments and the error boundary every ``stream-engine`` command shares."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import click

from stream_engine.cli.render import err
from stream_engine.errors import ConfigError, ConfigErrors, StreamEngineError

if TYPE_CHECKING:
    from stream_engine.config.compiled import CompiledPipeline

P = ParamSpec("P")
R = TypeVar("R")

ENV_OPTION = click.option(
    "--env",
    "environment",
    metavar="ENV",
    envvar="STREAM_ENGINE_ENV",
    help="Environment overlay to apply (development, staging, production...). "
    "Default: $STREAM_ENGINE_ENV, else none.",
)
CONFIG_ARG = click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
ALLOW_OUTSIDE_OPTION = click.option(
    "--allow-outside",
    is_flag=True,
    help="Let the config name files outside its own directory (topics.file, samples); "
    "by default such a path is an error.",
)

METRICS_PORT_OPTION = click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    help="Port of /metrics, /health and /ready (default: runtime.metrics_port, 9464; "
    "0: any free port - the chosen one is printed).",
)

API_PORT_OPTION = click.option(
    "--api-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port of the HTTP API (default: api.port, 8080; 0: any free port).",
)
API_HOST_OPTION = click.option(
    "--api-host",
    default=None,
    help="Address the HTTP API listens on (default: api.host, 127.0.0.1).",
)


BROKER_OPTION = click.option(
    "--broker",
    metavar="HOST:PORT",
    help="Bootstrap servers (comma-separated). Default: $STREAM_ENGINE_BROKER, else the "
    "config's kafka.bootstrap_servers.",
)


METRICS_HOST_OPTION = click.option(
    "--metrics-host",
    metavar="HOST",
    envvar="STREAM_ENGINE_METRICS_HOST",
    help="Address /metrics, /health and /ready listen on (default: $STREAM_ENGINE_METRICS_HOST, "
    "else runtime.metrics_host, 127.0.0.1; 0.0.0.0 for every interface).",
)

CATALOGUE_FORMAT_OPTION = click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="A table per class, or JSON (name → description, params, required).",
)


def boundary(func: Callable[P, R]) -> Callable[P, R]:
    """Turn stream_engine errors into one line each on stderr and exit 1 - never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except ConfigErrors as exc:
            for error in exc.errors:
                err.print(f"error: {error}", markup=False)
            err.print(f"{len(exc.errors)} error(s)", style="bold red")
        except ConfigError as exc:
            err.print(f"error: {exc}", markup=False)
        except StreamEngineError as exc:
            err.print(f"error: {exc}", markup=False)
        sys.exit(1)

    return wrapper


def load(config: Path, environment: str | None, allow_outside: bool) -> CompiledPipeline:
    """The compiled pipeline of ``config`` with the overlay ``environment``."""
    from stream_engine.pipeline import load_pipeline

    return load_pipeline(config, environment, allow_outside=allow_outside)
