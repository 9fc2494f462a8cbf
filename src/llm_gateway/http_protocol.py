"""uvicorn's httptools protocol, bounded while it reads a request's headers: in size (431) and in time (408).

httptools (llhttp) buffers a header of any size, and uvicorn gives a request line all the time in the
world (its keep-alive timer stops at the first byte): one slow or huge client would hold a connection and
its memory. At shutdown, a connection whose request has not arrived yet is waited for, not dropped
(``shutdown``; ``http_server`` explains why). ``llm-gateway serve`` uses this class (``cli.serve_forever``).
"""

from __future__ import annotations

import asyncio
from asyncio import TimerHandle
from typing import Any

import orjson
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState


def _refusal(status: int, code: str, message: str) -> bytes:
    """A whole HTTP/1.1 answer in OpenAI's envelope, closing the connection."""
    body = orjson.dumps({"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}})
    head = b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body)
    return STATUS_LINE[status] + head + body


# After a refusal, how long the rest of what the client is still sending is read and dropped: closing a socket
# with unread data makes the kernel send a reset, which can destroy the refusal before the client reads it.
LINGER_SECONDS = 2.0
_TOO_LARGE = _refusal(431, "request_header_fields_too_large", "The request's header fields are too large.")
_TIMEOUT = _refusal(408, "request_timeout", "The request's headers did not arrive in time.")
# At shutdown, how long a connection with no request yet may take to send one before it is closed. A load
# balancer sends its request as soon as it has connected: closing such a connection unread (uvicorn's way)
# resets it after the request left, and a proxy must not send a POST elsewhere once it has been sent. Go's
# ``http.Server.Shutdown`` does the same for new connections (five seconds there).
FRESH_CONNECTION_GRACE_SECONDS = 2.0


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """A request's head (request line and header fields) must arrive within ``header_timeout`` seconds of
    its first byte (of the connection, for the first request) and hold at most ``max_header_bytes``.

    Bytes are counted per read from the end of the previous request; a read is split where the budget runs
    out, so a body that arrives with its headers is never counted. (The tail of the read in which a request
    ends is not counted towards a pipelined next one: at most one read, 256 KiB.)
    """

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        max_header_bytes: int,
        header_timeout: float,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.max_header_bytes = max_header_bytes
        self.header_timeout = header_timeout
        self._reading_head = True
        self._head_bytes = 0
        self._head_timer: TimerHandle | None = None
        self._refused = False
        self._draining = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering: dropped
        while self._reading_head and data:
            room = self.max_header_bytes - self._head_bytes
            if room <= 0:
                self._refuse(_TOO_LARGE)
                return
            chunk, data = (data, b"") if len(data) <= room else (data[:room], data[room:])
            self._head_bytes += len(chunk)
            super().data_received(chunk)
            if self._refused or self.transport.is_closing():
                return
        if data:
            super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_timer is None:  # the first request's timer runs from the connection's start
            self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._stop_head_timer()
        super().on_headers_complete()
        if self._draining and self.cycle is not None:
            self.cycle.keep_alive = False  # answered, then closed: the server is shutting down

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown, except that a connection which has not sent a whole request head yet
        (accepted a moment before the listening socket closed) is given ``FRESH_CONNECTION_GRACE_SECONDS`` for
        it: the request is answered, with ``connection: close``. Idle keep-alive connections close at once."""
        if self.cycle is not None or self.transport.is_closing():
            super().shutdown()
            return
        self._draining = True
        self.loop.call_later(FRESH_CONNECTION_GRACE_SECONDS, self._close_if_silent)

    def _close_if_silent(self) -> None:
        """Nothing arrived in the grace: close. A head still arriving is left to the header timeout (408)."""
        if self.cycle is None and self._head_bytes == 0 and not self.transport.is_closing():
            self.transport.close()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading_head = True  # what comes next on this connection is the next request's head
        self._head_bytes = 0

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.logger.info("closing a connection whose request headers did not arrive in time")
            self._refuse(_TIMEOUT)

    def eof_received(self) -> None:
        if self._refused:
            self.transport.close()

    def _refuse(self, answer: bytes) -> None:
        """Answer, end our side and drop what still arrives until the client closes or ``LINGER_SECONDS``
        pass; if an earlier response is still being written, close once it is done instead."""
        self._stop_head_timer()
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False
            self.flow.pause_reading()
            return
        self._refused = True
        self.transport.write(answer)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)
