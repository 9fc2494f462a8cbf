"""US-dollar and team budgets in Redis as deployed: OS processes sharing one team budget, a flushed Redis rebuilt
from the ledger, the keys, holds left by an older gateway, and both backends deciding alike on random traffic."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from llm_gateway.auth.identity import Identity
from llm_gateway.limits import (
    Admission,
    BudgetExceeded,
    MemoryLimits,
    RedisLimits,
    RequestRateExceeded,
    Ticket,
    UsdBudgetExceeded,
)
from llm_gateway.pricing import ReservePrice
from llm_gateway.schemas.core import Usage
from tests.admission_support import ClientFactory, Ledger
from tests.limits_support import run_processes
from tests.services import RedisServer

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 5, 12, 0, 0, tzinfo=UTC)
MONTH = "2026-12"
PRICE = ReservePrice(input_nano=1000, output_nano=4000)


def team_member(user: str, team_usd: str, **extra: Any) -> Identity:
    return Identity(
        user,
        "jwt",
        10_000,
        10**9,
        team_id="search",
        team_budget_usd=Decimal(team_usd),
        team_token_budget=10**9,
        **extra,
    )


WORKER = r"""
import asyncio, json, os, sys
from datetime import datetime
from decimal import Decimal
from redis.asyncio import Redis
from llm_gateway.auth.identity import Identity
from llm_gateway.limits import BudgetExceeded, RedisLimits
from llm_gateway.pricing import ReservePrice
from llm_gateway.schemas.core import Usage

async def main(url, prefix, now, user, count, team_usd, cost):
    client = Redis.from_url(url)
    limits = RedisLimits(client, prefix, timeout_seconds=5)
    who = Identity(f"{user}-{os.getpid()}", "jwt", 10_000, 10**9, team_id="search", team_budget_usd=Decimal(team_usd))
    at, price = datetime.fromisoformat(now), ReservePrice(1000, 4000)
    await client.ping()
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)  # every process starts together

    async def one():
        try:
            return await limits.admit(who, prompt_tokens=100, max_completion_tokens=100, price=price, now=at)
        except BudgetExceeded as refused:
            return [refused.kind, refused.unit]

    outcomes = await asyncio.gather(*(one() for _ in range(count)))
    # A barrier: every process has made all its admissions before any settles (a settlement frees part of a
    # reservation, which would let a later admission in: the count checked would then depend on timing).
    await client.incr(prefix + "barrier")
    for _ in range(600):
        if int(await client.get(prefix + "barrier") or 0) >= 2:
            break
        await asyncio.sleep(0.05)
    results = []
    for outcome in outcomes:
        if isinstance(outcome, list):
            results.append(outcome)
            continue
        await limits.settle(outcome, Usage(100, 100), cost_nano=cost)
        results.append([outcome.reserved_nano, cost])
    await client.aclose()
    print(json.dumps(results), flush=True)

