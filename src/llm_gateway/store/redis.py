"""The process's Redis client and the key prefix that every Redis key and channel starts with.

``REDIS_PREFIX`` lets several gateways (or test runs) share one Redis without seeing each other.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError

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


def connect(url: str, prefix: str) -> PrefixedRedis:
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=POOL_WAIT_SECONDS,
        socket_connect_timeout=2.0,
        socket_timeout=5.0,
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
        except (RedisError, OSError) as exc:
            log.warning("redis is not reachable at start-up: %s", type(exc).__name__)
        yield redis
    finally:
        await redis.client.aclose()
