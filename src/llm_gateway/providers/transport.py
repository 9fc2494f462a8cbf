"""A pooled HTTP/1.1 client for upstream calls: an ``asyncio.Protocol`` per connection, httptools to parse.

Why not aiohttp here: by measurement (bench/README.md, "The ladder") aiohttp's client costs
200-300 µs of CPU per request, more than half of what the gateway may spend at 2,500 req/s on one
core; this costs a fraction of that. The upstream traffic is narrow: one origin per provider,
``POST`` with a JSON body, a JSON or SSE answer. So this is that and nothing more: keep-alive
connections kept in a LIFO pool with no cap (the gateway must carry the callers' concurrency, not
queue it), Content-Length, chunked and close-delimited bodies, gzip/deflate if an upstream
compresses anyway, TLS through the event loop, one timer per wait.

Failures raise the standard exceptions (``TimeoutError``, ``ConnectionError``) or ``InvalidResponse``;
``providers.http.map_transport_errors`` turns them into the gateway's error tree.
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from collections import deque
from collections.abc import AsyncIterator
from typing import cast
from urllib.parse import urlsplit

import httptools

MAX_BODY_BYTES = 64 * 1024 * 1024  # far above any completion; a bigger body is a broken upstream
# While a stream's reader lags this far behind, stop reading the socket (TCP pushes back on the upstream).
HIGH_WATER_BYTES = 256 * 1024


# The header names upstreams send on every answer, decoded once (the rest are decoded as they come).
_HEADER_NAMES = {
    spelling: name
    for name in ("content-type", "content-length", "transfer-encoding", "content-encoding", "connection", "date")
    for spelling in (name.encode(), name.title().encode())
}


class InvalidResponse(Exception):
    """The upstream's bytes are not a valid HTTP/1.1 response (or one this client will not read)."""


class BodyCut(ConnectionError):
    """The connection closed before the response was whole."""


