"""One keep-alive HTTP/1.1 connection (an ``asyncio.Protocol`` fed to httptools) and the response it carries.

The pool (``transport.py``) hands a connection one request at a time; the response's body arrives
through ``UpstreamResponse``, bounded by ``max_response_bytes`` (decoded bytes: a gzip bomb is refused
too). A stream's reader that lags ``HIGH_WATER_BYTES`` behind pauses the socket (TCP pushes back on the
upstream); a whole-body ``read()`` never pauses, its bound is the response limit.
"""

from __future__ import annotations

import asyncio
import zlib
from collections import deque
from collections.abc import AsyncIterator
from typing import Protocol, cast

import httptools

from llm_gateway.http.errors import (
    BodyCut,
    ConnectError,
    ReadError,
    ReadTimeout,
    RemoteProtocolError,
    ResponseTooLarge,
    TransportError,
)


class Pool(Protocol):
    """What a connection tells the pool that owns it (``transport.HttpTransport``)."""

    def checkin(self, connection: Connection) -> None: ...

    def forget(self, connection: Connection) -> None: ...


# While a stream's reader lags this far behind, stop reading the socket.
HIGH_WATER_BYTES = 256 * 1024

# The header names upstreams send on every answer, decoded once (the rest are decoded as they come).
_HEADER_NAMES = {
    spelling: name
    for name in ("content-type", "content-length", "transfer-encoding", "content-encoding", "connection", "date")
    for spelling in (name.encode(), name.title().encode())
}


class UpstreamResponse:
    """One response: status and headers once they have arrived, the body as it arrives."""

    __slots__ = (
        "_buffered",
        "_chunks",
        "_connection",
        "_decoder",
        "_done",
        "_error",
        "_limit",
        "_received",
        "_released",
        "_streaming",
        "content_type",
        "headers",
        "status",
    )

    def __init__(self, connection: Connection, status: int, headers: dict[str, str], limit: int) -> None:
        self._connection = connection
        self.status = status
        self.headers = headers
        self.content_type = headers.get("content-type", "").partition(";")[0].strip().lower()
        self._chunks: deque[bytes] = deque()
        self._buffered = 0  # bytes waiting for the reader
        self._received = 0  # bytes of body so far, decoded
        self._limit = limit
        self._done = False
        self._error: TransportError | None = None
        self._released = False
        self._streaming = True  # the reader takes the body piece by piece: pause the socket when it lags
        encoding = headers.get("content-encoding", "identity").lower()
        if encoding in ("gzip", "deflate"):
            self._decoder: zlib._Decompress | None = zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib
        elif encoding == "identity":
            self._decoder = None
        else:
            raise RemoteProtocolError(f"unsupported content-encoding {encoding!r}")

    async def read(self) -> bytes:
        """The whole body; ``ResponseTooLarge`` as soon as it passes the limit (its bytes are not kept)."""
        connection = self._connection
        self._streaming = False
        connection.resume_reading()
        while not self._done and self._error is None:
            await connection.wait_for_data()
        if self._error is not None:
            raise self._error
        body = b"".join(self._chunks) if len(self._chunks) != 1 else self._chunks[0]
        self._chunks.clear()
        self._buffered = 0
        return body

    async def read_prefix(self, limit: int) -> bytes:
        """At most the first ``limit`` bytes (an error page worth quoting); the rest is not read and the
        connection is not reused. Never raises for a body that goes on, or breaks, after them."""
        connection = self._connection
        self._streaming = False
        connection.resume_reading()
        while not self._done and self._error is None and self._buffered < limit:
            try:
                await connection.wait_for_data()
            except TransportError:
                break
        body = b"".join(self._chunks)
        self._chunks.clear()
        if len(body) > limit:
            self._done, body = False, body[:limit]  # left unread: release() closes the connection
        return body

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive, several network reads joined when they arrived together."""
        while (chunk := await self.next_chunk()) is not None:
            yield chunk

    async def next_chunk(self) -> bytes | None:
        """The body's next bytes (every read since the last call, joined), None once the body has ended:
        ``iter_chunks`` as one await, for a relay that reads on every event."""
        while not self._chunks:
            if self._done:
                return None
            await self._connection.wait_for_data()
        chunks = self._chunks
        chunk = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._buffered = 0
        self._connection.resume_reading()
        return chunk

    def release(self) -> None:
        """Back to the pool when the body was read whole and the upstream keeps the connection; else closed.

        Idempotent: ``post()``'s context calls it on the way out, a stream calls it when it closes."""
        if not self._released:
            self._released = True
            self._connection.release(reusable=self._done and self._error is None and not self._chunks)

    # Called by the connection's protocol.
    def _feed(self, data: bytes) -> None:
        if self._decoder is not None:
            try:
                data = self._decoder.decompress(data)
            except zlib.error:
                raise RemoteProtocolError("corrupt compressed body") from None
        if data:
            self._feed_decoded(data)

    def _finish(self) -> None:
        decoder = self._decoder
        if decoder is not None:
            try:
                tail = decoder.flush()
            except zlib.error:
                raise RemoteProtocolError("corrupt compressed body") from None
            if not decoder.eof:
                raise RemoteProtocolError("truncated compressed body")
            if tail:
                self._feed_decoded(tail)
        self._done = True

    def _feed_decoded(self, data: bytes) -> None:
        self._received += len(data)
        if self._received > self._limit:
            raise ResponseTooLarge(f"the response body passed {self._limit} bytes")
        self._chunks.append(data)
        self._buffered += len(data)

    def _fail(self, error: TransportError) -> None:
        if not self._done and self._error is None:
            self._error = error


