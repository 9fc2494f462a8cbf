"""RedisLimits as deployed: several clients and several OS processes sharing one Redis, a Redis that
is flushed, restarted or gone, and the keys' time to live."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from llm_gateway import errors
from llm_gateway.auth.identity import Identity
from llm_gateway.limits import RedisLimits, RequestRateExceeded, ScopeKind, Ticket, TokenBudgetExceeded
from llm_gateway.limits.budget import month_keys_ttl_seconds
from llm_gateway.schemas.core import Usage
from tests.admission_support import ClientFactory
from tests.limits_support import run_processes
from tests.services import RedisServer

pytestmark = pytest.mark.integration

NOW = datetime(2025, 3, 14, 12, 0, 0, tzinfo=UTC)
MONTH = "2025-03"


class Ledger:
    def __init__(self) -> None:
        self.usage: dict[tuple[str, str], int] = {}
        self.calls = 0

    async def __call__(self, kind: ScopeKind, subject: str, month: str) -> tuple[int, int]:
        self.calls += 1
        return self.usage.get((subject, month), 0), 0


async def try_admit(limits: RedisLimits, who: Identity, **kwargs: Any) -> Ticket | None:
    try:
        return await limits.admit(who, now=NOW, **kwargs)
    except (TokenBudgetExceeded, RequestRateExceeded):
        return None


async def test_two_clients_share_one_budget(redis_url: str, limits_prefix: str, redis_clients: ClientFactory) -> None:
    first, second = (
        RedisLimits(redis_clients(redis_url), limits_prefix, timeout_seconds=5),
        RedisLimits(redis_clients(redis_url), limits_prefix, timeout_seconds=5),
    )
    who = Identity("alice", "jwt", 10_000, 2000)
    attempts = [try_admit(limits, who, prompt_tokens=50, max_completion_tokens=50) for limits in (first, second) * 50]
    admitted = [t for t in await asyncio.gather(*attempts) if t is not None]
    assert len(admitted) == 20

    await asyncio.gather(*(second.settle(t, Usage(50, 50)) for t in admitted))
    balance = await first.balance("alice", MONTH, 2000)
    assert (balance.used, balance.reserved) == (2000, 0)


async def test_concurrent_first_use_rebuilds_once_per_process(
    redis_url: str, limits_prefix: str, redis_clients: ClientFactory
) -> None:
    """100 requests find the month's counter missing at once: the ledger's 1000 used tokens hold for all."""
    ledger = Ledger()
    ledger.usage[("alice", MONTH)] = 1000
    first = RedisLimits(redis_clients(redis_url), limits_prefix, ledger_totals=ledger, timeout_seconds=5)
    second = RedisLimits(redis_clients(redis_url), limits_prefix, ledger_totals=ledger, timeout_seconds=5)
    who = Identity("alice", "jwt", 10_000, 2000)
    attempts = [try_admit(limits, who, prompt_tokens=50, max_completion_tokens=50) for limits in (first, second) * 50]
    assert sum(t is not None for t in await asyncio.gather(*attempts)) == 10
    assert ledger.calls <= 2  # one read per process


async def test_two_clients_share_one_rate_window(
    redis_url: str, limits_prefix: str, redis_clients: ClientFactory
) -> None:
    first, second = (
        RedisLimits(redis_clients(redis_url), limits_prefix, timeout_seconds=5),
        RedisLimits(redis_clients(redis_url), limits_prefix, timeout_seconds=5),
    )
    who = Identity("alice", "jwt", 30, 10**9)
    attempts = [try_admit(limits, who, prompt_tokens=1, max_completion_tokens=1) for limits in (first, second) * 25]
    assert sum(t is not None for t in await asyncio.gather(*attempts)) == 30


WORKER = r"""
import asyncio, json, sys
from datetime import datetime
from redis.asyncio import Redis
from llm_gateway.auth.identity import Identity
from llm_gateway.limits import RedisLimits, RequestRateExceeded, TokenBudgetExceeded
from llm_gateway.schemas.core import Usage

