"""The process's Redis client and the key prefix that every Redis key and channel starts with.

``REDIS_PREFIX`` lets several gateways (or test runs) share one Redis without seeing each other.
redis-py is imported only once a client is made: it costs ~200 ms of start-up (it pulls in the
OpenTelemetry metrics SDK), which an embedded gateway, without ``REDIS_URL``, has no use for.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PrefixedRedis:
    """An asyncio Redis client (bytes in, bytes out) plus the prefix for every key and channel."""

    client: Redis
    prefix: str

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)


# A burst of concurrent requests waits for a pooled connection instead of failing: redis-py's plain
# pool raises MaxConnectionsError past 100 connections, which admission would report as Redis down (503).
MAX_CONNECTIONS = 50
POOL_WAIT_SECONDS = 5.0  # a backstop: callers bound each command with their own, shorter timeout


@cache
def redis_errors() -> tuple[type[Exception], ...]:
    """``(RedisError, OSError)``: what a failing Redis call raises, for ``except redis_errors():``.

    A function rather than a constant so that importing this module does not import redis-py; an
    ``except`` clause evaluates it only while an exception is on its way.
    """
    from redis.exceptions import RedisError

    return (RedisError, OSError)


def connect(url: str, prefix: str, *, caller_bounded: bool = False) -> PrefixedRedis:
    """A client with its own pool.

    ``caller_bounded``: every command its users send is already bounded by their own ``asyncio.timeout``
    (the limits, the cache), so redis-py's socket timeout is left off: with one, redis-py wraps each
    write in ``wait_for`` (a task per command) and each read in a second timeout, ~25 us a round trip.
    A cancelled read still drops its connection (redis-py disconnects on any exception mid-read).
    """
    from redis.asyncio import BlockingConnectionPool, Redis

    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=POOL_WAIT_SECONDS,
        socket_connect_timeout=2.0,
        socket_timeout=None if caller_bounded else 5.0,
        health_check_interval=10,  # also pings an idle pub/sub connection, so a dead one is noticed
        retry_on_timeout=True,
    )
    return PrefixedRedis(Redis.from_pool(pool), prefix)  # from_pool: closing the client closes the pool


@asynccontextmanager
async def open_redis(url: str, prefix: str) -> AsyncIterator[PrefixedRedis]:
    """A client for the process; an unreachable Redis is logged, not fatal (users degrade gracefully)."""
    redis = connect(url, prefix)
    try:
        try:
            await redis.client.ping()
        except redis_errors() as exc:
            log.warning("redis is not reachable at start-up: %s", type(exc).__name__)
        yield redis
    finally:
        await redis.client.aclose()