asyncio.run(main(*json.loads(sys.argv[1])))
"""


async def test_two_processes_hold_one_team_dollar_budget(
    redis_url: str, limits_prefix: str, redis_clients: ClientFactory
) -> None:
    """Two OS processes, each a member of the team, 15 requests each at once, on a team budget for 10."""
    # Each process's user is "member-<pid>": the users differ, the team's budget is one. The deployment that answered
    # costs 300,000 nano-dollars a request, 500,000 are reserved at the chain's dearest price.
    args: list[Any] = [redis_url, limits_prefix, NOW.isoformat(), "member", 15, "0.005", 300_000]
    results = run_processes(WORKER, args)
    admitted = [r for r in results if isinstance(r[0], int)]
    assert len(results) == 30
    assert len(admitted) == 10 and sum(reserved for reserved, _ in admitted) == 5_000_000
    assert [r for r in results if not isinstance(r[0], int)] == [["team", "usd"]] * 20
    limits = RedisLimits(redis_clients(redis_url), limits_prefix, timeout_seconds=5)
    team = await limits.usd_balance("team", "search", MONTH, 5_000_000)
    assert (team.used, team.reserved) == (sum(cost for _, cost in admitted), 0) == (3_000_000, 0)
    # The reservations were freed, the real cost charged: 2,000,000 nano-dollars are left for more.
    assert (team.available, 2_000_000 // 500_000) == (2_000_000, 4)


async def test_a_flushed_redis_rebuilds_dollar_counters_from_the_ledger(
    throwaway_redis: RedisServer, redis_clients: ClientFactory
) -> None:
    ledger = Ledger()
    limits = RedisLimits(redis_clients(throwaway_redis.url), "gw:", ledger_totals=ledger, timeout_seconds=5)
    who = team_member("alice", "0.004", monthly_budget_usd=Decimal("1"))
    for _ in range(3):
        ticket = await limits.admit(who, prompt_tokens=100, max_completion_tokens=100, price=PRICE, now=NOW)
        await limits.settle(ticket, Usage(100, 100), cost_nano=400_000)
        for kind, subject in ticket.scopes:  # the ledger row of the request
            ledger.add(kind, subject, MONTH, 200, 400_000)
    in_flight = await limits.admit(who, prompt_tokens=100, max_completion_tokens=100, price=PRICE, now=NOW)
    before = await limits.usd_balance("team", "search", MONTH, 4_000_000)
    assert (before.used, before.reserved) == (1_200_000, 500_000)
    calls = len(ledger.calls)

    await redis_clients(throwaway_redis.url).flushall()

    # Not a fresh budget: 1,200,000 of 4,000,000 spent, so 5 more reservations of 500,000, not 8.
    admitted = []
    for _ in range(8):
        try:
            admitted.append(await limits.admit(who, prompt_tokens=100, max_completion_tokens=100, price=PRICE, now=NOW))
        except UsdBudgetExceeded as refused:
            assert (refused.kind, refused.subject) == ("team", "search")
    assert len(admitted) == 5
    assert len(ledger.calls) == calls + 2  # once after the flush, for the user's hash and the team's
    after = await limits.usd_balance("team", "search", MONTH, 4_000_000)
    assert (after.used, after.reserved) == (1_200_000, 2_500_000)
    user = await limits.usd_balance("user", "alice", MONTH, 10**9)
    assert (user.used, user.reserved) == (1_200_000, 2_500_000)
    # A request in flight across the flush is still charged; its lost hold does not go negative.
    await limits.settle(in_flight, Usage(100, 50), cost_nano=300_000)
    after = await limits.usd_balance("team", "search", MONTH, 4_000_000)
    assert (after.used, after.reserved) == (1_500_000, 2_500_000)


async def test_team_keys_and_their_time_to_live(
    redis_url: str, limits_prefix: str, redis_clients: ClientFactory
) -> None:
    client = redis_clients(redis_url)
    limits = RedisLimits(client, limits_prefix)
    who = team_member("alice", "1", team_rate_limit_per_minute=10)
    ticket = await limits.admit(who, prompt_tokens=100, max_completion_tokens=100, price=PRICE, now=NOW)
    window = int(NOW.timestamp()) // 60
    team = f"{limits_prefix}teambudget:search:{MONTH}"
    assert f"{limits_prefix}rate:team:search:{window}".encode() in await client.keys(f"{limits_prefix}*")
    assert await client.hgetall(team) == {
        b"used": b"0",
        b"reserved": b"200",
        b"used_nano": b"0",
        b"reserved_nano": b"500000",
    }
    assert await client.zrange(f"{team}:holds", 0, -1) == [f"{ticket.id}:200:500000".encode()]
    assert await client.ttl(team) > 26 * 86_400
    await limits.settle(ticket, Usage(100, 100), cost_nano=420_000)
    assert await client.hmget(team, ["used", "reserved", "used_nano", "reserved_nano"]) == [
        b"200",
        b"0",
        b"420000",
        b"0",
    ]
    assert await client.zcard(f"{team}:holds") == 0


async def test_an_expired_hold_of_an_older_gateway_is_released(
    redis_url: str, limits_prefix: str, redis_clients: ClientFactory
) -> None:
    """A rolling upgrade: holds written as ``<ticket>:<tokens>`` (no dollars) are still reclaimed when stale."""
    client = redis_clients(redis_url)
    limits = RedisLimits(client, limits_prefix, reservation_ttl_seconds=60)
    who = Identity("alice", "jwt", 1000, 1000)
    await limits.admit(who, prompt_tokens=1, max_completion_tokens=1, now=NOW)
    budget = f"{limits_prefix}budget:alice:{MONTH}"
    await client.hincrby(budget, "reserved", 900)
    await client.zadd(f"{budget}:holds", {"0123abcd:900": int(NOW.timestamp() * 1000)})
    later = datetime(2026, 12, 5, 12, 0, 1, tzinfo=UTC)
    ticket = await limits.admit(who, prompt_tokens=100, max_completion_tokens=800, now=later)
    assert ticket.state.tokens_remaining == 1000 - 2 - 900


# -- both backends decide alike ------------------------------------------------------------------


async def outcome(limits: Admission, who: Identity, at: datetime, **kwargs: Any) -> tuple[Any, ...]:
    """What a caller can see of an admission: the ticket's reservation and headers, or the refusal."""
    try:
        ticket = await limits.admit(who, now=at, **kwargs)
    except (BudgetExceeded, RequestRateExceeded) as refused:
        return type(refused).__name__, refused.message, refused.headers()
    return (
        ticket,
        (ticket.completion_cap, ticket.reserved_tokens, ticket.reserved_nano, ticket.scopes),
        ticket.headers(),
    )


