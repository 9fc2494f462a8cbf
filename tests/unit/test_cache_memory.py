"""The in-process backend: bounded in bytes, least recently used evicted first, entries expiring by TTL."""

from __future__ import annotations

import random
from typing import Any

from llm_gateway.cache import MemoryCache, encode_entry
from llm_gateway.cache.memory import ENTRY_OVERHEAD_BYTES


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def answer(text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
    }


def entry_size(key: str, text: str) -> int:
    return len(key) + len(encode_entry(answer(text))) + ENTRY_OVERHEAD_BYTES


async def test_round_trip_returns_a_fresh_copy() -> None:
    cache = MemoryCache(max_bytes=100_000, ttl_seconds=60)
    assert await cache.get("k") is None
    cache.set("k", answer("hi"))
    first = await cache.get("k")
    assert first == answer("hi")
    assert first is not None
    first["choices"][0]["message"]["content"] = "edited by a caller"
    assert await cache.get("k") == answer("hi")


async def test_the_byte_bound_holds_however_much_is_inserted() -> None:
    bound = 50_000
    cache = MemoryCache(max_bytes=bound, ttl_seconds=60)
    for i in range(5_000):  # ~2.5 MB of answers into a 50 kB cache
        cache.set(f"key-{i}", answer(f"answer number {i} " * (i % 40)))
        assert cache.size_bytes <= bound
    assert 0 < len(cache) < 5_000
    assert await cache.get("key-4999") is not None
    assert await cache.get("key-0") is None
    # the accounting matches what is actually held
    held = sum(len(key) + len(blob) + ENTRY_OVERHEAD_BYTES for key, (_, blob) in cache._entries.items())
    assert held == cache.size_bytes


async def test_least_recently_used_is_evicted_first() -> None:
    size = entry_size("a", "x")
    cache = MemoryCache(max_bytes=3 * size, ttl_seconds=60)
    for key in ("a", "b", "c"):
        cache.set(key, answer("x"))
    assert await cache.get("a") is not None  # a is now the most recently used: b goes first
    cache.set("d", answer("x"))
    assert [await cache.get(key) is not None for key in "abcd"] == [True, False, True, True]
    cache.set("e", answer("x"))  # the reads above, in order a, c, d, left a as the least recently used
    assert [await cache.get(key) is not None for key in "acde"] == [False, True, True, True]


async def test_overwriting_a_key_keeps_the_accounting() -> None:
    cache = MemoryCache(max_bytes=100_000, ttl_seconds=60)
    cache.set("k", answer("short"))
    cache.set("k", answer("a much longer answer than before"))
    assert len(cache) == 1
    assert cache.size_bytes == entry_size("k", "a much longer answer than before")
    assert await cache.get("k") == answer("a much longer answer than before")


async def test_an_entry_larger_than_the_bound_is_not_stored_and_evicts_nothing() -> None:
    cache = MemoryCache(max_bytes=2_000, ttl_seconds=60)
    cache.set("small", answer("x"))
    cache.set("huge", answer(random.Random(0).randbytes(4_000).hex()))  # does not deflate below the bound
    assert await cache.get("huge") is None
    assert await cache.get("small") is not None


async def test_entries_expire_after_the_ttl() -> None:
    clock = Clock()
    cache = MemoryCache(max_bytes=100_000, ttl_seconds=300, clock=clock)
    cache.set("k", answer("hi"))
    clock.now += 299.9
    assert await cache.get("k") is not None
    clock.now += 0.1
    assert await cache.get("k") is None
    assert len(cache) == 0 and cache.size_bytes == 0


async def test_a_ttl_of_zero_disables_storing() -> None:
    cache = MemoryCache(max_bytes=100_000, ttl_seconds=0)
    cache.set("k", answer("hi"))
    assert await cache.get("k") is None
    await cache.drain()


async def test_a_corrupt_entry_is_a_counted_miss() -> None:
    cache = MemoryCache(max_bytes=100_000, ttl_seconds=60)
    cache.set("k", answer("hi"))
    expires_at, blob = cache._entries["k"]
    cache._entries["k"] = (expires_at, b"?" + blob[1:])  # an unknown format tag
    assert await cache.get("k") is None
    assert cache.errors == 1
    assert len(cache) == 0 and cache.size_bytes == 0
