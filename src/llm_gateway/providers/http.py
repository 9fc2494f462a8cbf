"""The HTTP plumbing every adapter shares: the pooled transport, SSE parsing, error mapping.

Each provider owns one ``HttpTransport`` (``transport.py``: keep-alive connections to its
origin) created at start-up and closed at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

from llm_gateway.errors import ProviderProtocolError, ProviderTimeout, ProviderUnreachable, UpstreamError
from llm_gateway.providers.transport import BodyCut, InvalidResponse, UpstreamResponse

# Enough for any error body worth reading; a bigger one is cut rather than buffered whole.
MAX_ERROR_BODY_BYTES = 64 * 1024


@contextlib.contextmanager
def map_transport_errors(provider: str) -> Iterator[None]:
    """Turn the transport's and the socket layer's exceptions into the gateway's UpstreamError tree."""
    try:
        yield
    except UpstreamError:
        raise
    except TimeoutError:
        raise ProviderTimeout(f"{provider} did not answer in time", provider=provider) from None
    except BodyCut:
        raise ProviderUnreachable(f"{provider} closed the connection mid-answer", provider=provider) from None
    except InvalidResponse:
        raise ProviderProtocolError(f"{provider} sent an invalid HTTP response", provider=provider) from None
    except OSError:  # ConnectionError, DNS failures (socket.gaierror), TLS errors (ssl.SSLError)
        raise ProviderUnreachable(f"{provider} could not be reached", provider=provider) from None


async def read_limited(response: UpstreamResponse, limit: int = MAX_ERROR_BODY_BYTES) -> bytes:
    return await response.read(limit)


@dataclass(slots=True)
class SSEEvent:
    event: str
    data: bytes


async def iter_sse(response: UpstreamResponse) -> AsyncIterator[SSEEvent]:
    """Parse ``text/event-stream`` as it arrives: yields one event per blank-line-terminated block.

    Multi-line ``data:`` fields are joined with ``\\n`` as the SSE spec says; comments and
    unknown fields are ignored. Ends when the upstream closes the body. Lines are split here,
    in one generator, however the network cut the bytes: a generator per line costs more than
    the parsing.
    """
    parser = _SSEParser()
    rest = b""
    async for chunk in response.iter_chunks():
        buffer = rest + chunk if rest else chunk
        start = 0
        while (end := buffer.find(b"\n", start)) >= 0:
            event = parser.line(buffer[start:end])
            start = end + 1
            if event is not None:
                yield event
        rest = buffer[start:]
    if rest:
        parser.line(rest)
    last = parser.line(b"")  # a last event without its blank line: the caller decides if the stream was whole
    if last is not None:
        yield last


class _SSEParser:
    __slots__ = ("data", "event")

    def __init__(self) -> None:
        self.event = ""
        self.data: list[bytes] = []

    def line(self, line: bytes) -> SSEEvent | None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            event = SSEEvent(self.event or "message", b"\n".join(self.data)) if self.data else None
            self.event, self.data = "", []
            return event
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            self.data.append(value)
        elif field == b"event":
            self.event = value.decode("utf-8", "replace")
        return None


def check_deadline(provider: str, deadline: float) -> None:
    if asyncio.get_running_loop().time() > deadline:
        raise ProviderTimeout(f"{provider} stream exceeded the request timeout", provider=provider)


def is_event_stream(response: UpstreamResponse) -> bool:
    return response.content_type == "text/event-stream"
