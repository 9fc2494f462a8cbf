"""In-process: ``/v1/usage``, ``/admin/usage`` and ``GET /admin/teams/{id}`` show spend in US dollars and, for each
budget that applies (the key's, the user's, the team's), what is left once requests in flight are counted.

The ledger is real (rows with costs, written and still queued). The live reservations are a stub standing in
for the limits, so that each budget's ``reserved`` is a known number and the reports' arithmetic is what is
tested; the limits' own counters are tested with the limits.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from llm_gateway.api.usage import parse_month
from llm_gateway.app import create_app
from llm_gateway.limits import Balance
from llm_gateway.settings import load_settings
from llm_gateway.store.ledger import UsageLedger
from llm_gateway.store.ledger_row import UsageRow
from tests.identity_support import ADMIN_API_KEY, ADMIN_HEADERS, sqlite_url

MONTH = parse_month(None)
GPT, CLAUDE = "gpt-4o-mini", "claude-3-5-haiku-latest"


class StubReservations:
    """What requests in flight hold, per (kind, subject): tokens and nano-dollars. Remembers what it was asked."""

    def __init__(self, tokens: dict[tuple[str, str], int], nano: dict[tuple[str, str], int]) -> None:
        self.tokens, self.nano = tokens, nano
        self.asked: set[tuple[str, str, str, str, int]] = set()

    async def balance(self, user_id: str, month: str, limit: int) -> Balance:
        return await self.scope_balance("user", user_id, month, limit)

    async def scope_balance(self, kind: str, subject: str, month: str, limit: int) -> Balance:
        self.asked.add(("tokens", kind, subject, month, limit))
        return Balance(limit, 0, self.tokens[kind, subject])

    async def usd_balance(self, kind: str, subject: str, month: str, limit_nano: int) -> Balance:
        self.asked.add(("usd", kind, subject, month, limit_nano))
        return Balance(limit_nano, 0, self.nano[kind, subject])


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    env = {
        "GATEWAY_CONFIG": "",
        "DATABASE_URL": sqlite_url(tmp_path),
        "ADMIN_API_KEY": ADMIN_API_KEY,
        "DEFAULT_MONTHLY_TOKEN_BUDGET": "1000",
        "DEFAULT_MONTHLY_BUDGET_USD": "10",
    }
    application = create_app(load_settings(env))
    async with application.router.lifespan_context(application):
        yield application


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway")


async def get(app: FastAPI, path: str, **kwargs: Any) -> dict[str, Any]:
    async with client(app) as http:
        response = await http.get(path, **kwargs)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def admin(app: FastAPI, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    async with client(app) as http:
        response = await http.request(method, f"/admin{path}", json=body, headers=ADMIN_HEADERS)
    assert response.status_code < 300, response.text
    answer: dict[str, Any] = response.json()
    return answer


def spend(ledger: UsageLedger, number: int, user: str, key: str | None, model: str, *usage: int, **row: Any) -> None:
    prompt, completion, cost = usage[0], usage[1], row.pop("cost")
    ledger.record(
        UsageRow(
            request_id=f"r{number}",
            user_id=user,
            key_id=key,
            team_id="red",
            month=MONTH,
            model_group=model,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost_usd=Decimal(cost),
            **row,
        )
    )


@pytest.fixture
async def setting(app: FastAPI) -> tuple[str, StubReservations]:
    """Team red ($5, 800 tokens) with ann and cid; ann's key capped at $0.50 and 500 tokens; ann on the defaults."""
    await admin(app, "PUT", "/teams/red", {"monthly_budget_usd": "5", "monthly_token_budget": 800})
    for user in ("ann", "cid"):
        await admin(app, "PUT", f"/users/{user}", {"team_id": "red"})
    created = await admin(
        app, "POST", "/keys", {"user_id": "ann", "monthly_budget_usd": 0.5, "monthly_token_budget": 500}
    )
    key, key_id = created["key"], created["id"]
    ledger: UsageLedger = app.state.ledger
    spend(ledger, 1, "ann", key_id, GPT, 100, 20, cost="0.400001")
    spend(ledger, 2, "ann", key_id, CLAUDE, 30, 10, cost="0.2")
    spend(ledger, 3, "ann", None, GPT, 10, 0, cost="0.1")  # through a JWT: the user's and the team's, not the key's
    spend(ledger, 4, "ann", key_id, GPT, 50, 5, cost="0", cached=True)  # a cache hit: a request, free
    assert await ledger.flush_once()
    spend(ledger, 5, "cid", None, GPT, 300, 0, cost="3")  # still queued: counted all the same
    live = StubReservations(
        tokens={("user", "ann"): 5, ("key", key_id): 7, ("team", "red"): 11},
        nano={("user", "ann"): 50_000_000, ("key", key_id): 100_000_001, ("team", "red"): 1_000_000_000},
    )
    app.state.limits = live
    return key, live


