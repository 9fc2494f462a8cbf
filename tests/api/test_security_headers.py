"""In-process: security headers on every answer, CORS only for ``CORS_ORIGINS``, the admin key compared in
constant time.

Headers: ``nosniff``, ``DENY`` framing and ``no-referrer`` everywhere, and ``cache-control: no-store``
unless the route set its own (the SSE answer keeps ``no-cache``): answers are per caller and a replay by
a browser or proxy would bypass the limits (see ``api/middleware.py``).
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

import llm_gateway.api.admin as admin_api
from llm_gateway.app import create_app
from llm_gateway.settings import load_settings
from tests.fakes.upstream import FakeProvider
from tests.identity_support import ADMIN_API_KEY, ADMIN_HEADERS, sqlite_url

SECURITY = {"x-content-type-options": "nosniff", "x-frame-options": "DENY", "referrer-policy": "no-referrer"}
ALLOWED_ORIGIN = "https://app.example.com"
HELLO = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}

AppFactory = Callable[..., Any]


@pytest.fixture
def make_app(tmp_path: Path, fakes: dict[str, FakeProvider]) -> AppFactory:
    def make(**extra: str) -> FastAPI:
        env = {"GATEWAY_CONFIG": "", "DATABASE_URL": sqlite_url(tmp_path), "ADMIN_API_KEY": ADMIN_API_KEY, **extra}
        for fake in fakes.values():
            env.update(fake.env)
        return create_app(load_settings(env))

    return make


@pytest.fixture
async def http(make_app: AppFactory) -> AsyncIterator[httpx.AsyncClient]:
    app = make_app(MAX_REQUEST_BYTES="2048")
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
            yield client


def assert_secured(response: httpx.Response, cache_control: str = "no-store") -> None:
    for name, value in SECURITY.items():
        assert response.headers.get(name) == value, (name, dict(response.headers))
    assert response.headers.get_list("cache-control") == [cache_control], dict(response.headers)
    assert response.headers["x-request-id"]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("GET", "/health", {}, 200),
        ("GET", "/openapi.json", {}, 200),
        ("GET", "/docs", {}, 200),
        ("GET", "/no/such/path", {}, 404),
        ("DELETE", "/health", {}, 405),
        ("POST", "/v1/chat/completions", {"json": HELLO}, 200),
        (
            "POST",
            "/v1/chat/completions",
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
            400,
        ),
        ("POST", "/v1/chat/completions", {"content": b"{}", "headers": {"content-type": "text/plain"}}, 415),
        ("POST", "/v1/chat/completions", {"content": b"x" * 4096}, 413),
        ("GET", "/v1/models", {}, 401),
        ("GET", "/admin/keys", {}, 401),  # refused by the admin guard, ahead of the router
        ("GET", "/admin/keys", {"headers": ADMIN_HEADERS}, 200),
        ("POST", "/admin/keys", {"headers": ADMIN_HEADERS, "json": {"user_id": "u"}}, 201),  # shows a key once
    ],
)
async def test_every_answer_carries_the_security_headers(
    http: httpx.AsyncClient, method: str, path: str, kwargs: dict[str, Any], status: int
) -> None:
    response = await http.request(method, path, **kwargs)
    assert response.status_code == status, response.text
    assert_secured(response)


async def test_a_stream_keeps_its_own_cache_control(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/chat/completions", json={**HELLO, "stream": True})
    assert response.status_code == 200 and response.text.endswith("data: [DONE]\n\n")
    assert_secured(response, cache_control="no-cache")


def preflight(origin: str) -> dict[str, str]:
    return {
        "origin": origin,
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type",
    }


async def test_cors_answers_only_the_configured_origins(make_app: AppFactory) -> None:
    app = make_app(CORS_ORIGINS=f"{ALLOWED_ORIGIN}, https://other.example.com")
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
            allowed = await client.options("/v1/chat/completions", headers=preflight(ALLOWED_ORIGIN))
            refused = await client.options("/v1/chat/completions", headers=preflight("https://evil.example.com"))
            simple_allowed = await client.get("/health", headers={"origin": ALLOWED_ORIGIN})
            simple_refused = await client.get("/health", headers={"origin": "https://evil.example.com"})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert "access-control-allow-origin" not in refused.headers
    assert "access-control-allow-credentials" not in refused.headers
    assert simple_allowed.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "x-request-id" in simple_allowed.headers["access-control-expose-headers"]
    assert "access-control-allow-origin" not in simple_refused.headers
    for response in (allowed, refused, simple_allowed, simple_refused):
        assert_secured(response)


async def test_without_cors_origins_no_origin_is_allowed(http: httpx.AsyncClient) -> None:
    preflight_answer = await http.options("/v1/chat/completions", headers=preflight(ALLOWED_ORIGIN))
    simple = await http.get("/health", headers={"origin": ALLOWED_ORIGIN})
    assert not any(name.startswith("access-control-") for name in preflight_answer.headers)
    assert not any(name.startswith("access-control-") for name in simple.headers)


async def test_the_admin_key_is_decided_by_a_constant_time_comparison_of_equal_length_digests(
    http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[bytes, bytes]] = []
    verdict: dict[str, bool | None] = {"forced": None}
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b) if verdict["forced"] is None else bool(verdict["forced"])

    monkeypatch.setattr(admin_api.hmac, "compare_digest", spy)
    right, wrong = ADMIN_HEADERS, {"authorization": "Bearer not-the-admin-key"}
    assert (await http.get("/admin/keys", headers=right)).status_code == 200
    assert (await http.get("/admin/keys", headers=wrong)).status_code == 401
    # Whatever compare_digest says is the verdict: no other comparison decides.
    verdict["forced"] = False
    assert (await http.get("/admin/keys", headers=right)).status_code == 401
    verdict["forced"] = True
    assert (await http.get("/admin/keys", headers=wrong)).status_code == 200
    assert len(calls) == 4
    # Digests of equal length whatever was sent, so not even the key's length leaks through timing.
    assert all(isinstance(a, bytes) and len(a) == len(b) == 32 for a, b in calls)
    assert ADMIN_API_KEY.encode() not in {value for pair in calls for value in pair}
