"""Plain ASGI middleware for what every request shares: its id, security headers and the body-size limit.

Plain ASGI classes rather than BaseHTTPMiddleware: they add no task per request and never
buffer a streamed answer.
"""

from __future__ import annotations

import os
import random
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llm_gateway.errors import RequestTooLarge

# Request ids need uniqueness, not secrecy: a private generator (cheaper than uuid4, and it leaves the
# global ``random`` state alone), reseeded in every forked worker.
_request_ids = random.Random()
os.register_at_fork(after_in_child=_request_ids.seed)
_random_bits = _request_ids.getrandbits
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
        request_id = b""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = value if _SAFE_REQUEST_ID.match(value) else b""
                break
        if not request_id:
            request_id = b"%032x" % _random_bits(128)  # as unique as uuid4().hex, several times cheaper
        scope.setdefault("state", {})["request_id"] = request_id.decode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", ()), (b"x-request-id", request_id), *SECURITY_HEADERS]
                if not any(name.lower() == b"cache-control" for name, _ in headers):
                    headers.append(NO_STORE)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)


class BodySizeLimitMiddleware:
    """Refuse bodies over ``max_bytes`` with 413: by Content-Length up front, else while reading."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.max_bytes:
                    await _send_too_large(send, self.max_bytes)
                    return
                break
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _too_large(self.max_bytes)
            return message

        await self.app(scope, limited_receive, send)


def _too_large(max_bytes: int) -> RequestTooLarge:
    return RequestTooLarge(f"The request body exceeds the limit of {max_bytes} bytes.")


async def _send_too_large(send: Send, max_bytes: int) -> None:
    body = _too_large(max_bytes).body()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
