"""In-process: the identity every request resolves to, seen through a test-only route.

Proves the anonymous key behind trusted proxies, and that keys and JWTs carry their limits
through the HTTP layer. The ASGI transport sets the socket peer, so no real proxy is needed.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI

from llm_gateway.api.deps import CallerDep, IdentityDep
from llm_gateway.app import create_app
from llm_gateway.settings import load_settings
from tests.identity_support import ADMIN_API_KEY, ADMIN_HEADERS, sqlite_url

JWT_SECRET = "an-hmac-secret-that-is-long-enough-0123456789"


def _describe(identity: Any) -> dict[str, Any]:
    models = identity.allowed_models
    return {
        "user_id": identity.user_id,
        "kind": identity.kind,
        "rpm": identity.rate_limit_per_minute,
        "budget": identity.monthly_token_budget,
        "key_budget": identity.key_token_budget,
        "models": sorted(models) if models is not None else None,
    }


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    env = {
        "GATEWAY_CONFIG": "",
        "DATABASE_URL": sqlite_url(tmp_path),
        "ADMIN_API_KEY": ADMIN_API_KEY,
        "JWT_SECRET": JWT_SECRET,
        "TRUSTED_PROXIES": "10.0.0.0/8, fd00::/8",
        "ANON_RATE_LIMIT_PER_MINUTE": "3",
        "ANON_MONTHLY_TOKEN_BUDGET": "30",
    }
    application = create_app(load_settings(env))

    async def whoami(identity: IdentityDep) -> dict[str, Any]:
        return _describe(identity)

    async def whoami_signed_in(identity: CallerDep) -> dict[str, Any]:
        return _describe(identity)

    application.add_api_route("/test/whoami", whoami)
    application.add_api_route("/test/whoami-signed-in", whoami_signed_in)
    async with application.router.lifespan_context(application):
        yield application


def client(app: FastAPI, peer: str = "203.0.113.1") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(peer, 50000)), base_url="http://gateway")


async def whoami(app: FastAPI, peer: str = "203.0.113.1", **headers: str) -> dict[str, Any]:
    async with client(app, peer) as http:
        response = await http.get("/test/whoami", headers={k.replace("_", "-"): v for k, v in headers.items()})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "user_id"),
    [
        ("203.0.113.1", None, "anon:203.0.113.1"),
        ("203.0.113.1", "198.51.100.7", "anon:203.0.113.1"),  # not our proxy: the header is ignored
        ("10.0.0.2", "198.51.100.7", "anon:198.51.100.7"),
        ("10.0.0.2", "6.6.6.6, 198.51.100.7, 10.0.0.9", "anon:198.51.100.7"),
        ("fd00::2", "2001:db8:aa:bb:1:2:3:4", "anon:2001:db8:aa:bb::/64"),
    ],
)
async def test_anonymous_callers_are_keyed_by_client_address(
    app: FastAPI, peer: str, forwarded_for: str | None, user_id: str
) -> None:
    headers = {"x_forwarded_for": forwarded_for} if forwarded_for else {}
    assert await whoami(app, peer, **headers) == {
        "user_id": user_id,
        "kind": "anonymous",
        "rpm": 3,
        "budget": 30,
        "key_budget": None,
        "models": None,
    }


async def test_several_forwarded_for_headers_read_as_one_list(app: FastAPI) -> None:
    async with client(app, "10.0.0.2") as http:
        headers = [("x-forwarded-for", "6.6.6.6"), ("x-forwarded-for", "198.51.100.8")]
        response = await http.get("/test/whoami", headers=headers)
    assert response.json()["user_id"] == "anon:198.51.100.8"


async def test_keys_and_jwts_carry_their_limits_through_http(app: FastAPI) -> None:
    async with client(app) as http:
        await http.put("/admin/users/olga", headers=ADMIN_HEADERS, json={"monthly_token_budget": 777})
        created = await http.post(
            "/admin/keys",
            headers=ADMIN_HEADERS,
            json={"user_id": "olga", "rate_limit_per_minute": 4, "monthly_token_budget": 70, "models": ["b", "a"]},
        )
    key = created.json()["key"]
    assert await whoami(app, authorization=f"Bearer {key}") == {
        "user_id": "olga",
        "kind": "api_key",
        "rpm": 4,
        "budget": 777,
        "key_budget": 70,
        "models": ["a", "b"],
    }
    token = jwt.encode({"sub": "olga", "exp": int(time.time()) + 60}, JWT_SECRET, algorithm="HS256")
    assert await whoami(app, authorization=f"Bearer {token}") == {
        "user_id": "olga",
        "kind": "jwt",
        "rpm": 60,
        "budget": 777,
        "key_budget": None,
        "models": None,
    }


async def test_signed_in_routes_refuse_anonymous_callers(app: FastAPI) -> None:
    async with client(app) as http:
        response = await http.get("/test/whoami-signed-in")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
