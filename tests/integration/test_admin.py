"""The admin API: bearer ADMIN_API_KEY, off when unset; keys shown once; users' limits. Both backends."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.fakes import FakeProvider
from tests.harness import GatewayServer
from tests.identity_support import (
    ADMIN_API_KEY,
    ADMIN_HEADERS,
    database_url,  # noqa: F401 - the module-scoped fixture, one run per backend
    gateway_env,
)

pytestmark = pytest.mark.integration

KEY_FIELDS = {
    "id",
    "user_id",
    "name",
    "prefix",
    "models",
    "monthly_token_budget",
    "monthly_budget_usd",
    "rate_limit_per_minute",
    "expires_at",
    "created_at",
}


@pytest.fixture(scope="module")
def gateway(database_url: str) -> Iterator[GatewayServer]:  # noqa: F811
    with FakeProvider("openai") as upstream, GatewayServer(gateway_env(upstream.env, database_url)) as server:
        yield server


def admin(gateway: GatewayServer, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, f"{gateway.base_url}/admin{path}", headers=ADMIN_HEADERS, timeout=10, **kwargs)


def error_of(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def test_create_list_revoke_a_key(gateway: GatewayServer) -> None:
    expires = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    request = {
        "user_id": "alice@example.com",
        "name": "laptop",
        "models": ["gpt-4o-mini", "gpt-4o"],
        "monthly_token_budget": 5000,
        "rate_limit_per_minute": 12,
        "expires_at": expires.isoformat(),
    }
    created = admin(gateway, "POST", "/keys", json=request)
    assert created.status_code == 201, created.text
    body = created.json()
    assert set(body) == KEY_FIELDS | {"key"}
    key = body.pop("key")
    assert key.startswith(f"sk-gw-{body['id']}-") and body["prefix"] == f"sk-gw-{body['id']}"
    assert {k: body[k] for k in request} == {**request, "expires_at": expires.isoformat().replace("+00:00", "Z")}
    assert body["monthly_budget_usd"] is None

    listed = admin(gateway, "GET", "/keys", params={"user_id": "alice@example.com"})
    assert listed.status_code == 200
    assert listed.json() == {"object": "list", "data": [{**body, "revoked_at": None, "last_used_at": None}]}
    assert key not in listed.text

    revoked = admin(gateway, "DELETE", f"/keys/{body['id']}")
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None and key not in revoked.text
    assert admin(gateway, "GET", "/keys", params={"user_id": "alice@example.com"}).json()["data"][0]["revoked_at"]
    again = admin(gateway, "DELETE", f"/keys/{body['id']}")
    assert again.json()["revoked_at"] == revoked.json()["revoked_at"]


def test_listing_all_keys_and_filtering_by_user(gateway: GatewayServer) -> None:
    ids = [admin(gateway, "POST", "/keys", json={"user_id": user}).json()["id"] for user in ("u1", "u2", "u2")]
    everything = {key["id"] for key in admin(gateway, "GET", "/keys").json()["data"]}
    assert set(ids) <= everything
    assert [key["id"] for key in admin(gateway, "GET", "/keys", params={"user_id": "u2"}).json()["data"]] == ids[1:]
    assert admin(gateway, "GET", "/keys", params={"user_id": "nobody"}).json() == {"object": "list", "data": []}


def test_revoking_an_unknown_key_is_404(gateway: GatewayServer) -> None:
    response = admin(gateway, "DELETE", "/keys/doesnotexist")
    assert response.status_code == 404
    assert error_of(response) == {
        "message": "No API key with id 'doesnotexist'.",
        "type": "invalid_request_error",
        "param": None,
        "code": "not_found",
    }


def test_users_limits_set_read_and_clear(gateway: GatewayServer) -> None:
    assert admin(gateway, "GET", "/users/frank").status_code == 404
    put = admin(gateway, "PUT", "/users/frank", json={"monthly_token_budget": 2000, "rate_limit_per_minute": 5})
    assert put.status_code == 200
    body = put.json()
    assert {k: body[k] for k in ("user_id", "monthly_token_budget", "rate_limit_per_minute")} == {
        "user_id": "frank",
        "monthly_token_budget": 2000,
        "rate_limit_per_minute": 5,
    }
    # Fields left out are kept; an explicit null goes back to the default.
    partial = admin(gateway, "PUT", "/users/frank", json={"rate_limit_per_minute": None}).json()
    assert (partial["monthly_token_budget"], partial["rate_limit_per_minute"]) == (2000, None)
    assert admin(gateway, "GET", "/users/frank").json() == partial
    odd = admin(gateway, "PUT", "/users/auth0|abc/def", json={"monthly_token_budget": 1})
    assert odd.json()["user_id"] == "auth0|abc/def"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "user_id"),
        ({"user_id": ""}, "user_id"),
        ({"user_id": "anon:1.2.3.4"}, "user_id"),
        ({"user_id": "a", "monthly_token_budget": -1}, "monthly_token_budget"),
        ({"user_id": "a", "rate_limit_per_minute": "many"}, "rate_limit_per_minute"),
        ({"user_id": "a", "models": []}, "models"),
        ({"user_id": "a", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ({"user_id": "a", "expires_at": "next tuesday"}, "expires_at"),
        ({"user_id": "a", "key": "sk-gw-chosen-by-me"}, "key"),
    ],
)
def test_bad_key_requests_are_400(gateway: GatewayServer, body: dict[str, Any], param: str) -> None:
    response = admin(gateway, "POST", "/keys", json=body)
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["type"] == "invalid_request_error" and error["param"] == param


def test_bad_user_limits_are_400(gateway: GatewayServer) -> None:
    response = admin(gateway, "PUT", "/users/x", json={"monthly_token_budget": -5})
    assert response.status_code == 400 and error_of(response)["param"] == "monthly_token_budget"
    assert admin(gateway, "PUT", "/users/x", json={"budget": 5}).status_code == 400


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer wrong-admin-key-000000"},
        {"authorization": f"Bearer {ADMIN_API_KEY}x"},
        {"authorization": f"Basic {ADMIN_API_KEY}"},
        {"x-api-key": ADMIN_API_KEY},
    ],
)
def test_admin_needs_the_admin_key(gateway: GatewayServer, headers: dict[str, str]) -> None:
    for method, path in (("GET", "/keys"), ("POST", "/keys"), ("DELETE", "/keys/x"), ("GET", "/users/a")):
        response = httpx.request(method, f"{gateway.base_url}/admin{path}", headers=headers, content=b"{not json")
        assert response.status_code == 401, (method, path)  # refused before the body is even read
        assert error_of(response)["code"] == "invalid_api_key"
        assert response.headers["x-request-id"]


def test_an_api_key_is_not_an_admin_key(gateway: GatewayServer) -> None:
    key = admin(gateway, "POST", "/keys", json={"user_id": "sneaky"}).json()["key"]
    assert httpx.get(f"{gateway.base_url}/admin/keys", headers={"authorization": f"Bearer {key}"}).status_code == 401


def test_admin_is_off_without_an_admin_key(database_url: str) -> None:  # noqa: F811
    env = {k: v for k, v in gateway_env({}, database_url).items() if k != "ADMIN_API_KEY"}
    with GatewayServer(env) as server:
        for method, path in (("GET", "/admin/keys"), ("POST", "/admin/keys"), ("GET", "/admin")):
            response = httpx.request(method, f"{server.base_url}{path}", headers=ADMIN_HEADERS)
            assert response.status_code == 404
            assert error_of(response) == {
                "message": "Not Found",
                "type": "invalid_request_error",
                "param": None,
                "code": "not_found",
            }


def test_admin_routes_are_documented(gateway: GatewayServer) -> None:
    paths = httpx.get(f"{gateway.base_url}/openapi.json").json()["paths"]
    assert {"/admin/keys", "/admin/keys/{key_id}", "/admin/users/{user_id}"} <= set(paths)
