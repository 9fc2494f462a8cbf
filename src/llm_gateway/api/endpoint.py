"""A surface's route as a plain ASGI app, served ahead of FastAPI: read, identify, run the pipeline, answer.

FastAPI's and Starlette's machinery (router, dependency solving, request and response objects)
cost more per request than the rest of the gateway's own work (bench/README.md), so the LLM
routes skip it; what every route shares (request id, security headers, CORS, the body's type and
size, the server span) wraps them in ``create_app``. A surface's endpoint (``chat.py``,
``messages.py``) says only what is its own: how a request parses, how errors, answers and stream
events are written in its format.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any, Generic, Protocol, TypeVar

from starlette.datastructures import Headers, State
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from llm_gateway.asgi import body_send
from llm_gateway.auth.identity import Identity
from llm_gateway.auth.service import AuthService
from llm_gateway.errors import GatewayError, InternalError, PermissionDenied, UpstreamStreamError
from llm_gateway.pipeline import Pipeline
from llm_gateway.surfaces.base import Surface, SurfaceRequest

log = logging.getLogger(__name__)
R = TypeVar("R", bound=SurfaceRequest)

_SSE_RAW_HEADERS = ((b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no"))
ERROR_STATUSES = (400, 401, 403, 404, 413, 415, 429, 502, 503, 504)


def documented_body(schema: str) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads its body by hand: the request schema ``create_app`` adds."""
    content = {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}
    return {"requestBody": {"required": True, "content": content}}


def documented_errors(envelope: type, statuses: tuple[int, ...] = ERROR_STATUSES) -> dict[int | str, dict[str, Any]]:
    """``responses`` entries for a route's errors, in its surface's envelope."""
    return {status: {"model": envelope} for status in statuses}


class SurfaceEndpoint(Generic[R]):
    """The ASGI side of one surface; subclasses give ``surface``, ``parse`` and the format's writing."""

    surface: Surface[R]

    def __init__(self, state: State) -> None:
        self.state = state  # the app's state: the pipeline and auth exist once the lifespan has run

    # -- what a surface says ------------------------------------------------------------------
    def parse(self, body: bytes, headers: Headers, scope: Scope) -> R:
        raise NotImplementedError

    def error(self, exc: GatewayError, scope: Scope) -> tuple[int, bytes, dict[str, str]]:
        """An error as this surface writes it: status, body, headers."""
        return exc.status_code, exc.body(), exc.headers()

    def frame(self, item: bytes) -> bytes:
        """A stream item as it goes on the wire."""
        raise NotImplementedError

    def stream_end(self) -> bytes:
        """What ends a whole stream after its last item (OpenAI's ``[DONE]``), or b""."""
        return b""

    def error_event(self, exc: GatewayError) -> bytes:
        """The event that ends a stream which failed after its first byte."""
        raise NotImplementedError

    # -- the request --------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.answer(scope, receive, send)
        except GatewayError as exc:
            await self.send_error(send, exc, scope)
        except ClientDisconnect:
            return  # the caller is gone: nobody to answer
        except Exception:
            log.exception("unhandled error")
            await self.send_error(send, InternalError(), scope)

    async def answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope)
        body = await read_body(receive)
        request, identity = await self.admit(scope, headers, body)
        pipeline: Pipeline = self.state.pipeline
        cache_control = headers.get("cache-control")
        request_id: str = scope["state"]["request_id"]
        if request.stream:
            answer = await pipeline.stream(
                self.surface, request, identity, request_id=request_id, cache_control=cache_control
            )
            try:
                items = self.relayed(answer.chunks, answer.headers, request, identity)
                await send_sse(receive, send, items, answer.headers, self)
            finally:  # settles and records the stream, however it ended (cancelled before its first byte too)
                await answer.aclose()
            return
        result = await pipeline.complete(
            self.surface, request, identity, request_id=request_id, cache_control=cache_control
        )
        await self.answered(result.body, result.headers, request, identity)
        await send_json(send, 200, result.body, result.headers)

    async def answered(self, body: bytes, headers: dict[str, str], request: R, identity: Identity) -> None:
        """A whole answer, before it is sent (the Responses surface keeps it for follow-ups here)."""

    def relayed(
        self, items: AsyncIterator[bytes], headers: dict[str, str], request: R, identity: Identity
    ) -> AsyncIterator[bytes]:
        """A stream's items on their way to the caller (the Responses surface watches them here)."""
        return items

    async def identify(self, scope: Scope, headers: Headers) -> Identity:
        """Who is calling (401 before the body is looked at), kept in the request's state for the telemetry
        of a request refused later on."""
        auth: AuthService = self.state.auth
        client = scope.get("client")
        identity = await auth.resolver.resolve(headers, client[0] if client else None)
        scope["state"]["identity"] = identity
        return identity

    async def admit(self, scope: Scope, headers: Headers, body: bytes) -> tuple[R, Identity]:
        """Who is calling, what they ask, and whether they may."""
        identity = await self.identify(scope, headers)
        request = self.parse(body, headers, scope)
        if not identity.may_use(request.model):
            raise PermissionDenied(f"This API key may not use the model '{request.model}'.", param="model")
        return request, identity

    async def send_error(self, send: Send, exc: GatewayError, scope: Scope) -> None:
        status, body, headers = self.error(exc, scope)
        await send_json(send, status, body, headers)


