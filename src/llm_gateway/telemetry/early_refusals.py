"""Records the chat requests refused before the pipeline began them (400, 401, 403, 404, 413, 500).

The pipeline records every request it begins. One refused earlier (authentication, parsing, the
model check, the body-size limit) would leave no metric, no span attributes and no log line. This
plain ASGI middleware marks, in a context variable, whether ``Telemetry.record`` ran for the request;
when it did not and the answer is an error, it records one with the status and the error ``code``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import orjson

from llm_gateway.asgi import pass_body, route_path
from llm_gateway.telemetry.record import RequestRecord

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNKNOWN_MODEL = "unknown"  # the body was not read, or named no model the gateway serves
_MAX_ERROR_BYTES = 4096


class _Marker:
    __slots__ = ("recorded",)

    def __init__(self) -> None:
        self.recorded = False


_current: ContextVar[_Marker | None] = ContextVar("llm_gateway_request_marker", default=None)


def mark_recorded() -> None:
    """Called by ``Telemetry.record``: this request has its record (a stream's task shares the marker)."""
    marker = _current.get()
    if marker is not None:
        marker.recorded = True


class EarlyRefusalRecorder:
    def __init__(self, app: ASGIApp, record: Callable[[RequestRecord], None], routes: dict[str, str]) -> None:
        """``record``: where a refusal's record goes (``Telemetry.record``, passed in so that this module
        need not import the facade that installs it); ``routes``: request path -> the route name records
        use (``/chat/completions`` is ``/v1/...``)."""
        self.app = app
        self.record = record
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes.get(route_path(scope)) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        start, start_ns = time.perf_counter(), time.time_ns()
        marker = _Marker()
        token = _current.set(marker)
        watched = _StatusSend(send)
        try:
            await self.app(scope, receive, watched)
        except BaseException:
            watched.status = watched.status or 500
            raise
        finally:
            _current.reset(token)
            if not marker.recorded and watched.status >= 400:
                record = RequestRecord(route, route, UNKNOWN_MODEL, start, start_ns, status=watched.status)
                _describe(record, scope.get("state") or {}, watched.error_body)
                self.record(record)


class _StatusSend:
    """The recorder's ``send``: notes the answer's status and keeps an error's body (bounded). An object, not a
    closure, so that it can step aside (``pass_body``) without naming itself: no reference cycle per request."""

    __slots__ = ("body_send", "error_body", "send", "status")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.status = 0
        self.error_body = b""

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            if self.status < 400:  # nothing to record: its body is none of the recorder's business
                pass_body(self, self.send)
        elif message["type"] == "http.response.body" and self.status >= 400 and len(self.error_body) < _MAX_ERROR_BYTES:
            self.error_body += message.get("body", b"")
        await self.send(message)


def _describe(record: RequestRecord, state: dict[str, Any], error_body: bytes) -> None:
    record.request_id = str(state.get("request_id", ""))
    identity = state.get("identity")
    record.user_id = getattr(identity, "user_id", None)
    record.key_id = getattr(identity, "key_id", None)
    try:
        error = orjson.loads(error_body).get("error")
        record.error = str(error.get("code") or error.get("type") or "error")
    except (orjson.JSONDecodeError, AttributeError):
        record.error = "internal_error" if record.status >= 500 else "error"
