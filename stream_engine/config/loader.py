"""From a file to an effective configuration: environment overlay, ``${VAR}`` interpolation,
then a stable content hash of what will actually run (secrets left out)."""

from __future__ import annotations

import copy
import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from stream_engine.config.source import PathKey, Source, format_location, read_source, walk_lines
from stream_engine.errors import ConfigError, ConfigErrors

ENV_VAR = "STREAM_ENGINE_ENV"
REPLACE = "$replace"
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
#: What ``config_hash`` covers of a secret's literal text (written in the file, or as the
#: default of a ``${VAR:-default}``): a fixed placeholder, never the text itself.
SECRET_PLACEHOLDER = "<secret>"


@dataclass
class EffectiveConfig:
    """The raw mapping that will be validated, where it came from, and its identity."""

    source: Source
    data: dict[str, Any]
    lines: dict[PathKey, int]
    environment: str | None
    config_hash: str
    #: The mapping as written, after the overlay and before ``${VAR}`` interpolation (to tell
    #: a secret read from the environment from one written in the file).
    written: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def path(self) -> Path | None:
        """The file the configuration was read from."""
        return self.source.path


def deep_merge(
    base: dict[str, Any],
    overlay: Mapping[str, Any],
    lines: dict[PathKey, int],
    overlay_lines: Mapping[PathKey, int],
    path: PathKey = (),
) -> dict[str, Any]:
    """Merge ``overlay`` into ``base``: mappings merge key by key, anything else replaces; a
    mapping with ``$replace: true`` replaces the base mapping whole (to swap a service's class
    and params, say). Lines of overlaid values point at the overlay, so errors point where the
    value was set."""
    out = dict(base)
    for key, value in overlay.items():
        child = (*path, key)
        replace = isinstance(value, Mapping) and value.get(REPLACE) is True
        if replace:
            value = {k: v for k, v in value.items() if k != REPLACE}
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) and not replace:
            out[key] = deep_merge(out[key], value, lines, overlay_lines, child)
        else:
            out[key] = copy.deepcopy(value)
            for sub in [p for p in lines if p[: len(child)] == child]:
                del lines[sub]
            for sub, line in walk_lines(overlay_lines, child).items():
                lines[(*child, *sub)] = line
        if child in overlay_lines:
            lines[child] = overlay_lines[child]
    return out


def interpolate(
    value: Any, environ: Mapping[str, str], path: PathKey, errors: list[ConfigError]
) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string; ``$$`` is a literal ``$``."""
    if isinstance(value, str):
        if "$" not in value:
            return value

        def substitute(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name, default = match.group(1), match.group(2)
            found = environ.get(name)
            if found is not None and (found != "" or default is None):
                return found
            if default is not None:
                return default
            errors.append(
                ConfigError(format_location(path), f"environment variable '{name}' is not set")
            )
            return ""

        return _VAR.sub(substitute, value)
    if isinstance(value, dict):
        return {k: interpolate(v, environ, (*path, k), errors) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, environ, (*path, i), errors) for i, v in enumerate(value)]
    return value


def content_hash(data: Mapping[str, Any]) -> str:
    """A short, stable hash of the effective configuration (key order does not matter)."""
    canonical = orjson.dumps(data, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    return hashlib.sha256(canonical).hexdigest()[:12]


def secret_form(written: Any) -> Any:
    """What ``config_hash`` covers of a secret as written: its ``${VAR}`` references (moving a
    secret to another variable changes the hash, rotating its value does not), with every
    literal part - text around the references, ``:-`` defaults - replaced by a placeholder, so
    that no part of a key's value is ever hashed."""
    if written is None:
        return None
    if not isinstance(written, str):
        return SECRET_PLACEHOLDER
    parts: list[str] = []
    last = 0
    for match in _VAR.finditer(written):
        if match.group(0) == "$$":
            continue  # an escaped '$': literal text
        if match.start() > last:
            parts.append(SECRET_PLACEHOLDER)
        default = "" if match.group(2) is None else ":-" + SECRET_PLACEHOLDER
        parts.append(f"${{{match.group(1)}{default}}}")
        last = match.end()
    if last < len(written):
        parts.append(SECRET_PLACEHOLDER)
    return "".join(parts)


