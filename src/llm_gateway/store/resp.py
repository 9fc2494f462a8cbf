"""A pipelined Redis client for the hot path: one connection, every command in flight at once, replies in order.

Why: through redis-py a round trip costs ~70 us of CPU on the loop (a pool checkout under an
``asyncio.Condition``, command packing, two stacked timeouts, a pure-Python parser, observability
hooks), and each of the 3-4 round trips a request makes pays it. Redis answers a connection's
commands in the order they came, so one connection carries every concurrent request's commands:
a command is a write into a buffer (flushed once per loop iteration: one ``send`` for every command
of that iteration) and a future that the reply resolves. There is no pool to bound, and a caller's
timeout (``asyncio.timeout`` around the call) only abandons its future: the reply, when it comes,
is dropped, and the connection and the other callers' commands are untouched.

It speaks what the limits and the cache send (``EVALSHA``/``EVAL`` through ``register_script``,
``GET``, ``SET ... PX``, ``HMGET``), over TCP (``redis://``: password, user, database);
``connect_pipelined`` hands back redis-py's client for any other URL (TLS, a Unix socket).
Failures raise redis-py's exceptions (``ConnectionError``, ``ResponseError``), so callers map them
as before. A connection that has answered nothing for ``stall_seconds`` while replies are due (a
frozen or partitioned Redis) is closed, failing what is in flight; the next command reconnects.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import deque
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redis.asyncio import Redis

Reply = Any  # int | bytes | None | list[Reply] | an exception instance (an error reply)
_CRLF = b"\r\n"
# The most reply bytes held unparsed: above any cache entry (answers are held to MAX_RESPONSE_BYTES, 64 MiB by
# default); a Redis that sends more (or announces a bulk string that never ends) loses its connection.
MAX_BUFFERED_BYTES = 256 * 1024 * 1024


def pack(args: tuple[Any, ...]) -> bytes:
    """One command in RESP: an array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, str):
            arg = arg.encode()
        elif isinstance(arg, int):
            arg = b"%d" % arg
        out.append(b"$%d\r\n%b\r\n" % (len(arg), arg))
    return b"".join(out)


class _Incomplete(Exception):
    """The buffer ends inside a reply: wait for more bytes."""


def parse(buffer: bytes | bytearray, pos: int) -> tuple[Reply, int]:
    """One RESP2 reply starting at ``pos``, and where the next starts; ``_Incomplete`` if it is not all there."""
    end = buffer.find(_CRLF, pos)
    if end < 0:
        raise _Incomplete
    kind, line = buffer[pos], buffer[pos + 1 : end]
    if kind == 58:  # ':' integer
        return int(line), end + 2
    if kind == 36:  # '$' bulk string
        length = int(line)
        if length < 0:
            return None, end + 2
        stop = end + 2 + length
        if len(buffer) < stop + 2:
            raise _Incomplete
        return bytes(buffer[end + 2 : stop]), stop + 2
    if kind == 42:  # '*' array
        count = int(line)
        if count < 0:
            return None, end + 2
        items = []
        pos = end + 2
        for _ in range(count):
            item, pos = parse(buffer, pos)
            items.append(item)
        return items, pos
    if kind == 43:  # '+' simple string
        return bytes(line), end + 2
    if kind == 45:  # '-' error
        return _error(bytes(line).decode("utf-8", "replace")), end + 2
    raise _protocol_error(f"unexpected RESP type byte {kind!r}")


def _error(message: str) -> Exception:
    from redis import exceptions

    if message.startswith("NOSCRIPT"):
        return exceptions.NoScriptError(message)
    if message.startswith("READONLY"):
        return exceptions.ReadOnlyError(message)
    if message.startswith("LOADING"):
        return exceptions.BusyLoadingError(message)
    return exceptions.ResponseError(message)


def _protocol_error(message: str) -> Exception:
    from redis.exceptions import ConnectionError as RedisConnectionError

    return RedisConnectionError(message)


