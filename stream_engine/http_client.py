"""Clients of the HTTP API (``stream-engine serve``/``dev``) for applications that do not talk
to Kafka: ``HttpClient`` (async, aiohttp: one session, kept-alive connections - for web
handlers and services) and ``SyncHttpClient`` (the standard library's ``http.client``: one
kept-alive connection - for scripts and notebooks). A refusal raises ``ApiError`` with the
problem details the API answered with.

    async with HttpClient("http://127.0.0.1:8080", api_key=KEY) as api:
        decision = await api.decide({"application_id": "APP-1", ...})
"""

from __future__ import annotations

import asyncio
import http.client
import ssl as ssl_module
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, overload
from urllib.parse import quote, urlencode, urlsplit

import orjson

from stream_engine.errors import StreamEngineError

if TYPE_CHECKING:
    import aiohttp

Record = Mapping[str, Any]
JSON = "application/json"
PROBLEM = "application/problem+json"
#: The route whose 404 means "no decision yet" (any other 404 is a wrong URL: ``ApiError``).
DECISION_ROUTE = "/v1/decisions/{record_id}"
#: A connection idle this long is not reused by ``SyncHttpClient`` (the server closes idle
#: connections after 75 s; aiohttp's client pool uses 15 s too).
IDLE_S = 15.0


class ApiError(StreamEngineError):
    """The API refused a request (4xx/5xx): the RFC 9457 problem details it answered with."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        self.status = status
        self.problem = dict(problem)
        self.type = str(problem.get("type", "about:blank"))
        self.title = str(problem.get("title", ""))
        self.detail = str(problem.get("detail", ""))
        errors = problem.get("errors")
        #: Every refused record of a batch: ``{"pointer", "kind", "detail"}``.
        self.errors: list[dict[str, Any]] = list(errors) if isinstance(errors, list) else []
        retry = problem.get("retry_after_s")
        self.retry_after_s: int | None = retry if isinstance(retry, int) else None
        super().__init__(f"{status} {self.title}: {self.detail}")

    @property
    def kind(self) -> str:
        """The last part of ``type`` (``schema-invalid``, ``rate-limited``...)."""
        return self.type.rsplit("/", 1)[-1]


class ApiConnectionError(StreamEngineError):
    """The API could not be reached, or did not answer in time."""


@dataclass(frozen=True, slots=True)
class _Call:
    """One request: method, path (with its query), headers and body."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes | None = None


def _records_call(
    path: str,
    records: Record | Sequence[Record],
    api_key: str | None,
    query: dict[str, int] | None = None,
    record_id: str | None = None,
) -> _Call:
    headers = _auth(api_key) | {"Content-Type": JSON}
    if isinstance(records, Mapping):
        body = orjson.dumps(dict(records))
        if record_id is not None:
            headers["Record-Id"] = record_id
    else:
        if record_id is not None:
            raise StreamEngineError("record_id is for one record; a batch's records carry theirs")
        body = orjson.dumps({"records": [dict(r) for r in records]})
    if query:
        path = f"{path}?{urlencode(query)}"
    return _Call("POST", path, headers, body)


def _auth(api_key: str | None) -> dict[str, str]:
    return {"Accept": f"{JSON}, {PROBLEM}"} | ({"X-API-Key": api_key} if api_key else {})


def _decision_path(record_id: str) -> str:
    return "/v1/decisions/" + quote(record_id, safe="")


def _decision(status: int, content_type: str, body: bytes) -> dict[str, Any] | None:
    """A decision, or None for the decisions route's own 404 (not decided, or forgotten)."""
    if status == 404:
        problem = _problem(status, content_type, body)
        if problem.get("instance") == DECISION_ROUTE:
            return None
        raise ApiError(status, problem)
    result: dict[str, Any] = _answer(status, content_type, body)
    return result


