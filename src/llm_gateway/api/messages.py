"""``POST /v1/messages`` and ``POST /v1/messages/count_tokens``: Anthropic's Messages API, for the Anthropic
SDK and Claude Code (``ANTHROPIC_BASE_URL`` pointed at the gateway). Query strings (``?beta=true``) are
accepted and ignored. Errors are Anthropic's envelope; a stream that fails after its first event ends
with ``event: error`` and no ``message_stop``.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter
from fastapi.responses import Response
from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send

from llm_gateway.api.endpoint import (
    ERROR_STATUSES,
    SurfaceEndpoint,
    documented_body,
    documented_errors,
    read_body,
    send_json,
)
from llm_gateway.api.envelopes import Rendered, anthropic_error
from llm_gateway.asgi import route_path
from llm_gateway.errors import GatewayError, InternalError, PermissionDenied, UpstreamError
from llm_gateway.pipeline import Pipeline
from llm_gateway.providers.base import NativeMessages
from llm_gateway.schemas.anthropic import (
    MessagesRequest,
    error_event,
    parse_count_tokens_request,
    parse_messages_request,
)
from llm_gateway.schemas.anthropic_docs import AnthropicErrorEnvelope, Message, TokenCount
from llm_gateway.schemas.anthropic_tokens import estimate_messages_tokens
from llm_gateway.surfaces.messages import MessagesSurface

MESSAGES = MessagesSurface()
MESSAGES_PATH = "/v1/messages"
COUNT_TOKENS_PATH = "/v1/messages/count_tokens"
MESSAGES_PATHS = frozenset({MESSAGES_PATH, COUNT_TOKENS_PATH})
# The caller's headers a native deployment gets: the API version it speaks and the betas it opted into.
FORWARDED_HEADERS = ("anthropic-version", "anthropic-beta")
COUNT_TOKENS_TIMEOUT_SECONDS = 10.0

router = APIRouter()


_ERRORS = documented_errors(AnthropicErrorEnvelope, (*ERROR_STATUSES, 529))


@router.post(
    MESSAGES_PATH,
    summary="Create a message (Anthropic's Messages API)",
    openapi_extra=documented_body("MessagesRequest"),
    responses={200: {"model": Message, "content": {"text/event-stream": {}}}, **_ERRORS},
)
async def create_message() -> Response:
    """For /docs and /openapi.json only: ``GatewayApp`` dispatches these requests to ``MessagesEndpoint``."""
    raise InternalError()


@router.post(
    COUNT_TOKENS_PATH,
    summary="Count the tokens of a message (Anthropic's Messages API)",
    openapi_extra=documented_body("CountTokensRequest"),
    responses={200: {"model": TokenCount}, **_ERRORS},
)
async def count_message_tokens() -> Response:
    """For /docs and /openapi.json only, as ``create_message``."""
    raise InternalError()


class MessagesEndpoint(SurfaceEndpoint[MessagesRequest]):
    surface = MESSAGES

    def parse(self, body: bytes, headers: Headers, scope: Scope) -> MessagesRequest:
        request = parse_messages_request(body)
        request.forward = _forwarded(headers)
        return request

    def error(self, exc: GatewayError, scope: Scope) -> Rendered:
        return anthropic_error(exc, scope["state"].get("request_id"))

    def frame(self, item: bytes) -> bytes:
        return item  # Anthropic's events arrive framed

    def error_event(self, exc: GatewayError) -> bytes:
        return error_event(exc)

    async def answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        if route_path(scope) == COUNT_TOKENS_PATH:
            await self.count_tokens(scope, receive, send)
        else:
            await super().answer(scope, receive, send)

    async def count_tokens(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``{"input_tokens": N}``: the first Anthropic deployment's own count when the group has one, else the
        gateway's estimate. It needs an identity; it charges nothing and does not count toward the rate."""
        headers = Headers(scope=scope)
        body = await read_body(receive)
        identity = await self.identify(scope, headers)
        request = parse_count_tokens_request(body)
        model: str = request["model"]
        if not identity.may_use(model):
            raise PermissionDenied(f"This API key may not use the model '{model}'.", param="model")
        count = await self._upstream_count(request, model, headers)
        if count is None:
            count = estimate_messages_tokens(request, model)
        await send_json(send, 200, orjson.dumps({"input_tokens": count}), {})

    async def _upstream_count(self, request: dict[str, Any], model: str, headers: Headers) -> int | None:
        pipeline: Pipeline = self.state.pipeline
        router = pipeline.router
        forward = _forwarded(headers)
        for deployment in router.deployments(model):
            provider = router.provider(deployment.provider)
            if isinstance(provider, NativeMessages):
                try:
                    return await provider.count_tokens(
                        request, deployment.model, timeout=COUNT_TOKENS_TIMEOUT_SECONDS, headers=forward
                    )
                except UpstreamError:
                    return None  # the estimate is good enough for a count; never fail the caller for it
        return None


def _forwarded(headers: Headers) -> dict[str, str]:
    return {name: headers[name] for name in FORWARDED_HEADERS if name in headers}
