"""CORS for browsers calling the ``/v1`` routes, only when ``api.cors`` lists origins: a listed
origin (exact match; ``*`` only when listed) gets ``Access-Control-Allow-Origin``, every ``/v1``
answer says ``Vary: Origin``, and an ``OPTIONS`` preflight is answered without a key.

Written here rather than with aiohttp-cors (present only as faust-streaming's dependency):
that library sends no ``Vary: Origin`` (a shared cache could hand one origin's answer to
another), echoes the caller's origin even when ``*`` is what was allowed, and refuses a
preflight with a plain-text 403 that our problem-details middleware would rename."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web

from stream_engine.api.intake import RECORD_ID_HEADER
from stream_engine.api.security import API_KEY_HEADER
from stream_engine.config.api_models import ApiCorsConfig

#: The routes CORS covers (not /health, /ready, /metrics: those are for probes, not browsers).
PREFIX = "/v1/"
ALLOW_HEADERS = ", ".join(
    (hdrs.CONTENT_TYPE, API_KEY_HEADER, hdrs.AUTHORIZATION, RECORD_ID_HEADER, "traceparent")
)
EXPOSE_HEADERS = ", ".join((hdrs.LOCATION, hdrs.RETRY_AFTER))
ANY = "*"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Cors:
    """The CORS answers of one API process (``install`` hooks them into its application)."""

    def __init__(self, config: ApiCorsConfig) -> None:
        self.origins = frozenset(config.origins)
        self.max_age = str(config.max_age_s)

    def allowed(self, origin: str | None) -> str | None:
        """What ``Access-Control-Allow-Origin`` says to ``origin``; None: nothing at all."""
        if origin is None:
            return None
        if origin in self.origins:
            return origin
        return ANY if ANY in self.origins else None

    def install(self, app: web.Application) -> None:
        """A preflight route on every ``/v1`` resource, and the headers on every answer."""
        for resource in app.router.resources():
            if isinstance(resource, web.Resource) and resource.canonical.startswith(PREFIX):
                methods = sorted({r.method for r in resource} - {hdrs.METH_HEAD})
                resource.add_route(hdrs.METH_OPTIONS, self._preflight_for(methods))
        app.on_response_prepare.append(self._decorate)

    def _preflight_for(self, methods: list[str]) -> Handler:
        allow_methods = ", ".join(methods)

        async def preflight(request: web.Request) -> web.StreamResponse:
            """``OPTIONS``: 204; the CORS headers only for an allowed origin and method."""
            response = web.Response(status=204)
            origin = self.allowed(request.headers.get(hdrs.ORIGIN))
            method = request.headers.get(hdrs.ACCESS_CONTROL_REQUEST_METHOD, "")
            if origin is not None and method.upper() in methods:
                response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
                response.headers[hdrs.ACCESS_CONTROL_ALLOW_METHODS] = allow_methods
                response.headers[hdrs.ACCESS_CONTROL_ALLOW_HEADERS] = ALLOW_HEADERS
                response.headers[hdrs.ACCESS_CONTROL_MAX_AGE] = self.max_age
            return response

        return preflight

    async def _decorate(self, request: web.Request, response: web.StreamResponse) -> None:
        """Every ``/v1`` answer varies by origin; an allowed origin may read it (and its
        ``Location`` and ``Retry-After``), a refusal included."""
        if not request.path.startswith(PREFIX):
            return
        vary = response.headers.get(hdrs.VARY)
        response.headers[hdrs.VARY] = hdrs.ORIGIN if not vary else f"{vary}, {hdrs.ORIGIN}"
        if request.method == hdrs.METH_OPTIONS:
            return
        origin = self.allowed(request.headers.get(hdrs.ORIGIN))
        if origin is not None:
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
            response.headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = EXPOSE_HEADERS
