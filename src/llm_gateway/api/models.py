"""``GET /v1/models`` (and ``/models``): the model groups this caller may use, in OpenAI's list shape;
``GET /v1/models/{model}``: one of them. With an ``anthropic-version`` header, both answer in
Anthropic's shape instead (paginated as Anthropic's API is), so the Anthropic SDK's ``models`` work too.

Anonymous callers get 401; a key limited to some models sees only those, and 404 for the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.datastructures import QueryParams
from starlette.responses import Response

from llm_gateway.api.deps import CallerDep
from llm_gateway.errors import InvalidRequest, ModelNotFound
from llm_gateway.schemas.openai import ErrorEnvelope, Model, ModelList

router = APIRouter()

ANTHROPIC_HEADER = "anthropic-version"
DEFAULT_LIMIT, MAX_LIMIT = 20, 1000  # Anthropic's own bounds for `limit`


class AnthropicModel(BaseModel):
    type: Literal["model"] = "model"
    id: str
    display_name: str
    created_at: str  # RFC 3339


class AnthropicModelList(BaseModel):
    data: list[AnthropicModel]
    has_more: bool
    first_id: str | None
    last_id: str | None


@router.get("/v1/models", response_model=ModelList, responses={401: {"model": ErrorEnvelope}}, summary="List models")
@router.get("/models", response_model=ModelList, include_in_schema=False)
async def list_models(request: Request, caller: CallerDep) -> ModelList | Response:
    """With an ``anthropic-version`` header: Anthropic's list shape, paginated by ``limit`` (1-1000, default 20),
    ``after_id`` and ``before_id``."""
    models: ModelList = request.app.state.model_list
    visible = (
        models.data
        if caller.allowed_models is None
        else [model for model in models.data if model.id in caller.allowed_models]
    )
    if ANTHROPIC_HEADER in request.headers:
        return _json(anthropic_list(visible, request.query_params))
    return models if caller.allowed_models is None else ModelList(data=visible)


# `:path`: model names may hold a slash (`groq/llama-3.1-8b-instant`).
@router.get(
    "/v1/models/{model:path}",
    response_model=Model,
    responses={401: {"model": ErrorEnvelope}, 404: {"model": ErrorEnvelope}},
    summary="Retrieve a model",
)
@router.get("/models/{model:path}", response_model=Model, include_in_schema=False)
async def retrieve_model(request: Request, model: str, caller: CallerDep) -> Model | Response:
    """One model of the list; a model this caller may not use is as absent as one that does not exist."""
    models: ModelList = request.app.state.model_list
    if caller.may_use(model):
        for entry in models.data:
            if entry.id == model:
                return _json(anthropic_model(entry)) if ANTHROPIC_HEADER in request.headers else entry
    raise ModelNotFound(model)


def anthropic_model(model: Model) -> AnthropicModel:
    # The gateway's start-up time, as in OpenAI's `created`: a model group has no release date of its own.
    created_at = datetime.fromtimestamp(model.created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return AnthropicModel(id=model.id, display_name=model.id, created_at=created_at)


def anthropic_list(models: Sequence[Model], query: QueryParams) -> AnthropicModelList:
    page, has_more = anthropic_page(
        models, limit=_limit(query.get("limit")), after_id=query.get("after_id"), before_id=query.get("before_id")
    )
    return AnthropicModelList(
        data=[anthropic_model(model) for model in page],
        has_more=has_more,
        first_id=page[0].id if page else None,
        last_id=page[-1].id if page else None,
    )


def anthropic_page(
    models: Sequence[Model], *, limit: int, after_id: str | None = None, before_id: str | None = None
) -> tuple[list[Model], bool]:
    """One page of Anthropic's cursor pagination, and whether more lie beyond it in the direction of travel.

    Models are ordered by id (they share one creation time). Cursors are compared, not looked up, so a
    cursor naming a model this caller cannot see (or no model at all) reveals nothing and still pages
    correctly. ``before_id`` pages backwards, as the SDK does once it is given: the ``limit`` models just
    before it, ``has_more`` when earlier ones remain.
    """
    window = [
        model
        for model in sorted(models, key=lambda model: model.id)
        if (not after_id or model.id > after_id) and (not before_id or model.id < before_id)
    ]
    has_more = len(window) > limit
    return (window[-limit:] if before_id else window[:limit]), has_more


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    limit = int(raw) if raw.isascii() and raw.isdigit() else 0  # not bare int(): it takes " 5", "+5", "1_0"
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"'limit' must be an integer from 1 to {MAX_LIMIT}.", param="limit")
    return limit


def _json(body: BaseModel) -> Response:
    return Response(body.model_dump_json(), media_type="application/json")