def _answer(status: int, content_type: str, body: bytes) -> Any:
    """The JSON of a 2xx answer; ``ApiError`` for anything else."""
    if 200 <= status < 300:
        return orjson.loads(body) if body else None
    raise ApiError(status, _problem(status, content_type, body))


def _problem(status: int, content_type: str, body: bytes) -> dict[str, Any]:
    """The problem details of a refusal; an answer that is not one (a proxy's HTML page) is
    described as ``about:blank`` with the start of its text."""
    if content_type.split(";")[0].strip() in (PROBLEM, JSON):
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict):
            return parsed
    text = body[:200].decode("utf-8", "replace").strip()
    return {"type": "about:blank", "title": f"HTTP {status}", "status": status, "detail": text}


class HttpClient:
    """An async client of one API (``async with HttpClient(url) as api``). ``timeout_s``
    bounds each request; a decide call may take its ``timeout_ms`` on top."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        ssl: ssl_module.SSLContext | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.ssl = ssl
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> HttpClient:
        self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            import aiohttp

            connector = aiohttp.TCPConnector(ssl=self.ssl if self.ssl is not None else True)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def close(self) -> None:
        """Close the session and its connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _send(self, call: _Call, extra_s: float = 0.0) -> tuple[int, str, bytes]:
        import aiohttp

        session = self._open()
        timeout = aiohttp.ClientTimeout(total=self.timeout_s + extra_s)
        try:
            async with session.request(
                call.method, self.base_url + call.path, headers=call.headers, data=call.body,
                timeout=timeout,
            ) as response:  # fmt: skip
                body = await response.read()
                return response.status, response.headers.get("Content-Type", ""), body
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise ApiConnectionError(f"{call.method} {self.base_url}{call.path}: {exc!r}") from None

    async def decide(
        self,
        records: Record | Sequence[Record],
        timeout_ms: int | None = None,
        record_id: str | None = None,
    ) -> dict[str, Any]:
        """Publish and wait: one record's decision (or ``{"status": "pending", "href"...}``
        after ``timeout_ms``), or for a list ``{"decisions": [...], "pending": [...]}``."""
        query = None if timeout_ms is None else {"timeout_ms": timeout_ms}
        call = _records_call("/v1/decide", records, self.api_key, query, record_id)
        result: dict[str, Any] = _answer(*await self._send(call, (timeout_ms or 0) / 1000))
        return result

    @overload
    async def submit(self, records: Record, record_id: str | None = None) -> dict[str, str]: ...
    @overload
    async def submit(
        self, records: Sequence[Record], record_id: str | None = None
    ) -> list[dict[str, str]]: ...
    async def submit(
        self, records: Record | Sequence[Record], record_id: str | None = None
    ) -> dict[str, str] | list[dict[str, str]]:
        """Publish without waiting: the link (``record_id``, ``href``) of each record, once
        the broker acknowledged them all."""
        call = _records_call("/v1/records", records, self.api_key, record_id=record_id)
        links: list[dict[str, str]] = _answer(*await self._send(call))["accepted"]
        return links[0] if isinstance(records, Mapping) else links

    async def decision(self, record_id: str) -> dict[str, Any] | None:
        """The latest decision of a record; None while the API knows none (404)."""
        call = _Call("GET", _decision_path(record_id), _auth(self.api_key))
        return _decision(*await self._send(call))

    async def wait(
        self, record_id: str, timeout_s: float = 30.0, interval_s: float = 0.1
    ) -> dict[str, Any]:
        """Poll ``decision`` until the record has one (after a 202); ``TimeoutError`` past
        ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = await self.decision(record_id)
            if found is not None:
                return found
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no decision for {record_id!r} within {timeout_s}s")
            await asyncio.sleep(interval_s)

    async def ready(self) -> bool:
        """Whether the API serves (``/ready`` is 200; 503 while it starts)."""
        status, _, _ = await self._send(_Call("GET", "/ready", {}))
        return status == 200

    async def openapi(self) -> dict[str, Any]:
        """The API's OpenAPI 3.1 document."""
        result: dict[str, Any] = _answer(*await self._send(_Call("GET", "/v1/openapi.json", {})))
        return result


