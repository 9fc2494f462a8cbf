"""``/``, ``/health`` and ``/ready``: what this is, whether it is up (liveness), whether it can serve (readiness)."""

from __future__ import annotations

from typing import Any, Literal

import orjson
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from llm_gateway import __version__
from llm_gateway.readiness import Readiness

router = APIRouter()


class Ready(BaseModel):
    status: Literal["ready"] = "ready"


class Unavailable(BaseModel):
    status: Literal["unavailable"] = "unavailable"
    # The checks that failed, each with a short reason: "database", and "redis" when REDIS_URL is set.
    checks: dict[str, str]


@router.get("/", summary="About this gateway")
async def root() -> dict[str, Any]:
    return {
        "name": "llm-gateway",
        "version": __version__,
        "endpoints": ["/v1/chat/completions", "/v1/models", "/health", "/ready", "/docs", "/openapi.json"],
    }


@router.get("/health", summary="Liveness")
async def health() -> dict[str, str]:
    """200 while the process serves, whatever its stores say: restarting it would not bring them back."""
    return {"status": "ok"}


@router.get(
    "/ready",
    summary="Readiness",
    response_model=Ready,
    responses={503: {"model": Unavailable, "description": "The database (or Redis, when configured) does not answer"}},
)
async def ready(request: Request) -> Response:
    """200 when the database (and Redis, when configured) answer; else 503 naming the checks that failed.
    Each check is bounded to a second, and its result kept for a second: probes cost nothing."""
    readiness: Readiness = request.app.state.readiness
    failures = await readiness.failures()
    if failures:
        return _json(503, Unavailable(checks=failures))
    return _json(200, Ready())


def _json(status: int, body: BaseModel) -> Response:
    return Response(orjson.dumps(body.model_dump()), status_code=status, media_type="application/json")
