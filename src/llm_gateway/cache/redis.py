"""The shared response cache on Redis, fail-open: a slow or dead Redis costs one short timeout, then nothing.

Every command is bounded by ``timeout_seconds`` (tens of milliseconds). A failure is a miss or a
skipped write, is counted, and opens a circuit: for ``open_for_seconds`` no command is sent at all,
then one probe is let through (half-open) and its success closes the circuit again::

    closed --failure--> open --open_for_seconds--> half-open --probe ok--> closed
                         ^                              |
                         +--------probe fails-----------+
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from llm_gateway.cache.base import ErrorCallback, ErrorKind
from llm_gateway.cache.entry import decode_entry, encode_entry

if TYPE_CHECKING:  # redis-py itself only once a client exists (it is slow to import)
    from redis.asyncio import Redis

    from llm_gateway.store.resp import PipelinedRedis

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
Admission = Literal["closed", "probe"]


class Circuit:
    """Whether Redis may be tried now; at most one probe at a time once the open period has passed."""

    def __init__(self, *, open_for_seconds: float, clock: Callable[[], float]) -> None:
        self.open_for_seconds = open_for_seconds
        self._clock = clock
        self._open_until: float | None = None
        self._probing = False

    @property
    def is_open(self) -> bool:
        """True while calls are refused: within the open period, or while the probe is in flight."""
        return self._open_until is not None and (self._probing or self._clock() < self._open_until)

    def admit(self) -> Admission | None:
        if self._open_until is None:
            return "closed"
        if self.is_open:
            return None
        self._probing = True
        return "probe"

    def succeeded(self, admission: Admission) -> None:
        # Only the probe closes the circuit: a call admitted before the failure proves nothing.
        if admission == "probe":
            self._open_until, self._probing = None, False

    def failed(self) -> bool:
        """Open (again) from now; True when this failure is what opened a closed circuit."""
        opened = self._open_until is None
        self._open_until, self._probing = self._clock() + self.open_for_seconds, False
        return opened

    def abandoned(self, admission: Admission) -> None:
        """The call was cancelled by its caller: it proved nothing, so let the next call probe."""
        if admission == "probe":
            self._probing = False


def error_kind(exc: BaseException) -> ErrorKind:
    """Map what redis-py or asyncio raised to the kind counted in metrics."""
    from redis import exceptions as redis_errors

    if isinstance(exc, TimeoutError | redis_errors.TimeoutError):
        return "timeout"
    if isinstance(exc, redis_errors.ConnectionError | OSError):
        return "unavailable"
    return "error"


class RedisCache:
    """Answers in Redis under ``prefix + key`` with a TTL, shared by every gateway process.

    The client must return bytes (``decode_responses=False``). Counters for metrics: ``errors``
    (failed commands and unreadable entries) and ``dropped_writes`` (writes refused because
    ``max_pending_writes`` were already in flight); ``on_error(kind)`` is called for each.
    """

    def __init__(
        self,
        client: Redis | PipelinedRedis,
        *,
        prefix: str,
        ttl_seconds: float,
        timeout_seconds: float = 0.05,
        open_for_seconds: float = 5.0,
        max_pending_writes: int = 64,
        on_error: ErrorCallback | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self.prefix = prefix
        self.ttl_seconds = ttl_seconds
        self.timeout_seconds = timeout_seconds
        self.max_pending_writes = max_pending_writes
        self._on_error = on_error
        self._circuit = Circuit(open_for_seconds=open_for_seconds, clock=clock)
        self._pending: set[asyncio.Task[bool]] = set()  # strong references: the loop keeps only weak ones
        self.errors = 0
        self.dropped_writes = 0

    @property
    def circuit_open(self) -> bool:
        return self._circuit.is_open

    @property
    def pending_writes(self) -> int:
        return len(self._pending)

    async def get(self, key: str) -> dict[str, Any] | None:
        """The stored answer, or None on a miss, a Redis failure, or while the circuit is open."""
        name = self.prefix + key
        blob = await self._guarded(lambda: self._client.get(name))
        if blob is None:
            return None
        completion = decode_entry(blob) if isinstance(blob, bytes) else None
        if completion is None:
            self._report("corrupt")
        return completion

    def set(self, key: str, completion: dict[str, Any]) -> None:
        """Schedule the write in the background and return at once; it is skipped while the circuit is open.

        The answer is encoded here, so later changes to ``completion`` do not reach the cache.
        Must be called from the event loop's thread.
        """
        if self.ttl_seconds <= 0 or self._circuit.is_open:
            return
        if len(self._pending) >= self.max_pending_writes:
            self.dropped_writes += 1
            self._report("dropped", counted=False)
            return
        task = asyncio.get_running_loop().create_task(self._write(key, encode_entry(completion)))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def put(self, key: str, completion: dict[str, Any]) -> bool:
        """Write and wait (still bounded by the timeout); True when Redis stored it."""
        if self.ttl_seconds <= 0:
            return False
        return await self._write(key, encode_entry(completion))

    async def drain(self) -> None:
        """Wait for the background writes in flight (shutdown, tests)."""
        while self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    async def _write(self, key: str, blob: bytes) -> bool:
        name, ttl_ms = self.prefix + key, max(1, round(self.ttl_seconds * 1000))
        return await self._guarded(lambda: self._client.set(name, blob, px=ttl_ms)) is not None

    async def _guarded(self, command: Callable[[], Awaitable[_T]]) -> _T | None:
        """Run one Redis command within the timeout and the circuit; any failure is None, never an exception."""
        admission = self._circuit.admit()
        if admission is None:
            return None
        try:
            async with asyncio.timeout(self.timeout_seconds):
                result = await command()
        except asyncio.CancelledError:
            self._circuit.abandoned(admission)
            raise
        # The fail-open boundary: whatever Redis or its client raises must not fail a request.
        except Exception as exc:
            self._failed(error_kind(exc), exc)
            return None
        self._circuit.succeeded(admission)
        return result

    def _failed(self, kind: ErrorKind, exc: BaseException) -> None:
        if self._circuit.failed():
            logger.warning(
                "cache: Redis %s (%s); not trying it for %.1fs",
                kind,
                type(exc).__name__,
                self._circuit.open_for_seconds,
            )
        self._report(kind)

    def _report(self, kind: ErrorKind, *, counted: bool = True) -> None:
        if counted:
            self.errors += 1
        if self._on_error is not None:
            self._on_error(kind)
