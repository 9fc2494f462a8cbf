"""A pooled HTTP/1.1 client for upstream calls: keep-alive connections to one origin, and ``post()``.

Why not aiohttp here: by measurement (bench/README.md, "The ladder") aiohttp's client costs
200-300 µs of CPU per request, more than half of what the gateway may spend at 2,500 req/s on one
core; this costs a fraction of that. The upstream traffic is narrow: one origin per provider,
``POST`` with a JSON body, a JSON or SSE answer. So this is that and nothing more: keep-alive
connections kept in a LIFO pool with no cap on connections in use (the gateway must carry the
callers' concurrency, not queue it), at most ``max_idle_connections`` idle ones, each closed after
``idle_seconds``; Content-Length, chunked and close-delimited bodies, gzip/deflate if an upstream
compresses anyway, TLS through the event loop, one timer per wait.

A request goes out at most once per ``post()``: it is sent again on a new connection only when the
pooled one was seen closing before a byte was written. Once written, a connection that closes
without answering is a ``ReadError``: the upstream may have processed (and billed) the request.

Failures raise ``llm_gateway.http.errors`` (never a bare ``OSError``); see that module for the tree.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from types import TracebackType
from urllib.parse import urlsplit

from llm_gateway.http.bounds import DEFAULT_BOUNDS, UpstreamBounds
from llm_gateway.http.connection import Connection, UpstreamResponse
from llm_gateway.http.errors import ConnectError, ConnectTimeout


class HttpTransport:
    """The pooled connections to one upstream origin, and ``post()``."""

    def __init__(
        self,
        base_url: str,
        *,
        bounds: UpstreamBounds = DEFAULT_BOUNDS,
        connect_timeout: float = 10.0,
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
        self.bounds = bounds
        self._ssl = (ssl_context or ssl.create_default_context()) if url.scheme == "https" else None
        self._connect_timeout = connect_timeout
        self._idle: deque[Connection] = deque()  # newest on the right (LIFO), oldest on the left
        self._all: set[Connection] = set()
        self._prune_timer: asyncio.TimerHandle | None = None

    @property
    def open_connections(self) -> int:
        """Connections open now, in use or idle."""
        return len(self._all)

    @property
    def idle_connections(self) -> int:
        return sum(1 for connection in self._idle if not connection.closed)

    def request_head(self, path: str, headers: dict[str, str]) -> bytes:
        """The request line and fixed headers of ``POST {path}``, built once per provider."""
        lines = [f"POST {self.base_path}{path} HTTP/1.1", f"Host: {self.host_header}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        return ("\r\n".join(lines) + "\r\n").encode("latin-1")

    def post(self, head: bytes, body: bytes, *, timeout: float) -> Exchange:
        """``async with transport.post(head, body, timeout=t) as response:`` — the connection is released
        (back to the pool when the body was read whole, else closed) however the block ends.

        ``timeout`` bounds the connect, the wait for the first byte, and every later gap between reads.
        """
        return Exchange(self, b"%sContent-Length: %d\r\n\r\n%s" % (head, len(body), body), timeout)

    async def aclose(self) -> None:
        if self._prune_timer is not None:
            self._prune_timer.cancel()
            self._prune_timer = None
        for connection in list(self._all):
            connection.close()
        self._idle.clear()
        self._all.clear()

    async def send(self, message: bytes, timeout: float) -> UpstreamResponse:
        """Write ``message`` on a pooled (else new) connection; the response once its head is in."""
        connection = self._checkout()
        if connection is not None:
            try:
                connection.send(message, timeout)
            except ConnectError:  # seen closing before the write: the request never left
                connection.close()
                connection = None
        if connection is None:
            connection = await self._connect(timeout)
            try:
                connection.send(message, timeout)
            except BaseException:
                connection.close()
                raise
        try:
            return await connection.wait_for_head()
        except BaseException:  # timed out, cancelled, cut: the connection is in an unknown state
            connection.close()
            raise

    # Pool bookkeeping (called by connections).
    def checkin(self, connection: Connection) -> None:
        bounds = self.bounds
        if bounds.max_idle_connections <= 0:
            connection.close()
            return
        connection.idle_since = now = connection.clock()
        idle = self._idle
        idle.append(connection)
        while len(idle) > bounds.max_idle_connections:
            idle.popleft().close()
        if self._prune_timer is None:
            self._prune_timer = asyncio.get_running_loop().call_at(now + bounds.idle_seconds, self._prune)

    def forget(self, connection: Connection) -> None:
        self._all.discard(connection)

    def _prune(self) -> None:
        """Close the connections idle past ``idle_seconds``; again when the next one would be."""
        self._prune_timer = None
        idle = self._idle
        while idle and idle[0].closed:
            idle.popleft()
        if not idle:
            return
        now = idle[0].clock()
        expired_before = now - self.bounds.idle_seconds
        while idle and (idle[0].closed or idle[0].idle_since <= expired_before):
            idle.popleft().close()
        if idle:
            self._prune_timer = asyncio.get_running_loop().call_at(
                idle[0].idle_since + self.bounds.idle_seconds, self._prune
            )

    def _checkout(self) -> Connection | None:
        idle = self._idle
        while idle:
            connection = idle.pop()
            if not connection.closed:
                return connection
        return None

    async def _connect(self, timeout: float) -> Connection:
        loop = asyncio.get_running_loop()
        limit = self.bounds.max_response_bytes
        try:
            async with asyncio.timeout(min(timeout, self._connect_timeout)):
                _, connection = await loop.create_connection(
                    lambda: Connection(self, loop, limit),
                    self.host,
                    self.port,
                    ssl=self._ssl,
                    server_hostname=self.host if self._ssl else None,
                )
        except TimeoutError:
            raise ConnectTimeout(f"no connection to {self.host_header} in time") from None
        except OSError as exc:  # refused, unresolvable (socket.gaierror), TLS refused (ssl.SSLError)
            raise ConnectError(f"{self.host_header} could not be reached: {type(exc).__name__}") from exc
        self._all.add(connection)
        return connection


class Exchange:
    """One request and its response, as an async context manager (what ``post()`` returns)."""

    __slots__ = ("_message", "_response", "_timeout", "_transport")

    def __init__(self, transport: HttpTransport, message: bytes, timeout: float) -> None:
        self._transport = transport
        self._message = message
        self._timeout = timeout
        self._response: UpstreamResponse | None = None

    async def __aenter__(self) -> UpstreamResponse:
        self._response = await self._transport.send(self._message, self._timeout)
        return self._response

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._response is not None:
            self._response.release()
