"""``text/event-stream`` parsed as it arrives, one event per blank-line-terminated block, lines bounded.

An unfinished line is held as a list of pieces (joined once, when its newline comes), so a long line
cut into many small reads costs linear time, and past ``max_line_bytes`` it is refused
(``ResponseTooLarge``) rather than held: an upstream that never sends a newline cannot grow memory.
``SSEDecoder`` is the parser as plain calls (a relay feeds it each read, no generator per layer);
``iter_sse`` is the same over a response, as an async iterator.
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
    fields are ignored. Ends when the upstream closes the body."""
    decoder = SSEDecoder(max_line_bytes)
    async for chunk in response.iter_chunks():
        for event in decoder.feed(chunk):
            yield event
        decoder.raise_refused()
    for event in decoder.end():
        yield event


class SSEDecoder:
    """Bytes in (``feed``, as each read arrives; ``end`` when the body ended), whole events out.

    A line past ``max_line_bytes`` raises ``ResponseTooLarge``; when events were already complete in the
    same read, ``feed`` returns them first and ``raise_refused()`` raises after they went on, as an event
    parsed before the bad line is relayed before the stream fails."""

    __slots__ = ("_data", "_event", "_limit", "_pending", "_pending_size", "_refused")

    def __init__(self, max_line_bytes: int) -> None:
        self._limit = max_line_bytes
        self._event = ""
        self._data: list[bytes] = []
        self._pending: list[bytes] = []  # the pieces of the line not yet ended
        self._pending_size = 0
        self._refused: ResponseTooLarge | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """The events ``chunk`` completes (lines split here, however the network cut the bytes)."""
        self.raise_refused()
        pending = self._pending
        end = chunk.find(b"\n")
        if (
            end == len(chunk) - 2  # one read, one whole event of one data line: what a paced stream sends
            and chunk[-1] == 10  # b"\n"
            and chunk.startswith(b"data: ")
            and not pending
            and not self._data
            and not self._event
            and chunk[end - 1] != 13  # b"\r": the general path strips it
            and end <= self._limit
        ):
            return [SSEEvent("message", chunk[6:end])]
        events: list[SSEEvent] = []
        start = 0
        try:
            if pending and end >= 0:
                pending.append(chunk[:end])
                line = b"".join(pending)
                pending.clear()
                self._pending_size = 0
                if len(line) > self._limit:
                    raise _too_long(self._limit)
                if (event := self._line(line)) is not None:
                    events.append(event)
                start = end + 1
                end = chunk.find(b"\n", start)
            while end >= 0:
                if end - start > self._limit:
                    raise _too_long(self._limit)
                if (event := self._line(chunk[start:end])) is not None:
                    events.append(event)
                start = end + 1
                end = chunk.find(b"\n", start)
            if start < len(chunk):
                self._pending_size += len(chunk) - start
                if self._pending_size > self._limit:
                    raise _too_long(self._limit)
                pending.append(chunk[start:] if start else chunk)
        except ResponseTooLarge as exc:
            if not events:
                raise
            self._refused = exc
        return events

    def raise_refused(self) -> None:
        """Raise the refusal ``feed`` held back while it returned the events before it."""
        if self._refused is not None:
            refused, self._refused = self._refused, None
            raise refused

    def end(self) -> list[SSEEvent]:
        """The body ended: a last event without its blank line (the caller decides if the stream was whole)."""
        self.raise_refused()
        if self._pending:
            self._line(b"".join(self._pending))
            self._pending.clear()
        last = self._line(b"")
        return [last] if last is not None else []

    def _line(self, line: bytes) -> SSEEvent | None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            event = SSEEvent(self._event or "message", b"\n".join(self._data)) if self._data else None
            self._event, self._data = "", []
            return event
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            self._data.append(value)
        elif field == b"event":
            self._event = value.decode("utf-8", "replace")
        return None


def _too_long(limit: int) -> ResponseTooLarge:
    return ResponseTooLarge(f"an event-stream line passed {limit} bytes")