class Connection(asyncio.Protocol):
    """One keep-alive connection: feeds httptools, hands the parsed response to whoever waits for it."""

    def __init__(self, pool: Pool, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self._pool = pool
        self._loop = loop
        self._limit = limit
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[None] | None = None
        self._header_names: list[bytes] = []
        self._header_values: list[bytes] = []
        self.response: UpstreamResponse | None = None
        self.closed = False
        self.busy = False  # a request is out on it and its response not released
        self.idle_since = 0.0
        self._timeout = 0.0
        self._last_activity = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._error: TransportError | None = None
        self._paused = False
        self._keep_alive = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports are not its subclasses

    def data_received(self, data: bytes) -> None:
        if not self.busy:  # bytes nobody asked for: the connection's framing can no longer be trusted
            self.close()
            return
        self._last_activity = self._loop.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            # An exception raised in a callback below comes back as the parser's, with ours as its context.
            cause = exc.__context__
            self._abort(cause if isinstance(cause, TransportError) else RemoteProtocolError(f"invalid HTTP: {exc}"))
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        response = self.response
        if response is not None and not response._done:
            if self._close_delimited():
                try:
                    response._finish()
                except TransportError as error:
                    response._fail(error)
            else:
                response._fail(BodyCut("the upstream closed the connection mid-answer"))
        elif self._error is None and response is None:
            self._error = ReadError("the upstream closed the connection before answering")
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
        announced = headers.get("content-length")
        if announced is not None and announced.isdigit() and int(announced) > self._limit:
            raise ResponseTooLarge(f"the response announced {announced} bytes, over {self._limit}")
        self.response = UpstreamResponse(self, self._parser.get_status_code(), headers, self._limit)

    def on_body(self, body: bytes) -> None:
        response = self.response
        assert response is not None
        response._feed(body)
        if response._streaming and not self._paused and response._buffered > HIGH_WATER_BYTES:
            assert self._transport is not None
            self._paused = True
            self._transport.pause_reading()

    def on_message_complete(self) -> None:
        assert self.response is not None
        self._keep_alive = self._parser.should_keep_alive()  # asked now: the parser forgets once it reads on
        self.response._finish()

    # Used by the pool and the response.
    def send(self, data: bytes, timeout: float) -> None:
        """Write a request. ``ConnectError`` when the connection was found closing before the write:
        then nothing left, and the pool may send the request on another connection."""
        transport = self._transport
        assert transport is not None
        if self.closed or transport.is_closing():
            raise ConnectError("the pooled connection was closing")
        self._header_names.clear()
        self._header_values.clear()
        self.response, self._error, self._keep_alive = None, None, False
        self._timeout, self._last_activity = timeout, self._loop.time()
        try:
            transport.write(data)
        except RuntimeError as exc:  # uvloop: a handle closed under us, before any byte was written
            raise ConnectError("the pooled connection was closed") from exc
        self.busy = True

    async def wait_for_head(self) -> UpstreamResponse:
        while self.response is None:
            if self._error is not None:
                raise self._error
            await self.wait_for_data()
        return self.response

    async def wait_for_data(self) -> None:
        """Until the protocol has something new; ``ReadTimeout`` after ``timeout`` seconds without a byte.

        On a closed connection, at once: the error that closed it (nothing more will arrive)."""
        if self.closed:
            response = self.response
            raise (
                (response._error if response is not None else None)
                or self._error
                or ReadError("the upstream closed the connection")
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
        self.busy = False
        if keep:
            self._pool.checkin(self)
        else:
            self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._cancel_timer()
            if self._transport is not None:
                self._transport.close()
        self._pool.forget(self)

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
            self._waiter.set_exception(ReadTimeout("the upstream did not answer in time"))

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _abort(self, error: TransportError) -> None:
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
