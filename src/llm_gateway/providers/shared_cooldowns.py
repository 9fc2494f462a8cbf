"""Cooldowns shared by every gateway process through Redis: a deployment that fails ``COOLDOWN_FAILURES`` times
in a row across the fleet is skipped by every process for ``COOLDOWN_SECONDS``.

Routing never waits for Redis: ``cooling()`` reads this process's copy of the fleet's state. A failure, and a
success that ends a streak, is queued and sent by a background task, each batch in one pipelined round trip; a
Lua script keeps the streak, starts the cooldown at the threshold and publishes the outcome, which every
process, this one included, applies to its copy as it arrives. The copy is reloaded whole each time the
subscription starts, so what was published while a process was away is not missed. How stale a copy can be:
a publish's latency while subscribed (milliseconds); while Redis is unreachable, the in-process rule only.
That rule (``Cooldowns``) always holds as well: a deployment failing here is cooled here, whatever the fleet.
Durations travel as milliseconds left, counted on Redis's clock, so the processes' clocks need not agree.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from llm_gateway.providers.router import Cooldowns
from llm_gateway.store.redis import PrefixedRedis, redis_errors

if TYPE_CHECKING:
    from redis.asyncio.client import PubSub

log = logging.getLogger(__name__)

MAX_QUEUED = 10_000  # events waiting for Redis; past it the oldest go (a cooldown is an optimisation)
REDIS_TIMEOUT_SECONDS = 1.0  # one batch's round trip, off the request path
STATE_TTL_SECONDS = 86_400  # streaks and cooldowns of deployments nobody uses any more fade away

# KEYS: streaks hash, cooldowns hash. ARGV: deployment, threshold, cooldown ms, channel, state ttl.
_FAILED = """
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('EXPIRE', KEYS[1], ARGV[5])
if n < tonumber(ARGV[2]) then
  redis.call('PUBLISH', ARGV[4], 'streak ' .. n .. ' ' .. ARGV[1])
  return n
end
redis.call('HDEL', KEYS[1], ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[2], ARGV[1], now + tonumber(ARGV[3]))
redis.call('EXPIRE', KEYS[2], ARGV[5])
redis.call('PUBLISH', ARGV[4], 'cool ' .. ARGV[3] .. ' ' .. ARGV[1])
return 0
"""
# KEYS: streaks hash, cooldowns hash. ARGV: deployment, channel.
_SUCCEEDED = """
local ended = redis.call('HDEL', KEYS[1], ARGV[1]) + redis.call('HDEL', KEYS[2], ARGV[1])
if ended > 0 then
  redis.call('PUBLISH', ARGV[2], 'clear 0 ' .. ARGV[1])
end
return ended
"""
# KEYS: streaks hash, cooldowns hash. -> {kind, value, deployment, ...}: every streak, every cooldown with its ms left.
_SNAPSHOT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
local streaks = redis.call('HGETALL', KEYS[1])
for i = 1, #streaks, 2 do
  table.insert(out, 'streak'); table.insert(out, streaks[i + 1]); table.insert(out, streaks[i])
end
local cooling = redis.call('HGETALL', KEYS[2])
for i = 1, #cooling, 2 do
  local left = tonumber(cooling[i + 1]) - now
  if left > 0 then
    table.insert(out, 'cool'); table.insert(out, tostring(left)); table.insert(out, cooling[i])
  end
end
return out
"""


