"""In-process: the gateway's front door, with the official SDK and httpx over ``httpx.ASGITransport``.

One outer stack for every route (request id, security headers, CORS, the admin key, the body's type
and size); paths matched after ``root_path``; no redirect built from ``Host``; JSON bodies only (415);
``GET /v1/models/{model}``; ``/v1/usage`` showing the budget that binds a key.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from starlette.middleware.cors import CORSMiddleware

from llm_gateway.api.admin import AdminGuard
from llm_gateway.api.middleware import BodyGuardMiddleware, RequestIdMiddleware
from llm_gateway.app import GatewayApp, create_app
from llm_gateway.settings import load_settings
from llm_gateway.telemetry.early_refusals import EarlyRefusalRecorder
from tests.fakes.upstream import FakeProvider
from tests.identity_support import ADMIN_API_KEY, ADMIN_HEADERS, sqlite_url
from tests.pricing_support import spend_usd

SECURITY = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}
HELLO = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
SLASHED = "groq/llama-3.1-8b-instant"
ORIGIN = "https://app.example.com"
JSON = {"content-type": "application/json"}

MakeApp = Callable[..., GatewayApp]


@pytest.fixture
def make_app(tmp_path: Path, openai_fake: FakeProvider) -> MakeApp:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        json.dumps(
            {
                "providers": {"openai": {"type": "openai"}},
                "models": {
                    "gpt-4o-mini": [{"provider": "openai", "model": "gpt-4o-mini"}],
                    SLASHED: [{"provider": "openai", "model": "llama-3.1-8b-instant"}],
                },
            }
        )
    )

    def make(**extra: str) -> GatewayApp:
        env = {
            "GATEWAY_CONFIG": str(config),
            "DATABASE_URL": sqlite_url(tmp_path),
            "ADMIN_API_KEY": ADMIN_API_KEY,
            "MAX_REQUEST_BYTES": "4096",
            **openai_fake.env,
            **extra,
        }
        app = create_app(load_settings(env))
        assert isinstance(app, GatewayApp)
        return app

    return make


@pytest.fixture
async def app(make_app: MakeApp) -> AsyncIterator[GatewayApp]:
    application = make_app()
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


def sdk(app: GatewayApp, key: str, *, base_url: str = "http://gateway/v1", **transport: Any) -> openai.AsyncOpenAI:
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, **transport))
    return openai.AsyncOpenAI(api_key=key, base_url=base_url, http_client=client, max_retries=0)


def envelope(message: str, code: str | None, *, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}


def assert_front_door_headers(response: httpx.Response, request_id: str) -> None:
    assert response.headers["x-request-id"] == request_id
    for name, value in SECURITY.items():
        assert response.headers.get_list(name) == [value], (name, dict(response.headers))


# 1. One outer stack ---------------------------------------------------------------------------------------


def layers(app: Any) -> list[type]:
    found = []
    while hasattr(app, "app"):
        found.append(type(app))
        app = app.app
    return found


def test_one_outer_stack_wraps_the_chat_endpoint_and_fastapi(make_app: MakeApp) -> None:
    app = make_app(CORS_ORIGINS=ORIGIN)
    stack = [EarlyRefusalRecorder, RequestIdMiddleware, CORSMiddleware, AdminGuard, BodyGuardMiddleware]
    assert layers(app.entry) == stack
    assert app.user_middleware == []  # nothing of it again inside FastAPI


TOO_BIG = b'{"pad": "' + b"x" * 5000 + b'"}'


async def chunks(body: bytes) -> AsyncIterator[bytes]:
    yield body[:100]
    yield body[100:]


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/admin/keys"])
async def test_refusals_read_the_same_on_the_chat_endpoint_and_on_fastapi(http: httpx.AsyncClient, path: str) -> None:
    headers = {**ADMIN_HEADERS, "x-request-id": "req-1"}
    declared = await http.post(path, content=TOO_BIG, headers={**headers, **JSON})
    streamed = await http.post(path, content=chunks(TOO_BIG), headers={**headers, **JSON})  # no Content-Length
    wrong_type = await http.post(path, content=b"{}", headers={**headers, "content-type": "text/plain"})
    too_large = {
        "error": {
            "message": "The request body exceeds the limit of 4096 bytes.",
            "type": "invalid_request_error",
            "param": None,
            "code": "request_too_large",
        }
    }
    for response in (declared, streamed):
        assert (response.status_code, response.json()) == (413, too_large)
        assert_front_door_headers(response, "req-1")
    assert wrong_type.status_code == 415
    assert_front_door_headers(wrong_type, "req-1")


async def test_cors_answers_chat_and_fastapi_routes_alike(make_app: MakeApp) -> None:
    app = make_app(CORS_ORIGINS=ORIGIN)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
            chat = await client.post("/v1/chat/completions", json=HELLO, headers={"origin": ORIGIN})
            health = await client.get("/health", headers={"origin": ORIGIN})
    for response in (chat, health):
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == ORIGIN
        assert response.headers["access-control-expose-headers"] == (
            "x-request-id, x-gateway-provider, x-gateway-attempts, x-gateway-dropped-params, x-gateway-cost-usd"
        )


# 2. root_path ---------------------------------------------------------------------------------------------


async def test_under_a_root_path_every_route_answers(app: GatewayApp, http: httpx.AsyncClient) -> None:
    key = await new_key(http)
    client = sdk(app, key, base_url="http://gateway/gw/v1", root_path="/gw")
    completion = await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert completion.choices[0].message.content
    assert [model.id for model in (await client.models.list()).data] == ["gpt-4o-mini", SLASHED]
    stream = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    assert "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])
    await client.close()


async def test_under_a_root_path_the_admin_api_still_needs_its_key(app: GatewayApp) -> None:
    transport = httpx.ASGITransport(app=app, root_path="/gw")
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        anonymous = await client.get("/gw/admin/keys")
        admin = await client.get("/gw/admin/keys", headers=ADMIN_HEADERS)
    assert anonymous.status_code == 401, anonymous.text
    assert anonymous.json()["error"]["code"] == "invalid_api_key"
    assert (admin.status_code, admin.json()) == (200, {"object": "list", "data": []})


# 3. No redirect from Host ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [("POST", "/v1/chat/completions/"), ("GET", "/health/")])
async def test_a_trailing_slash_is_a_404_never_a_redirect_to_the_host(
    http: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await http.request(method, path, json=HELLO, headers={"host": "evil.example", "x-request-id": "r2"})
    assert response.status_code == 404
    assert "location" not in response.headers
    assert response.json() == envelope("Not Found", "not_found")
    assert_front_door_headers(response, "r2")


# 4. JSON bodies only --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "text/plain; charset=utf-8", "application/x-www-form-urlencoded", "multipart/form-data"],
)
async def test_a_chat_body_that_is_not_json_is_415_and_charges_nothing(
    app: GatewayApp, http: httpx.AsyncClient, openai_fake: FakeProvider, content_type: str | None
) -> None:
    key = await new_key(http, rate_limit_per_minute=5)
    headers = {"authorization": f"Bearer {key}"} | ({"content-type": content_type} if content_type else {})
    response = await http.post("/v1/chat/completions", content=json.dumps(HELLO).encode(), headers=headers)
    assert response.status_code == 415
    got = f"'{content_type}'" if content_type else "none"
    assert response.json() == envelope(
        f"The request body must be JSON: send 'Content-Type: application/json' (got {got}).", "unsupported_media_type"
    )
    assert response.headers["connection"] == "close"
    assert openai_fake.chat_requests == []
    usage = await http.get("/v1/usage", headers={"authorization": f"Bearer {key}"})
    assert (usage.json()["requests"], usage.json()["used_tokens"], usage.json()["reserved_tokens"]) == (0, 0, 0)
    accepted = await http.post("/v1/chat/completions", json=HELLO, headers={"authorization": f"Bearer {key}"})
    assert accepted.headers["x-ratelimit-remaining-requests"] == "4"  # the 415 took no request slot


@pytest.mark.parametrize(
    "content_type", ["application/json", "Application/JSON; charset=utf-8", "application/vnd.x+json"]
)
async def test_json_content_types_are_accepted(http: httpx.AsyncClient, content_type: str) -> None:
    response = await http.post(
        "/v1/chat/completions", content=json.dumps(HELLO), headers={"content-type": content_type}
    )
    assert response.status_code == 200, response.text


async def test_the_sdk_sends_json(app: GatewayApp, http: httpx.AsyncClient) -> None:
    sent: list[str] = []

    async def record(request: httpx.Request) -> None:
        sent.append(request.headers["content-type"])

    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), event_hooks={"request": [record]})
    sdk_client = openai.AsyncOpenAI(api_key=await new_key(http), base_url="http://gateway/v1", http_client=client)
    await sdk_client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    await sdk_client.close()
    assert sent == ["application/json"]


@pytest.mark.parametrize(("method", "path"), [("POST", "/admin/keys"), ("PUT", "/admin/users/alice")])
async def test_admin_bodies_must_be_json_too(http: httpx.AsyncClient, method: str, path: str) -> None:
    form = {**ADMIN_HEADERS, "content-type": "application/x-www-form-urlencoded"}
    refused = await http.request(method, path, content=b"user_id=alice", headers=form)
    assert refused.status_code == 415
    assert refused.json()["error"]["code"] == "unsupported_media_type"
    assert (await http.get("/admin/keys", headers=ADMIN_HEADERS)).json()["data"] == []
    unauthenticated = await http.request(method, path, content=b"user_id=alice", headers={"content-type": "text/plain"})
    assert unauthenticated.status_code == 401  # the admin key is checked first


# 6. GET /v1/models/{model} --------------------------------------------------------------------------------


async def test_retrieve_a_model_with_the_sdk(app: GatewayApp, http: httpx.AsyncClient) -> None:
    client = sdk(app, await new_key(http))
    model = await client.models.retrieve("gpt-4o-mini")
    slashed = await client.models.retrieve(SLASHED)  # sent as groq%2Fllama-3.1-8b-instant
    every = {entry.id: entry for entry in (await client.models.list()).data}
    assert model == every["gpt-4o-mini"] and model.object == "model" and model.owned_by == "llm-gateway"
    assert slashed == every[SLASHED]
    with pytest.raises(openai.NotFoundError) as missing:
        await client.models.retrieve("no-such-model")
    assert (
        missing.value.body
        == envelope(
            "The model 'no-such-model' does not exist or you do not have access to it.",
            "model_not_found",
            param="model",
        )["error"]
    )
    await client.close()


async def test_retrieve_a_model_needs_a_key_and_a_key_sees_only_its_models(http: httpx.AsyncClient) -> None:
    anonymous = await http.get("/v1/models/gpt-4o-mini")
    assert anonymous.status_code == 401
    restricted = {"authorization": f"Bearer {await new_key(http, models=['gpt-4o-mini'])}"}
    allowed = await http.get("/models/gpt-4o-mini", headers=restricted)
    hidden = await http.get(f"/v1/models/{SLASHED}", headers=restricted)
    assert allowed.status_code == 200 and allowed.json()["id"] == "gpt-4o-mini"
    assert (hidden.status_code, hidden.json()) == (
        404,
        envelope(
            f"The model '{SLASHED}' does not exist or you do not have access to it.", "model_not_found", param="model"
        ),
    )
    assert_front_door_headers(hidden, hidden.headers["x-request-id"])


# 7. /v1/usage: the binding budget -------------------------------------------------------------------------


async def test_usage_shows_the_key_budget_when_it_binds_and_both_budgets(http: httpx.AsyncClient) -> None:
    key = await new_key(http, monthly_token_budget=500)
    auth = {"authorization": f"Bearer {key}"}
    answer = await http.post("/v1/chat/completions", json={**HELLO, "max_tokens": 20}, headers=auth)
    assert answer.status_code == 200, answer.text
    usage = answer.json()["usage"]
    used = usage["total_tokens"]
    report = (await http.get("/v1/usage", headers=auth)).json()
    month = report["month"]
    spent = spend_usd("gpt-4o-mini", (usage["prompt_tokens"], usage["completion_tokens"]))
    assert report == {
        "user_id": "alice",
        "month": month,
        "budget_tokens": 500,
        "used_tokens": used,
        "reserved_tokens": 0,
        "remaining_tokens": 500 - used,
        "requests": 1,
        "spend_usd": spent,
        "by_model": {
            "gpt-4o-mini": {
                "prompt_tokens": usage["prompt_tokens"],
                "completion_tokens": usage["completion_tokens"],
                "requests": 1,
                "spend_usd": spent,
            }
        },
        "key": {
            "budget_tokens": 500,
            "used_tokens": used,
            "reserved_tokens": 0,
            "remaining_tokens": 500 - used,
            "spend_usd": spent,
        },
        "user": {
            "budget_tokens": 1_000_000,
            "used_tokens": used,
            "reserved_tokens": 0,
            "remaining_tokens": 1_000_000 - used,
            "spend_usd": spent,
        },
    }
    assert answer.headers["x-ratelimit-limit-tokens"] == "500"  # the budget the headers name, too


async def test_usage_without_a_key_budget_keeps_its_shape(http: httpx.AsyncClient) -> None:
    auth = {"authorization": f"Bearer {await new_key(http)}"}
    report = (await http.get("/v1/usage", headers=auth)).json()
    assert report == {
        "user_id": "alice",
        "month": report["month"],
        "budget_tokens": 1_000_000,
        "used_tokens": 0,
        "reserved_tokens": 0,
        "remaining_tokens": 1_000_000,
        "requests": 0,
        "spend_usd": "0.000000",
        "by_model": {},
    }
