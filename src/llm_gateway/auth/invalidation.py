"""Cache invalidation across gateway processes: revoked keys, changed users and teams, within a second.

With Redis, every process subscribes to ``<prefix>auth:invalidate`` and evicts what a message
names (``key:<id>``, ``user:<id>`` or ``team:<id>``); whoever changes the database publishes. While the
subscription is down a message could be missed, so cache entries are then trusted for at most
``UNHEARD_TTL_SECONDS``, and the whole cache is dropped when the subscription comes back.
Without Redis (one process), changes evict locally and the same short TTL covers the CLI.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import suppress
from typing import TYPE_CHECKING

from llm_gateway.store.redis import PrefixedRedis, redis_errors

if TYPE_CHECKING:
    from redis.asyncio.client import PubSub

log = logging.getLogger(__name__)

UNHEARD_TTL_SECONDS = 1.0
_CHANNEL = "auth:invalidate"


def channel(redis: PrefixedRedis) -> str:
    return redis.key(_CHANNEL)


async def publish(redis: PrefixedRedis, message: str) -> None:
    """Tell every subscribed process to forget what ``message`` names (used by the CLI too)."""
    await redis.client.publish(channel(redis), message.encode())


class Invalidations:
    """Delivers ``key:<id>`` / ``user:<id>`` / ``team:<id>`` messages to ``on_message`` here and in every process."""

    def __init__(
        self,
        redis: PrefixedRedis | None,
        on_message: Callable[[str], None],
        on_reconnect: Callable[[], None],
    ) -> None:
        self._redis = redis
        self._on_message = on_message
        self._on_reconnect = on_reconnect
        self._listening = False
        self._task: asyncio.Task[None] | None = None

    @property
    def listening(self) -> bool:
        """True while this process is sure to hear every invalidation."""
        return self._listening

    async def start(self) -> None:
        """Subscribe before the server takes traffic, so no revocation falls between start-up and listening."""
        if self._redis is None:
            return
        pubsub: PubSub | None = self._redis.client.pubsub()
        try:
            await self._subscribe(pubsub)
        except redis_errors() as exc:
            log.warning("cannot subscribe to key revocations yet (%s); retrying", type(exc).__name__)
            await _close(pubsub)
            pubsub = None
        self._task = asyncio.create_task(self._listen(pubsub), name="auth-invalidations")

    async def publish(self, message: str) -> None:
        """Evict here at once, then tell the others; a Redis failure is raised to the caller."""
        self._on_message(message)
        if self._redis is not None:
            await publish(self._redis, message)

    async def _subscribe(self, pubsub: PubSub | None) -> None:
        assert self._redis is not None and pubsub is not None
        await pubsub.subscribe(channel(self._redis))
        # Wait for Redis to confirm: from then on every publish reaches us.
        while (reply := await pubsub.get_message(timeout=2.0)) is None or reply["type"] != "subscribe":
            if reply is None:
                raise TimeoutError("no subscribe confirmation from redis")
        self._listening = True

    async def _listen(self, pubsub: PubSub | None) -> None:
        delay = 0.1
        try:
            while True:
                try:
                    if pubsub is None:
                        pubsub = self._redis.client.pubsub()  # type: ignore[union-attr]
                        await self._subscribe(pubsub)
                        self._on_reconnect()  # messages may have been missed while we were away
                        log.info("listening to key revocations again")
                    delay = 0.1
                    await self._pump(pubsub)
                except redis_errors() as exc:
                    if self._listening:
                        log.warning("lost the key revocation channel (%s); caching for 1 s", type(exc).__name__)
                    self._listening = False
                    if pubsub is not None:
                        await _close(pubsub)
                    pubsub = None
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
        finally:
            if pubsub is not None:
                await _close(pubsub)

    async def _pump(self, pubsub: PubSub) -> None:
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None and message["type"] == "message":
                self._deliver(message["data"])

    def _deliver(self, data: bytes) -> None:
        try:
            self._on_message(data.decode())
        except Exception:  # a bad message must not stop the listener
            log.exception("could not apply an invalidation message")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        self._listening = False


async def _close(pubsub: PubSub | None) -> None:
    if pubsub is not None:
        with suppress(*redis_errors()):
            await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]  # typed from redis 8.2 on
