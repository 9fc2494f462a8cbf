"""``GET /v1/models`` (and ``/models``): the model groups this caller may use, in OpenAI's list shape;
``GET /v1/models/{model}``: one of them.

Anonymous callers get 401; a key limited to some models sees only those, and 404 for the others.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from llm_gateway.api.deps import CallerDep
from llm_gateway.errors import ModelNotFound
from llm_gateway.schemas.openai import ErrorEnvelope, Model, ModelList

router = APIRouter()


@router.get("/v1/models", response_model=ModelList, responses={401: {"model": ErrorEnvelope}}, summary="List models")
@router.get("/models", response_model=ModelList, include_in_schema=False)
async def list_models(request: Request, caller: CallerDep) -> ModelList:
    models: ModelList = request.app.state.model_list
    if caller.allowed_models is None:
        return models
    return ModelList(data=[model for model in models.data if model.id in caller.allowed_models])


# `:path`: model names may hold a slash (`groq/llama-3.1-8b-instant`).
@router.get(
    "/v1/models/{model:path}",
    response_model=Model,
    responses={401: {"model": ErrorEnvelope}, 404: {"model": ErrorEnvelope}},
    summary="Retrieve a model",
)
@router.get("/models/{model:path}", response_model=Model, include_in_schema=False)
async def retrieve_model(request: Request, model: str, caller: CallerDep) -> Model:
    """One model of the list; a model this caller may not use is as absent as one that does not exist."""
    models: ModelList = request.app.state.model_list
    if caller.may_use(model):
        for entry in models.data:
            if entry.id == model:
                return entry
    raise ModelNotFound(model)
