"""The one interface every response-cache backend implements, so the pipeline never knows which it has."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, Protocol

# Why a backend call failed; "corrupt" is an unreadable entry, "dropped" a write refused for back-pressure.
ErrorKind = Literal["timeout", "unavailable", "error", "corrupt", "dropped"]
ErrorCallback = Callable[[ErrorKind], None]


class ResponseCache(Protocol):
    """Completed ``chat.completion`` objects by cache key (see ``keys.cache_key``).

    Neither method raises for a backend failure: the cache is an optimisation, so a failure is
    a miss (``get``) or a skipped write (``set``). ``set`` never waits on I/O, so the request
    path can call it after answering; ``drain`` waits for the writes it started.
    """

    async def get(self, key: str) -> dict[str, Any] | None: ...

    def set(self, key: str, completion: dict[str, Any]) -> None: ...

    async def drain(self) -> None: ...