async def send_json(send: Send, status: int, body: bytes, headers: dict[str, str]) -> None:
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    raw_headers += [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


async def read_body(receive: Receive) -> bytes:
    """The request body (its size is ``BodyGuardMiddleware``'s business, outside)."""
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientDisconnect()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    chunks = [body]
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


class Framing(Protocol):
    """How a surface writes its stream on the wire: SurfaceEndpoint's three methods."""

    def frame(self, item: bytes) -> bytes: ...

    def stream_end(self) -> bytes: ...

    def error_event(self, exc: GatewayError) -> bytes: ...


async def send_sse(
    receive: Receive, send: Send, items: AsyncIterator[bytes], headers: dict[str, str], framing: Framing
) -> None:
    """Send each item framed as it comes; stop at once if the caller disconnects.

    A failure after the first byte ends the stream with an error event, never with the format's normal
    end: a cut stream is never presented as a clean finish. Items are taken by plain ``__anext__`` calls,
    not through a framing generator: a generator layer costs on every event.

    A watcher task waits for ``http.disconnect`` (uvicorn's ``send`` ignores a gone client
    silently) and cancels this task, so the relay stops reading the upstream. ``items`` is
    always closed, so a stream cut by the client runs its clean-up (settlement, the upstream
    connection's release) at once, not when collected. Starlette's StreamingResponse does the
    same with an AnyIO task group, at several times the cost per stream.
    """
    relay = asyncio.current_task()
    assert relay is not None
    disconnected = False

    async def watch() -> None:
        nonlocal disconnected
        while (await receive())["type"] != "http.disconnect":
            pass
        disconnected = True
        relay.cancel()

    watcher = asyncio.create_task(watch())
    raw_headers = [(b"content-type", b"text/event-stream; charset=utf-8"), *_SSE_RAW_HEADERS]
    raw_headers += [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]
    frame, following = framing.frame, items.__anext__
    try:
        await send({"type": "http.response.start", "status": 200, "headers": raw_headers})
        send = body_send(send)
        while True:
            try:
                item = await following()
            except StopAsyncIteration:
                end = framing.stream_end()
                break
            except GatewayError as exc:
                end = framing.error_event(exc)
                break
            except Exception:
                log.exception("stream relay failed")
                end = framing.error_event(UpstreamStreamError("The gateway failed while relaying the stream."))
                break
            await send({"type": "http.response.body", "body": frame(item), "more_body": True})
        if end:
            await send({"type": "http.response.body", "body": end, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    except asyncio.CancelledError:
        if not disconnected:
            raise
        relay.uncancel()  # our own cancel: the caller is gone, which ends the request normally
    finally:
        watcher.cancel()
        close = getattr(items, "aclose", None)
        if close is not None:
            await close()
