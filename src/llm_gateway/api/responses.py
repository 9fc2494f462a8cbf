"""The one way an error leaves the gateway: OpenAI's envelope, with the error's own status and headers."""

from __future__ import annotations

from starlette.responses import Response

from llm_gateway.errors import GatewayError


def error_response(exc: GatewayError) -> Response:
    return Response(exc.body(), status_code=exc.status_code, media_type="application/json", headers=exc.headers())