async def test_both_backends_decide_alike_on_random_traffic(
    redis_url: str, limits_prefix: str, redis_clients: ClientFactory
) -> None:
    """The Lua twin of ``decide``: 600 random admissions, settlements and releases, same answers to the letter."""
    rng = random.Random(16)
    ledger = Ledger({("team", "t0", MONTH): (500, 2_000_000), ("user", "u1", MONTH): (100, 300_000)})
    memory = MemoryLimits(ledger_totals=ledger, completion_allowance=300)
    shared = RedisLimits(
        redis_clients(redis_url), limits_prefix, ledger_totals=ledger, completion_allowance=300, timeout_seconds=5
    )

    def anyone() -> Identity:
        team = rng.choice([None, "t0", "t1"])
        return Identity(
            f"u{rng.randrange(3)}",
            "api_key",
            rng.choice([60, 1000]),
            rng.choice([20_000, 200_000]),
            key_id=f"k{rng.randrange(4)}",
            key_token_budget=rng.choice([None, 10_000]),
            monthly_budget_usd=rng.choice([None, Decimal("0.01"), Decimal("0.05")]),
            key_budget_usd=rng.choice([None, Decimal("0.008")]),
            team_id=team,
            team_token_budget=rng.choice([None, 30_000]) if team else None,
            team_budget_usd=rng.choice([None, Decimal("0.02")]) if team else None,
            team_rate_limit_per_minute=rng.choice([None, 150]) if team else None,
        )

    backends: tuple[Admission, Admission] = (memory, shared)
    open_tickets: list[tuple[Ticket, Ticket]] = []
    refusals: set[str] = set()
    for step in range(600):
        at = datetime(2026, 12, 5, 12, 0, step // 10, tzinfo=UTC)
        if open_tickets and rng.random() < 0.4:
            pair = open_tickets.pop(rng.randrange(len(open_tickets)))
            usage = rng.choice([None, Usage(rng.randrange(200), rng.randrange(300))])
            cost = rng.choice([None, rng.randrange(500_000)])
            if rng.random() < 0.2:
                await asyncio.gather(*(limits.release(t) for limits, t in zip(backends, pair, strict=True)))
            else:
                charged = [
                    await limits.settle(t, usage, cost_nano=cost) for limits, t in zip(backends, pair, strict=True)
                ]
                assert charged[0] == charged[1]
            continue
        who = anyone()
        request = {
            "prompt_tokens": rng.randrange(1, 200),
            "max_completion_tokens": rng.choice([None, rng.randrange(0, 400)]),
            "choices": rng.choice([1, 1, 3]),
            "price": rng.choice([None, PRICE, ReservePrice(150, 600), ReservePrice(2500, 0)]),
        }
        mine, theirs = await outcome(memory, who, at, **request), await outcome(shared, who, at, **request)
        assert mine[1:] == theirs[1:], (step, who, request)
        if isinstance(mine[0], Ticket) and isinstance(theirs[0], Ticket):
            open_tickets.append((mine[0], theirs[0]))
        else:
            refusals.add(str(mine[0]))
    # The traffic reached every kind of answer.
    assert refusals == {"RequestRateExceeded", "TokenBudgetExceeded", "UsdBudgetExceeded"}
