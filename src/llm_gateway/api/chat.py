"""``POST /v1/chat/completions`` (and ``/chat/completions``): JSON in, JSON or SSE out."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from llm_gateway.api.deps import IdentityDep, PipelineDep
from llm_gateway.errors import GatewayError, PermissionDenied, UpstreamStreamError
from llm_gateway.providers.router import Routed, RoutedStream
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


@router.post(
    "/v1/chat/completions",
    summary="Create a chat completion",
    openapi_extra=_DOC,
    responses={200: {"model": ChatCompletion, "content": {"text/event-stream": {}}}, **_ERRORS},
)
@router.post("/chat/completions", include_in_schema=False)
async def create_chat_completion(request: Request, pipeline: PipelineDep, identity: IdentityDep) -> Response:
    chat = parse_chat_request(await request.body())
    if not identity.may_use(chat.model):
        raise PermissionDenied(f"This API key may not use the model '{chat.model}'.", param="model")
    if chat.stream:
        routed_stream = await pipeline.stream(chat, identity)
        return StreamingResponse(
            relay_sse(routed_stream),
            media_type="text/event-stream",
            headers={**SSE_HEADERS, **gateway_headers(routed_stream)},
        )
    routed = await pipeline.complete(chat, identity)
    return Response(routed.completion.to_bytes(), media_type="application/json", headers=gateway_headers(routed))


def gateway_headers(routed: Routed) -> dict[str, str]:
    return {"x-gateway-provider": routed.provider, "x-gateway-attempts": str(routed.attempt_count)}


async def relay_sse(routed: RoutedStream) -> AsyncIterator[bytes]:
    """Forward each chunk as it arrives; a failure after the first byte ends the stream with an error event."""
    stream = routed.stream
    assert stream is not None
    try:
        for chunk in routed.head:
            yield b"data: " + chunk + b"\n\n"
        async for chunk in stream:
            yield b"data: " + chunk + b"\n\n"
        yield b"data: [DONE]\n\n"
    except GatewayError as exc:
        # An error event, and no [DONE]: a cut stream is never presented as a clean finish.
        yield b"data: " + exc.body() + b"\n\n"
    except Exception:
        log.exception("stream relay failed")
        yield b"data: " + UpstreamStreamError("The gateway failed while relaying the stream.").body() + b"\n\n"
    finally:
        await stream.aclose()
