"""``POST /v1/chat/completions`` (and ``/chat/completions``): JSON in, JSON or SSE out."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from starlette.datastructures import Headers
from starlette.types import Scope

from llm_gateway.api.endpoint import SurfaceEndpoint, documented_body, documented_errors
from llm_gateway.errors import GatewayError, InternalError
from llm_gateway.schemas.core import ChatRequest
from llm_gateway.schemas.openai import ChatCompletion, ErrorEnvelope, parse_chat_request
from llm_gateway.surfaces.chat import ChatSurface

CHAT = ChatSurface()
router = APIRouter()


CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})


@router.post(
    "/v1/chat/completions",
    summary="Create a chat completion",
    openapi_extra=documented_body("ChatCompletionRequest"),
    responses={
        200: {"model": ChatCompletion, "content": {"text/event-stream": {}}},
        **documented_errors(ErrorEnvelope),
    },
)
@router.post("/chat/completions", include_in_schema=False)
async def create_chat_completion() -> Response:
    """For /docs and /openapi.json only: ``GatewayApp`` dispatches these requests to ``ChatEndpoint``."""
    raise InternalError()


class ChatEndpoint(SurfaceEndpoint[ChatRequest]):
    """The chat routes as a plain ASGI app (``api/endpoint.py``), which ``GatewayApp`` dispatches to ahead of
    FastAPI. Errors render exactly as FastAPI's handlers render them: OpenAI's envelope."""

    surface = CHAT

    def parse(self, body: bytes, headers: Headers, scope: Scope) -> ChatRequest:
        return parse_chat_request(body, max_choices=self.state.config.settings.max_choices)

    def frame(self, item: bytes) -> bytes:
        return b"data: " + item + b"\n\n"

    def stream_end(self) -> bytes:
        return b"data: [DONE]\n\n"

    def error_event(self, exc: GatewayError) -> bytes:
        return b"data: " + exc.body() + b"\n\n"
