"""The in-process response cache for the embedded mode: an LRU bounded in bytes, entries expiring by TTL."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from llm_gateway.cache.entry import decode_entry, encode_entry

# What an entry costs beyond its key and value bytes (the bytes and str headers, the tuple, the
# OrderedDict's hash slot and link), so that many tiny entries are bounded too. Measured with
# tracemalloc on CPython 3.11 over 50,000 entries: about 250 bytes.
ENTRY_OVERHEAD_BYTES = 256


class MemoryCache:
    """Encoded answers in an OrderedDict, least recently used first; the sum of entry sizes stays <= ``max_bytes``.

    Values are stored encoded (``entry.py``): compact, and every hit returns a fresh dict, so a
    caller that edits its answer cannot change what the next caller gets.
    """

    def __init__(self, *, max_bytes: int, ttl_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_bytes = max_bytes
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()  # key -> (expires at, entry)
        self._bytes = 0
        self.errors = 0  # unreadable entries; kept for parity with RedisCache

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> dict[str, Any] | None:
        found = self._entries.get(key)
        if found is None:
            return None
        expires_at, blob = found
        if self._clock() >= expires_at:
            self._remove(key)
            return None
        self._entries.move_to_end(key)
        completion = decode_entry(blob)
        if completion is None:
            self.errors += 1
            self._remove(key)
        return completion

    def set(self, key: str, completion: dict[str, Any]) -> None:
        """Store now (no I/O); an entry larger than the whole bound, or a TTL <= 0, is not stored."""
        if self.ttl_seconds <= 0:
            return
        blob = encode_entry(completion)
        size = _entry_size(key, blob)
        if size > self.max_bytes:
            return
        if key in self._entries:
            self._remove(key)
        while self._entries and self._bytes + size > self.max_bytes:
            self._remove(next(iter(self._entries)))
        self._entries[key] = (self._clock() + self.ttl_seconds, blob)
        self._bytes += size

    async def drain(self) -> None:
        """Nothing to wait for: writes are synchronous."""

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0

    def _remove(self, key: str) -> None:
        _, blob = self._entries.pop(key)
        self._bytes -= _entry_size(key, blob)


def _entry_size(key: str, blob: bytes) -> int:
    return len(key) + len(blob) + ENTRY_OVERHEAD_BYTES
