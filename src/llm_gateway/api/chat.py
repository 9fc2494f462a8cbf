"""``POST /v1/chat/completions`` (and ``/chat/completions``): JSON in, JSON or SSE out."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from starlette.datastructures import Headers, State
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from llm_gateway.auth.identity import Identity
from llm_gateway.auth.service import AuthService
from llm_gateway.errors import GatewayError, InternalError, PermissionDenied, UpstreamStreamError
from llm_gateway.pipeline import Pipeline
from llm_gateway.schemas.core import ChatRequest
from llm_gateway.schemas.openai import ChatCompletion, ErrorEnvelope, parse_chat_request
from llm_gateway.surfaces.chat import ChatSurface

log = logging.getLogger(__name__)
CHAT = ChatSurface()
router = APIRouter()

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorEnvelope} for status in (400, 401, 403, 404, 413, 415, 429, 502, 503, 504)
}
_DOC = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ChatCompletionRequest"}}},
    },
}
_SSE_RAW_HEADERS = ((b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no"))


CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})


@router.post(
    "/v1/chat/completions",
    summary="Create a chat completion",
    openapi_extra=_DOC,
    responses={200: {"model": ChatCompletion, "content": {"text/event-stream": {}}}, **_ERRORS},
)
@router.post("/chat/completions", include_in_schema=False)
async def create_chat_completion() -> Response:
    """For /docs and /openapi.json only: ``GatewayApp`` dispatches these requests to ``ChatEndpoint``."""
    raise InternalError()


async def _admit_request(
    state: State, request_state: dict[str, Any], headers: Headers, peer: str | None, body: bytes
) -> tuple[ChatRequest, Identity]:
    """Who is calling (401 first, before the body is looked at), what they ask, and whether they may.

    The identity is kept in the request's state for the telemetry of a request refused later on."""
    auth: AuthService = state.auth
    identity = await auth.resolver.resolve(headers, peer)
    request_state["identity"] = identity
    chat = parse_chat_request(body, max_choices=state.config.settings.max_choices)
    if not identity.may_use(chat.model):
        raise PermissionDenied(f"This API key may not use the model '{chat.model}'.", param="model")
    return chat, identity


class ChatEndpoint:
    """The chat routes as a plain ASGI app, which ``GatewayApp`` dispatches to ahead of FastAPI.

    FastAPI's and Starlette's machinery (router, dependency solving, request and response objects)
    cost more per request than the rest of the gateway's own work (bench/README.md); every other
    route still goes through them. What every route shares (request id, security headers, CORS,
    the body's type and size, the server span) wraps both, once, in ``create_app``. Errors render
    exactly as FastAPI's handlers render them.
    """

    def __init__(self, state: State) -> None:
        self.state = state  # the app's state: the pipeline and auth exist once the lifespan has run

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._answer(scope, receive, send)
        except GatewayError as exc:
            await _send_error(send, exc)
        except ClientDisconnect:
            return  # the caller is gone: nobody to answer
        except Exception:
            log.exception("unhandled error")
            await _send_error(send, InternalError())

    async def _answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope)
        body = await _read_body(receive)
        client = scope.get("client")
        request_state: dict[str, Any] = scope["state"]
        chat, identity = await _admit_request(self.state, request_state, headers, client[0] if client else None, body)
        pipeline: Pipeline = self.state.pipeline
        cache_control = headers.get("cache-control")
        request_id: str = request_state["request_id"]
        if chat.stream:
            answer = await pipeline.stream(CHAT, chat, identity, request_id=request_id, cache_control=cache_control)
            try:
                await _send_sse(receive, send, frame_sse(answer.chunks), answer.headers)
            finally:  # settles and records the stream, however it ended (cancelled before its first byte too)
                await answer.aclose()
            return
        result = await pipeline.complete(CHAT, chat, identity, request_id=request_id, cache_control=cache_control)
        await _send_json(send, 200, result.body, result.headers)


async def _send_json(send: Send, status: int, body: bytes, headers: dict[str, str]) -> None:
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    raw_headers += [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


async def _send_error(send: Send, error: GatewayError) -> None:
    await _send_json(send, error.status_code, error.body(), error.headers())


async def _read_body(receive: Receive) -> bytes:
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


async def _send_sse(receive: Receive, send: Send, events: AsyncGenerator[bytes, None], headers: dict[str, str]) -> None:
    """Send framed events as they come; stop at once if the caller disconnects.

    A watcher task waits for ``http.disconnect`` (uvicorn's ``send`` ignores a gone client
    silently) and cancels this task, so the relay stops reading the upstream. ``events`` is
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
    try:
        await send({"type": "http.response.start", "status": 200, "headers": raw_headers})
        async for event in events:
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    except asyncio.CancelledError:
        if not disconnected:
            raise
        relay.uncancel()  # our own cancel: the caller is gone, which ends the request normally
    finally:
        watcher.cancel()
        await events.aclose()


async def frame_sse(chunks: AsyncIterator[bytes]) -> AsyncGenerator[bytes, None]:
    """Frame each chunk as it arrives; a failure after the first byte ends the stream with an error event."""
    try:
        async for chunk in chunks:
            yield b"data: " + chunk + b"\n\n"
        yield b"data: [DONE]\n\n"
    except GatewayError as exc:
        # An error event, and no [DONE]: a cut stream is never presented as a clean finish.
        yield b"data: " + exc.body() + b"\n\n"
    except Exception:
        log.exception("stream relay failed")
        yield b"data: " + UpstreamStreamError("The gateway failed while relaying the stream.").body() + b"\n\n"
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()
