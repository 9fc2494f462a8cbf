"""``POST /v1/chat/completions`` (and ``/chat/completions``): JSON in, JSON or SSE out."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from llm_gateway.api.deps import resolve_identity
from llm_gateway.api.responses import error_response
from llm_gateway.errors import GatewayError, PermissionDenied, UpstreamStreamError
from llm_gateway.pipeline import ChatPipeline
from llm_gateway.schemas.openai import ChatCompletion, ErrorEnvelope, parse_chat_request

log = logging.getLogger(__name__)
router = APIRouter()

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorEnvelope} for status in (400, 401, 403, 404, 413, 429, 502, 503, 504)
}
_DOC = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ChatCompletionRequest"}}},
    },
}
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})


@router.post(
    "/v1/chat/completions",
    summary="Create a chat completion",
    openapi_extra=_DOC,
    responses={200: {"model": ChatCompletion, "content": {"text/event-stream": {}}}, **_ERRORS},
)
@router.post("/chat/completions", include_in_schema=False)
async def create_chat_completion(request: Request) -> Response:
    """Documents the route; requests are answered by ``ChatFastPath`` with the same ``answer_chat``."""
    return await answer_chat(request)


async def answer_chat(request: Request) -> Response:
    identity = await resolve_identity(request)
    chat = parse_chat_request(await request.body())
    if not identity.may_use(chat.model):
        raise PermissionDenied(f"This API key may not use the model '{chat.model}'.", param="model")
    pipeline: ChatPipeline = request.app.state.pipeline
    request_id: str = request.scope["state"]["request_id"]
    cache_control = request.headers.get("cache-control")
    if chat.stream:
        answer = await pipeline.stream(chat, identity, request_id=request_id, cache_control=cache_control)
        return SSEResponse(frame_sse(answer.chunks), headers={**SSE_HEADERS, **answer.headers})
    result = await pipeline.complete(chat, identity, request_id=request_id, cache_control=cache_control)
    return Response(result.body, media_type="application/json", headers=result.headers)


class ChatFastPath:
    """Answers the chat routes ahead of FastAPI's router, dependency solving and exception middleware.

    Those cost about 400 µs a request (bench/README.md), more than the rest of the gateway's own
    work; every other route still goes through FastAPI. Errors render exactly as FastAPI's
    handlers would render them (``error_response``).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in CHAT_PATHS or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            response = await answer_chat(request)
        except GatewayError as exc:
            response = error_response(exc)
        except ClientDisconnect:
            return  # the caller is gone: nobody to answer
        await response(scope, receive, send)


class SSEResponse(StreamingResponse):
    """A StreamingResponse that always closes its body iterator, so a stream cut by the client
    runs its clean-up (settlement, the upstream connection's release) at once, not when collected."""

    media_type = "text/event-stream"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            close = getattr(self.body_iterator, "aclose", None)
            if close is not None:
                await close()


async def frame_sse(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
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
