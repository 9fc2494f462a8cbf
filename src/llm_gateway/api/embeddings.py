"""``POST /v1/embeddings`` (and ``/embeddings``): OpenAI's Embeddings API through the one pipeline."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from starlette.datastructures import Headers
from starlette.types import Scope

from llm_gateway.api.endpoint import SurfaceEndpoint, documented_body, documented_errors
from llm_gateway.errors import InternalError
from llm_gateway.schemas.embeddings import CreateEmbeddingResponse, EmbeddingsRequest, parse_embeddings_request
from llm_gateway.schemas.openai import ErrorEnvelope
from llm_gateway.surfaces.embeddings import EmbeddingsSurface

EMBEDDINGS = EmbeddingsSurface()
EMBEDDINGS_PATHS = frozenset({"/v1/embeddings", "/embeddings"})

router = APIRouter()


@router.post(
    "/v1/embeddings",
    summary="Create embeddings",
    openapi_extra=documented_body("CreateEmbeddingRequest"),
    responses={200: {"model": CreateEmbeddingResponse}, **documented_errors(ErrorEnvelope)},
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