class UpstreamResponse:
    """One response: status and headers once they have arrived, the body as it arrives."""

    __slots__ = (
        "_buffered",
        "_chunks",
        "_connection",
        "_decoder",
        "_done",
        "_error",
        "content_type",
        "headers",
        "status",
    )

    def __init__(self, connection: _Connection, status: int, headers: dict[str, str]) -> None:
        self._connection = connection
        self.status = status
        self.headers = headers
        self.content_type = headers.get("content-type", "").partition(";")[0].strip().lower()
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._done = False
        self._error: BaseException | None = None
        encoding = headers.get("content-encoding", "identity").lower()
        if encoding in ("gzip", "deflate"):
            self._decoder: zlib._Decompress | None = zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib
        elif encoding == "identity":
            self._decoder = None
        else:
            raise InvalidResponse(f"unsupported content-encoding {encoding!r}")

    async def read(self, limit: int = MAX_BODY_BYTES) -> bytes:
        """The whole body; past ``limit`` bytes, only the first ``limit`` (and the connection is not reused)."""
        connection = self._connection
        while not self._done and self._buffered < limit:
            await connection.wait_for_data()
        if self._error is not None:
            raise self._error
        body = b"".join(self._chunks)
        self._chunks.clear()
        if len(body) > limit:
            self._done, body = False, body[:limit]  # left unread: release() closes the connection
        return body

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive, several network reads joined when they arrived together."""
        connection = self._connection
        while True:
            if self._chunks:
                if len(self._chunks) == 1:
                    chunk = self._chunks.popleft()
                else:
                    chunk = b"".join(self._chunks)
                    self._chunks.clear()
                self._buffered = 0
                connection.resume_reading()
                yield chunk
            elif self._done:
                return
            else:
                await connection.wait_for_data()

    def release(self) -> None:
        """Back to the pool when the body was read whole and the upstream keeps the connection; else closed."""
        self._connection.release(reusable=self._done and self._error is None and not self._chunks)

    # Called by the connection's protocol.
    def _feed(self, data: bytes) -> None:
        if self._decoder is not None:
            data = self._decoder.decompress(data)
        if data:
            self._chunks.append(data)
            self._buffered += len(data)
            if self._buffered > MAX_BODY_BYTES:
                raise InvalidResponse("response body too large")

    def _finish(self) -> None:
        if self._decoder is not None:
            tail = self._decoder.flush()
            if tail:
                self._chunks.append(tail)
        self._done = True

    def _fail(self, error: BaseException) -> None:
        if not self._done and self._error is None:
            self._error = error


class _Connection(asyncio.Protocol):
    """One keep-alive connection: feeds httptools, hands the parsed response to whoever waits for it."""

    def __init__(self, pool: HttpTransport, loop: asyncio.AbstractEventLoop) -> None:
        self._pool = pool
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[None] | None = None
        self._header_names: list[bytes] = []
        self._header_values: list[bytes] = []
        self.response: UpstreamResponse | None = None
        self.received_any = False  # a byte of this request's response has arrived
        self.closed = False
        self.idle_since = 0.0
        self._timeout = 0.0
        self._last_activity = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._error: BaseException | None = None
        self._paused = False
        self._keep_alive = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports are not its subclasses

    def data_received(self, data: bytes) -> None:
        self.received_any = True
        self._last_activity = self._loop.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._abort(InvalidResponse(f"invalid HTTP response: {exc}"))
        except InvalidResponse as exc:
            self._abort(exc)
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        response = self.response
        if response is not None and not response._done:
            if self._close_delimited():
                response._finish()
            else:
                response._fail(BodyCut("the upstream closed the connection mid-answer"))
        elif self._error is None and response is None:
            self._error = BodyCut("the upstream closed the connection before answering")
        self._cancel_timer()
        self._wake()
        self._pool.forget(self)

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_names.append(name)
        self._header_values.append(value)

    def on_headers_complete(self) -> None:
        headers: dict[str, str] = {}
        for raw_name, raw_value in zip(self._header_names, self._header_values, strict=True):
            name = _HEADER_NAMES.get(raw_name) or raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        self.response = UpstreamResponse(self, self._parser.get_status_code(), headers)

    def on_body(self, body: bytes) -> None:
        assert self.response is not None
        self.response._feed(body)
        if not self._paused and self.response._buffered > HIGH_WATER_BYTES and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()

    def on_message_complete(self) -> None:
        assert self.response is not None
        self._keep_alive = self._parser.should_keep_alive()  # asked now: the parser forgets once it reads on
        self.response._finish()

    # Used by the pool and the response.
    def send(self, data: bytes, timeout: float) -> None:
        """Write a request. A connection found closing (its end not yet seen) raises ``BodyCut`` with no byte
        received, which ``post`` answers with a new connection; so does a write the transport refuses."""
        transport = self._transport
        assert transport is not None
        self._header_names.clear()
        self._header_values.clear()
        self.response, self.received_any, self._error, self._keep_alive = None, False, None, False
        self._timeout, self._last_activity = timeout, self._loop.time()
        if self.closed or transport.is_closing():
            raise BodyCut("the pooled connection was closing")
        try:
            transport.write(data)
        except RuntimeError as exc:  # uvloop: a handle closed under us
            raise BodyCut("the pooled connection was closed") from exc

    async def wait_for_head(self) -> UpstreamResponse:
        while self.response is None:
            if self._error is not None:
                raise self._error
            await self.wait_for_data()
        return self.response

    async def wait_for_data(self) -> None:
        """Until the protocol has something new; ``TimeoutError`` after ``timeout`` seconds without a byte.

        On a closed connection, at once: the error that closed it (nothing more will arrive)."""
        if self.closed:
            response = self.response
            raise (
                (response._error if response is not None else None)
                or self._error
                or BodyCut("the upstream closed the connection")
            )
        waiter = self._waiter = self._loop.create_future()
        if self._timer is None:
            self._timer = self._loop.call_at(self._last_activity + self._timeout, self._on_timer)
        try:
            await waiter
        finally:
            self._waiter = None

    def resume_reading(self) -> None:
        if self._paused and self._transport is not None:
            self._paused = False
            self._last_activity = self._loop.time()  # the upstream's silence while paused was ours
            self._transport.resume_reading()

    def release(self, *, reusable: bool) -> None:
        self._cancel_timer()
        keep = reusable and not self.closed and self._keep_alive and not self._paused
        self.response = None
        if keep:
            self._pool.checkin(self)
        else:
            self.close()

    def close(self) -> None:
        self.closed = True
        self._cancel_timer()
        if self._transport is not None:
            self._transport.close()

    def clock(self) -> float:
        return self._loop.time()

    # Internals
    def _on_timer(self) -> None:
        """One timer per wait, moved on (not re-armed per read) while data keeps arriving."""
        self._timer = None
        due = self._last_activity + self._timeout
        if self._loop.time() < due and self._waiter is not None:
            self._timer = self._loop.call_at(due, self._on_timer)
            return
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(TimeoutError("the upstream did not answer in time"))

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _abort(self, error: BaseException) -> None:
        self._error = error
        if self.response is not None:
            self.response._fail(error)
        self.close()

    def _close_delimited(self) -> bool:
        """A body without Content-Length or chunked framing ends when the connection does (RFC 9112 6.3)."""
        response = self.response
        return (
            response is not None
            and "content-length" not in response.headers
            and ("chunked" not in response.headers.get("transfer-encoding", "").lower())
        )


class HttpTransport:
    """The pooled connections to one upstream origin, and ``post()``."""

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float = 10.0,
        keepalive_seconds: float = 60.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """``ssl_context``: for ``https``, instead of the system's trust store with hostname checks (tests)."""
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.host = url.hostname
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.base_path = url.path.rstrip("/")
        default_port = self.port == (443 if url.scheme == "https" else 80)
        host_header = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = host_header if default_port else f"{host_header}:{self.port}"
        self._ssl = (ssl_context or ssl.create_default_context()) if url.scheme == "https" else None
        self._connect_timeout = connect_timeout
        self._keepalive = keepalive_seconds
        self._idle: list[_Connection] = []
        self._all: set[_Connection] = set()

    def request_head(self, path: str, headers: dict[str, str]) -> bytes:
        """The request line and fixed headers of ``POST {path}``, built once per provider."""
        lines = [f"POST {self.base_path}{path} HTTP/1.1", f"Host: {self.host_header}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        return ("\r\n".join(lines) + "\r\n").encode("latin-1")

    async def post(self, head: bytes, body: bytes, *, timeout: float) -> UpstreamResponse:
        """Send ``head`` (from ``request_head``) with ``body``; returns once the response's headers are in.

        ``timeout`` bounds the connect, the wait for the first byte, and every later gap between reads.
        A pooled connection that turns out to be closed, before any byte of the answer, is replaced
        once by a new one: the upstream never saw the request on it.
        """
        message = b"%sContent-Length: %d\r\n\r\n%s" % (head, len(body), body)
        connection = self._checkout()
        if connection is not None:
            try:
                connection.send(message, timeout)
                return await connection.wait_for_head()
            except BodyCut:
                if connection.received_any:
                    raise
                connection.close()
        connection = await self._connect(timeout)
        connection.send(message, timeout)
        try:
            return await connection.wait_for_head()
        except BaseException:
            connection.close()
            raise

    async def aclose(self) -> None:
        for connection in list(self._all):
            connection.close()
        self._idle.clear()
        self._all.clear()

    # Pool bookkeeping (called by connections).
    def checkin(self, connection: _Connection) -> None:
        connection.idle_since = connection.clock()
        self._idle.append(connection)

    def forget(self, connection: _Connection) -> None:
        self._all.discard(connection)

    def _checkout(self) -> _Connection | None:
        if not self._idle:
            return None
        expired_before = self._idle[-1].clock() - self._keepalive
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed and connection.idle_since > expired_before:
                return connection
            connection.close()
        return None

    async def _connect(self, timeout: float) -> _Connection:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(min(timeout, self._connect_timeout)):
            _, connection = await loop.create_connection(
                lambda: _Connection(self, loop),
                self.host,
                self.port,
                ssl=self._ssl,
                server_hostname=self.host if self._ssl else None,
            )
        self._all.add(connection)
        return connection
