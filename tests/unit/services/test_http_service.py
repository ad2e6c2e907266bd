"""HttpJsonService against a real aiohttp server on 127.0.0.1 (started per test)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web
from pydantic import ValidationError

from stream_engine.errors import ServiceClientError, ServiceError
from stream_engine.services import SERVICES
from stream_engine.services.http import HttpJsonService

SECRET = "s3cr3t-token-value"


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    body: bytes
    headers: dict[str, str]


@dataclass
class Server:
    url: str = ""
    seen: list[Seen] = field(default_factory=list)


SERVER = web.AppKey("server", Server)


async def _handle(request: web.Request) -> web.StreamResponse:
    server = request.app[SERVER]
    body = await request.read()
    server.seen.append(
        Seen(request.method, request.path, dict(request.query), body, dict(request.headers))
    )
    path = request.path
    if path.startswith("/status/"):
        status = int(path.rsplit("/", 1)[1])
        return web.json_response({"error": "nope"}, status=status)
    if path == "/text":
        return web.Response(text="<html>not json</html>", content_type="text/html")
    if path == "/array":
        return web.json_response([1, 2, 3])
    if path == "/nested":
        return web.json_response({"data": {"result": {"verified": True, "score": 7}}, "x": 1})
    if path == "/echo":
        echoed = await request.json() if body else None
        return web.json_response({"method": request.method, "body": echoed})
    return web.json_response({"verified": True})


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    state = Server()
    app = web.Application()
    app[SERVER] = state
    app.router.add_route("*", "/{tail:.*}", _handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    state.url = f"http://{host}:{port}"
    try:
        yield state
    finally:
        await runner.cleanup()


@pytest.fixture
async def services() -> AsyncIterator[list[HttpJsonService]]:
    """Every service a test makes is closed afterwards."""
    made: list[HttpJsonService] = []
    yield made
    for service in made:
        await service.close()


@pytest.fixture
def make(services: list[HttpJsonService]) -> Any:
    def build(url: str, **params: Any) -> HttpJsonService:
        service = HttpJsonService.from_params("kyc", {"url": url, **params})
        assert isinstance(service, HttpJsonService)
        services.append(service)
        return service

    return build


async def test_post_sends_the_request_as_a_json_body(server: Server, make: Any):
    service = make(f"{server.url}/check")
    request = {"ssn": "123", "amount": 12.5, "tags": ["a"], "nested": {"k": None}}
    answer = await service.call(request)
    assert answer == {"verified": True}
    [seen] = server.seen
    assert seen.method == "POST"
    assert seen.path == "/check"
    assert seen.headers["Content-Type"].startswith("application/json")
    assert orjson.loads(seen.body) == request


async def test_put_sends_a_json_body_too(server: Server, make: Any):
    answer = await make(f"{server.url}/echo", method="PUT").call({"a": 1})
    assert answer == {"method": "PUT", "body": {"a": 1}}


async def test_get_sends_the_request_as_query_parameters(server: Server, make: Any):
    service = make(f"{server.url}/lookup", method="GET")
    await service.call({"ssn": "123", "n": 5, "flag": True, "none": None})
    [seen] = server.seen
    assert seen.method == "GET"
    assert seen.query == {"ssn": "123", "n": "5", "flag": "True", "none": ""}
    assert seen.body == b""


async def test_response_path_selects_a_nested_object(server: Server, make: Any):
    service = make(f"{server.url}/nested", response_path=["data", "result"])
    assert await service.call({}) == {"verified": True, "score": 7}


@pytest.mark.parametrize(
    "path",
    [["data", "result", "score"], ["data", "missing"], ["x", "y"]],
    ids=["leaf-not-object", "absent-key", "through-a-number"],
)
async def test_a_response_path_that_does_not_end_at_an_object_raises(
    server: Server, make: Any, path: list[str]
):
    service = make(f"{server.url}/nested", response_path=path)
    with pytest.raises(ServiceError, match="response is not a JSON object"):
        await service.call({})


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_a_server_error_raises_a_retryable_service_error(
    server: Server, make: Any, status: int
):
    with pytest.raises(ServiceError) as caught:
        await make(f"{server.url}/status/{status}").call({})
    assert not isinstance(caught.value, ServiceClientError)
    assert caught.value.kind == "service_error"
    assert caught.value.counts_against_health is True
    assert str(caught.value) == f"kyc: HTTP {status}"


@pytest.mark.parametrize("status", [400, 401, 404, 422])
async def test_a_client_error_raises_a_service_client_error(server: Server, make: Any, status: int):
    with pytest.raises(ServiceClientError) as caught:
        await make(f"{server.url}/status/{status}").call({})
    assert caught.value.kind == "client_error"
    assert caught.value.counts_against_health is False
    assert str(caught.value) == f"kyc: HTTP {status}"


@pytest.mark.parametrize("status", [408, 429])
async def test_timeout_and_rate_limit_statuses_are_retryable_not_client_errors(
    server: Server, make: Any, status: int
):
    with pytest.raises(ServiceError) as caught:
        await make(f"{server.url}/status/{status}").call({})
    assert not isinstance(caught.value, ServiceClientError)
    assert caught.value.kind == "service_error"


async def test_a_non_json_body_raises_a_service_error(server: Server, make: Any):
    with pytest.raises(ServiceError, match="response is not JSON"):
        await make(f"{server.url}/text").call({})


async def test_a_json_body_that_is_not_an_object_raises_a_service_error(server: Server, make: Any):
    with pytest.raises(ServiceError, match="response is not a JSON object"):
        await make(f"{server.url}/array").call({})


async def test_configured_headers_are_sent(server: Server, make: Any):
    service = make(
        f"{server.url}/check",
        headers={"Authorization": f"Bearer {SECRET}", "X-Tenant": "acme"},
    )
    await service.call({})
    [seen] = server.seen
    assert seen.headers["Authorization"] == f"Bearer {SECRET}"
    assert seen.headers["X-Tenant"] == "acme"


@pytest.mark.parametrize("path", ["/status/500", "/status/403", "/text", "/array"])
async def test_secret_header_values_never_appear_in_errors(server: Server, make: Any, path: str):
    service = make(f"{server.url}{path}", headers={"Authorization": f"Bearer {SECRET}"})
    with pytest.raises(ServiceError) as caught:
        await service.call({})
    assert server.seen[0].headers["Authorization"] == f"Bearer {SECRET}"
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value)


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_a_connection_failure_raises_a_service_error_without_secrets(make: Any):
    service = make(
        f"http://127.0.0.1:{_unused_port()}/check",
        headers={"Authorization": f"Bearer {SECRET}"},
    )
    with pytest.raises(ServiceError) as caught:
        await service.call({})
    assert not isinstance(caught.value, ServiceClientError)
    assert SECRET not in str(caught.value)
    assert str(caught.value).startswith("kyc: ")


def test_header_values_are_hidden_in_the_params():
    service = HttpJsonService.from_params(
        "kyc", {"url": "http://127.0.0.1/", "headers": {"Authorization": SECRET}}
    )
    assert SECRET not in str(service.params)
    assert SECRET not in repr(service.params)


async def test_calls_reuse_one_connection_pool(server: Server, make: Any):
    service = make(f"{server.url}/check")
    await service.call({})
    session = service._session
    await service.call({})
    assert service._session is session
    assert len(server.seen) == 2


async def test_close_closes_the_connection_pool(server: Server, make: Any):
    service = make(f"{server.url}/check")
    await service.call({})
    session = service._session
    assert session is not None
    assert not session.closed
    await service.close()
    assert session.closed


async def test_close_is_safe_before_any_call_and_twice(make: Any):
    service = make("http://127.0.0.1:1/never")
    await service.close()
    await service.close()
    assert service._session is None


async def test_a_closed_service_reopens_on_the_next_call(server: Server, make: Any):
    service = make(f"{server.url}/check")
    await service.call({})
    await service.close()
    assert await service.call({}) == {"verified": True}
    assert len(server.seen) == 2


@pytest.mark.parametrize(
    "params",
    [
        {"url": "ftp://example.com"},
        {"url": "example.com/api"},
        {"url": "http://x", "method": "DELETE"},
        {"url": "http://x", "max_connections": 0},
        {"url": "http://x", "timeout": 3},
    ],
    ids=["ftp", "no-scheme", "delete", "zero-connections", "unknown-key"],
)
def test_bad_params_are_rejected(params: dict[str, Any]):
    with pytest.raises(ValidationError):
        HttpJsonService.from_params("kyc", params)


def test_the_service_is_registered_under_its_configuration_name():
    assert SERVICES.get("HttpJsonService") is HttpJsonService
