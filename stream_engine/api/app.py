"""The API's routes on aiohttp: each handler admits the caller (key, scope, rate, readiness),
reads the body through the ``Intake``, publishes, and - for decide - waits on the
``DecisionView``. Every refusal is an ``ApiProblem`` the middleware writes as problem details;
the access log names the route template and key id, never a path's record id or a body."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stream_engine.api.cors import Cors
from stream_engine.api.intake import RECORD_ID_HEADER, Intake, Submission, decision_href
from stream_engine.api.metrics import ApiMetrics
from stream_engine.api.problems import PROBLEM_TYPE, ApiProblem, ProblemKind
from stream_engine.api.security import Caller, Guard
from stream_engine.api.view import Answer, DecisionView
from stream_engine.config.api_models import ApiConfig, Scope

log = logging.getLogger("stream_engine.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Publish = Callable[[Sequence[Submission]], Awaitable[None]]
JSON = "application/json"
#: The admitted caller of a request, for the access log and the metrics.
CALLER = web.RequestKey("caller", Caller)


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON answer (bytes are sent as they are: a decision exactly as its topic holds it)."""
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return web.Response(body=raw, status=status, content_type=JSON, headers=headers)


def problem_response(problem: ApiProblem, instance: str | None = None) -> web.Response:
    """An ``ApiProblem`` as ``application/problem+json``."""
    return web.Response(
        body=orjson.dumps(problem.body(instance)),
        status=problem.status,
        content_type=PROBLEM_TYPE,
        headers=problem.headers,
    )


