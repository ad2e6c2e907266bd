"""Who may call the API: API keys (``X-API-Key``) or bearer tokens (``Authorization: Bearer``)
checked against the SHA-256 hashes ``api.keys`` lists, each key's scopes, and its rate as a
token bucket. No key → 401, a key without the scope → 403, over the rate → 429 with
``Retry-After``. Keys never appear in logs, metrics or answers: callers are named by key id."""

from __future__ import annotations

import hashlib
import math
import secrets
import time
from dataclasses import dataclass, field

from stream_engine.api.problems import ApiProblem, ProblemKind
from stream_engine.config.api_models import SCOPES, ApiConfig, ApiKeyConfig, Scope

#: The caller of a request made without a key where the API allows that (``dev``,
#: ``api.anonymous``).
ANONYMOUS = "anonymous"
API_KEY_HEADER = "X-API-Key"
BEARER = "bearer "


def key_hash(key: str) -> str:
    """How a key is listed in ``api.keys``: ``sha256:`` and its hex digest."""
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    """A fresh API key: 32 random bytes, URL-safe (``stream-engine api-key``)."""
    return "se_" + secrets.token_urlsafe(32)


@dataclass(slots=True)
class _Bucket:
    """A token bucket: ``rate`` tokens a second, at most ``burst`` saved up; full at its
    first request (whatever clock ``now`` is read from)."""

    rate: float
    burst: float
    tokens: float = field(init=False)
    at: float | None = None

    def __post_init__(self) -> None:
        self.tokens = self.burst

    def take(self, now: float) -> float:
        """0 when a token was taken; else the seconds until one will be there."""
        elapsed = 0.0 if self.at is None else max(0.0, now - self.at)
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


@dataclass(frozen=True, slots=True)
class Caller:
    """Who made a request: a key id (or ``anonymous``) and what it may do."""

    key_id: str
    scopes: frozenset[str]


class Guard:
    """Authenticates requests and enforces scopes and rates for one API process."""

    def __init__(self, config: ApiConfig, anonymous: bool = False) -> None:
        self.anonymous = anonymous or config.anonymous
        self._keys: dict[str, ApiKeyConfig] = {k.hash.get_secret_value(): k for k in config.keys}
        self._buckets: dict[str, _Bucket] = {
            k.id: _Bucket(k.rate_per_s, float(k.burst or max(1, math.ceil(k.rate_per_s))))
            for k in config.keys
            if k.rate_per_s is not None
        }

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The configured key ids (the bounded values of the ``key`` metric label)."""
        return tuple(k.id for k in self._keys.values())

    def caller(self, headers: dict[str, str] | object) -> Caller:
        """The request's caller from its headers; ``ApiProblem`` 401 without a valid key."""
        get = getattr(headers, "get")  # noqa: B009 - a CIMultiDictProxy or a dict
        token = get(API_KEY_HEADER)
        authorization = get("Authorization")
        if token is None and authorization is not None:
            if not authorization.lower().startswith(BEARER):
                raise ApiProblem(
                    ProblemKind.UNAUTHORIZED,
                    "the Authorization header must be 'Bearer <key>'",
                    headers={"WWW-Authenticate": 'Bearer realm="stream-engine"'},
                )
            token = authorization[len(BEARER) :].strip()
        if token is None:
            if self.anonymous:
                return Caller(ANONYMOUS, frozenset(SCOPES))
            raise ApiProblem(
                ProblemKind.UNAUTHORIZED,
                f"give an API key in {API_KEY_HEADER} or 'Authorization: Bearer <key>'",
                headers={"WWW-Authenticate": 'Bearer realm="stream-engine"'},
            )
        key = self._keys.get(key_hash(token))
        if key is None:
            raise ApiProblem(
                ProblemKind.UNAUTHORIZED,
                "the API key is not valid",
                headers={"WWW-Authenticate": 'Bearer realm="stream-engine", error="invalid_token"'},
            )
        return Caller(key.id, frozenset(key.scopes))

    def allow(self, caller: Caller, scope: Scope, now: float | None = None) -> None:
        """Refuse (403, 429) a caller without the scope or over its rate."""
        if scope not in caller.scopes:
            raise ApiProblem(
                ProblemKind.FORBIDDEN,
                f"key '{caller.key_id}' lacks the '{scope}' scope this endpoint needs",
            )
        bucket = self._buckets.get(caller.key_id)
        if bucket is None:
            return
        wait = bucket.take(time.monotonic() if now is None else now)
        if wait > 0:
            retry_after = max(1, math.ceil(wait))
            raise ApiProblem(
                ProblemKind.RATE_LIMITED,
                f"key '{caller.key_id}' is over its rate of {bucket.rate:g} requests a second",
                {"retry_after_s": retry_after},
                {"Retry-After": str(retry_after)},
            )
