"""From a file to an effective configuration: environment overlay, ``${VAR}`` interpolation,
then a stable content hash of what will actually run (secrets left out).

Inside CEL a ``${VAR}`` value is inserted as a literal, never as expression text
(``interpolate_cel``): the compiler, which knows which strings are CEL, applies it to them."""

from __future__ import annotations

import copy
import dataclasses
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
    #: The mapping as written (overlay applied, ``${VAR}`` not yet replaced).
    written: dict[str, Any] = field(default_factory=dict, repr=False)
    #: Where the variables were read.
    environ: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def path(self) -> Path | None:
        """The file the configuration was read from."""
        return self.source.path

    def with_values(self, values: Mapping[PathKey, Any]) -> EffectiveConfig:
        """The same configuration with the value at each path of ``values`` replaced (paths
        that exist), and the hash of the result."""
        if not values:
            return self
        data = copy.deepcopy(self.data)
        for path, value in values.items():
            *parents, last = path
            node: Any = data
            for part in parents:
                node = node[part]
            node[last] = value
        return dataclasses.replace(
            self, data=data, config_hash=content_hash(hashed_part(data, self.written))
        )


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


def _variable(
    match: re.Match[str], environ: Mapping[str, str], path: PathKey, errors: list[ConfigError]
) -> str:
    """The text of one ``${VAR}``, ``${VAR:-default}`` or ``$$`` (an unset variable without
    a default is an error, and empty text)."""
    if match.group(0) == "$$":
        return "$"
    name, default = match.group(1), match.group(2)
    found = environ.get(name)
    if found is not None and (found != "" or default is None):
        return found
    if default is not None:
        return default
    errors.append(ConfigError(format_location(path), f"environment variable '{name}' is not set"))
    return ""


def interpolate(
    value: Any, environ: Mapping[str, str], path: PathKey, errors: list[ConfigError]
) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string; ``$$`` is a literal ``$``."""
    if isinstance(value, str):
        if "$" not in value:
            return value
        return _VAR.sub(lambda match: _variable(match, environ, path, errors), value)
    if isinstance(value, dict):
        return {k: interpolate(v, environ, (*path, k), errors) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, environ, (*path, i), errors) for i, v in enumerate(value)]
    return value


#: A value that reads as a CEL number or boolean as a whole is inserted as that literal.
_CEL_SCALAR = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?|true|false")
#: Characters a literal inserted outside a string must not touch (it would join them: ``x5``).
_CEL_JOINS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.'\"`")
_CEL_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_CEL_RAW_PREFIXES = frozenset({"r", "br", "rb"})
_CEL_PREFIXES = frozenset({*_CEL_RAW_PREFIXES, "b"})


def cel_escaped(value: str, quote: str, as_bytes: bool = False) -> str:
    """``value`` as the inside of a CEL string (or bytes) literal closed by ``quote``."""
    out = []
    for char in value:
        if char in _CEL_ESCAPES:
            out.append(_CEL_ESCAPES[char])
        elif char == quote:
            out.append("\\" + char)
        elif char < " " or char == "\x7f":
            out.append(f"\\x{ord(char):02x}" if as_bytes else f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return "".join(out)


def cel_literal(value: str) -> str:
    """A CEL literal of ``value``: a number or boolean when the whole value reads as one,
    else a double-quoted string."""
    if _CEL_SCALAR.fullmatch(value):
        return value
    return '"' + cel_escaped(value, '"') + '"'


@dataclass
class _CelLexer:
    """Where a scan of CEL source stands: in a string literal (closed by ``quote``; raw or
    bytes by its prefix), in a ``//`` comment, or in expression text."""

    quote: str | None = None
    raw: bool = False
    as_bytes: bool = False
    comment: bool = False

    def step(self, text: str, i: int) -> int:
        """Consume the token piece at ``text[i]``; returns where the next one starts."""
        char = text[i]
        if self.comment:
            self.comment = char != "\n"
            return i + 1
        if self.quote is None:
            if text.startswith("//", i):
                self.comment = True
                return i + 2
            if char in "'\"":
                self.quote = char * 3 if text.startswith(char * 3, i) else char
                prefix = re.search(r"[A-Za-z0-9_]*$", text[:i])
                word = prefix.group().lower() if prefix else ""
                self.raw = word in _CEL_RAW_PREFIXES
                self.as_bytes = word in _CEL_PREFIXES and "b" in word
                return i + len(self.quote)
            return i + 1
        if char == "\\" and not self.raw:
            return i + 2
        if text.startswith(self.quote, i):
            length = len(self.quote)
            self.quote = None
            return i + length
        return i + 1


def interpolate_cel(
    source: str, environ: Mapping[str, str], path: PathKey, errors: list[ConfigError]
) -> str:
    """Replace each ``${VAR}`` of a CEL expression by a literal of its value, so a value never
    becomes expression text: inside a string literal the value is escaped for that literal;
    in a raw string (``r'...'``, no escapes) a value holding its quote or a line break is an
    error; outside a string it becomes a literal of its own (``cel_literal``), set apart by a
    space where it would touch a name or a number; in a comment it is escaped onto the line."""
    if "$" not in source:
        return source
    lexer = _CelLexer()
    out: list[str] = []
    i = 0
    while i < len(source):
        match = _VAR.match(source, i)
        if match is None:
            end = lexer.step(source, i)
            out.append(source[i:end])
            i = end
            continue
        value = _variable(match, environ, path, errors)
        text = value if match.group(0) == "$$" else _cel_insert(value, lexer, out, source, match)
        if text is None:
            errors.append(
                ConfigError(
                    format_location(path),
                    f"the value of ${{{match.group(1)}}} holds a quote or a line break, which a "
                    "raw string (r'...') cannot hold: drop the r prefix",
                )
            )
        out.append(text or "")
        i = match.end()
    return "".join(out)


def _cel_insert(
    value: str, lexer: _CelLexer, before: list[str], source: str, match: re.Match[str]
) -> str | None:
    """The text that puts ``value`` where ``match`` stands (None: it cannot be put there)."""
    if lexer.comment:
        return cel_escaped(value, "")
    if lexer.quote is not None:
        if not lexer.raw:
            return cel_escaped(value, lexer.quote[0], lexer.as_bytes)
        if lexer.quote[0] in value or "\n" in value or "\r" in value:
            return None
        return value
    literal = cel_literal(value)
    last = before[-1][-1:] if before else ""
    after = source[match.end() : match.end() + 1]
    left = " " if last and last in _CEL_JOINS else ""
    right = " " if after and after in _CEL_JOINS else ""
    return f"{left}{literal}{right}"


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


#: Top-level sections ``config_hash`` leaves out: they change nothing a stage decides.
NOT_HASHED = frozenset({"kafka", "api"})


def hashed_part(data: Mapping[str, Any], written: Mapping[str, Any]) -> dict[str, Any]:
    """What ``config_hash`` covers: the effective configuration without ``kafka`` and ``api``
    (where it runs and how it is served, not what it decides), with each secret -
    ``pii.hash_key``, HTTP service ``headers`` - in its ``secret_form``, never its value: the
    hash is in every decision, and a hash of a weak secret can be guessed offline."""
    out = {k: v for k, v in data.items() if k not in NOT_HASHED}
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
    config_hash = content_hash(hashed_part(data, written))
    return EffectiveConfig(source, data, lines, environment, config_hash, written, environ)


def load_effective(
    path: str | Path, environment: str | None = None, environ: Mapping[str, str] | None = None
) -> EffectiveConfig:
    """Read a pipeline file and resolve it for one environment."""
    return resolve(read_source(path), environment, environ)
