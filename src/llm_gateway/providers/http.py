"""The HTTP plumbing every adapter shares: the pooled aiohttp session, SSE parsing, error mapping.

aiohttp was chosen over httpx by measurement (README, "Upstream HTTP client"). Each provider
owns one long-lived session created at start-up and closed at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import aiohttp

from llm_gateway.errors import ProviderProtocolError, ProviderTimeout, ProviderUnreachable, UpstreamError

# Enough for any error body worth reading; a bigger one is cut rather than buffered whole.
MAX_ERROR_BODY_BYTES = 64 * 1024
CONNECT_TIMEOUT_SECONDS = 10.0


def new_session() -> aiohttp.ClientSession:
    """One pooled session per provider: keep-alive, no connection cap, DNS cached."""
    connector = aiohttp.TCPConnector(
        limit=0,  # the gateway must carry the callers' concurrency, not queue it
        ttl_dns_cache=300,
        keepalive_timeout=60,
        family=socket.AF_UNSPEC,
    )
    return aiohttp.ClientSession(
        connector=connector,
        # Per-request timeouts are passed on every call; this is only a backstop.
        timeout=aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT_SECONDS),
        auto_decompress=True,
        skip_auto_headers=("User-Agent",),
        raise_for_status=False,
    )


def attempt_timeout(seconds: float) -> aiohttp.ClientTimeout:
    """``seconds`` bounds time to first byte and every gap between reads (aiohttp's sock_read)."""
    return aiohttp.ClientTimeout(total=None, connect=min(CONNECT_TIMEOUT_SECONDS, seconds), sock_read=seconds)


@contextlib.contextmanager
def map_transport_errors(provider: str) -> Iterator[None]:
    """Turn aiohttp's and asyncio's exceptions into the gateway's UpstreamError tree."""
    try:
        yield
    except UpstreamError:
        raise
    except (TimeoutError, aiohttp.ServerTimeoutError):
        raise ProviderTimeout(f"{provider} did not answer in time", provider=provider) from None
    except aiohttp.ClientPayloadError:
        raise ProviderUnreachable(f"{provider} closed the connection mid-answer", provider=provider) from None
    except aiohttp.ClientResponseError as exc:
        raise ProviderProtocolError(
            f"{provider} sent an invalid HTTP response", provider=provider, upstream_status=exc.status or None
        ) from None
    except (aiohttp.ClientError, OSError):
        raise ProviderUnreachable(f"{provider} could not be reached", provider=provider) from None


async def read_limited(response: aiohttp.ClientResponse, limit: int = MAX_ERROR_BODY_BYTES) -> bytes:
    return await response.content.read(limit)


@dataclass(slots=True)
class SSEEvent:
    event: str
    data: bytes


async def iter_sse(response: aiohttp.ClientResponse) -> AsyncIterator[SSEEvent]:
    """Parse ``text/event-stream`` as it arrives: yields one event per blank-line-terminated block.

    Multi-line ``data:`` fields are joined with ``\\n`` as the SSE spec says; comments and
    unknown fields are ignored. Ends when the upstream closes the body.
    """
    event = ""
    data: list[bytes] = []
    async for line in response.content:
        line = line.rstrip(b"\r\n")
        if not line:
            if data:
                yield SSEEvent(event or "message", b"\n".join(data))
            event, data = "", []
            continue
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            data.append(value)
        elif field == b"event":
            event = value.decode("utf-8", "replace")
    if data:  # a last event without its blank line: deliver it, the caller decides if the stream was whole
        yield SSEEvent(event or "message", b"\n".join(data))


def check_deadline(provider: str, deadline: float) -> None:
    if asyncio.get_running_loop().time() > deadline:
        raise ProviderTimeout(f"{provider} stream exceeded the request timeout", provider=provider)


def is_event_stream(response: aiohttp.ClientResponse) -> bool:
    return response.content_type == "text/event-stream"
