"""Envelope authentication: every message a worker writes carries an HMAC-SHA256 of its bytes
and its topic, keyed by a pipeline key, and a stage verifies an envelope before it trusts the
results, audit, cost and source in it. Without this, anyone who can write to a stage topic could
make that stage approve a record whose earlier stages never ran.

The tag is the header ``se.auth``: ``<key id>:<hex>``. It covers the topic the message was
written to - so an envelope moved to another stage's topic no longer verifies - and its value;
a dead letter's tag also covers its ``dlq.*`` headers, which ``dlq replay`` acts on. Keys have
ids, so a new key can sign while the old one still verifies what is in flight."""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stream_engine.config.models import MIN_KEY_BYTES
from stream_engine.errors import ConfigError
from stream_engine.runtime.stage.codec import AUTH_HEADER, DLQ_PREFIX

if TYPE_CHECKING:
    from stream_engine.config.compiled import CompiledPipeline

log = logging.getLogger(__name__)

#: Headers a dead letter's tag covers (``dlq.attempt`` among them).
BOUND_PREFIX = DLQ_PREFIX
#: A key from the environment, for deployments that keep it out of the file: ``id:secret``.
KEY_ENV = "STREAM_ENGINE_ENVELOPE_KEY"
_DOMAIN = b"stream-engine/envelope/1\x00"
_TAG_BYTES = 16

Headers = Sequence[tuple[str, bytes]]


def _frame(part: bytes | None) -> bytes:
    if part is None:  # a header without a value
        return b"\xff\xff\xff\xff"
    return len(part).to_bytes(4, "big") + part


@dataclass(frozen=True, slots=True)
class EnvelopeAuth:
    """The keys of one pipeline: ``signing`` tags what this worker writes, all verify."""

    keys: Mapping[str, bytes]
    signing: str

    def tag(self, topic: str, value: bytes, bound: Headers = ()) -> bytes:
        """The ``se.auth`` header value for ``value`` written to ``topic`` (``bound``: the
        ``dlq.*`` headers it covers too)."""
        mac = _mac(self.keys[self.signing], topic, value, bound)
        return self.signing.encode() + b":" + mac

    def verify(self, topic: str, value: bytes, headers: Headers, bind: bool = False) -> str | None:
        """None when the message's tag was made by one of the keys for exactly this topic and
        value (and, with ``bind``, its ``dlq.*`` headers); else why not, for the dead letter."""
        tag = None
        for name, raw in headers:
            if name == AUTH_HEADER:
                tag = raw
        if tag is None:
            return f"no {AUTH_HEADER} header: not written by a worker of this pipeline"
        key_id, _, mac = tag.partition(b":")
        key = self.keys.get(key_id.decode("ascii", "replace"))
        if key is None:
            return f"signed with unknown key id {key_id[:32].decode('ascii', 'replace')!r}"
        bound = _bound(headers) if bind else ()
        if not hmac.compare_digest(mac, _mac(key, topic, value, bound)):
            return "the authentication tag does not match: altered, or written for another topic"
        return None

    def seal(
        self, topic: str, value: bytes, headers: Iterable[tuple[str, bytes]], bind: bool = False
    ) -> list[tuple[str, bytes]]:
        """``headers`` without any old tag, plus this worker's tag (covering the ``dlq.*``
        headers too with ``bind``: a dead letter's)."""
        kept = [(name, raw) for name, raw in headers if name != AUTH_HEADER]
        kept.append((AUTH_HEADER, self.tag(topic, value, _bound(kept) if bind else ())))
        return kept

    @classmethod
    def from_text(cls, text: str, where: str = KEY_ENV) -> EnvelopeAuth:
        """One key written ``id:secret`` (as ``$STREAM_ENGINE_ENVELOPE_KEY`` holds it)."""
        key_id, sep, secret = text.partition(":")
        if not sep or not key_id or len(secret.encode()) < MIN_KEY_BYTES:
            raise ConfigError(
                where, f"must be 'id:secret', the secret at least {MIN_KEY_BYTES} bytes"
            )
        return cls({key_id: secret.encode("utf-8")}, key_id)

    @classmethod
    def session(cls) -> EnvelopeAuth:
        """A random key for one process's life (``dev``; offline tools)."""
        return cls({"session": secrets.token_bytes(32)}, "session")


def _bound(headers: Headers) -> list[tuple[str, bytes]]:
    """The headers a dead letter's tag covers, in a canonical order."""
    return sorted((name, raw) for name, raw in headers if name.startswith(BOUND_PREFIX))


@functools.lru_cache(maxsize=64)
def _keyed(key: bytes) -> hmac.HMAC:
    """HMAC-SHA256 under ``key`` with the domain already in: each message copies it."""
    return hmac.new(key, _DOMAIN, hashlib.sha256)


def _mac(key: bytes, topic: str, value: bytes, bound: Headers) -> bytes:
    mac = _keyed(key).copy()
    parts = [_frame(topic.encode())]
    for name, raw in bound:
        parts += (_frame(name.encode()), _frame(raw))
    parts.append(len(value).to_bytes(4, "big"))
    mac.update(b"".join(parts))
    mac.update(value)
    return mac.digest()[:_TAG_BYTES].hex().encode()


def envelope_auth(
    pipeline: CompiledPipeline, environ: Mapping[str, str] | None = None
) -> EnvelopeAuth | None:
    """The pipeline's keys (``runtime.envelope_keys``, or ``$STREAM_ENGINE_ENVELOPE_KEY`` as
    ``id:secret``); None when ``runtime.envelope_auth`` is off. ``ConfigError`` when it is on
    and no key is given: a worker never runs unauthenticated by accident."""
    runtime = pipeline.config.runtime
    if not runtime.envelope_auth:
        return None
    keys = {k: v.get_secret_value().encode("utf-8") for k, v in runtime.envelope_keys.items()}
    env = os.environ if environ is None else environ
    from_env = env.get(KEY_ENV)
    if from_env:
        given = EnvelopeAuth.from_text(from_env)
        keys = {**given.keys, **{k: v for k, v in keys.items() if k != given.signing}}
    if not keys:
        raise ConfigError(
            "runtime.envelope_keys",
            "no envelope key: workers sign what they write and verify what they read; give a "
            f"key (${{VAR}}, or ${KEY_ENV}=id:secret), or set runtime.envelope_auth: off "
            "to run without (anyone who can write a stage topic could then decide for it)",
        )
    signing = runtime.envelope_key_id if runtime.envelope_key_id in keys else next(iter(keys))
    if from_env:
        signing = from_env.partition(":")[0]
    return EnvelopeAuth(keys, signing)
