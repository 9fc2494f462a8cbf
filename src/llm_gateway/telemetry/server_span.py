"""A plain ASGI middleware that opens one SERVER span per HTTP request, only installed when tracing is on.

Chosen over opentelemetry-instrumentation-asgi because that one also opens a span per
``http.send``/``http.receive`` message (one per streamed chunk) and is one more dependency; this
one costs a span and a context switch per request, nothing per chunk. It continues a caller's
W3C ``traceparent`` and names the span ``{method} {route}`` as the HTTP conventions ask.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opentelemetry import context, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from llm_gateway.asgi import pass_body, route_path

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

_PROPAGATOR = TraceContextTextMapPropagator()
_TRACE_HEADERS = {b"traceparent": "traceparent", b"tracestate": "tracestate"}


class ServerSpanMiddleware:
    def __init__(self, app: ASGIApp, tracer: trace.Tracer, routes: frozenset[str] = frozenset()) -> None:
        """``routes``: fixed paths that are their own route, for answers given ahead of the router (which
        otherwise names the route in ``scope["route"]``)."""
        self.app = app
        self.tracer = tracer
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier = {
            _TRACE_HEADERS[name]: value.decode("latin-1") for name, value in scope["headers"] if name in _TRACE_HEADERS
        }
        parent = _PROPAGATOR.extract(carrier) if carrier else None
        method = scope.get("method", "GET")
        span = self.tracer.start_span(
            method,
            context=parent,
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": method,
                "url.path": scope.get("path", ""),
                "url.scheme": scope.get("scheme", "http"),
                "network.protocol.version": scope.get("http_version", "1.1"),
            },
        )
        token = context.attach(trace.set_span_in_context(span, parent))
        status = 0

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        pass_body(send_with_status, send)  # it reads the start only (said from outside: no cycle through itself)

        try:
            await self.app(scope, receive, send_with_status)
        except BaseException as exc:
            span.record_exception(exc)
            status = status or 500
            raise
        finally:
            _finish(span, scope, method, status, self.routes)
            context.detach(token)


def _finish(span: trace.Span, scope: Scope, method: str, status: int, routes: frozenset[str]) -> None:
    route = getattr(scope.get("route"), "path", None)
    if route is None and route_path(scope) in routes:
        route = route_path(scope)
    attributes: dict[str, str | int] = {}  # one set_attributes call: the SDK locks and validates per call
    if isinstance(route, str):
        span.update_name(f"{method} {route}")
        attributes["http.route"] = route
    if status:
        attributes["http.response.status_code"] = status
    if status >= 500 or not status:
        attributes["error.type"] = str(status) if status else "incomplete"
        span.set_status(Status(StatusCode.ERROR))
    span.set_attributes(attributes)
    span.end()
