"""The one way an error leaves FastAPI's routes: the caller's envelope (``envelopes.py``), the error's own
status and headers."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import Response
from starlette.types import Scope

from llm_gateway.api.envelopes import render_error
from llm_gateway.errors import GatewayError


def error_response(exc: GatewayError, scope: Scope, extra_headers: Mapping[str, str] | None = None) -> Response:
    status, body, headers = render_error(scope, exc)
    return Response(
        body, status_code=status, media_type="application/json", headers={**headers, **(extra_headers or {})}
    )
