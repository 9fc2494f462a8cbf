"""Which envelope an error is written in: Anthropic's for the Messages API's paths (and for an Anthropic client
asking for models), OpenAI's everywhere else; each client then raises its own matching exception class."""

from __future__ import annotations

from starlette.types import Scope

from llm_gateway.asgi import route_path
from llm_gateway.errors import GatewayError
from llm_gateway.schemas.anthropic import error_body, error_type

MESSAGES_PREFIX = "/v1/messages"
_MODELS_PREFIX = "/v1/models"

Rendered = tuple[int, bytes, dict[str, str]]


def speaks_anthropic(scope: Scope) -> bool:
    path = route_path(scope)
    if path == MESSAGES_PREFIX or path.startswith(MESSAGES_PREFIX + "/"):
        return True
    return path.startswith(_MODELS_PREFIX) and any(name == b"anthropic-version" for name, _ in scope["headers"])


def openai_error(exc: GatewayError) -> Rendered:
    return exc.status_code, exc.body(), exc.headers()


def anthropic_error(exc: GatewayError, request_id: str | None = None) -> Rendered:
    status, _ = error_type(exc)
    return status, error_body(exc, request_id=request_id), exc.headers()


def render_error(scope: Scope, exc: GatewayError) -> Rendered:
    """``exc`` in the envelope of the client that sent ``scope``."""
    if speaks_anthropic(scope):
        return anthropic_error(exc, scope.get("state", {}).get("request_id"))
    return openai_error(exc)
