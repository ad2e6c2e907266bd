"""An async HTTP JSON service adapter (aiohttp): the request is sent as a JSON body (or as
query parameters for GET), the response must be a JSON object."""

from __future__ import annotations

import ipaddress
import ssl
from typing import Annotated, Any, Literal

import aiohttp
import orjson
from pydantic import AfterValidator, Field, SecretStr, ValidationInfo, field_validator
from yarl import URL

from stream_engine.errors import ServiceClientError, ServiceError
from stream_engine.services.base import ConfiguredService, ServiceParams, register_service

#: Statuses that redirect; any other status is the answer.
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
#: Redirects one call follows (``follow_redirects: same_origin``) before it gives up.
MAX_REDIRECTS = 5

Origin = tuple[str, str | None, int | None]


def _origin(url: URL) -> Origin:
    """Scheme, host and port (the default port when none is written): what same-origin means."""
    return url.scheme, url.host, url.port


def _host(entry: str) -> str:
    """A host name or IP address as URLs spell it (lower case, IDNA), or ValueError."""
    host = URL.build(scheme="http", host=entry).host
    if not host or "*" in host:
        raise ValueError(f"'{entry}' is not a host name or IP address")
    return host


def _is_loopback(host: str | None) -> bool:
    """Traffic to this host never leaves the machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


class HttpJsonParams(ServiceParams):
    #: Declared before ``url``: the url's validator checks its host against this list.
    allowed_hosts: list[Annotated[str, AfterValidator(_host)]] | None = Field(
        None, description="host names url may name (none: any); guards a ${VAR} url"
    )
    url: str = Field(description="the http:// or https:// address called for every request")
    method: Literal["GET", "POST", "PUT"] = Field(
        "POST", description="GET sends the request as query parameters, the others as JSON"
    )
    headers: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="headers sent with every call (e.g. Authorization: ${TOKEN}); secrets, "
        "never logged",
    )
    response_path: list[str] = Field(
        default_factory=list,
        description="keys leading to the answer inside the response JSON (none: the whole)",
    )
    follow_redirects: Literal["never", "same_origin"] = Field(
        "never", description="never, or same_origin: only redirects to url's scheme, host, port"
    )
    verify_tls: bool = Field(
        True, description="check the server's certificate (false: anyone can pose as it)"
    )
    ca_file: str | None = Field(
        None, description="a PEM file of the certificate authorities to trust"
    )
    max_connections: int = Field(
        100, ge=1, description="open connections at most, shared by all calls"
    )

    @field_validator("url")
    @classmethod
    def _http(cls, value: str, info: ValidationInfo) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        host = URL(value).host
        if not host:
            raise ValueError("url has no host")
        allowed = info.data.get("allowed_hosts")
        if allowed is not None and host not in allowed:
            raise ValueError(f"host '{host}' is not in allowed_hosts ({', '.join(allowed)})")
        return value


def _redirected(method: str, status: int, kwargs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The method and body of the next hop: 303, and 301/302 after a POST, become a GET
    without a body; otherwise the method and the JSON body are sent again. The query is the
    Location's own."""
    if status == 303 or (status in (301, 302) and method == "POST"):
        return "GET", {}
    return method, {k: v for k, v in kwargs.items() if k == "json"}


@register_service("HttpJsonService")
class HttpJsonService(ConfiguredService):
    """Calls ``url`` with the request; 5xx, transport errors and bad JSON raise ``ServiceError``
    (retryable, counted by the breaker); 4xx and redirects it may not follow raise
    ``ServiceClientError`` (neither). Redirects are followed only within the url's origin
    (``follow_redirects: same_origin``), so headers and bodies never reach another host.
    Header values are secrets: they never appear in errors or logs."""

    Params = HttpJsonParams

    def __init__(self, name: str, params: HttpJsonParams) -> None:
        super().__init__(name, params)
        self.params: HttpJsonParams = params
        self._url = URL(params.url)
        self._session: aiohttp.ClientSession | None = None

    def warnings(self) -> list[tuple[str, str]]:
        """Unchecked certificates, and headers sent in clear text off this machine."""
        p = self.params
        out: list[tuple[str, str]] = []
        if not p.verify_tls and p.ca_file is None:
            out.append(
                (
                    "verify_tls",
                    "false: the server's certificate is not checked, so anyone on the network "
                    "path can pose as the service and read requests and headers",
                )
            )
        if p.headers and self._url.scheme == "http" and not _is_loopback(self._url.host):
            out.append(
                (
                    "headers",
                    f"{', '.join(p.headers)} sent over plain http:// to {self._url.host}: "
                    "anyone on the network path can read them; use https://",
                )
            )
        return out

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
        """One HTTP exchange (plus the redirects it may follow); the guard around it adds
        timeout, retries and the breaker."""
        session = self._open()
        method: str = self.params.method
        url = self._url
        kwargs: dict[str, Any] = {}
        if method == "GET":
            kwargs["params"] = {k: "" if v is None else str(v) for k, v in request.items()}
        else:
            kwargs["json"] = request
        for _ in range(MAX_REDIRECTS + 1):
            status, body, location = await self._exchange(session, method, url, kwargs)
            if status not in REDIRECT_STATUSES:
                return self._answer(status, body)
            url = self._next_hop(url, status, location)
            method, kwargs = _redirected(method, status, kwargs)
        raise ServiceError(f"{self.name}: more than {MAX_REDIRECTS} redirects")

    async def _exchange(
        self, session: aiohttp.ClientSession, method: str, url: URL, kwargs: dict[str, Any]
    ) -> tuple[int, bytes, str | None]:
        """Status, body and Location of one request; aiohttp never follows a redirect."""
        try:
            async with session.request(method, url, allow_redirects=False, **kwargs) as response:
                if response.status in REDIRECT_STATUSES:
                    return response.status, b"", response.headers.get(aiohttp.hdrs.LOCATION)
                return response.status, await response.read(), None
        except aiohttp.ClientError as exc:
            raise ServiceError(f"{self.name}: {type(exc).__name__}") from exc

    def _next_hop(self, url: URL, status: int, location: str | None) -> URL:
        """Where a redirect leads, if this service may follow it there."""
        if self.params.follow_redirects == "never":
            raise ServiceClientError(
                f"{self.name}: HTTP {status} redirect not followed (follow_redirects: never); "
                "set url to the address it redirects to"
            )
        try:
            target = url.join(URL(location)).with_fragment(None) if location else None
        except ValueError:
            target = None
        if target is None:
            raise ServiceError(f"{self.name}: HTTP {status} redirect without a usable Location")
        if _origin(target) != _origin(self._url):
            raise ServiceClientError(
                f"{self.name}: HTTP {status} redirect to another origin ({target.origin()}) "
                "refused (follow_redirects: same_origin)"
            )
        return target

    def _answer(self, status: int, body: bytes) -> dict[str, Any]:
        """The JSON object of a final response, or the error its status says."""
        if 400 <= status < 500 and status not in (408, 429):
            raise ServiceClientError(f"{self.name}: HTTP {status}")
        if status >= 400:
            raise ServiceError(f"{self.name}: HTTP {status}")
        try:
            value: Any = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ServiceError(f"{self.name}: response is not JSON") from exc
        for key in self.params.response_path:
            value = value.get(key) if isinstance(value, dict) else None
        if not isinstance(value, dict):
            raise ServiceError(f"{self.name}: response is not a JSON object")
        return value

    async def close(self) -> None:
        """Close the connection pool."""
        if self._session is not None and not self._session.closed:
            await self._session.close()
