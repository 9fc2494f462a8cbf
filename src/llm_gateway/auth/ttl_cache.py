"""A small in-process cache whose entries expire after a TTL chosen at read time.

The TTL is read per lookup because it depends on whether revocations can currently reach
this process (see ``invalidation.py``). Bounded: the oldest entry goes first when full.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

V = TypeVar("V")


class Missing:
    """The cache has no fresh entry (distinct from a cached ``None``, a remembered "unknown")."""


MISSING = Missing()


class TtlCache(Generic[V]):
    def __init__(self, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: dict[str, tuple[float, V]] = {}
        self._max_entries = max_entries
        self._clock = clock

    def get(self, key: str, ttl: float) -> V | Missing:
        entry = self._entries.get(key)
        if entry is None:
            return MISSING
        stored_at, value = entry
        if self._clock() - stored_at >= ttl:
            del self._entries[key]
            return MISSING
        return value

    def put(self, key: str, value: V) -> None:
        self._entries.pop(key, None)
        if len(self._entries) >= self._max_entries:
            del self._entries[next(iter(self._entries))]  # dicts keep insertion order: the oldest
        self._entries[key] = (self._clock(), value)

    def drop_where(self, predicate: Callable[[V], bool]) -> int:
        doomed = [key for key, (_, value) in self._entries.items() if predicate(value)]
        for key in doomed:
            del self._entries[key]
        return len(doomed)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class CachedLookup(Generic[V]):
    """``TtlCache`` in front of an async loader: one load per key at a time, shared by its waiters.

    ``forget`` bumps a generation counter, so a load that started before an invalidation (and may
    have read the row before the revocation committed) answers its waiters but is not cached.

    When a load fails with one of ``stale_if`` (the store is down), the last value loaded for that key
    in the past ``stale_for`` seconds answers instead: a database outage must not refuse keys that were
    good a moment ago. ``forget``/``clear`` drop those values too, so a revocation heard still holds.
    """

    def __init__(
        self,
        load: Callable[[str], Awaitable[V]],
        ttl: Callable[[], float],
        *,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        stale_if: tuple[type[BaseException], ...] = (),
        stale_for: float = 0.0,
    ) -> None:
        self._load = load
        self._ttl = ttl
        self._cache: TtlCache[V] = TtlCache(max_entries, clock)
        self._last_good: TtlCache[V] = TtlCache(max_entries, clock)
        self._stale_if = stale_if
        self._stale_for = stale_for
        self._pending: dict[str, asyncio.Future[V]] = {}
        self._generation = 0

    async def get(self, key: str) -> V:
        hit = self._cache.get(key, self._ttl())
        if not isinstance(hit, Missing):
            return hit
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._load_and_keep(key, self._generation))
            self._pending[key] = pending
            pending.add_done_callback(lambda done: self._settled(key, done))
        # shield: a caller that goes away must not cancel the load other callers wait for.
        return await asyncio.shield(pending)

    async def _load_and_keep(self, key: str, generation: int) -> V:
        try:
            value = await self._load(key)
        except self._stale_if:
            last = self._last_good.get(key, self._stale_for)
            if isinstance(last, Missing):
                raise
            return last  # answered, not cached: the next request asks the store again
        if generation == self._generation:
            self._cache.put(key, value)
            if self._stale_if:
                self._last_good.put(key, value)
        return value

    def _settled(self, key: str, done: asyncio.Future[V]) -> None:
        if self._pending.get(key) is done:
            del self._pending[key]
        if not done.cancelled():
            done.exception()  # retrieved here, so a failure nobody awaited is not reported as lost

    def forget(self, predicate: Callable[[V], bool]) -> int:
        self._generation += 1
        self._last_good.drop_where(predicate)
        return self._cache.drop_where(predicate)

    def clear(self) -> None:
        self._generation += 1
        self._cache.clear()
        self._last_good.clear()

    def __len__(self) -> int:
        return len(self._cache)
