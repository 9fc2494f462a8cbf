"""The admin API for teams and US dollar budgets: teams created and changed, users joining them, keys' dollar caps;
money read exactly from strings or numbers and answered as strings with six decimals. Both backends."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fakes import FakeProvider
from tests.harness import GatewayServer
from tests.identity_support import (
    ADMIN_HEADERS,
    database_url,  # noqa: F401 - the module-scoped fixture, one run per backend
    gateway_env,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gateway(database_url: str) -> Iterator[GatewayServer]:  # noqa: F811
    with FakeProvider("openai") as upstream, GatewayServer(gateway_env(upstream.env, database_url)) as server:
        yield server


def admin(gateway: GatewayServer, method: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = {**ADMIN_HEADERS, **kwargs.pop("headers", {})}
    return httpx.request(method, f"{gateway.base_url}/admin{path}", headers=headers, timeout=10, **kwargs)


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


def refusal(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    return error


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


def without_times(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in ("created_at", "updated_at")}


def test_a_team_is_created_changed_cleared_and_read(gateway: GatewayServer) -> None:
    team = unique("red")
    assert admin(gateway, "GET", f"/teams/{team}").json()["error"]["code"] == "not_found"
    created = ok(
        admin(gateway, "PUT", f"/teams/{team}", json={"monthly_budget_usd": "250", "rate_limit_per_minute": 90})
    )
    assert without_times(created) == {
        "team_id": team,
        "monthly_budget_usd": "250.000000",
        "monthly_token_budget": None,
        "rate_limit_per_minute": 90,
        "members": 0,
    }
    # Fields left out are kept; null clears.
    changed = ok(
        admin(gateway, "PUT", f"/teams/{team}", json={"monthly_token_budget": 10**6, "rate_limit_per_minute": None})
    )
    assert (changed["monthly_budget_usd"], changed["monthly_token_budget"], changed["rate_limit_per_minute"]) == (
        "250.000000",
        10**6,
        None,
    )
    assert changed["created_at"] == created["created_at"] and changed["updated_at"] >= created["updated_at"]

    read = ok(admin(gateway, "GET", f"/teams/{team}"))
    usage = read.pop("usage")
    assert read == changed
    assert usage == {
        "month": usage["month"],
        "requests": 0,
        "used_tokens": 0,
        "budget_tokens": 10**6,
        "reserved_tokens": 0,
        "remaining_tokens": 10**6,
        "spend_usd": "0.000000",
        "budget_usd": "250.000000",
        "reserved_usd": "0.000000",
        "remaining_usd": "250.000000",
        "by_model": {},
    }
    old = ok(admin(gateway, "GET", f"/teams/{team}", params={"month": "2001-01"}))["usage"]
    assert (old["month"], old["requests"]) == ("2001-01", 0)


def test_money_is_read_exactly_from_strings_and_numbers(gateway: GatewayServer) -> None:
    team = unique("exact")
    cases = [
        ('{"monthly_budget_usd": 0.1}', "0.100000"),
        ('{"monthly_budget_usd": 1e-6}', "0.000001"),
        ('{"monthly_budget_usd": 4999999.999999}', "4999999.999999"),
        ('{"monthly_budget_usd": "12.5"}', "12.500000"),
        ('{"monthly_budget_usd": 7}', "7.000000"),
        ('{"monthly_budget_usd": "-0"}', "0.000000"),
    ]
    for body, answered in cases:
        put = admin(
            gateway,
            "PUT",
            f"/teams/{team}",
            content=body,
            headers={**ADMIN_HEADERS, "content-type": "application/json"},
        )
        assert ok(put)["monthly_budget_usd"] == answered, body


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"monthly_budget_usd": -1}, "monthly_budget_usd"),
        ({"monthly_budget_usd": "-0.01"}, "monthly_budget_usd"),
        ({"monthly_budget_usd": "0.0000001"}, "monthly_budget_usd"),  # finer than a micro-dollar
        ({"monthly_budget_usd": 5000000.000001}, "monthly_budget_usd"),  # over the largest budget
        ({"monthly_budget_usd": "ten"}, "monthly_budget_usd"),
        ({"monthly_budget_usd": "NaN"}, "monthly_budget_usd"),
        ({"monthly_budget_usd": True}, "monthly_budget_usd"),
        ({"monthly_token_budget": -5}, "monthly_token_budget"),
        ({"monthly_token_budget": 1.5}, "monthly_token_budget"),
        ({"rate_limit_per_minute": "many"}, "rate_limit_per_minute"),
        ({"members": 3}, "members"),
    ],
)
def test_bad_team_limits_are_400(gateway: GatewayServer, body: dict[str, Any], param: str) -> None:
    assert refusal(admin(gateway, "PUT", "/teams/bad", json=body))["param"] == param


def test_users_join_and_leave_teams_and_have_dollar_budgets(gateway: GatewayServer) -> None:
    team, user = unique("blue"), unique("ann")
    ok(admin(gateway, "PUT", f"/teams/{team}", json={}))
    joined = ok(admin(gateway, "PUT", f"/users/{user}", json={"team_id": team, "monthly_budget_usd": 3.3}))
    assert (joined["team_id"], joined["monthly_budget_usd"]) == (team, "3.300000")
    assert ok(admin(gateway, "GET", f"/users/{user}")) == joined
    assert ok(admin(gateway, "GET", f"/teams/{team}"))["members"] == 1

    left = ok(admin(gateway, "PUT", f"/users/{user}", json={"team_id": None}))
    assert (left["team_id"], left["monthly_budget_usd"]) == (None, "3.300000")  # the budget is kept
    assert ok(admin(gateway, "GET", f"/teams/{team}"))["members"] == 0
    cleared = ok(admin(gateway, "PUT", f"/users/{user}", json={"monthly_budget_usd": None}))
    assert cleared["monthly_budget_usd"] is None


def test_joining_an_unknown_team_is_a_clear_400(gateway: GatewayServer) -> None:
    user = unique("bob")
    response = admin(gateway, "PUT", f"/users/{user}", json={"team_id": "no-such-team", "monthly_token_budget": 9})
    assert response.json() == {
        "error": {
            "message": "No team 'no-such-team': create it first (PUT /admin/teams/{id}, or `llm-gateway teams set`).",
            "type": "invalid_request_error",
            "param": "team_id",
            "code": None,
        }
    }
    assert response.status_code == 400
    assert admin(gateway, "GET", f"/users/{user}").status_code == 404  # nothing was saved
    assert (
        refusal(admin(gateway, "PUT", f"/users/{user}", json={"monthly_budget_usd": -2}))["param"]
        == "monthly_budget_usd"
    )
    assert refusal(admin(gateway, "PUT", f"/users/{user}", json={"team_id": ""}))["param"] == "team_id"


def test_keys_take_a_dollar_cap_at_creation_and_later(gateway: GatewayServer) -> None:
    created = ok(admin(gateway, "POST", "/keys", json={"user_id": unique("cy"), "monthly_budget_usd": "0.75"}))
    assert created["monthly_budget_usd"] == "0.750000"
    changed = ok(
        admin(gateway, "PATCH", f"/keys/{created['id']}", json={"monthly_budget_usd": 2, "monthly_token_budget": 50})
    )
    assert (changed["monthly_budget_usd"], changed["monthly_token_budget"], changed["rate_limit_per_minute"]) == (
        "2.000000",
        50,
        None,
    )
    assert "key" not in changed and created["key"] not in str(changed)
    listed = ok(admin(gateway, "GET", "/keys", params={"user_id": created["user_id"]}))["data"]
    assert listed == [changed]
    cleared = ok(admin(gateway, "PATCH", f"/keys/{created['id']}", json={"monthly_budget_usd": None}))
    assert (cleared["monthly_budget_usd"], cleared["monthly_token_budget"]) == (None, 50)

    assert refusal(admin(gateway, "PATCH", f"/keys/{created['id']}", json={"monthly_budget_usd": -1}))["param"] == (
        "monthly_budget_usd"
    )
    assert refusal(admin(gateway, "PATCH", f"/keys/{created['id']}", json={"models": ["x"]}))["param"] == "models"
    assert admin(gateway, "PATCH", "/keys/nosuchkey", json={}).json()["error"]["code"] == "not_found"
    bad = admin(gateway, "POST", "/keys", json={"user_id": "x", "monthly_budget_usd": "1.0000001"})
    assert refusal(bad)["param"] == "monthly_budget_usd"


def test_team_routes_are_documented_with_money_as_strings(gateway: GatewayServer) -> None:
    spec = httpx.get(f"{gateway.base_url}/openapi.json").json()
    assert {"/admin/teams/{team_id}", "/admin/keys/{key_id}"} <= set(spec["paths"])
    assert set(spec["paths"]["/admin/teams/{team_id}"]) == {"get", "put"}
    assert "patch" in spec["paths"]["/admin/keys/{key_id}"]
    team = spec["components"]["schemas"]["TeamPublic"]["properties"]["monthly_budget_usd"]
    assert {"type": "string"} in team["anyOf"]
