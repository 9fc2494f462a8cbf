"""RedisCache's fail-open logic against an in-memory stand-in for the client: timeouts, circuit, write path."""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

import pytest
from redis import exceptions as redis_errors
from redis.asyncio import Redis

from llm_gateway.cache import ErrorKind, RedisCache
from llm_gateway.cache.redis import error_kind

ANSWER = {"id": "chatcmpl-1", "choices": [{"index": 0, "message": {"content": "hi"}, "finish_reason": "stop"}]}
TIMEOUT = 0.02


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeRedis:
    """Answers like redis-py's asyncio client, or hangs, or raises ``error``."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.calls = 0
        self.hang = False
        self.delay = 0.0
        self.error: Exception | None = None
        self.last_px: int | None = None

    async def _act(self) -> None:
        self.calls += 1
        if self.hang:
            await asyncio.sleep(3600)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error

    async def get(self, name: str) -> Any:
        await self._act()
        return self.data.get(name)

    async def set(self, name: str, value: bytes, px: int | None = None) -> bool:
        await self._act()
        self.data[name], self.last_px = value, px
        return True


def make(fake: FakeRedis, clock: Clock, kinds: list[ErrorKind] | None = None, **options: Any) -> RedisCache:
    return RedisCache(
        cast(Redis, fake),
        prefix="t:",
        ttl_seconds=options.pop("ttl_seconds", 300),
        timeout_seconds=TIMEOUT,
        open_for_seconds=5.0,
        on_error=kinds.append if kinds is not None else None,
        clock=clock,
        **options,
    )


async def test_set_in_the_background_then_get() -> None:
    fake = FakeRedis()
    cache = make(fake, Clock())
    cache.set("k", ANSWER)
    assert cache.pending_writes == 1  # scheduled, not awaited
    await cache.drain()
    assert cache.pending_writes == 0
    assert list(fake.data) == ["t:k"] and fake.last_px == 300_000
    assert await cache.get("k") == ANSWER
    assert await cache.get("other") is None
    assert cache.errors == 0


async def test_a_hanging_redis_is_a_miss_within_the_timeout_then_the_circuit_opens() -> None:
    fake, clock, kinds = FakeRedis(), Clock(), list[ErrorKind]()
    cache = make(fake, clock, kinds)
    fake.hang = True
    started = time.perf_counter()
    assert await cache.get("k") is None
    assert time.perf_counter() - started < TIMEOUT + 0.05
    assert kinds == ["timeout"] and cache.errors == 1 and cache.circuit_open

    # open: nothing reaches Redis, reads miss at once, writes are not even scheduled
    calls = fake.calls
    assert await cache.get("k") is None
    cache.set("k", ANSWER)
    assert cache.pending_writes == 0 and fake.calls == calls and cache.errors == 1

    # half-open after the period: one probe; its success closes the circuit
    fake.hang = False
    clock.now += 5.0
    assert not cache.circuit_open
    assert await cache.get("k") is None
    assert fake.calls == calls + 1 and not cache.circuit_open
    assert await cache.put("k", ANSWER) and await cache.get("k") == ANSWER


async def test_a_failed_probe_opens_the_circuit_again() -> None:
    fake, clock, kinds = FakeRedis(), Clock(), list[ErrorKind]()
    cache = make(fake, clock, kinds)
    fake.error = redis_errors.ConnectionError("Connection refused")
    assert await cache.get("k") is None
    clock.now += 5.0
    assert await cache.get("k") is None
    assert kinds == ["unavailable", "unavailable"] and cache.circuit_open
    clock.now += 4.9
    assert cache.circuit_open


async def test_only_one_probe_at_a_time() -> None:
    fake, clock = FakeRedis(), Clock()
    cache = make(fake, clock)
    fake.error = redis_errors.ConnectionError("down")
    await cache.get("k")
    fake.error, fake.delay = None, 0.01
    clock.now += 5.0
    calls = fake.calls
    results = await asyncio.gather(*(cache.get("k") for _ in range(20)))
    assert results == [None] * 20
    assert fake.calls == calls + 1  # the other 19 short-circuited while the probe was in flight
    assert not cache.circuit_open


async def test_a_probe_cancelled_by_its_caller_does_not_wedge_the_circuit() -> None:
    fake, clock = FakeRedis(), Clock()
    cache = make(fake, clock)
    fake.error = redis_errors.ConnectionError("down")
    await cache.get("k")
    fake.error, fake.delay = None, 0.01
    clock.now += 5.0
    probe = asyncio.ensure_future(cache.get("k"))
    await asyncio.sleep(0)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    fake.delay = 0.0
    assert await cache.put("k", ANSWER)
    assert not cache.circuit_open


async def test_a_success_admitted_before_a_failure_does_not_close_the_circuit() -> None:
    fake, clock = FakeRedis(), Clock()
    cache = make(fake, clock)
    fake.delay = 0.005
    slow_ok = asyncio.ensure_future(cache.get("k"))
    await asyncio.sleep(0)
    fake.delay, fake.error = 0.0, redis_errors.ConnectionError("down")
    await cache.get("k")
    await slow_ok
    assert cache.circuit_open


async def test_writes_beyond_the_in_flight_bound_are_dropped_and_counted() -> None:
    fake, kinds = FakeRedis(), list[ErrorKind]()
    cache = make(fake, Clock(), kinds, max_pending_writes=3)
    fake.delay = 0.005
    for i in range(5):
        cache.set(f"k{i}", ANSWER)
    assert cache.pending_writes == 3 and cache.dropped_writes == 2
    assert kinds == ["dropped", "dropped"] and cache.errors == 0
    await cache.drain()
    assert sorted(fake.data) == ["t:k0", "t:k1", "t:k2"]


async def test_the_write_is_a_snapshot_of_the_answer() -> None:
    fake = FakeRedis()
    cache = make(fake, Clock())
    answer = {"id": "x", "choices": []}
    cache.set("k", answer)
    answer["id"] = "changed before the background write ran"
    await cache.drain()
    assert await cache.get("k") == {"id": "x", "choices": []}


async def test_unreadable_entries_are_counted_misses_without_opening_the_circuit() -> None:
    fake, kinds = FakeRedis(), list[ErrorKind]()
    cache = make(fake, Clock(), kinds)
    fake.data["t:a"] = b"not an entry"
    fake.data["t:b"] = "a str: the client was built with decode_responses=True"
    assert await cache.get("a") is None and await cache.get("b") is None
    assert kinds == ["corrupt", "corrupt"] and not cache.circuit_open


async def test_a_ttl_of_zero_disables_writes() -> None:
    fake = FakeRedis()
    cache = make(fake, Clock(), ttl_seconds=0)
    cache.set("k", ANSWER)
    assert not await cache.put("k", ANSWER)
    assert fake.calls == 0


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (TimeoutError(), "timeout"),
        (redis_errors.TimeoutError("read timed out"), "timeout"),
        (redis_errors.ConnectionError("refused"), "unavailable"),
        (redis_errors.BusyLoadingError("loading"), "unavailable"),
        (ConnectionResetError(), "unavailable"),
        (OSError("network unreachable"), "unavailable"),
        (redis_errors.ResponseError("OOM command not allowed"), "error"),
        (redis_errors.AuthenticationError("invalid password"), "unavailable"),
        (ValueError("anything else"), "error"),
    ],
)
async def test_every_failure_is_mapped_and_none_escapes(exc: Exception, kind: ErrorKind) -> None:
    assert error_kind(exc) == kind
    fake, kinds = FakeRedis(), list[ErrorKind]()
    cache = make(fake, Clock(), kinds)
    fake.error = exc
    assert await cache.get("k") is None
    assert kinds == [kind]
