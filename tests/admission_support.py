"""Fixtures for admission tests that run against both backends: the in-process one and Redis (same assertions).

``make_limits`` builds backends of the test's kind; Redis ones share a per-test key prefix in the session's
Redis and are cleaned up. ``Ledger`` stands in for the ledger's month totals (tokens, nano-dollars).
``redis_clients`` and ``limits_prefix`` are for tests of ``RedisLimits`` alone.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from llm_gateway.limits import Admission, MemoryLimits, RedisLimits, ScopeKind

Factory = Callable[..., Admission]
ClientFactory = Callable[[str], Redis]


class Ledger:
    """A stand-in for ``UsageLedger.month_totals``: (tokens, nano-dollars) per (kind, subject, month), and who asked."""

    def __init__(self, totals: dict[tuple[ScopeKind, str, str], tuple[int, int]] | None = None) -> None:
        self.totals = dict(totals or {})
        self.calls: list[tuple[ScopeKind, str, str]] = []

    async def __call__(self, kind: ScopeKind, subject: str, month: str) -> tuple[int, int]:
        self.calls.append((kind, subject, month))
        return self.totals.get((kind, subject, month), (0, 0))

    def add(self, kind: ScopeKind, subject: str, month: str, tokens: int, nano: int = 0) -> None:
        """A ledger row written: what a settled request charged."""
        used, spent = self.totals.get((kind, subject, month), (0, 0))
        self.totals[(kind, subject, month)] = (used + tokens, spent + nano)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
async def make_limits(request: pytest.FixtureRequest) -> AsyncIterator[Factory]:
    """Build backends of one kind; Redis ones share a per-test key prefix (and are cleaned up)."""
    clients: list[Redis] = []
    prefix = f"test:limits:{uuid.uuid4().hex[:12]}:"

    def make(**kwargs: Any) -> Admission:
        if request.param == "memory":
            return MemoryLimits(**kwargs)
        client = Redis.from_url(request.getfixturevalue("redis_url"))
        clients.append(client)
        # Correctness, not latency, is under test: a loaded CI machine must not turn into a refusal.
        kwargs.setdefault("timeout_seconds", 5.0)
        return RedisLimits(client, prefix, **kwargs)

    yield make
    for client in clients:
        async for key in client.scan_iter(match=f"{prefix}*"):
            await client.delete(key)
        await client.aclose()


@pytest.fixture
async def redis_clients() -> AsyncIterator[ClientFactory]:
    """Redis clients for a URL, closed after the test."""
    made: list[Redis] = []

    def make(url: str) -> Redis:
        client = Redis.from_url(url, socket_timeout=2, socket_connect_timeout=1)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


@pytest.fixture
async def limits_prefix(redis_url: str) -> AsyncIterator[str]:
    """A key prefix of the test's own in the session's Redis; its keys are deleted after the test."""
    value = f"test:limits:{uuid.uuid4().hex[:12]}:"
    yield value
    cleaner = Redis.from_url(redis_url)
    async for key in cleaner.scan_iter(match=f"{value}*"):
        await cleaner.delete(key)
    await cleaner.aclose()
