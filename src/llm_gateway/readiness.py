"""Readiness (``GET /ready``): whether this process's stores answer: the database, and Redis when configured.

Each check is bounded by ``CHECK_TIMEOUT_SECONDS`` and its result kept for ``CACHE_SECONDS``, so probes from
an orchestrator and a load balancer cost nothing; concurrent probes share one round of checks, and a check
still running from an earlier round is waited on again rather than started twice. A reason says what failed
in a few words, never a URL, a host or a credential (an exception's message may hold any of them).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

from sqlalchemy import text

from llm_gateway.store.db import Database

if TYPE_CHECKING:
    from llm_gateway.store.redis import PrefixedRedis

CHECK_TIMEOUT_SECONDS = 1.0
CACHE_SECONDS = 1.0

Check = Callable[[], Awaitable[object]]  # raises when its dependency does not answer


class NotReady(Exception):
    """A check's own reason, safe to show as it is."""


class Readiness:
    """The last round of checks, kept for ``cache_seconds``: ``failures()`` is ``{}`` when ready."""

    def __init__(
        self,
        checks: Mapping[str, Check],
        *,
        timeout: float = CHECK_TIMEOUT_SECONDS,
        cache_seconds: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._checks = dict(checks)
        self._timeout = timeout
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._failures: dict[str, str] = {}
        self._checked_at: float | None = None
        self._round: asyncio.Task[dict[str, str]] | None = None
        self._running: dict[str, asyncio.Task[object]] = {}

    async def failures(self) -> dict[str, str]:
        """``{check: short reason}`` of every check that failed, from a round at most ``cache_seconds`` old."""
        if self._checked_at is not None and self._clock() - self._checked_at < self._cache_seconds:
            return self._failures
        if self._round is None:
            self._round = asyncio.create_task(self._check_all(), name="readiness")
        # Shielded: a probe that hangs up does not cancel the round the others are waiting for.
        return await asyncio.shield(self._round)

    async def _check_all(self) -> dict[str, str]:
        try:
            reasons = await asyncio.gather(*(self._check(name, check) for name, check in self._checks.items()))
            self._failures = {name: reason for name, reason in zip(self._checks, reasons, strict=True) if reason}
            self._checked_at = self._clock()
            return self._failures
        finally:
            self._round = None

    async def _check(self, name: str, check: Check) -> str | None:
        task = self._running.get(name)
        if task is None:
            task = self._running[name] = asyncio.create_task(_run(check), name=f"readiness-{name}")
            task.add_done_callback(lambda ended: self._ended(name, ended))
        done, _ = await asyncio.wait({task}, timeout=self._timeout)
        if not done:
            return f"no answer within {self._timeout:g} s"
        return _reason(task)

    def _ended(self, name: str, task: asyncio.Task[object]) -> None:
        self._running.pop(name, None)
        if not task.cancelled():
            task.exception()  # retrieved: a check that ended after its round gave up on it is not an error

    async def aclose(self) -> None:
        for task in [*self._running.values(), *([self._round] if self._round else [])]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def _run(check: Check) -> object:
    return await check()


def _reason(task: asyncio.Task[object]) -> str | None:
    if task.cancelled():
        return "check cancelled"
    exc = task.exception()
    if exc is None:
        return None
    if isinstance(exc, NotReady):
        return str(exc)
    return f"unreachable ({type(exc).__name__})"


def store_checks(database: Database, redis: PrefixedRedis | None) -> dict[str, Check]:
    """The checks of a gateway: its database (reached and migrated, and answering now), and Redis when configured."""

    async def database_answers() -> None:
        if not database.ready:
            raise NotReady("not reached yet (connecting in the background)")
        async with database.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    checks: dict[str, Check] = {"database": database_answers}
    if redis is not None:
        client = redis.client

        async def redis_answers() -> None:
            await client.ping()

        checks["redis"] = redis_answers
    return checks