class ApiApp:
    """The routes of one API process over its intake, view, publisher and guard."""

    def __init__(
        self,
        config: ApiConfig,
        intake: Intake,
        view: DecisionView,
        publish: Publish,
        guard: Guard,
        metrics: ApiMetrics,
        unready: Callable[[], str | None],
        openapi: Callable[[], dict[str, Any]],
    ) -> None:
        self.config = config
        self.intake = intake
        self.view = view
        self.publish = publish
        self.guard = guard
        self.metrics = metrics
        self.unready = unready
        self._openapi = openapi
        self._document: bytes | None = None

    def application(self) -> web.Application:
        """The aiohttp application (bodies past ``api.max_body_bytes`` refused 413; CORS only
        when ``api.cors`` is configured)."""
        app = web.Application(
            client_max_size=self.config.max_body_bytes, middlewares=[self._middleware]
        )
        app.router.add_post("/v1/decide", self.decide)
        app.router.add_post("/v1/records", self.submit)
        app.router.add_get("/v1/decisions/{record_id}", self.decision)
        app.router.add_get("/v1/openapi.json", self.openapi)
        app.router.add_get("/health", self.health)
        app.router.add_get("/ready", self.ready)
        app.router.add_get("/metrics", self.scrape)
        if self.config.cors is not None:
            Cors(self.config.cors).install(app)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Problems as problem details; every answer counted, timed and logged by route."""
        started = time.perf_counter()
        route = _route_of(request)
        try:
            response = await handler(request)
        except ApiProblem as problem:
            response = problem_response(problem, route)
        except web.HTTPException as exc:
            kind = ProblemKind.METHOD_NOT_ALLOWED if exc.status == 405 else ProblemKind.NOT_FOUND
            if exc.status == 413:
                kind = ProblemKind.TOO_LARGE
            response = problem_response(ApiProblem(kind, exc.reason or kind.value), route)
            response.set_status(exc.status)
        elapsed = time.perf_counter() - started
        caller = request.get(CALLER)
        key_id = caller.key_id if caller is not None else "-"
        self.metrics.answered(route, response.status, key_id, elapsed)
        if self.config.access_log:
            log.info(
                "%s %s %d key=%s %.1fms", request.method, route, response.status, key_id,
                elapsed * 1000,
            )  # fmt: skip
        return response

    def _admit(self, request: web.Request, scope: Scope) -> Caller:
        """The caller, if it may use this endpoint now; else the problem that says why not."""
        caller = self.guard.caller(request.headers)
        request[CALLER] = caller
        self.guard.allow(caller, scope)
        reason = self.unready()
        if reason is not None:
            raise ApiProblem(ProblemKind.NOT_READY, reason, headers={"Retry-After": "1"})
        return caller

    async def _records(self, request: web.Request) -> tuple[list[Submission], bool]:
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise ApiProblem(
                ProblemKind.TOO_LARGE,
                f"the body is over the limit of {self.config.max_body_bytes} bytes",
            ) from None
        return self.intake.read(
            body, request.headers.get(RECORD_ID_HEADER), request.headers.get("traceparent")
        )

    async def _publish(self, submissions: Sequence[Submission], route: str) -> None:
        await self.publish(submissions)
        self.metrics.published(route, len(submissions))

    def _timeout_s(self, request: web.Request) -> float:
        text = request.query.get("timeout_ms")
        if text is None:
            return self.config.timeout_ms / 1000.0
        limit = self.config.max_timeout_ms
        if not text.isdigit() or not 1 <= int(text) <= limit:
            raise ApiProblem(
                ProblemKind.INVALID_PARAMETER,
                f"timeout_ms must be a whole number of milliseconds from 1 to {limit}",
            )
        return int(text) / 1000.0

    async def decide(self, request: web.Request) -> web.Response:
        """``POST /v1/decide``: publish, then the decision(s) - or 202 and links after the
        timeout (the records are on the broker and will be decided)."""
        self._admit(request, "decide")
        timeout_s = self._timeout_s(request)
        submissions, batch = await self._records(request)
        if not self.view.has_room(len(submissions)):
            raise ApiProblem(
                ProblemKind.OVERLOADED,
                f"{self.view.pending} decide calls are waiting (api.max_pending); retry later "
                "or use POST /v1/records",
                headers={"Retry-After": "1"},
            )
        futures = [self.view.expect(s.record_id, s.trace) for s in submissions]
        try:
            await self._publish(submissions, "/v1/decide")
            await asyncio.wait(futures, timeout=timeout_s)
            answers = [f.result() if f.done() and not f.cancelled() else None for f in futures]
        finally:
            for submission, future in zip(submissions, futures, strict=True):
                self.view.forget(submission.record_id, future)
        return self._decided(submissions, answers, batch)

    def _decided(
        self, submissions: list[Submission], answers: list[Answer | None], batch: bool
    ) -> web.Response:
        late = [s for s, a in zip(submissions, answers, strict=True) if a is None]
        if late:
            self.metrics.timed_out()
        if not batch:
            answer = answers[0]
            if answer is not None:
                return json_response(answer.body)
            href = decision_href(submissions[0].record_id)
            return json_response(
                {"status": "pending", "record_id": submissions[0].record_id, "href": href},
                202,
                {"Location": href},
            )
        decided = b",".join(a.body for a in answers if a is not None)
        pending = orjson.dumps([_link(s) for s in late])
        body = b'{"decisions":[' + decided + b'],"pending":' + pending + b"}"
        return json_response(body, 202 if late else 200)

    async def submit(self, request: web.Request) -> web.Response:
        """``POST /v1/records``: 202 once the broker acknowledged every record."""
        self._admit(request, "submit")
        submissions, _ = await self._records(request)
        await self._publish(submissions, "/v1/records")
        return json_response({"accepted": [_link(s) for s in submissions]}, 202)

    async def decision(self, request: web.Request) -> web.Response:
        """``GET /v1/decisions/{record_id}``: the latest decision the view holds."""
        self._admit(request, "read")
        answer = self.view.get(request.match_info["record_id"])
        if answer is None:
            raise ApiProblem(
                ProblemKind.NOT_FOUND,
                "no decision is known for this record id: not decided yet, or older than "
                "the view keeps (api.view)",
            )
        return json_response(answer.body)

    async def openapi(self, request: web.Request) -> web.Response:
        """``GET /v1/openapi.json``."""
        if self._document is None:
            self._document = orjson.dumps(self._openapi())
        return json_response(self._document)

    async def health(self, request: web.Request) -> web.Response:
        """``/health``: the process answers."""
        return json_response({"status": "ok"})

    async def ready(self, request: web.Request) -> web.Response:
        """``/ready``: 200 once the producer is up and the view rebuilt; else 503 and why."""
        reason = self.unready()
        if reason is None:
            return json_response({"status": "ready"})
        return json_response({"status": "starting", "reason": reason}, 503)

    async def scrape(self, request: web.Request) -> web.Response:
        """``/metrics``: the API's own metrics, Prometheus text format."""
        return web.Response(
            body=generate_latest(self.metrics.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )


def _link(submission: Submission) -> dict[str, str]:
    return {"record_id": submission.record_id, "href": decision_href(submission.record_id)}


def _route_of(request: web.Request) -> str:
    """The route's template (``/v1/decisions/{record_id}``), never the path with its id."""
    info = request.match_info
    resource = info.route.resource if info.route is not None else None
    if resource is None:
        return "other"
    return resource.canonical
