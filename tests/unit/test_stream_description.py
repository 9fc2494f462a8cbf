"""What telemetry reads off a stream without assembling its answer: the model and each choice's finish reason."""

from __future__ import annotations

import orjson

from llm_gateway.pipeline.meter import StreamMeter
from llm_gateway.surfaces.chat import ChatSurface

CHAT = ChatSurface()


def chunk(index: int, content: str, finish: str | None = None, *, spaced: bool = False) -> bytes:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": index, "delta": {"content": content}, "finish_reason": finish}],
    }
    return orjson.dumps(body).replace(b'":', b'": ') if spaced else orjson.dumps(body)


PAYLOADS = [
    chunk(0, "Hel"),
    chunk(1, "Bon"),
    chunk(1, "jour", "length", spaced=True),  # another server's spacing
    chunk(0, "lo", "stop"),
    orjson.dumps({"id": "chatcmpl-1", "model": "gpt-4o-mini-2024-07-18", "choices": [], "usage": {"total_tokens": 9}}),
]


def test_the_meters_description_equals_that_of_the_assembled_answer() -> None:
    meter = StreamMeter(CHAT.read_item, model="gpt-4o-mini", cap_tokens=None, keep=True)
    for payload in PAYLOADS:
        meter.feed(payload)
    whole = CHAT.assemble(PAYLOADS)
    assert meter.response_model == CHAT.response_model(whole) == "gpt-4o-mini-2024-07-18"
    assert meter.ordered_finish_reasons() == CHAT.finish_reasons(whole) == ("stop", "length")  # by choice index
    assert meter.items == PAYLOADS


def test_a_stream_larger_than_the_cacheable_size_keeps_no_payloads() -> None:
    meter = StreamMeter(CHAT.read_item, model="gpt-4o-mini", cap_tokens=None, keep=True, keep_bytes=300)
    for payload in PAYLOADS:
        meter.feed(payload)
    assert meter.items is None
    assert meter.ordered_finish_reasons() == ("stop", "length")


def test_a_payload_the_stream_parsed_is_read_as_if_parsed_here() -> None:
    """The stream hands its parsed chunk on (``ChunkStream.parsed``): the meter reads the same either way."""
    parsing, given = (StreamMeter(CHAT.read_item, model="gpt-4o-mini", cap_tokens=None, keep=True) for _ in "ab")
    for payload in PAYLOADS:
        assert parsing.feed(payload) == given.feed(payload, orjson.loads(payload)) == orjson.loads(payload)
    assert (given.response_model, given.ordered_finish_reasons(), given.completion_tokens()) == (
        parsing.response_model,
        parsing.ordered_finish_reasons(),
        parsing.completion_tokens(),
    )
