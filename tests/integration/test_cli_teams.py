"""``llm-gateway teams set|show``, ``users set --team --budget-usd``, ``keys create|set --budget-usd`` and ``usage``
with spend: the same JSON as the admin API, on the same database. Runs once on SQLite and once on PostgreSQL.

The gateway here has no Redis, so neither it nor the command sees requests in flight; its live reservations are
replaced by a stub holding nothing, which is what the command (without ``REDIS_URL``) shows too.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from llm_gateway.api.usage import parse_month
from llm_gateway.reports import NoReservations
from llm_gateway.store.db import open_database
from llm_gateway.store.ledger import UsageLedger
from llm_gateway.store.ledger_row import UsageRow
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
        server.app.state.limits = NoReservations()  # for the reports only: the pipeline keeps its own
        yield server


def admin(gateway: GatewayServer, method: str, path: str, **kwargs: Any) -> Any:
    response = httpx.request(method, f"{gateway.base_url}/admin{path}", headers=ADMIN_HEADERS, **kwargs)
    assert response.status_code < 300, response.text
    return response.json()


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


def write_rows(url: str, *rows: UsageRow) -> None:
    async def write() -> None:
        async with open_database(url) as database:
            ledger = UsageLedger(database)
            for row in rows:
                ledger.record(row)
            assert await ledger.flush_once()

    asyncio.run(write())


def test_teams_set_and_show_agree_with_the_admin_api(cli: Any, gateway: GatewayServer, database_url: str) -> None:  # noqa: F811
    team, user = unique("red"), unique("ann")
    code, made = cli("teams", "set", team, "--budget-usd", "12.345678", "--token-budget", "9000", "--rate-limit", "40")
    assert code == 0, cli.err
    assert (made["monthly_budget_usd"], made["monthly_token_budget"], made["rate_limit_per_minute"]) == (
        "12.345678",
        9000,
        40,
    )
    code, joined = cli("users", "set", user, "--team", team, "--budget-usd", "3")
    assert code == 0 and (joined["team_id"], joined["monthly_budget_usd"]) == (team, "3.000000")
    month = parse_month(None)
    write_rows(
        database_url,
        UsageRow("r1", user, month, "m", team_id=team, prompt_tokens=5, completion_tokens=2, cost_usd=Decimal("0.1")),
        UsageRow("r2", user, month, "m", team_id=team, prompt_tokens=1, cost_usd=Decimal("0.2")),
    )

    code, shown = cli("teams", "show", team)
    assert code == 0, cli.err
    assert shown == admin(gateway, "GET", f"/teams/{team}")
    assert shown["members"] == 1
    assert shown["usage"] == {
        "month": month,
        "requests": 2,
        "budget_tokens": 9000,
        "used_tokens": 8,
        "reserved_tokens": 0,
        "remaining_tokens": 8992,
        "spend_usd": "0.300000",  # not 0.30000000000000004
        "budget_usd": "12.345678",
        "reserved_usd": "0.000000",
        "remaining_usd": "12.045678",
        "by_model": {"m": {"prompt_tokens": 6, "completion_tokens": 2, "requests": 2, "spend_usd": "0.300000"}},
    }
    assert cli("teams", "show", team, "--month", "2001-01")[1] == admin(
        gateway, "GET", f"/teams/{team}", params={"month": "2001-01"}
    )

    code, usage = cli("usage", "--user", user)
    assert code == 0 and usage == admin(gateway, "GET", "/usage", params={"user_id": user})
    assert (usage["spend_usd"], usage["budget_usd"], usage["remaining_usd"]) == ("0.300000", "3.000000", "2.700000")
    assert usage["team"]["remaining_usd"] == "12.045678"

    code, cleared = cli("teams", "set", team, "--budget-usd", "none", "--rate-limit", "none")
    assert code == 0 and (cleared["monthly_budget_usd"], cleared["monthly_token_budget"]) == (None, 9000)
    assert cleared["rate_limit_per_minute"] is None
    code, left = cli("users", "set", user, "--team", "none")
    assert code == 0 and (left["team_id"], left["monthly_budget_usd"]) == (None, "3.000000")


def test_keys_take_a_dollar_cap_from_the_cli(cli: Any, gateway: GatewayServer) -> None:
    user = unique("bob")
    code, created = cli("keys", "create", "--user", user, "--budget-usd", "0.5")
    assert code == 0 and created["monthly_budget_usd"] == "0.500000"
    code, changed = cli("keys", "set", created["id"], "--budget-usd", "1.25", "--budget", "700")
    assert code == 0 and (changed["monthly_budget_usd"], changed["monthly_token_budget"]) == ("1.250000", 700)
    assert admin(gateway, "GET", "/keys", params={"user_id": user})["data"] == [changed]
    code, cleared = cli("keys", "set", created["id"], "--budget-usd", "none")
    assert code == 0 and (cleared["monthly_budget_usd"], cleared["monthly_token_budget"]) == (None, 700)


def test_cli_refusals_say_what_is_wrong(cli: Any) -> None:
    assert cli("users", "set", unique("cy"), "--team", "no-such-team") == (1, None)
    assert cli.err == (
        "llm-gateway: No team 'no-such-team': create it first (PUT /admin/teams/{id}, or `llm-gateway teams set`).\n"
    )
    assert cli("teams", "set", "t", "--budget-usd", "-1") == (2, None)
    assert cli.err == "llm-gateway: monthly_budget_usd: Input should be greater than or equal to 0\n"
    assert cli("users", "set", "u", "--budget-usd", "0.0000001") == (2, None)
    assert "no more than 6 decimal places" in cli.err
    assert cli("keys", "create", "--user", "u", "--budget-usd", "lots") == (2, None)
    assert cli.err.startswith("llm-gateway: monthly_budget_usd: ")
    assert cli("keys", "set", "no-such-key", "--budget-usd", "1") == (1, None)
    assert cli.err == "llm-gateway: no API key with id 'no-such-key'\n"
    assert cli("teams", "show", "no-such-team") == (1, None)
    assert cli.err == "llm-gateway: no team 'no-such-team'\n"
    with pytest.raises(SystemExit):
        cli("teams", "set", "t", "--token-budget", "lots")