class _Connection(asyncio.Protocol):
    """One socket: commands out through a buffer flushed once per loop iteration, replies matched in order."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_buffered: int = MAX_BUFFERED_BYTES) -> None:
        self._loop = loop
        self._max_buffered = max_buffered
        self._transport: asyncio.Transport | None = None
        self._out: list[bytes] = []
        self._in = bytearray()
        self._waiting: deque[asyncio.Future[Reply]] = deque()
        self.closed: BaseException | None = None
        self.progress = time.monotonic()  # last reply, or when the first command was queued on an idle connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # a TCP transport (uvloop's is not a subclass)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or _protocol_error("Redis closed the connection"))

    @property
    def pending(self) -> int:
        return len(self._waiting)

    def send(self, command: bytes) -> asyncio.Future[Reply]:
        if self.closed is not None:
            raise self.closed
        future = self._loop.create_future()
        if not self._waiting:
            self.progress = time.monotonic()
        self._waiting.append(future)
        if not self._out:
            self._loop.call_soon(self._flush)
        self._out.append(command)
        return future

    def _flush(self) -> None:
        if self._transport is not None and self._out and self.closed is None:
            self._transport.write(b"".join(self._out))
        self._out.clear()

    def data_received(self, data: bytes) -> None:
        buffer = self._in
        buffer += data
        if len(buffer) > self._max_buffered:
            self.close(_protocol_error(f"a reply from Redis over {self._max_buffered} bytes"))
            return
        pos = 0
        try:
            while pos < len(buffer):
                reply, pos = parse(buffer, pos)
                self.progress = time.monotonic()
                future = self._waiting.popleft()
                if not future.done():  # a caller that timed out or was cancelled: its reply is dropped
                    if isinstance(reply, Exception):
                        future.set_exception(reply)
                    else:
                        future.set_result(reply)
        except _Incomplete:
            pass
        except Exception as exc:  # a reply with no command waiting for it, or bytes that are not RESP
            self.close(_protocol_error(f"unreadable reply from Redis: {exc!r}"))
            return
        del buffer[:pos]

    def close(self, exc: BaseException) -> None:
        self._fail(exc)
        if self._transport is not None:
            self._transport.abort()

    def _fail(self, exc: BaseException) -> None:
        if self.closed is None:
            from redis.exceptions import ConnectionError as RedisConnectionError

            self.closed = exc if isinstance(exc, RedisConnectionError) else RedisConnectionError(str(exc) or repr(exc))
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_exception(self.closed)
                future.exception()  # retrieved: an abandoned future must not log "never retrieved"


class PipelinedRedis:
    """The subset of redis-py's asyncio client that the limits and the cache use, over one pipelined connection."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        connect_timeout: float = 2.0,
        stall_seconds: float = 2.0,
    ) -> None:
        self._address = (host, port)
        self._hello: list[bytes] = []
        if password is not None:
            self._hello.append(pack(("AUTH", username, password) if username else ("AUTH", password)))
        if db:
            self._hello.append(pack(("SELECT", db)))
        self._connect_timeout = connect_timeout
        self._stall_seconds = stall_seconds
        self._connection: _Connection | None = None
        self._connecting: asyncio.Future[_Connection] | None = None

    async def execute_command(self, *args: Any) -> Reply:
        connection = self._connection
        if connection is None or connection.closed is not None:
            connection = await self._connect()
        elif connection.pending and time.monotonic() - connection.progress > self._stall_seconds:
            connection.close(_protocol_error(f"Redis answered nothing for {self._stall_seconds:g} s"))
            connection = await self._connect()
        return await connection.send(pack(args))

    async def _connect(self) -> _Connection:
        """One connection attempt at a time, however many commands are waiting for it."""
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open())
            self._connecting.add_done_callback(self._connected)
        return await asyncio.shield(self._connecting)

    def _connected(self, attempt: asyncio.Future[_Connection]) -> None:
        self._connecting = None
        if not attempt.cancelled() and attempt.exception() is None:
            self._connection = attempt.result()

    async def _open(self) -> _Connection:
        from redis.exceptions import ConnectionError as RedisConnectionError

        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, connection = await loop.create_connection(lambda: _Connection(loop), *self._address)
                for command in self._hello:
                    await connection.send(command)
        except (OSError, TimeoutError) as exc:
            raise RedisConnectionError(f"Error connecting to Redis at {self._address}: {exc!r}") from exc
        return connection

    # -- what the limits and the cache call ----------------------------------------------------

    async def get(self, name: str) -> bytes | None:
        reply: bytes | None = await self.execute_command("GET", name)
        return reply

    async def set(self, name: str, value: bytes, *, px: int) -> bool | None:
        return await self.execute_command("SET", name, value, "PX", px) is not None or None

    async def hmget(self, name: str, keys: list[str]) -> list[bytes | None]:
        reply: list[bytes | None] = await self.execute_command("HMGET", name, *keys)
        return reply

    def register_script(self, source: str) -> Script:
        return Script(self, source)

    async def aclose(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
        if self._connection is not None:
            self._connection.close(_protocol_error("client closed"))
            self._connection = None


class Script:
    """``EVALSHA``, and ``EVAL`` (which loads it) when Redis does not know the script (a restarted Redis)."""

    def __init__(self, client: PipelinedRedis, source: str) -> None:
        self._client = client
        self._source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def __call__(self, keys: list[str], args: list[str | int]) -> Reply:
        from redis.exceptions import NoScriptError

        try:
            return await self._client.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self._client.execute_command("EVAL", self._source, len(keys), *keys, *args)


def connect_pipelined(url: str) -> PipelinedRedis | Redis:
    """A ``PipelinedRedis`` for a ``redis://`` URL; redis-py's client for anything else (TLS, Unix sockets)."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url)
    if parts.scheme != "redis" or parts.query:
        from llm_gateway.store.redis import connect

        return connect(url, "", caller_bounded=True).client
    path = parts.path.strip("/")
    return PipelinedRedis(
        parts.hostname or "localhost",
        parts.port or 6379,
        db=int(path) if path else 0,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )
