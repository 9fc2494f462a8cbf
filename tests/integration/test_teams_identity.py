"""Teams and US dollar budgets in resolved identities, and changes reaching cached identities at once:
in this process, and in another one through Redis.

Runs once on SQLite and once on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import jwt
import pytest
from starlette.datastructures import Headers

from llm_gateway.auth.admin import KeyCreate, KeyLimits, TeamLimits, UserLimits
from llm_gateway.auth.identity import Identity
from llm_gateway.auth.service import AuthService, open_auth
from llm_gateway.errors import InvalidRequest
from llm_gateway.settings import load_settings
from llm_gateway.store.db import Database, open_database
from llm_gateway.store.redis import open_redis
from tests.identity_support import (
    database_url,  # noqa: F401 - the module-scoped fixture, one run per backend
)

pytestmark = pytest.mark.integration

JWT_SECRET = "an-hmac-secret-that-is-long-enough-0123456789"
ENV = {
    "GATEWAY_CONFIG": "",
    "JWT_SECRET": JWT_SECRET,
    "RATE_LIMIT_PER_MINUTE": "60",
    "DEFAULT_MONTHLY_TOKEN_BUDGET": "1000",
    "DEFAULT_MONTHLY_BUDGET_USD": "20.00",
    "ANON_RATE_LIMIT_PER_MINUTE": "5",
    "ANON_MONTHLY_TOKEN_BUDGET": "50",
    # Long enough that only an invalidation explains a changed identity.
    "KEY_CACHE_TTL_SECONDS": "300",
}


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:  # noqa: F811
    async with open_database(database_url) as opened:
        yield opened


@pytest.fixture
async def auth(database: Database, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[AuthService]:
    monkeypatch.setattr("llm_gateway.auth.service.UNHEARD_TTL_SECONDS", 300.0)  # no Redis: trust the cache 300 s
    async with open_auth(load_settings(ENV).settings, database, None) as service:
        yield service


def unique(name: str) -> str:
    """Ids of their own for each test: the module's database is shared by its tests."""
    return f"{name}-{uuid.uuid4().hex[:6]}"


async def resolve(auth: AuthService, headers: dict[str, str]) -> Identity:
    return await auth.resolver.resolve(Headers(headers), "192.0.2.10")


def bearer(user_id: str) -> dict[str, str]:
    token = jwt.encode({"sub": user_id, "exp": int(time.time()) + 60}, JWT_SECRET, algorithm="HS256")
    return {"authorization": f"Bearer {token}"}


async def test_keys_and_jwts_carry_the_team_and_the_dollar_budgets(auth: AuthService) -> None:
    team, user = unique("red"), unique("ann")
    await auth.accounts.set_team(
        team, TeamLimits(monthly_budget_usd=Decimal("100.5"), monthly_token_budget=9000, rate_limit_per_minute=30)
    )
    await auth.accounts.set_user(user, UserLimits(team_id=team, monthly_budget_usd=Decimal("7.25")))
    created = await auth.accounts.create_key(KeyCreate(user_id=user, monthly_budget_usd=Decimal("0.5")))
    team_fields: dict[str, Any] = {
        "team_id": team,
        "team_token_budget": 9000,
        "team_budget_usd": Decimal("100.5"),
        "team_rate_limit_per_minute": 30,
    }
    assert await resolve(auth, {"x-api-key": created.key}) == Identity(
        user_id=user,
        kind="api_key",
        rate_limit_per_minute=60,
        monthly_token_budget=1000,
        key_id=created.id,
        monthly_budget_usd=Decimal("7.25"),
        key_budget_usd=Decimal("0.5"),
        **team_fields,
    )
    assert await resolve(auth, bearer(user)) == Identity(
        user, "jwt", 60, 1000, monthly_budget_usd=Decimal("7.25"), **team_fields
    )


async def test_without_overrides_the_default_dollar_budget_applies_and_anonymous_callers_have_none(
    auth: AuthService,
) -> None:
    user = unique("bob")
    created = await auth.accounts.create_key(KeyCreate(user_id=user))
    assert await resolve(auth, {"x-api-key": created.key}) == Identity(
        user, "api_key", 60, 1000, key_id=created.id, monthly_budget_usd=Decimal("20.00")
    )
    assert await resolve(auth, bearer(user)) == Identity(user, "jwt", 60, 1000, monthly_budget_usd=Decimal("20.00"))
    assert await resolve(auth, {}) == Identity("anon:192.0.2.10", "anonymous", 5, 50)


async def test_a_teams_new_budget_applies_at_once_to_cached_identities(auth: AuthService, database: Database) -> None:
    team, user = unique("red"), unique("cy")
    await auth.accounts.set_team(team, TeamLimits(monthly_budget_usd=Decimal(10)))
    await auth.accounts.set_user(user, UserLimits(team_id=team))
    key = (await auth.accounts.create_key(KeyCreate(user_id=user))).key
    assert (await resolve(auth, {"x-api-key": key})).team_budget_usd == Decimal(10)
    assert (await resolve(auth, bearer(user))).team_budget_usd == Decimal(10)

    await auth.accounts.set_team(team, TeamLimits(monthly_budget_usd=Decimal("2.5"), monthly_token_budget=77))
    by_key, by_jwt = await resolve(auth, {"x-api-key": key}), await resolve(auth, bearer(user))
    assert (by_key.team_budget_usd, by_key.team_token_budget) == (Decimal("2.5"), 77)
    assert (by_jwt.team_budget_usd, by_jwt.team_token_budget) == (Decimal("2.5"), 77)

    await auth.accounts.set_team(team, TeamLimits(monthly_budget_usd=None))  # null clears
    assert (await resolve(auth, {"x-api-key": key})).team_budget_usd is None


async def test_joining_leaving_and_key_changes_apply_at_once(auth: AuthService) -> None:
    team, user = unique("red"), unique("dee")
    await auth.accounts.set_team(team, TeamLimits(rate_limit_per_minute=5))
    created = await auth.accounts.create_key(KeyCreate(user_id=user))
    assert (await resolve(auth, {"x-api-key": created.key})).team_id is None

    await auth.accounts.set_user(user, UserLimits(team_id=team))
    joined = await resolve(auth, {"x-api-key": created.key})
    assert (joined.team_id, joined.team_rate_limit_per_minute) == (team, 5)

    await auth.accounts.set_key(created.id, KeyLimits(monthly_budget_usd=Decimal("3"), monthly_token_budget=40))
    capped = await resolve(auth, {"x-api-key": created.key})
    assert (capped.key_budget_usd, capped.key_token_budget) == (Decimal(3), 40)

    await auth.accounts.set_user(user, UserLimits(team_id=None))
    left = await resolve(auth, {"x-api-key": created.key})
    assert (left.team_id, left.team_rate_limit_per_minute, left.key_budget_usd) == (None, None, Decimal(3))


async def test_an_unknown_team_is_refused_and_nothing_changes(auth: AuthService) -> None:
    user = unique("eve")
    await auth.accounts.set_user(user, UserLimits(monthly_token_budget=5))
    with pytest.raises(InvalidRequest, match="No team 'nope': create it first") as refused:
        await auth.accounts.set_user(user, UserLimits(team_id="nope", monthly_token_budget=6))
    assert refused.value.param == "team_id"
    kept = await auth.accounts.get_user(user)
    assert kept is not None and (kept.team_id, kept.monthly_token_budget) == (None, 5)


async def test_a_team_change_reaches_another_process_through_redis(
    database: Database, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two auth services sharing Redis, as two gateway processes do: B's cached identity follows A's change."""
    settings = load_settings({**ENV, "REDIS_PREFIX": f"llmgw-test-{uuid.uuid4().hex[:8]}:"}).settings
    team, user = unique("red"), unique("fay")
    async with (
        open_redis(redis_url, settings.redis_prefix) as redis,
        open_auth(settings, database, redis) as a,
        open_auth(settings, database, redis) as b,
    ):
        await a.accounts.set_team(team, TeamLimits(monthly_budget_usd=Decimal(1)))
        await a.accounts.set_user(user, UserLimits(team_id=team))
        key = (await a.accounts.create_key(KeyCreate(user_id=user))).key
        assert (await resolve(b, {"x-api-key": key})).team_budget_usd == Decimal(1)  # now cached in B for 300 s

        await a.accounts.set_team(team, TeamLimits(monthly_budget_usd=Decimal(2)))
        deadline = time.monotonic() + 1.0
        while (await resolve(b, {"x-api-key": key})).team_budget_usd != Decimal(2):
            assert time.monotonic() < deadline, "the team's change did not reach the other process within a second"
            await asyncio.sleep(0.01)
