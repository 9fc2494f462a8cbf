"""``GET /metrics``: the Prometheus exposition of ``app.state.telemetry``'s metrics.

Rendering runs in a worker thread: in multiprocess mode it reads every worker's files.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import Response

from llm_gateway.telemetry import Telemetry

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    telemetry: Telemetry = request.app.state.telemetry
    body, content_type = await asyncio.to_thread(telemetry.metrics.exposition, request.headers.get("accept", ""))
    return Response(body, media_type=content_type)