class SharedCooldowns(Cooldowns):
    """``Cooldowns`` whose streaks and cooldowns are also the fleet's, through Redis; ``start()`` and ``aclose()``."""

    def __init__(
        self, failures: int, seconds: float, redis: PrefixedRedis, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(failures, seconds, clock)
        self._redis = redis
        self._keys = [redis.key("cooldown", "streaks"), redis.key("cooldown", "until")]
        self._channel = redis.key("cooldown", "events")
        self._fleet_until: dict[str, float] = {}  # deployment -> end of its fleet cooldown, on ``clock``
        self._fleet_streak: dict[str, int] = {}  # deployment -> failures in a row across the fleet, as last heard
        self._events: deque[tuple[bool, str]] = deque(maxlen=MAX_QUEUED)  # (failed, deployment)
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._failed_script = redis.client.register_script(_FAILED)
        self._succeeded_script = redis.client.register_script(_SUCCEEDED)
        self._snapshot_script = redis.client.register_script(_SNAPSHOT)
        self._failures_of_redis: tuple[type[BaseException], ...] = (*redis_errors(), TimeoutError)
        self.sharing: bool | None = None  # whether the last batch reached Redis (logged when it changes)
        self.subscribed = False  # whether this process hears the fleet (its copy is current)

    # -- the request path: dictionaries only ------------------------------------------------------

    def cooling(self, key: str) -> bool:
        until = self._fleet_until.get(key)
        return (until is not None and self._clock() < until) or super().cooling(key)

    def failed(self, key: str) -> None:
        super().failed(key)
        self._send(True, key)

    def succeeded(self, key: str) -> None:
        # Only a success that may end a streak is sent: here or in the fleet, as far as this process knows.
        streak = key in self._failures or key in self._until or key in self._fleet_streak or key in self._fleet_until
        super().succeeded(key)
        if streak:
            self._fleet_streak.pop(key, None)
            self._fleet_until.pop(key, None)
            self._send(False, key)

    def _send(self, failed: bool, key: str) -> None:
        self._events.append((failed, key))
        self._wake.set()

    # -- the background: writer and listener ------------------------------------------------------

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._write(), name="cooldowns-writer"),
            asyncio.create_task(self._listen(), name="cooldowns-listener"),
        ]

    async def aclose(self) -> None:
        """Send what is queued (bounded by one round trip's timeout), stop listening."""
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._events:
            await self._flush()

    async def _write(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._flush()

    async def _flush(self) -> None:
        """Every queued event in one pipelined round trip; a batch Redis did not take is dropped, logged once."""
        batch = list(self._events)
        self._events.clear()
        if not batch:
            return
        try:
            async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                async with self._redis.client.pipeline(transaction=False) as pipe:
                    for failed, key in batch:
                        await self._queue_event(pipe, failed, key)
                    await pipe.execute()
        except self._failures_of_redis as exc:
            if self.sharing is not False:
                log.warning("cooldowns not shared: Redis failed (%s); this process keeps its own", type(exc).__name__)
            self.sharing = False
            return
        if not self.sharing:
            self.sharing = True
            log.info("cooldowns shared through Redis")

    async def _queue_event(self, pipe: Any, failed: bool, key: str) -> None:
        if failed:
            args: list[str | int] = [key, self._threshold, int(self._seconds * 1000), self._channel, STATE_TTL_SECONDS]
            await self._failed_script(keys=self._keys, args=args, client=pipe)
        else:
            await self._succeeded_script(keys=self._keys, args=[key, self._channel], client=pipe)

    async def _listen(self) -> None:
        delay = 0.1
        while True:
            pubsub: PubSub = self._redis.client.pubsub()
            try:
                await pubsub.subscribe(self._channel)
                await self._load()  # after subscribing: nothing published in between is missed
                if not self.subscribed:
                    log.info("listening to shared cooldowns")
                self.subscribed, delay = True, 0.1
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message["type"] == "message":
                        self._apply(message["data"])
            except self._failures_of_redis as exc:
                if self.subscribed:
                    log.warning("lost the shared cooldowns (%s); this process keeps its own", type(exc).__name__)
                self.subscribed = False
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                with contextlib.suppress(*redis_errors()):
                    await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]  # typed from redis 8.2 on

    async def _load(self) -> None:
        """The fleet's whole state, replacing this process's copy."""
        async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
            flat = await self._snapshot_script(keys=self._keys)
        self._fleet_until, self._fleet_streak = {}, {}
        for index in range(0, len(flat) - 2, 3):
            self._record(_text(flat[index]), int(flat[index + 1]), _text(flat[index + 2]))

    def _apply(self, data: bytes) -> None:
        kind, value, key = data.decode().split(" ", 2)
        self._record(kind, int(value), key)

    def _record(self, kind: str, value: int, key: str) -> None:
        if kind == "streak":
            self._fleet_streak[key] = value
        elif kind == "cool":
            self._fleet_streak.pop(key, None)
            self._fleet_until[key] = self._clock() + value / 1000
        else:  # "clear": a success ended the streak
            self._fleet_streak.pop(key, None)
            self._fleet_until.pop(key, None)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
