"""A team's monthly US-dollar budget held by two ``llm-gateway serve`` processes sharing Redis, over HTTP end to end.

30 chat requests at once, from two members of the team through both processes, against a team budget that
fits 10 reservations. The deployment's price (in the model file) is exactly the reservation's price and the
fake upstream reports exactly the reserved usage, so the budget must be spent to the nano-dollar: 10 served,
20 refused naming the team's US-dollar budget, and the spend checked against the answers' ``x-gateway-cost-usd``,
the ledger's ``cost_usd`` and the team's counters in Redis (``RedisLimits.usd_balance``).

It needs every piece of issue 16 (prices in the model file, teams in the admin API and the identity, the
pipeline pricing each request and settling its cost) and skips, naming what is missing, until they are merged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from llm_gateway import tokens
from llm_gateway.limits import RedisLimits, budget
from tests.fakes import Delay, FakeProvider, Reply
from tests.identity_support import ADMIN_HEADERS, create_key
from tests.limits_support import MODEL, ServedGateway, chat_body, sharing_redis, wait_for

pytestmark = pytest.mark.integration

MAX_TOKENS = 7
FITS = 10
INPUT_NANO, OUTPUT_NANO = 1000, 4000  # $1 and $4 per million tokens
ESTIMATE = tokens.estimate_prompt_tokens(chat_body(max_tokens=MAX_TOKENS), MODEL)
RESERVATION_NANO = ESTIMATE * INPUT_NANO + MAX_TOKENS * OUTPUT_NANO  # a whole number of micro-dollars
BUDGET_NANO = FITS * RESERVATION_NANO
BUDGET_USD = Decimal(BUDGET_NANO).scaleb(-9)


@pytest.fixture
def shared(openai_fake: FakeProvider, redis_url: str, tmp_path: Path) -> Iterator[tuple[list[ServedGateway], str]]:
    """Two processes sharing one Redis (a prefix of their own) and one SQLite file; a priced model group."""
    workdir = tmp_path
    config = workdir / "gateway.yaml"
    config.write_text(
        "providers:\n"
        "  fake:\n"
        "    type: openai\n"
        f"    base_url: {openai_fake.base_url}\n"
        f"    api_key: {openai_fake.api_key}\n"
        "models:\n"
        f"  {MODEL}:\n"
        f"    - {{provider: fake, model: {MODEL}, price: {{input_per_mtok: 1, output_per_mtok: 4}}}}\n"
    )
    with sharing_redis(workdir, redis_url, "spend-e2e", {"GATEWAY_CONFIG": str(config)}) as (gateways, prefix):
        yield gateways, prefix


def admin_put(base_url: str, path: str, body: dict[str, object]) -> httpx.Response:
    return httpx.put(f"{base_url}/admin/{path}", headers=ADMIN_HEADERS, json=body)


async def fire(base_urls: list[str], keys: list[str], count: int) -> list[httpx.Response]:
    """``count`` chat requests at once, alternating between the gateways and the keys."""
    limits = httpx.Limits(max_connections=count + 10, max_keepalive_connections=count + 10)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        return await asyncio.gather(
            *(
                client.post(
                    f"{base_urls[i % len(base_urls)]}/v1/chat/completions",
                    headers={"x-api-key": keys[(i // len(base_urls)) % len(keys)]},
                    json=chat_body(max_tokens=MAX_TOKENS),
                )
                for i in range(count)
            )
        )


async def test_two_processes_hold_one_team_dollar_budget(
    shared: tuple[list[ServedGateway], str], openai_fake: FakeProvider, redis_url: str
) -> None:
    gateways, prefix = shared
    base_urls = [gateway.base_url for gateway in gateways]
    admin = base_urls[0]
    openai_fake.reset()
    openai_fake.set_default(Delay(1.0, Reply(prompt_tokens=ESTIMATE, completion_tokens=MAX_TOKENS)))

    teams = admin_put(admin, "teams/search", {"monthly_budget_usd": f"{BUDGET_USD:f}"})
    assert teams.status_code == 200, teams.text
    probe = httpx.post(
        f"{admin}/v1/chat/completions",
        headers={"x-api-key": create_key(admin, "spend-probe")},
        json=chat_body(max_tokens=MAX_TOKENS),
        timeout=30,
    )
    assert probe.status_code == 200, probe.text
    assert Decimal(probe.headers["x-gateway-cost-usd"]) == Decimal(RESERVATION_NANO).scaleb(-9)
    openai_fake.reset()
    openai_fake.set_default(Delay(1.0, Reply(prompt_tokens=ESTIMATE, completion_tokens=MAX_TOKENS)))

    keys = []
    for user in ("spend-ann", "spend-bob"):
        assert admin_put(admin, f"users/{user}", {"team_id": "search"}).status_code == 200
        keys.append(create_key(admin, user))

    responses = await fire(base_urls, keys, 3 * FITS)
    served = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code != 200]
    assert len(served) == FITS and openai_fake.count == FITS
    for response in refused:
        error = response.json()["error"]
        assert (response.status_code, error["code"]) == (429, "insufficient_quota"), response.text
        assert "monthly US-dollar budget of team 'search'" in error["message"], error["message"]
        assert int(response.headers["retry-after"]) >= 1
    costs = [Decimal(r.headers["x-gateway-cost-usd"]) for r in served]
    assert sum(costs) == BUDGET_USD  # spent to the nano-dollar: no overshoot, nothing left unspent

    month = budget.month_of(datetime.now(UTC))
    client = Redis.from_url(redis_url)
    try:
        limits = RedisLimits(client, prefix, timeout_seconds=5)

        async def settled() -> tuple[int, int]:
            balance = await limits.usd_balance("team", "search", month, BUDGET_NANO)
            return balance.used, balance.reserved

        for _ in range(100):
            if await settled() == (BUDGET_NANO, 0):
                break
            await asyncio.sleep(0.1)
        assert await settled() == (BUDGET_NANO, 0)
    finally:
        await client.aclose()

    def team_month() -> dict[str, Any] | None:
        usage: dict[str, Any] = httpx.get(f"{admin}/admin/teams/search", headers=ADMIN_HEADERS).json()["usage"]
        return usage if usage["requests"] == FITS else None

    spent = wait_for(team_month, what="every served request in the ledger")  # the ledger: the source of truth
    assert Decimal(spent["spend_usd"]) == BUDGET_USD and Decimal(spent["remaining_usd"]) == 0

    again = httpx.post(
        f"{base_urls[1]}/v1/chat/completions",
        headers={"x-api-key": keys[0]},
        json=chat_body(max_tokens=1),
        timeout=30,
    )
    assert again.status_code == 429 and "team 'search'" in again.json()["error"]["message"]
