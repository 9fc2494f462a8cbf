"""The event-stream parser: events however the bytes are cut, a bounded unfinished line, linear time."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable
from typing import cast

import pytest

from llm_gateway.http import ResponseTooLarge, SSEDecoder, UpstreamResponse, iter_sse


class Chunks:
    """Stands in for an ``UpstreamResponse``: yields the given chunks and counts what was taken."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks
        self.taken = 0

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            self.taken += len(chunk)
            yield chunk


async def events(chunks: Iterable[bytes], max_line_bytes: int = 1024) -> list[tuple[str, bytes]]:
    source = cast(UpstreamResponse, Chunks(chunks))
    return [(event.event, event.data) async for event in iter_sse(source, max_line_bytes=max_line_bytes)]


STREAM = b'event: a\r\ndata: {"x":1}\r\n\r\n: comment\n\ndata: one\ndata: two\n\ndata: [DONE]\n\n'
EXPECTED = [("a", b'{"x":1}'), ("message", b"one\ntwo"), ("message", b"[DONE]")]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13, len(STREAM)])
async def test_events_whatever_the_cuts(size: int) -> None:
    chunks = [STREAM[start : start + size] for start in range(0, len(STREAM), size)]
    assert await events(chunks) == EXPECTED


async def test_a_line_at_the_bound_passes_and_one_byte_more_is_refused() -> None:
    line = b"data: " + b"x" * 94  # 100 bytes
    assert await events([line[:50], line[50:], b"\n\n"], max_line_bytes=100) == [("message", b"x" * 94)]
    assert await events([line + b"\n\n"], max_line_bytes=100) == [("message", b"x" * 94)]
    for chunks in ([line + b"y\n\n"], [line[:50], line[50:] + b"y", b"\n\n"], [line[:50], line[50:], b"y\n\n"]):
        with pytest.raises(ResponseTooLarge, match=r"^an event-stream line passed 100 bytes$"):
            await events(chunks, max_line_bytes=100)


async def test_endless_bytes_without_a_newline_are_refused_within_the_bound() -> None:
    """An upstream that never ends its line: the parser stops taking bytes one read past the bound."""

    def endless() -> Iterable[bytes]:
        for _ in range(1_000_000):  # 16 GB if it were all taken
            yield b"x" * 16384

    source = Chunks(endless())
    with pytest.raises(ResponseTooLarge):
        async for _ in iter_sse(cast(UpstreamResponse, source), max_line_bytes=1 << 20):
            pass
    assert source.taken <= (1 << 20) + 16384


async def test_a_long_line_in_many_small_reads_takes_linear_time() -> None:
    """400,000 one-byte reads of one line: quadratic re-copying (``rest + chunk``) would copy ~80 GB."""
    size = 400_000
    started = time.perf_counter()
    parsed = await events([b"data: ", *([b"x"] * size), b"\n\n"], max_line_bytes=size + 16)
    assert parsed == [("message", b"x" * size)]
    assert time.perf_counter() - started < 5.0


async def test_events_read_before_an_over_long_line_come_out_before_the_refusal() -> None:
    """One read holds a whole event and then a line past the bound: the event is relayed, then the stream fails."""
    source = cast(UpstreamResponse, Chunks([b"data: one\n\ndata: " + b"x" * 200 + b"\n\n"]))
    seen: list[bytes] = []
    with pytest.raises(ResponseTooLarge):
        async for event in iter_sse(source, max_line_bytes=100):
            seen.append(event.data)
    assert seen == [b"one"]


def test_the_decoder_takes_reads_one_call_each() -> None:
    decoder = SSEDecoder(1024)
    assert decoder.feed(b'data: {"a"') == []
    assert [(e.event, e.data) for e in decoder.feed(b":1}\n\ndata: two\n")] == [("message", b'{"a":1}')]
    assert [(e.event, e.data) for e in decoder.end()] == [("message", b"two")]


@pytest.mark.parametrize(
    "read",
    [b"data: {}\n\n", b"data: \n\n", b"data:  two spaces\n\n", b"data: cr\r\n\n", b"data: x\n\n", b"data:x\n\n"],
)
def test_a_read_of_one_whole_event_decodes_as_the_same_bytes_cut_anywhere(read: bytes) -> None:
    whole = [(e.event, e.data) for e in SSEDecoder(1024).feed(read)]
    decoder = SSEDecoder(1024)
    cut = [(e.event, e.data) for piece in (read[:3], read[3:]) for e in decoder.feed(piece)]
    assert whole == cut and len(whole) == 1


def test_an_event_after_an_event_field_keeps_its_name() -> None:
    decoder = SSEDecoder(1024)
    assert decoder.feed(b"event: delta\n") == []
    assert [(e.event, e.data) for e in decoder.feed(b"data: x\n\n")] == [("delta", b"x")]
    assert [(e.event, e.data) for e in decoder.feed(b"data: y\n\n")] == [("message", b"y")]
