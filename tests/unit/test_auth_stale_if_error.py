"""``CachedLookup`` while its store is down: the last good value answers, within bounds, and revocations still hold."""

from __future__ import annotations

import pytest

from llm_gateway.auth.ttl_cache import CachedLookup
from llm_gateway.errors import ServiceUnavailable


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Store:
    """A loader that answers ``value`` until ``down`` is set, then raises ``failure``."""

    def __init__(self) -> None:
        self.value = "alice"
        self.down = False
        self.failure: Exception = ServiceUnavailable("down")
        self.calls = 0

    async def load(self, key: str) -> str:
        self.calls += 1
        if self.down:
            raise self.failure
        return self.value


def lookup(store: Store, clock: Clock, *, stale_for: float = 60.0) -> CachedLookup[str]:
    return CachedLookup(store.load, ttl=lambda: 1.0, clock=clock, stale_if=(ServiceUnavailable,), stale_for=stale_for)


async def test_the_last_good_value_answers_while_the_store_is_down_and_the_store_is_asked_each_time() -> None:
    store, clock = Store(), Clock()
    cached = lookup(store, clock)
    assert await cached.get("k") == "alice"
    store.down = True
    clock.now += 5  # past the 1 s TTL
    assert await cached.get("k") == "alice"
    assert await cached.get("k") == "alice"
    assert store.calls == 3  # not cached as fresh: every request tries the store again
    store.down, store.value = False, "alice-v2"
    assert await cached.get("k") == "alice-v2"  # back: fresh values at once


async def test_nothing_stale_beyond_stale_for_or_for_a_key_never_loaded() -> None:
    store, clock = Store(), Clock()
    cached = lookup(store, clock, stale_for=60.0)
    await cached.get("k")
    store.down = True
    with pytest.raises(ServiceUnavailable):
        await cached.get("other")
    clock.now += 61
    with pytest.raises(ServiceUnavailable):
        await cached.get("k")


async def test_a_revocation_heard_during_the_outage_is_not_undone_by_the_stale_value() -> None:
    store, clock = Store(), Clock()
    cached = lookup(store, clock)
    await cached.get("k")
    store.down = True
    cached.forget(lambda value: value == "alice")
    with pytest.raises(ServiceUnavailable):
        await cached.get("k")
    cached.clear()
    with pytest.raises(ServiceUnavailable):
        await cached.get("k")


async def test_other_failures_are_not_papered_over() -> None:
    store, clock = Store(), Clock()
    cached = lookup(store, clock)
    await cached.get("k")
    store.down, store.failure = True, RuntimeError("a bug")
    clock.now += 5
    with pytest.raises(RuntimeError):
        await cached.get("k")


async def test_without_stale_if_a_failure_is_a_failure() -> None:
    store, clock = Store(), Clock()
    cached: CachedLookup[str] = CachedLookup(store.load, ttl=lambda: 1.0, clock=clock)
    await cached.get("k")
    store.down = True
    clock.now += 5
    with pytest.raises(ServiceUnavailable):
        await cached.get("k")
