"""RedisCache against a real Redis: round trip, TTL, sharing between instances, and failing open when Redis
is stopped, paused or a black hole — with the latency each failure adds measured."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from llm_gateway.cache import ErrorKind, RedisCache, cache_key
from tests.services import RedisServer

pytestmark = pytest.mark.integration

TIMEOUT = 0.05
# Fail-open budget per call: the timeout plus scheduling slack on a busy CI machine.
BOUND = 0.1
ANSWER: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1741570283,
    "model": "gpt-4o-mini",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello! How can I help?", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29},
}
KEY = cache_key({"messages": [{"role": "user", "content": "hi"}]}, group="gpt-4o-mini", scope_id="alice")

ClientFactory = Callable[[str], Redis]


@pytest.fixture
async def clients() -> AsyncIterator[ClientFactory]:
    """Redis clients with the library's defaults, closed after the test."""
    made: list[Redis] = []

    def make(url: str) -> Redis:
        client = Redis.from_url(url)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


@pytest.fixture
def prefix() -> str:
    return f"test:cache:{uuid.uuid4().hex[:12]}:"


async def test_set_get_round_trip(redis_url: str, clients: ClientFactory, prefix: str) -> None:
    client = clients(redis_url)
    cache = RedisCache(client, prefix=prefix, ttl_seconds=60, timeout_seconds=TIMEOUT)
    assert await cache.get(KEY) is None
    cache.set(KEY, ANSWER)
    await cache.drain()
    assert await cache.get(KEY) == ANSWER
    assert await client.exists(prefix + KEY) == 1
    assert 59_000 < await client.pttl(prefix + KEY) <= 60_000
    assert cache.errors == 0 and not cache.circuit_open
    await client.delete(prefix + KEY)


async def test_entries_expire_after_the_ttl(redis_url: str, clients: ClientFactory, prefix: str) -> None:
    cache = RedisCache(clients(redis_url), prefix=prefix, ttl_seconds=1, timeout_seconds=TIMEOUT)
    assert await cache.put(KEY, ANSWER)
    assert await cache.get(KEY) == ANSWER
    await asyncio.sleep(1.1)
    assert await cache.get(KEY) is None


async def test_two_instances_share_entries(redis_url: str, clients: ClientFactory, prefix: str) -> None:
    """Two gateway processes, each with its own client and cache, on one Redis."""
    first = RedisCache(clients(redis_url), prefix=prefix, ttl_seconds=60, timeout_seconds=TIMEOUT)
    second = RedisCache(clients(redis_url), prefix=prefix, ttl_seconds=60, timeout_seconds=TIMEOUT)
    assert await first.put(KEY, ANSWER)
    assert await second.get(KEY) == ANSWER
    other = cache_key({"messages": [{"role": "user", "content": "hi"}]}, group="gpt-4o-mini", scope_id="bob")
    second.set(other, {**ANSWER, "id": "chatcmpl-2"})
    await second.drain()
    assert await first.get(other) == {**ANSWER, "id": "chatcmpl-2"}
    await clients(redis_url).delete(prefix + KEY, prefix + other)


async def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = await call()
    return result, time.perf_counter() - started


async def test_redis_stopped_mid_test_fails_open_then_recovers(
    throwaway_redis: RedisServer, clients: ClientFactory
) -> None:
    kinds: list[ErrorKind] = []
    cache = RedisCache(
        clients(throwaway_redis.url),
        prefix="c:",
        ttl_seconds=60,
        timeout_seconds=TIMEOUT,
        open_for_seconds=0.5,
        on_error=kinds.append,
    )
    assert await cache.put(KEY, ANSWER)
    assert await cache.get(KEY) == ANSWER

    throwaway_redis.stop()
    result, first = await timed(lambda: cache.get(KEY))
    assert result is None and first < BOUND
    assert cache.errors == 1 and kinds[0] in ("timeout", "unavailable") and cache.circuit_open

    # while the circuit is open no call pays the timeout: reads miss at once, writes are not scheduled
    short = [(await timed(lambda: cache.get(KEY)))[1] for _ in range(200)]
    cache.set(KEY, ANSWER)
    assert max(short) < 0.005 and sum(short) < 0.05
    assert cache.errors == 1 and cache.pending_writes == 0

    throwaway_redis.start()  # same port, empty: it does not persist
    deadline = time.monotonic() + 5.0
    while not await cache.put(KEY, ANSWER):
        assert time.monotonic() < deadline, f"no recovery; errors: {kinds}"
        await asyncio.sleep(0.05)
    assert not cache.circuit_open
    assert await cache.get(KEY) == ANSWER


async def test_a_paused_redis_is_a_miss_within_the_timeout(
    throwaway_redis: RedisServer, clients: ClientFactory
) -> None:
    """CLIENT PAUSE makes every command wait, as a Redis stuck in a slow command or a fork would."""
    kinds: list[ErrorKind] = []
    cache = RedisCache(
        clients(throwaway_redis.url), prefix="c:", ttl_seconds=60, timeout_seconds=TIMEOUT, on_error=kinds.append
    )
    assert await cache.put(KEY, ANSWER)
    await clients(throwaway_redis.url).client_pause(1000, all=True)
    result, elapsed = await timed(lambda: cache.get(KEY))
    assert result is None and elapsed < BOUND
    assert kinds == ["timeout"] and cache.circuit_open


async def test_a_black_hole_redis_is_a_miss_within_the_timeout(clients: ClientFactory) -> None:
    """A server that accepts connections and never answers: connect succeeds, the command hangs."""
    accepted: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    kinds: list[ErrorKind] = []
    cache = RedisCache(
        clients(f"redis://127.0.0.1:{port}/0"),
        prefix="c:",
        ttl_seconds=60,
        timeout_seconds=TIMEOUT,
        on_error=kinds.append,
    )
    try:
        result, elapsed = await timed(lambda: cache.get(KEY))
        assert result is None and elapsed < BOUND
        assert not await cache.put(KEY, ANSWER)  # refused by the open circuit, at once
        assert kinds == ["timeout"] and cache.circuit_open
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()