def model(prompt: int, completion: int, requests: int, spend_usd: str) -> dict[str, Any]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "requests": requests, "spend_usd": spend_usd}


# ann's own month, and each budget's: used and spent from the ledger, reserved from the limits.
ANN_MODELS = {CLAUDE: model(30, 10, 1, "0.200000"), GPT: model(110, 20, 3, "0.500001")}
USER = {
    "budget_tokens": 1000,
    "used_tokens": 170,
    "reserved_tokens": 5,
    "remaining_tokens": 825,
    "spend_usd": "0.700001",
    "budget_usd": "10.000000",
    "reserved_usd": "0.050000",
    "remaining_usd": "9.249999",
}
TEAM = {
    "budget_tokens": 800,
    "used_tokens": 470,
    "reserved_tokens": 11,
    "remaining_tokens": 319,
    "spend_usd": "3.700001",
    "budget_usd": "5.000000",
    "reserved_usd": "1.000000",
    "remaining_usd": "0.299999",
}


async def test_a_key_caller_sees_spend_and_the_binding_budgets(
    app: FastAPI, setting: tuple[str, StubReservations]
) -> None:
    key, live = setting
    report = await get(app, "/v1/usage", headers={"authorization": f"Bearer {key}"})
    key_id = key.split("-")[2]
    assert report == {
        "user_id": "ann",
        "month": MONTH,
        "team_id": "red",
        # Tokens: the team has the least left. Dollars: the key is overspent (rounded up, the reservation
        # of 0.100000001 is 0.100001), so nothing is left.
        "budget_tokens": 800,
        "used_tokens": 470,
        "reserved_tokens": 11,
        "remaining_tokens": 319,
        "requests": 4,
        "spend_usd": "0.700001",
        "budget_usd": "0.500000",
        "reserved_usd": "0.100001",
        "remaining_usd": "0.000000",
        "by_model": ANN_MODELS,
        "key": {
            "budget_tokens": 500,
            "used_tokens": 160,
            "reserved_tokens": 7,
            "remaining_tokens": 333,
            "spend_usd": "0.600001",
            "budget_usd": "0.500000",
            "reserved_usd": "0.100001",
            "remaining_usd": "0.000000",
        },
        "user": USER,
        "team": TEAM,
    }
    assert ("usd", "key", key_id, MONTH, 500_000_000) in live.asked
    assert ("usd", "team", "red", MONTH, 5_000_000_000) in live.asked


async def test_an_operator_sees_a_users_month_with_their_team(
    app: FastAPI, setting: tuple[str, StubReservations]
) -> None:
    report = await get(app, "/admin/usage", params={"user_id": "ann"}, headers=ADMIN_HEADERS)
    assert report == {
        "user_id": "ann",
        "month": MONTH,
        "team_id": "red",
        "budget_tokens": 800,
        "used_tokens": 470,
        "reserved_tokens": 11,
        "remaining_tokens": 319,
        "requests": 4,
        "spend_usd": "0.700001",
        "budget_usd": "5.000000",
        "reserved_usd": "1.000000",
        "remaining_usd": "0.299999",
        "by_model": ANN_MODELS,
        "user": USER,
        "team": TEAM,
    }


async def test_a_teams_report(app: FastAPI, setting: tuple[str, StubReservations]) -> None:
    report = await get(app, "/admin/teams/red", headers=ADMIN_HEADERS)
    assert {k: v for k, v in report.items() if k not in ("created_at", "updated_at")} == {
        "team_id": "red",
        "monthly_budget_usd": "5.000000",
        "monthly_token_budget": 800,
        "rate_limit_per_minute": None,
        "members": 2,
        "usage": {
            "month": MONTH,
            "requests": 5,
            **TEAM,
            "by_model": {CLAUDE: model(30, 10, 1, "0.200000"), GPT: model(410, 20, 4, "3.500001")},
        },
    }


async def test_without_a_team_or_key_budget_a_user_sees_their_dollar_budget_alone(
    app: FastAPI, setting: tuple[str, StubReservations]
) -> None:
    setting[1].tokens["user", "dot"], setting[1].nano["user", "dot"] = 0, 0
    report = await get(app, "/admin/usage", params={"user_id": "dot"}, headers=ADMIN_HEADERS)
    assert report == {
        "user_id": "dot",
        "month": MONTH,
        "budget_tokens": 1000,
        "used_tokens": 0,
        "reserved_tokens": 0,
        "remaining_tokens": 1000,
        "requests": 0,
        "spend_usd": "0.000000",
        "budget_usd": "10.000000",
        "reserved_usd": "0.000000",
        "remaining_usd": "10.000000",
        "by_model": {},
    }
