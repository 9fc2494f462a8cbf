"""``POST /v1/embeddings`` (and ``/embeddings``): OpenAI's Embeddings API through the one pipeline."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from starlette.datastructures import Headers
from starlette.types import Scope

from llm_gateway.api.endpoint import SurfaceEndpoint
from llm_gateway.errors import InternalError
from llm_gateway.schemas.embeddings import CreateEmbeddingResponse, EmbeddingsRequest, parse_embeddings_request
from llm_gateway.schemas.openai import ErrorEnvelope
from llm_gateway.surfaces.embeddings import EmbeddingsSurface

EMBEDDINGS = EmbeddingsSurface()
EMBEDDINGS_PATHS = frozenset({"/v1/embeddings", "/embeddings"})

router = APIRouter()
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorEnvelope} for status in (400, 401, 403, 404, 413, 415, 429, 502, 503, 504)
}
_DOC = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CreateEmbeddingRequest"}}},
    },
}


@router.post(
    "/v1/embeddings",
    summary="Create embeddings",
    openapi_extra=_DOC,
    responses={200: {"model": CreateEmbeddingResponse}, **_ERRORS},
)
@router.post("/embeddings", include_in_schema=False)
async def create_embeddings() -> Response:
    """For /docs and /openapi.json only: ``GatewayApp`` dispatches these requests to ``EmbeddingsEndpoint``."""
    raise InternalError()


class EmbeddingsEndpoint(SurfaceEndpoint[EmbeddingsRequest]):
    """Never streamed: an answer is one JSON body, errors OpenAI's envelope."""

    surface = EMBEDDINGS

    def parse(self, body: bytes, headers: Headers, scope: Scope) -> EmbeddingsRequest:
        return parse_embeddings_request(body)
