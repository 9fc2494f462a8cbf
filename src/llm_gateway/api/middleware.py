"""Plain ASGI middleware for what every request shares: its id, security headers, and what its body may be.

``app.py`` stacks these once, around both the chat endpoint and FastAPI. Plain ASGI classes rather
than BaseHTTPMiddleware: they add no task per request and never buffer a streamed answer.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llm_gateway.api.envelopes import render_error
from llm_gateway.asgi import pass_body, route_path
from llm_gateway.errors import InvalidRequest, RequestTooLarge, UnsupportedMediaType
from llm_gateway.ids import new_id_bytes

_SAFE_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")
# On every answer: an API's answers are never to be sniffed as another type, framed, or leak a Referer.
SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
# And no-store unless the route chose its own Cache-Control (SSE: no-cache): every answer is for one
# authenticated caller (a completion, a usage report, a key shown once), and a browser or proxy replaying
# one would also bypass the rate limits and budgets that the gateway charges per request.
NO_STORE = (b"cache-control", b"no-store")
# Methods whose body the gateway reads; every such route of the gateway takes JSON.
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class RequestIdMiddleware:
    """Echo a well-formed ``x-request-id`` or make one; put it on the answer and in ``scope['state']``.

    Being outermost, it also adds the security headers to every answer, refusals made by other
    middleware included: one send wrapper, one list per response, nothing per streamed chunk.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = take_request_id(scope)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = with_answer_headers(list(message.get("headers", ())), request_id)
            await send(message)

        pass_body(send_with_id, send)  # it changes the start only (said from outside: no cycle through itself)

        await self.app(scope, receive, send_with_id)


def take_request_id(scope: Scope) -> bytes:
    """The caller's well-formed ``x-request-id``, or a new one; also put in ``scope['state']``."""
    request_id = b""
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            request_id = value if _SAFE_REQUEST_ID.match(value) else b""
            break
    if not request_id:
        request_id = new_id_bytes()
    scope.setdefault("state", {})["request_id"] = request_id.decode()
    return request_id


def with_answer_headers(headers: list[tuple[bytes, bytes]], request_id: bytes) -> list[tuple[bytes, bytes]]:
    """``headers`` plus what every answer carries: the request id, the security headers, no-store by default."""
    # ``request-id`` too: the name Anthropic's API and SDK use (``_request_id`` on every answer object).
    headers += ((b"x-request-id", request_id), (b"request-id", request_id), *SECURITY_HEADERS)
    if not any(name.lower() == b"cache-control" for name, _ in headers):
        headers.append(NO_STORE)
    return headers


def is_json(content_type: bytes) -> bool:
    """``application/json`` or a ``+json`` type (RFC 6839), any parameters (``; charset=utf-8``).

    What matters is that none of the CORS-safelisted types (``text/plain``, form encodings) gets in:
    a browser sends those cross-origin without a preflight, so an anonymous gateway would run them.
    """
    media_type = content_type.partition(b";")[0].strip().lower()
    return media_type == b"application/json" or (
        media_type.startswith(b"application/") and media_type.endswith(b"+json")
    )


def is_form(content_type: bytes) -> bool:
    return content_type.partition(b";")[0].strip().lower() == b"application/x-www-form-urlencoded"


class BodyGuardMiddleware:
    """What a request body may be: JSON (else 415), at most ``max_bytes`` (else 413).

    Both are decided from the headers before anything reads the body; a body sent without
    Content-Length is also counted as it arrives (``_counted``). A declared length is not re-counted:
    the server delivers exactly that many bytes. Under ``form_prefix`` (the console, ``/ui/``) an HTML
    form's urlencoded body is taken too: there every POST carries a CSRF token and a ``SameSite=Strict``
    session cookie, which a cross-site form has neither of.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, *, form_prefix: str | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.form_prefix = form_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length: bytes | None = None
        content_type = b""
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"content-type":
                content_type = value
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await send_refusal(send, too_large(self.max_bytes), scope)
            return
        if scope["method"] in _BODY_METHODS and not is_json(content_type) and not self._form(scope, content_type):
            await send_refusal(send, _not_json(content_type), scope)
            return
        if length is not None:
            await self.app(scope, receive, send)
            return
        await self.app(scope, *_counted(scope, receive, send, self.max_bytes))

    def _form(self, scope: Scope, content_type: bytes) -> bool:
        return self.form_prefix is not None and is_form(content_type) and route_path(scope).startswith(self.form_prefix)


def _counted(scope: Scope, receive: Receive, send: Send, max_bytes: int) -> tuple[Receive, Send]:
    """``receive`` and ``send`` for a body of unknown length: past ``max_bytes`` the 413 is sent here, and
    the app is told the client left (``http.disconnect``) and no longer heard, so every route, FastAPI's
    included (which would turn an exception raised while it reads the body into a 400), ends the same way."""
    received = 0
    started = refused = False

    async def counted_receive() -> Message:
        nonlocal received, refused
        if refused:
            return {"type": "http.disconnect"}
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > max_bytes:
                refused = True
                if not started:
                    await send_refusal(send, too_large(max_bytes), scope)
                return {"type": "http.disconnect"}
        return message

    async def unless_refused(message: Message) -> None:
        nonlocal started
        if not refused:
            started = True
            await send(message)

    return counted_receive, unless_refused


def too_large(max_bytes: int) -> RequestTooLarge:
    return RequestTooLarge(f"The request body exceeds the limit of {max_bytes} bytes.")


def _not_json(content_type: bytes) -> UnsupportedMediaType:
    given = f"'{content_type.decode('latin-1')[:100]}'" if content_type else "none"
    return UnsupportedMediaType(f"The request body must be JSON: send 'Content-Type: application/json' (got {given}).")


async def send_refusal(send: Send, error: InvalidRequest, scope: Scope) -> None:
    """Refuse before the body is read: the connection closes, as the unread body cannot be skipped cheaply."""
    status, body, _ = render_error(scope, error)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(body)),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