async def main(url, limits_prefix, now, count, rpm, budget, prompt, completion):
    client = Redis.from_url(url)
    limits = RedisLimits(client, limits_prefix)
    who, at = Identity("alice", "jwt", rpm, budget), datetime.fromisoformat(now)
    await client.ping()
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)  # both processes start together

    async def one():
        try:
            ticket = await limits.admit(who, prompt_tokens=prompt, max_completion_tokens=completion, now=at)
        except (RequestRateExceeded, TokenBudgetExceeded) as refused:
            return refused.code
        await asyncio.sleep(0.01)
        return await limits.settle(ticket, Usage(prompt, completion))

    results = await asyncio.gather(*(one() for _ in range(count)))
    await client.aclose()
    print(json.dumps(results), flush=True)

asyncio.run(main(*json.loads(sys.argv[1])))
"""


async def test_two_processes_share_one_budget(redis_url: str, limits_prefix: str, redis_clients: ClientFactory) -> None:
    results = run_processes(WORKER, [redis_url, limits_prefix, NOW.isoformat(), 50, 10_000, 2000, 50, 50])
    charged = [r for r in results if isinstance(r, int)]
    assert len(results) == 100
    assert len(charged) == 20 and results.count("insufficient_quota") == 80
    limits = RedisLimits(redis_clients(redis_url), limits_prefix, timeout_seconds=5)
    balance = await limits.balance("alice", MONTH, 2000)
    assert (balance.used, balance.reserved) == (sum(charged), 0) == (2000, 0)


async def test_two_processes_share_one_rate_window(redis_url: str, limits_prefix: str) -> None:
    results = run_processes(WORKER, [redis_url, limits_prefix, NOW.isoformat(), 25, 30, 10**9, 1, 1])
    assert sum(isinstance(r, int) for r in results) == 30
    assert results.count("rate_limit_exceeded") == 20


async def test_flushall_mid_month_restores_usage_from_the_ledger(redis_clients: ClientFactory) -> None:
    server = RedisServer().start()
    try:
        ledger = Ledger()
        limits = RedisLimits(redis_clients(server.url), "gw:", ledger_totals=ledger)
        who = Identity("alice", "jwt", 1000, 1000)
        for _ in range(6):
            ticket = await limits.admit(who, prompt_tokens=50, max_completion_tokens=50, now=NOW)
            charged = await limits.settle(ticket, Usage(50, 50))
            ledger.usage[("alice", MONTH)] = ledger.usage.get(("alice", MONTH), 0) + charged  # the ledger row
        in_flight = await limits.admit(who, prompt_tokens=50, max_completion_tokens=50, now=NOW)

        await redis_clients(server.url).flushall()

        # Not a fresh budget: 600 of 1000 used, so 4 more requests of 100, not 10.
        admitted = [await try_admit(limits, who, prompt_tokens=50, max_completion_tokens=50) for _ in range(10)]
        assert sum(t is not None for t in admitted) == 4
        assert ledger.calls == 2  # first use, and once after the flush
        # A request in flight across the flush is still charged, and its lost hold does not go negative.
        await limits.settle(in_flight, Usage(50, 30))
        balance = await limits.balance("alice", MONTH, 1000)
        assert (balance.used, balance.reserved) == (680, 400)
    finally:
        server.stop()


async def test_a_restarted_redis_reloads_scripts_and_rebuilds(redis_clients: ClientFactory) -> None:
    server = RedisServer().start()
    try:
        ledger = Ledger()
        ledger.usage[("alice", MONTH)] = 900
        limits = RedisLimits(redis_clients(server.url), "gw:", ledger_totals=ledger, timeout_seconds=2)
        who = Identity("alice", "jwt", 1000, 1000)
        await limits.admit(who, prompt_tokens=50, max_completion_tokens=50, now=NOW)
        server.stop()
        server.start()  # same port: no scripts, no keys (NOSCRIPT, then a rebuild)
        for _ in range(20):  # the client reconnects on the next call
            try:
                ticket = await limits.admit(who, prompt_tokens=50, max_completion_tokens=50, now=NOW)
                break
            except errors.ServiceUnavailable:
                await asyncio.sleep(0.1)
        assert ticket.state.tokens_remaining == 0
        with pytest.raises(TokenBudgetExceeded):
            await limits.admit(who, prompt_tokens=1, max_completion_tokens=1, now=NOW)
    finally:
        server.stop()


async def test_script_flush_is_survived(redis_clients: ClientFactory) -> None:
    server = RedisServer().start()
    try:
        limits = RedisLimits(redis_clients(server.url), "gw:")
        who = Identity("alice", "jwt", 1000, 1000)
        await limits.admit(who, prompt_tokens=1, max_completion_tokens=1, now=NOW)
        await redis_clients(server.url).script_flush()
        await limits.admit(who, prompt_tokens=1, max_completion_tokens=1, now=NOW)
    finally:
        server.stop()


@pytest.fixture
def dead_redis_url() -> str:
    """A port where nothing listens: a Redis that is down."""
    server = RedisServer()
    return server.url


async def test_redis_down_fails_closed_by_default_within_the_timeout(
    dead_redis_url: str, redis_clients: ClientFactory
) -> None:
    limits = RedisLimits(redis_clients(dead_redis_url), "gw:", timeout_seconds=0.2)
    started = time.monotonic()
    with pytest.raises(errors.ServiceUnavailable):
        await limits.admit(Identity("alice", "jwt", 60, 1000), prompt_tokens=1, max_completion_tokens=None)
    assert time.monotonic() - started < 1.0


async def test_redis_down_can_fail_open(dead_redis_url: str, redis_clients: ClientFactory) -> None:
    limits = RedisLimits(redis_clients(dead_redis_url), "gw:", on_redis_error="open", timeout_seconds=0.2)
    ticket = await limits.admit(Identity("alice", "jwt", 60, 1000), prompt_tokens=10, max_completion_tokens=None)
    assert ticket.degraded and ticket.completion_cap == 4096
    assert ticket.headers()["x-ratelimit-remaining-requests"] == "60"
    started = time.monotonic()
    assert await limits.settle(ticket, Usage(10, 5)) == 15  # logged, never raised: the answer is already out
    assert time.monotonic() - started < 1.0


async def test_a_stalled_redis_is_bounded_by_the_timeout(redis_clients: ClientFactory) -> None:
    server = RedisServer().start()
    try:
        assert server.process is not None
        limits = RedisLimits(redis_clients(server.url), "gw:", timeout_seconds=0.2)
        who = Identity("alice", "jwt", 60, 1000)
        await limits.admit(who, prompt_tokens=1, max_completion_tokens=1)
        server.process.send_signal(19)  # SIGSTOP: connected, but silent
        started = time.monotonic()
        with pytest.raises(errors.ServiceUnavailable):
            await limits.admit(who, prompt_tokens=1, max_completion_tokens=1)
        assert time.monotonic() - started < 1.0
        server.process.send_signal(18)  # SIGCONT
    finally:
        server.stop()


async def test_keys_expire(redis_url: str, limits_prefix: str, redis_clients: ClientFactory) -> None:
    client = redis_clients(redis_url)
    limits = RedisLimits(client, limits_prefix)
    who = Identity("alice", "api_key", 60, 1000, key_id="k1", key_token_budget=500)
    ticket = await limits.admit(who, prompt_tokens=1, max_completion_tokens=1, now=NOW)
    keys = sorted(k.decode() for k in await client.keys(f"{limits_prefix}*"))
    window = int(NOW.timestamp()) // 60
    assert keys == sorted(
        [
            f"{limits_prefix}budget:alice:{MONTH}",
            f"{limits_prefix}budget:alice:{MONTH}:holds",
            f"{limits_prefix}keybudget:k1:{MONTH}",
            f"{limits_prefix}keybudget:k1:{MONTH}:holds",
            f"{limits_prefix}rate:key:k1:{window}",
        ]
    )
    assert 119_000 < await client.pttl(f"{limits_prefix}rate:key:k1:{window}") <= 120_000
    month_ttl = month_keys_ttl_seconds(NOW)  # to the end of March plus a week
    for key in keys[:4]:
        assert month_ttl - 5 <= await client.ttl(key) <= month_ttl
    assert month_ttl == (datetime(2025, 4, 8, tzinfo=UTC) - NOW) // timedelta(seconds=1)
    await limits.settle(ticket, Usage(1, 1))
    assert await client.zcard(f"{limits_prefix}budget:alice:{MONTH}:holds") == 0