def written_literally(written: Any) -> bool:
    """Whether a secret as written holds any literal text (beyond ``${VAR}`` references)."""
    form = secret_form(written)
    return isinstance(form, str) and SECRET_PLACEHOLDER in form


def hashed_part(data: Mapping[str, Any], written: Mapping[str, Any]) -> dict[str, Any]:
    """What ``config_hash`` covers: the effective configuration without ``kafka`` (where it
    runs, not what it decides), with each secret - ``pii.hash_key``, HTTP service ``headers``
    - in its ``secret_form``, never its value: the hash is in every decision, and a hash of a
    weak secret can be guessed offline."""
    out = {k: v for k, v in data.items() if k != "kafka"}
    pii, pii_written = out.get("pii"), written.get("pii")
    if isinstance(pii, dict) and isinstance(pii_written, dict) and "hash_key" in pii:
        out["pii"] = {**pii, "hash_key": secret_form(pii_written.get("hash_key"))}
    runtime, runtime_written = out.get("runtime"), written.get("runtime")
    if isinstance(runtime, dict) and isinstance(runtime_written, dict):
        keys = runtime_written.get("envelope_keys")
        if isinstance(keys, dict) and "envelope_keys" in runtime:
            out["runtime"] = {
                **runtime,
                "envelope_keys": {k: secret_form(v) for k, v in keys.items()},
            }
    services, services_written = out.get("services"), written.get("services")
    if isinstance(services, dict) and isinstance(services_written, dict):
        out["services"] = {
            name: _headers_as_written(body, services_written.get(name))
            for name, body in services.items()
        }
    return out


def _headers_as_written(body: Any, written: Any) -> Any:
    params = body.get("params") if isinstance(body, dict) else None
    if not isinstance(params, dict) or "headers" not in params:
        return body
    written_params = written.get("params") if isinstance(written, dict) else None
    headers = written_params.get("headers") if isinstance(written_params, dict) else None
    if isinstance(headers, dict):
        headers = {name: secret_form(value) for name, value in headers.items()}
    else:
        headers = secret_form(headers)
    return {**body, "params": {**params, "headers": headers}}


def resolve(
    source: Source, environment: str | None = None, environ: Mapping[str, str] | None = None
) -> EffectiveConfig:
    """Apply the chosen environment's overlay, then interpolate the environment variables."""
    environ = os.environ if environ is None else environ
    if environment is None:
        environment = environ.get(ENV_VAR) or None
    data = dict(source.data)
    lines = dict(source.lines)
    overlays = data.pop("environments", None) or {}
    errors: list[ConfigError] = []
    if not isinstance(overlays, dict):
        raise ConfigError("environments", "must be a mapping of environment name to overrides")
    if environment is not None:
        overlay = overlays.get(environment)
        if overlay is None:
            known = ", ".join(sorted(overlays)) or "none defined"
            raise ConfigError(
                "environments", f"unknown environment '{environment}' (known: {known})"
            )
        if not isinstance(overlay, dict):
            raise ConfigError(f"environments.{environment}", "must be a mapping of overrides")
        if "environments" in overlay:
            raise ConfigError(
                f"environments.{environment}.environments", "an overlay cannot define environments"
            )
        overlay_lines = walk_lines(source.lines, ("environments", environment))
        data = deep_merge(data, overlay, lines, overlay_lines)
    written = data
    data = interpolate(data, environ, (), errors)
    if errors:
        raise ConfigErrors(errors)
    return EffectiveConfig(
        source, data, lines, environment, content_hash(hashed_part(data, written)), written
    )


def load_effective(
    path: str | Path, environment: str | None = None, environ: Mapping[str, str] | None = None
) -> EffectiveConfig:
    """Read a pipeline file and resolve it for one environment."""
    return resolve(read_source(path), environment, environ)
