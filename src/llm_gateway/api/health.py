"""``/`` and ``/health``: what this is, and whether it is up."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from llm_gateway import __version__

router = APIRouter()


@router.get("/", summary="About this gateway")
async def root() -> dict[str, Any]:
    return {
        "name": "llm-gateway",
        "version": __version__,
        "endpoints": ["/v1/chat/completions", "/v1/models", "/health", "/docs", "/openapi.json"],
    }


@router.get("/health", summary="Liveness")
async def health() -> dict[str, str]:
    return {"status": "ok"}
