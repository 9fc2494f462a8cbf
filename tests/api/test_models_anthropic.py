"""In-process: ``GET /v1/models`` and ``/v1/models/{model}`` in Anthropic's shape when the caller sends
``anthropic-version``, with the official Anthropic SDK (which pages with ``after_id``/``before_id``) and httpx.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anthropic
import httpx
import httpx2
import pytest

from llm_gateway.app import GatewayApp, create_app
from llm_gateway.schemas.openai import ModelList
from llm_gateway.settings import load_settings
from tests.fakes.upstream import FakeProvider
from tests.identity_support import ADMIN_API_KEY, ADMIN_HEADERS, sqlite_url

SLASHED = "groq/llama-3.1-8b-instant"
# Sorted by id, the order of both shapes.
MODELS = ["claude-haiku", "claude-sonnet", "gpt-4o-mini", SLASHED, "o3"]
ANTHROPIC = {"anthropic-version": "2023-06-01"}


@pytest.fixture
async def app(tmp_path: Path, openai_fake: FakeProvider) -> AsyncIterator[GatewayApp]:
    config = tmp_path / "gateway.yaml"
    groups = {name: [{"provider": "openai", "model": name.rpartition("/")[2]}] for name in reversed(MODELS)}
    config.write_text(json.dumps({"providers": {"openai": {"type": "openai"}}, "models": groups}))
    env = {
        "GATEWAY_CONFIG": str(config),
        "DATABASE_URL": sqlite_url(tmp_path),
        "ADMIN_API_KEY": ADMIN_API_KEY,
        **openai_fake.env,
    }
    application = create_app(load_settings(env))
    assert isinstance(application, GatewayApp)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def http(app: GatewayApp) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
        yield client


async def new_key(http: httpx.AsyncClient, **fields: Any) -> str:
    response = await http.post("/admin/keys", headers=ADMIN_HEADERS, json={"user_id": "alice", **fields})
    assert response.status_code == 201, response.text
    key: str = response.json()["key"]
    return key


@pytest.fixture
async def key(http: httpx.AsyncClient) -> str:
    return await new_key(http)


@pytest.fixture
async def claude(app: GatewayApp, key: str) -> AsyncIterator[anthropic.AsyncAnthropic]:
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport) as client:
        yield anthropic.AsyncAnthropic(base_url="http://gateway", api_key=key, http_client=client, max_retries=0)


def created_at(app: GatewayApp) -> str:
    """The gateway's start-up time, which OpenAI's shape gives as ``created``, in RFC 3339."""
    model_list: ModelList = app.state.model_list
    created = {model.created for model in model_list.data}
    assert len(created) == 1
    return datetime.fromtimestamp(created.pop(), UTC).isoformat().replace("+00:00", "Z")


def entry(app: GatewayApp, name: str) -> dict[str, str]:
    return {"type": "model", "id": name, "display_name": name, "created_at": created_at(app)}


def page(app: GatewayApp, names: list[str], *, has_more: bool) -> dict[str, Any]:
    return {
        "data": [entry(app, name) for name in names],
        "has_more": has_more,
        "first_id": names[0] if names else None,
        "last_id": names[-1] if names else None,
    }


# The SDK -------------------------------------------------------------------------------------------------


async def test_the_sdk_lists_every_model_one_page_or_many(app: GatewayApp, claude: anthropic.AsyncAnthropic) -> None:
    one_page = await claude.models.list()
    assert [model.id for model in one_page.data] == MODELS and one_page.has_more is False
    paged = [model async for model in claude.models.list(limit=2)]  # three requests, after_id each time
    assert [model.id for model in paged] == MODELS
    expected = datetime.fromisoformat(created_at(app))
    for model in paged:
        assert (model.type, model.display_name, model.created_at) == ("model", model.id, expected)


async def test_the_sdk_pages_backwards_from_before_id(claude: anthropic.AsyncAnthropic) -> None:
    backwards = [model.id async for model in claude.models.list(before_id="o3", limit=2)]
    # Each page holds the two models before the previous page's first; the SDK yields page by page.
    assert backwards == ["gpt-4o-mini", SLASHED, "claude-haiku", "claude-sonnet"]


async def test_the_sdk_retrieves_one_model(app: GatewayApp, claude: anthropic.AsyncAnthropic) -> None:
    model = await claude.models.retrieve("gpt-4o-mini")
    assert model.model_dump(exclude_none=True) == {
        **entry(app, "gpt-4o-mini"),
        "created_at": datetime.fromisoformat(created_at(app)),
    }
    assert (await claude.models.retrieve(SLASHED)).id == SLASHED  # sent as groq%2Fllama-3.1-8b-instant
    with pytest.raises(anthropic.NotFoundError):
        await claude.models.retrieve("no-such-model")


# Whole bodies ----------------------------------------------------------------------------------------------


async def test_list_bodies_page_by_page(app: GatewayApp, http: httpx.AsyncClient, key: str) -> None:
    headers = {**ANTHROPIC, "x-api-key": key}

    async def listed(**params: str) -> dict[str, Any]:
        response = await http.get("/v1/models", headers=headers, params=params)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        body: dict[str, Any] = response.json()
        return body

    assert await listed() == page(app, MODELS, has_more=False)
    assert await listed(limit="2") == page(app, MODELS[:2], has_more=True)
    assert await listed(limit="2", after_id="claude-sonnet") == page(app, MODELS[2:4], has_more=True)
    assert await listed(limit="2", after_id=SLASHED) == page(app, ["o3"], has_more=False)
    assert await listed(limit="2", before_id="gpt-4o-mini") == page(app, MODELS[:2], has_more=False)
    assert await listed(limit="1", before_id="o3") == page(app, [SLASHED], has_more=True)
    assert await listed(after_id="claude-haiku", before_id="o3") == page(app, MODELS[1:4], has_more=False)
    assert await listed(limit="1000", after_id="o3") == page(app, [], has_more=False)
    # A cursor is a position in the order, not a lookup: one that names no model still pages.
    assert await listed(after_id="d") == page(app, MODELS[2:], has_more=False)
    assert await listed(before_id="d", limit="1") == page(app, ["claude-sonnet"], has_more=True)
    response = await http.get("/models", headers=headers)  # the path without /v1
    assert response.json() == page(app, MODELS, has_more=False)


async def test_retrieve_body(app: GatewayApp, http: httpx.AsyncClient, key: str) -> None:
    headers = {**ANTHROPIC, "x-api-key": key}
    for path in ("/v1/models/o3", "/models/o3"):
        response = await http.get(path, headers=headers)
        assert (response.status_code, response.json()) == (200, entry(app, "o3"))
    assert (await http.get("/v1/models/nope", headers=headers)).status_code == 404


# "\u0665": an Arabic-Indic five, which int() would take.
@pytest.mark.parametrize("limit", ["0", "1001", "-1", "abc", "+5", " 5", "1_0", "\u0665", ""])
async def test_a_limit_out_of_range_is_400(http: httpx.AsyncClient, key: str, limit: str) -> None:
    response = await http.get("/v1/models", headers={**ANTHROPIC, "x-api-key": key}, params={"limit": limit})
    assert response.status_code == 400, response.text
    assert "limit" in response.text


async def test_without_anthropic_version_the_shape_is_openais_and_paging_is_ignored(
    app: GatewayApp, http: httpx.AsyncClient, key: str
) -> None:
    created = int(datetime.fromisoformat(created_at(app)).timestamp())
    openai_list = {
        "object": "list",
        "data": [{"id": name, "object": "model", "created": created, "owned_by": "llm-gateway"} for name in MODELS],
    }
    response = await http.get("/v1/models", headers={"x-api-key": key}, params={"limit": "0", "after_id": "x"})
    assert (response.status_code, response.json()) == (200, openai_list)
    response = await http.get("/v1/models/o3", headers={"x-api-key": key})
    assert (response.status_code, response.json()) == (200, openai_list["data"][-1])


async def test_a_key_limited_to_some_models_sees_and_pages_only_those(app: GatewayApp, http: httpx.AsyncClient) -> None:
    limited = {**ANTHROPIC, "x-api-key": await new_key(http, models=["o3", "claude-haiku", "gpt-4o-mini"])}
    response = await http.get("/v1/models", headers=limited)
    assert response.json() == page(app, ["claude-haiku", "gpt-4o-mini", "o3"], has_more=False)
    response = await http.get("/v1/models", headers=limited, params={"limit": "1", "after_id": "claude-haiku"})
    assert response.json() == page(app, ["gpt-4o-mini"], has_more=True)
    assert (await http.get("/v1/models/claude-sonnet", headers=limited)).status_code == 404
    assert (await http.get("/v1/models/o3", headers=limited)).json() == entry(app, "o3")


async def test_anonymous_callers_are_refused(http: httpx.AsyncClient) -> None:
    assert (await http.get("/v1/models", headers=ANTHROPIC)).status_code == 401
    assert (await http.get("/v1/models/o3", headers=ANTHROPIC)).status_code == 401
