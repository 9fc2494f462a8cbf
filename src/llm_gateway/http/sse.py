"""``text/event-stream`` parsed as it arrives, one event per blank-line-terminated block, lines bounded.

An unfinished line is held as a list of pieces (joined once, when its newline comes), so a long line
cut into many small reads costs linear time, and past ``max_line_bytes`` it is refused
(``ResponseTooLarge``) rather than held: an upstream that never sends a newline cannot grow memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from llm_gateway.http.connection import UpstreamResponse
from llm_gateway.http.errors import ResponseTooLarge


@dataclass(slots=True)
class SSEEvent:
    event: str
    data: bytes


async def iter_sse(response: UpstreamResponse, *, max_line_bytes: int) -> AsyncIterator[SSEEvent]:
    """Multi-line ``data:`` fields are joined with ``\\n`` as the SSE spec says; comments and unknown
    fields are ignored. Ends when the upstream closes the body. Lines are split here, in one generator,
    however the network cut the bytes: a generator per line costs more than the parsing."""
    parser = _SSEParser()
    pending: list[bytes] = []  # the pieces of the line not yet ended
    pending_size = 0
    async for chunk in response.iter_chunks():
        start = 0
        end = chunk.find(b"\n")
        if pending and end >= 0:
            pending.append(chunk[:end])
            line = b"".join(pending)
            pending.clear()
            pending_size = 0
            if len(line) > max_line_bytes:
                raise _too_long(max_line_bytes)
            if (event := parser.line(line)) is not None:
                yield event
            start = end + 1
            end = chunk.find(b"\n", start)
        while end >= 0:
            if end - start > max_line_bytes:
                raise _too_long(max_line_bytes)
            if (event := parser.line(chunk[start:end])) is not None:
                yield event
            start = end + 1
            end = chunk.find(b"\n", start)
        if start < len(chunk):
            pending_size += len(chunk) - start
            if pending_size > max_line_bytes:
                raise _too_long(max_line_bytes)
            pending.append(chunk[start:] if start else chunk)
    if pending:
        parser.line(b"".join(pending))
    last = parser.line(b"")  # a last event without its blank line: the caller decides if the stream was whole
    if last is not None:
        yield last


def _too_long(limit: int) -> ResponseTooLarge:
    return ResponseTooLarge(f"an event-stream line passed {limit} bytes")


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
