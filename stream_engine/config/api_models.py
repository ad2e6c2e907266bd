"""The ``api:`` section of the pipeline file: how ``stream-engine serve`` (and ``dev``) answer
over HTTP - listener, limits, the bounded view of decisions, keys, rates, TLS and CORS."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from stream_engine.config.base_model import ConfigModel

#: What a key may be allowed to do: ``decide`` (POST /v1/decide), ``submit`` (POST
#: /v1/records), ``read`` (GET /v1/decisions/{id}).
Scope = Literal["decide", "submit", "read"]
SCOPES: tuple[Scope, ...] = ("decide", "submit", "read")
#: How a key is stored: ``sha256:`` and 64 hex digits of the key (API keys are random and long,
#: so a fast hash is safe and a request pays microseconds, not a password hash's 50 ms).
KEY_HASH_PATTERN = r"^sha256:[0-9a-f]{64}$"
API_PORT = 8080


class ApiKeyConfig(ConfigModel):
    """One caller: its id (in logs and metrics, never the key), the key's hash, its scopes and
    its rate (requests per second, ``burst`` at once; none: unlimited)."""

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    hash: SecretStr
    scopes: list[Scope] = Field(default_factory=lambda: list(SCOPES), min_length=1)
    rate_per_s: float | None = Field(None, gt=0)
    burst: int | None = Field(None, ge=1)

    @field_validator("hash")
    @classmethod
    def _is_a_hash(cls, value: SecretStr) -> SecretStr:
        if re.fullmatch(KEY_HASH_PATTERN, value.get_secret_value()) is None:
            raise ValueError(
                "must be 'sha256:' and 64 lowercase hex digits of the key "
                "('stream-engine api-key' makes a key and its hash)"
            )
        return value


class ApiTlsConfig(ConfigModel):
    """HTTPS for the listener: a certificate chain and its private key (PEM files)."""

    cert_file: str
    key_file: str
    #: Client certificates signed by this CA are required when given (mutual TLS).
    client_ca_file: str | None = None


class ApiCorsConfig(ConfigModel):
    """Browsers may call the API from these origins (none unless listed)."""

    origins: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    max_age_s: int = Field(600, ge=0, le=86_400)


class ApiViewConfig(ConfigModel):
    """The decisions the API keeps for ``GET /v1/decisions/{id}``: the latest per record, at
    most ``max_decisions`` of them and none older than ``retention_s`` (rebuilt from the output
    topics on start)."""

    max_decisions: int = Field(100_000, ge=1, le=10_000_000)
    retention_s: float = Field(3600.0, gt=0, le=30 * 24 * 3600.0)


class ApiConfig(ConfigModel):
    """The HTTP API (``stream-engine serve``): defaults suit a local try-out; a deployment
    lists its ``keys`` (or says ``anonymous: true`` on purpose)."""

    host: str = "127.0.0.1"
    port: int = Field(API_PORT, ge=0, le=65535)
    #: How long ``POST /v1/decide`` waits for the decision by default, and at most
    #: (``?timeout_ms=``); past it the answer is 202 with the link to poll.
    timeout_ms: int = Field(2000, ge=1)
    max_timeout_ms: int = Field(30_000, ge=1, le=600_000)
    #: Records in one ``{"records": [...]}`` request at most.
    max_records: int = Field(100, ge=1, le=10_000)
    #: A request body's size at most (each record is also held to ``runtime.max_message_bytes``).
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    #: Decide calls waiting at once at most; past it 503 (the process's memory stays bounded).
    max_pending: int = Field(10_000, ge=1)
    keys: list[ApiKeyConfig] = Field(default_factory=list)
    #: Serve without keys: every caller may do everything. ``dev`` always may.
    anonymous: bool = False
    tls: ApiTlsConfig | None = None
    cors: ApiCorsConfig | None = None
    view: ApiViewConfig = Field(default_factory=ApiViewConfig)
    #: Log each request (method, path template, status, key id, time) - never bodies or keys.
    access_log: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> ApiConfig:
        if self.timeout_ms > self.max_timeout_ms:
            raise ValueError(
                f"timeout_ms ({self.timeout_ms}) is over max_timeout_ms ({self.max_timeout_ms})"
            )
        ids = [key.id for key in self.keys]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"key ids must be unique; listed more than once: {', '.join(twice)}")
        return self
