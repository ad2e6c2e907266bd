"""HttpJsonService against a real aiohttp server on 127.0.0.1 (started per test)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from aiohttp import web
from pydantic import ValidationError

from stream_engine.errors import ServiceClientError, ServiceError
from stream_engine.services import SERVICES
from stream_engine.services.http import MAX_REDIRECTS, HttpJsonService

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
    if path == "/loop":
        return web.Response(status=307, headers={"Location": "/loop"})
    if path.startswith("/redirect/"):
        status = int(path.rsplit("/", 1)[1])
        to = request.query.get("to")
        return web.Response(status=status, headers={"Location": to} if to is not None else {})
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


async def _serve() -> AsyncIterator[Server]:
    """A recording server on its own loopback port: another origin than any other."""
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
async def server() -> AsyncIterator[Server]:
    async for state in _serve():
        yield state


@pytest.fixture
async def other_server() -> AsyncIterator[Server]:
    async for state in _serve():
        yield state


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
        {"url": "http://x", "follow_redirects": "always"},
        {"url": "http:///path"},
    ],
    ids=[
        "ftp",
        "no-scheme",
        "delete",
        "zero-connections",
        "unknown-key",
        "follow-cross-origin",
        "no-host",
    ],
)
def test_bad_params_are_rejected(params: dict[str, Any]):
    with pytest.raises(ValidationError):
        HttpJsonService.from_params("kyc", params)


def test_the_service_is_registered_under_its_configuration_name():
    assert SERVICES.get("HttpJsonService") is HttpJsonService


# -- redirects --------------------------------------------------------------------------------


def _redirect(server: Server, status: int, to: str) -> str:
    return f"{server.url}/redirect/{status}?to={quote(to, safe='')}"


async def test_a_redirect_is_not_followed_by_default(server: Server, make: Any):
    service = make(_redirect(server, 302, "/check"))
    with pytest.raises(ServiceClientError) as caught:
        await service.call({})
    assert str(caught.value) == (
        "kyc: HTTP 302 redirect not followed (follow_redirects: never); "
        "set url to the address it redirects to"
    )
    assert [seen.path for seen in server.seen] == ["/redirect/302"]


@pytest.mark.parametrize("follow", ["never", "same_origin"])
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_to_another_host_is_not_followed_and_gets_no_secret(
    server: Server, other_server: Server, make: Any, follow: str, status: int
):
    service = make(
        _redirect(server, status, f"{other_server.url}/check"),
        headers={"X-Api-Key": SECRET},
        follow_redirects=follow,
    )
    with pytest.raises(ServiceClientError) as caught:
        await service.call({"ssn": "123-45-6789"})
    assert other_server.seen == []
    assert server.seen[0].headers["X-Api-Key"] == SECRET
    assert caught.value.kind == "client_error"
    assert caught.value.counts_against_health is False
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"], ids=["other-port", "other-host"])
async def test_same_origin_refuses_a_redirect_to_another_port_or_host(
    server: Server, other_server: Server, make: Any, host: str
):
    port = (other_server if host == "127.0.0.1" else server).url.rsplit(":", 1)[1]
    service = make(
        _redirect(server, 307, f"http://{host}:{port}/check"), follow_redirects="same_origin"
    )
    with pytest.raises(ServiceClientError) as caught:
        await service.call({})
    assert str(caught.value) == (
        f"kyc: HTTP 307 redirect to another origin (http://{host}:{port}) refused "
        "(follow_redirects: same_origin)"
    )
    assert len(server.seen) == 1
    assert other_server.seen == []


@pytest.mark.parametrize("to", ["/nested", "../nested", "{url}/nested"], ids=["path", "rel", "abs"])
async def test_same_origin_follows_a_redirect_within_the_origin(server: Server, make: Any, to: str):
    service = make(
        _redirect(server, 302, to.format(url=server.url)),
        follow_redirects="same_origin",
        response_path=["data", "result"],
        headers={"X-Api-Key": SECRET},
    )
    assert await service.call({}) == {"verified": True, "score": 7}
    assert [seen.path for seen in server.seen] == ["/redirect/302", "/nested"]
    assert server.seen[1].headers["X-Api-Key"] == SECRET


@pytest.mark.parametrize("status", [307, 308])
async def test_a_307_or_308_repeats_the_post_with_its_body(server: Server, make: Any, status: int):
    service = make(_redirect(server, status, "/echo"), follow_redirects="same_origin")
    request = {"ssn": "123", "amount": 5}
    assert await service.call(request) == {"method": "POST", "body": request}
    assert orjson.loads(server.seen[1].body) == request


@pytest.mark.parametrize("status", [301, 302, 303])
async def test_a_303_or_a_301_302_after_a_post_becomes_a_get_without_the_body(
    server: Server, make: Any, status: int
):
    service = make(_redirect(server, status, "/echo"), follow_redirects="same_origin")
    assert await service.call({"ssn": "123"}) == {"method": "GET", "body": None}
    assert server.seen[1].body == b""
    assert server.seen[1].query == {}


@pytest.mark.parametrize(("status", "method"), [(302, "PUT"), (303, "GET")])
async def test_a_put_redirected_by_302_stays_a_put_but_303_always_gets(
    server: Server, make: Any, status: int, method: str
):
    service = make(_redirect(server, status, "/echo"), method="PUT", follow_redirects="same_origin")
    body = {"a": 1} if method == "PUT" else None
    assert await service.call({"a": 1}) == {"method": method, "body": body}


async def test_a_redirected_get_sends_the_query_of_the_location(server: Server, make: Any):
    service = make(
        _redirect(server, 307, "/lookup?v=2"), method="GET", follow_redirects="same_origin"
    )
    assert await service.call({"ssn": "123"}) == {"verified": True}
    assert server.seen[0].query["ssn"] == "123"
    assert server.seen[1].query == {"v": "2"}


async def test_a_redirect_loop_stops_after_the_redirect_limit(server: Server, make: Any):
    service = make(f"{server.url}/loop", follow_redirects="same_origin")
    with pytest.raises(ServiceError) as caught:
        await service.call({})
    assert not isinstance(caught.value, ServiceClientError)
    assert str(caught.value) == f"kyc: more than {MAX_REDIRECTS} redirects"
    assert len(server.seen) == MAX_REDIRECTS + 1


@pytest.mark.parametrize("to", [None, "", "http://[::1"], ids=["absent", "empty", "invalid"])
async def test_a_redirect_without_a_usable_location_is_a_service_error(
    server: Server, make: Any, to: str | None
):
    url = f"{server.url}/redirect/302" if to is None else _redirect(server, 302, to)
    service = make(url, follow_redirects="same_origin")
    with pytest.raises(ServiceError) as caught:
        await service.call({})
    assert not isinstance(caught.value, ServiceClientError)
    assert str(caught.value) == "kyc: HTTP 302 redirect without a usable Location"


# -- allowed hosts ----------------------------------------------------------------------------


async def test_a_url_whose_host_is_allowed_is_called(server: Server, make: Any):
    service = make(f"{server.url}/check", allowed_hosts=["localhost", "127.0.0.1"])
    assert await service.call({}) == {"verified": True}


def test_allowed_hosts_are_compared_as_urls_spell_them():
    service = HttpJsonService.from_params(
        "kyc", {"url": "https://kyc.example/v1", "allowed_hosts": ["KYC.Example"]}
    )
    assert service.params.allowed_hosts == ["kyc.example"]


def test_a_url_whose_host_is_not_allowed_is_refused_at_the_url():
    with pytest.raises(ValidationError) as caught:
        HttpJsonService.from_params(
            "kyc", {"url": "http://169.254.169.254/x", "allowed_hosts": ["kyc.example"]}
        )
    [error] = caught.value.errors()
    assert error["loc"] == ("url",)
    assert error["msg"] == (
        "Value error, host '169.254.169.254' is not in allowed_hosts (kyc.example)"
    )


@pytest.mark.parametrize("entry", ["kyc.example:443", "https://kyc.example", "*.example", ""])
def test_an_allowed_host_must_be_a_bare_host(entry: str):
    with pytest.raises(ValidationError) as caught:
        HttpJsonService.from_params(
            "kyc", {"url": "https://kyc.example/", "allowed_hosts": [entry]}
        )
    assert caught.value.errors()[0]["loc"] == ("allowed_hosts", 0)


# -- warnings ---------------------------------------------------------------------------------


def _warnings(**params: Any) -> list[tuple[str, str]]:
    return HttpJsonService.from_params("kyc", params).warnings()


def test_unverified_tls_is_a_warning():
    assert _warnings(url="https://kyc.example/", verify_tls=False) == [
        (
            "verify_tls",
            "false: the server's certificate is not checked, so anyone on the network path "
            "can pose as the service and read requests and headers",
        )
    ]


def test_headers_over_plain_http_are_a_warning_that_names_them_but_not_their_values():
    warnings = _warnings(
        url="http://kyc.example/", headers={"X-Api-Key": SECRET, "Authorization": SECRET}
    )
    assert warnings == [
        (
            "headers",
            "X-Api-Key, Authorization sent over plain http:// to kyc.example: anyone on the "
            "network path can read them; use https://",
        )
    ]


@pytest.mark.parametrize(
    "params",
    [
        {"url": "https://kyc.example/", "headers": {"X-Api-Key": SECRET}},
        {"url": "http://kyc.example/"},
        {"url": "http://127.0.0.1:8080/", "headers": {"X-Api-Key": SECRET}},
        {"url": "http://localhost/", "headers": {"X-Api-Key": SECRET}},
        {"url": "http://[::1]/", "headers": {"X-Api-Key": SECRET}},
        {"url": "https://kyc.example/", "verify_tls": False, "ca_file": "/etc/ca.pem"},
    ],
    ids=["https", "http-without-headers", "loopback-ip", "localhost", "loopback-v6", "ca-file"],
)
def test_safe_choices_draw_no_warning(params: dict[str, Any]):
    assert _warnings(**params) == []
