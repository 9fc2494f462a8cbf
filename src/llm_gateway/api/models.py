"""``GET /v1/models`` (and ``/models``): the model groups this gateway can serve, in OpenAI's list shape."""

from __future__ import annotations

from fastapi import APIRouter, Request

from llm_gateway.schemas.openai import ModelList

router = APIRouter()


@router.get("/v1/models", response_model=ModelList, summary="List models")
@router.get("/models", response_model=ModelList, include_in_schema=False)
async def list_models(request: Request) -> ModelList:
    return request.app.state.model_list  # type: ignore[no-any-return]
