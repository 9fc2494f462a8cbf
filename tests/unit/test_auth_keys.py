"""API key format and the in-process caches behind the hot path (pure: no database, no network)."""

from __future__ import annotations

import asyncio
import hashlib
import math
import re

import pytest

from llm_gateway.auth.api_keys import KEY_PREFIX, generate_key, hash_key, looks_like_key
from llm_gateway.auth.ttl_cache import MISSING, CachedLookup, TtlCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_new_key_has_the_documented_shape_and_enough_randomness() -> None:
    new = generate_key()
    assert re.fullmatch(r"sk-gw-[A-Za-z0-9]{12}-[A-Za-z0-9]{32}", new.key)
    assert new.key.startswith(f"{KEY_PREFIX}{new.id}-")
    assert new.prefix == f"sk-gw-{new.id}" and new.prefix in new.key
    assert new.key_hash == hashlib.sha256(new.key.encode()).hexdigest() == hash_key(new.key)
    secret = new.key.rsplit("-", 1)[1]
    assert secret not in new.prefix and secret not in new.key_hash
    assert 32 * math.log2(62) >= 128  # the secret part alone carries at least 128 random bits


def test_keys_do_not_repeat() -> None:
    keys = [generate_key() for _ in range(2000)]
    assert len({k.key for k in keys}) == len({k.id for k in keys}) == 2000


@pytest.mark.parametrize(
    "candidate",
    [
        "",
        "unused",
        "sk-gw-",
        "sk-gw-abc-def",
        "sk-proj-abcdefghijkl-abcdefghijklmnopqrstuvwxyzABCDEF",
        "sk-gw-abcdefghijkl-abcdefghijklmnopqrstuvwxyzABCDE",  # one short
        "sk-gw-abcdefghijkl-abcdefghijklmnopqrstuvwxyzABCDEFG",  # one long
        "sk-gw-abcdefghijkl-abcdefghijklmnopqrstuvwxyzABCDE!",
        " sk-gw-abcdefghijkl-abcdefghijklmnopqrstuvwxyzABCDEF",
        "sk-gw-abcdefghijkl-abcdefghijklmnopqrstuvwxyzABCDEF\n",
    ],
)
def test_anything_but_the_key_shape_is_refused_before_a_lookup(candidate: str) -> None:
    assert not looks_like_key(candidate)


def test_one_changed_character_is_another_hash() -> None:
    key = generate_key().key
    changed = key[:-1] + ("a" if key[-1] != "a" else "b")
    assert looks_like_key(changed) and hash_key(changed) != hash_key(key)


def test_ttl_cache_expires_entries_by_the_ttl_given_at_read_time() -> None:
    clock = Clock()
    cache: TtlCache[str | None] = TtlCache(clock=clock)
    cache.put("a", "value")
    cache.put("b", None)  # remembered "unknown"
    clock.now += 5
    assert cache.get("a", ttl=30) == "value"
    assert cache.get("b", ttl=30) is None
    assert cache.get("a", ttl=1) is MISSING  # a shorter TTL applies at once
    assert cache.get("a", ttl=30) is MISSING  # and the stale entry is gone
    assert cache.get("zzz", ttl=30) is MISSING


def test_ttl_cache_is_bounded_and_drops_the_oldest() -> None:
    cache: TtlCache[int] = TtlCache(max_entries=3)
    for index in range(5):
        cache.put(str(index), index)
    assert len(cache) == 3
    assert [cache.get(str(i), 60) for i in range(5)] == [MISSING, MISSING, 2, 3, 4]
    assert cache.drop_where(lambda value: value >= 3) == 2
    assert len(cache) == 1


async def test_concurrent_misses_share_one_load() -> None:
    loads: list[str] = []
    release = asyncio.Event()

    async def load(key: str) -> str:
        loads.append(key)
        await release.wait()
        return key.upper()

    lookup: CachedLookup[str] = CachedLookup(load, ttl=lambda: 30.0)
    waiters = [asyncio.create_task(lookup.get("k")) for _ in range(50)]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*waiters) == ["K"] * 50
    assert loads == ["k"]
    assert await lookup.get("k") == "K" and loads == ["k"]  # now cached


async def test_a_load_that_overlaps_an_invalidation_is_not_cached() -> None:
    """The row may have been read before the revocation committed: answer, but do not keep it."""
    answers = iter(["before", "after"])
    release = asyncio.Event()

    async def load(key: str) -> str:
        await release.wait()
        return next(answers)

    lookup: CachedLookup[str] = CachedLookup(load, ttl=lambda: 30.0)
    pending = asyncio.create_task(lookup.get("k"))
    await asyncio.sleep(0)
    lookup.forget(lambda value: True)
    release.set()
    assert await pending == "before"
    assert await lookup.get("k") == "after"


async def test_a_failed_load_is_not_cached_and_reaches_every_waiter() -> None:
    calls = 0

    async def load(key: str) -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        if calls == 1:
            raise RuntimeError("database down")
        return "ok"

    lookup: CachedLookup[str] = CachedLookup(load, ttl=lambda: 30.0)
    results = await asyncio.gather(lookup.get("k"), lookup.get("k"), return_exceptions=True)
    assert [type(r) for r in results] == [RuntimeError, RuntimeError]
    assert await lookup.get("k") == "ok"


async def test_a_caller_that_gives_up_does_not_cancel_the_shared_load() -> None:
    release = asyncio.Event()

    async def load(key: str) -> str:
        await release.wait()
        return "value"

    lookup: CachedLookup[str] = CachedLookup(load, ttl=lambda: 30.0)
    impatient = asyncio.create_task(lookup.get("k"))
    patient = asyncio.create_task(lookup.get("k"))
    await asyncio.sleep(0)
    impatient.cancel()
    release.set()
    assert await patient == "value"
    with pytest.raises(asyncio.CancelledError):
        await impatient
