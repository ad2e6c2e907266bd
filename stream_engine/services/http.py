"""An async HTTP JSON service adapter (aiohttp): the request is sent as a JSON body (or as
query parameters for GET), the response must be a JSON object."""

from __future__ import annotations

import ssl
from typing import Any, Literal

import aiohttp
import orjson
from pydantic import Field, SecretStr, field_validator

from stream_engine.errors import ServiceClientError, ServiceError
from stream_engine.services.base import ConfiguredService, ServiceParams, register_service


class HttpJsonParams(ServiceParams):
    url: str
    method: Literal["GET", "POST", "PUT"] = "POST"
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    response_path: list[str] = Field(default_factory=list)
    verify_tls: bool = True
    ca_file: str | None = None
    max_connections: int = Field(100, ge=1)

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        return value


@register_service("HttpJsonService")
class HttpJsonService(ConfiguredService):
    """Calls ``url`` with the request; 5xx, transport errors and bad JSON raise ``ServiceError``
    (retryable, counted by the breaker); 4xx raises ``ServiceClientError`` (neither).
    Header values are secrets: they never appear in errors or logs."""

    Params = HttpJsonParams

    def __init__(self, name: str, params: HttpJsonParams) -> None:
        super().__init__(name, params)
        self.params: HttpJsonParams = params
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            p = self.params
            context: ssl.SSLContext | bool = p.verify_tls
            if p.ca_file:
                context = ssl.create_default_context(cafile=p.ca_file)
            connector = aiohttp.TCPConnector(limit=p.max_connections, ssl=context)
            headers = {k: v.get_secret_value() for k, v in p.headers.items()}
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers=headers,
                json_serialize=lambda o: orjson.dumps(o).decode(),
            )
        return self._session

    async def call(self, request: dict[str, Any]) -> dict[str, Any]:
        """One HTTP exchange; the guard around it adds timeout, retries and the breaker."""
        p = self.params
        session = self._open()
        kwargs: dict[str, Any] = {}
        if p.method == "GET":
            kwargs["params"] = {k: "" if v is None else str(v) for k, v in request.items()}
        else:
            kwargs["json"] = request
        try:
            async with session.request(p.method, p.url, **kwargs) as response:
                body = await response.read()
                status = response.status
        except aiohttp.ClientError as exc:
            raise ServiceError(f"{self.name}: {type(exc).__name__}") from exc
        if 400 <= status < 500 and status not in (408, 429):
            raise ServiceClientError(f"{self.name}: HTTP {status}")
        if status >= 400:
            raise ServiceError(f"{self.name}: HTTP {status}")
        try:
            value: Any = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ServiceError(f"{self.name}: response is not JSON") from exc
        for key in p.response_path:
            value = value.get(key) if isinstance(value, dict) else None
        if not isinstance(value, dict):
            raise ServiceError(f"{self.name}: response is not a JSON object")
        return value

    async def close(self) -> None:
        """Close the connection pool."""
        if self._session is not None and not self._session.closed:
            await self._session.close()