class SyncHttpClient:
    """A blocking client of one API on ``http.client``: one kept-alive connection, so use one
    client per thread. ``with SyncHttpClient(url) as api: api.decide(record)``."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        ssl: ssl_module.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise StreamEngineError(f"not an http(s) URL: {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.ssl = ssl
        self._connection: http.client.HTTPConnection | None = None
        self._used_at = 0.0

    def __enter__(self) -> SyncHttpClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (the next request opens another)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _connect(self, timeout_s: float) -> http.client.HTTPConnection:
        if self._connection is not None and time.monotonic() - self._used_at > IDLE_S:
            self.close()
        if self._connection is None:
            if self._https:
                context = self.ssl or ssl_module.create_default_context()
                self._connection = http.client.HTTPSConnection(
                    self._host, self._port, timeout=timeout_s, context=context
                )
            else:
                self._connection = http.client.HTTPConnection(
                    self._host, self._port, timeout=timeout_s
                )
        self._connection.timeout = timeout_s
        if self._connection.sock is not None:
            self._connection.sock.settimeout(timeout_s)
        return self._connection

    def _send(self, call: _Call, extra_s: float = 0.0) -> tuple[int, str, bytes]:
        connection = self._connect(self.timeout_s + extra_s)
        try:
            connection.request(call.method, self._prefix + call.path, call.body, call.headers)
            response = connection.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise ApiConnectionError(f"{call.method} {self.base_url}{call.path}: {exc!r}") from None
        self._used_at = time.monotonic()
        if response.will_close:
            self.close()
        return response.status, response.getheader("Content-Type", ""), body

    def decide(
        self,
        records: Record | Sequence[Record],
        timeout_ms: int | None = None,
        record_id: str | None = None,
    ) -> dict[str, Any]:
        """As ``HttpClient.decide``."""
        query = None if timeout_ms is None else {"timeout_ms": timeout_ms}
        call = _records_call("/v1/decide", records, self.api_key, query, record_id)
        result: dict[str, Any] = _answer(*self._send(call, (timeout_ms or 0) / 1000))
        return result

    @overload
    def submit(self, records: Record, record_id: str | None = None) -> dict[str, str]: ...
    @overload
    def submit(
        self, records: Sequence[Record], record_id: str | None = None
    ) -> list[dict[str, str]]: ...
    def submit(
        self, records: Record | Sequence[Record], record_id: str | None = None
    ) -> dict[str, str] | list[dict[str, str]]:
        """As ``HttpClient.submit``."""
        call = _records_call("/v1/records", records, self.api_key, record_id=record_id)
        links: list[dict[str, str]] = _answer(*self._send(call))["accepted"]
        return links[0] if isinstance(records, Mapping) else links

    def decision(self, record_id: str) -> dict[str, Any] | None:
        """As ``HttpClient.decision``."""
        call = _Call("GET", _decision_path(record_id), _auth(self.api_key))
        return _decision(*self._send(call))

    def wait(
        self, record_id: str, timeout_s: float = 30.0, interval_s: float = 0.1
    ) -> dict[str, Any]:
        """As ``HttpClient.wait``."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.decision(record_id)
            if found is not None:
                return found
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no decision for {record_id!r} within {timeout_s}s")
            time.sleep(interval_s)

    def ready(self) -> bool:
        """As ``HttpClient.ready``."""
        return self._send(_Call("GET", "/ready", {}))[0] == 200

    def openapi(self) -> dict[str, Any]:
        """As ``HttpClient.openapi``."""
        result: dict[str, Any] = _answer(*self._send(_Call("GET", "/v1/openapi.json", {})))
        return result


__all__ = ["ApiConnectionError", "ApiError", "HttpClient", "SyncHttpClient"]
