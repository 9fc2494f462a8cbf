"""``GET /v1/models`` (and ``/models``): the model groups this caller may use, in OpenAI's list shape.

Anonymous callers get 401; a key limited to some models sees only those.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from llm_gateway.api.deps import CallerDep
from llm_gateway.schemas.openai import ErrorEnvelope, ModelList

router = APIRouter()


@router.get("/v1/models", response_model=ModelList, responses={401: {"model": ErrorEnvelope}}, summary="List models")
@router.get("/models", response_model=ModelList, include_in_schema=False)
async def list_models(request: Request, caller: CallerDep) -> ModelList:
    models: ModelList = request.app.state.model_list
    if caller.allowed_models is None:
        return models
    return ModelList(data=[model for model in models.data if model.id in caller.allowed_models])
