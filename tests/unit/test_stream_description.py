"""What telemetry reads off a stream without assembling its answer: the model and each choice's finish reason."""

from __future__ import annotations

import orjson

from llm_gateway.pipeline import describe_answer, describe_chunks
from llm_gateway.streaming import _parse, describing
from llm_gateway.telemetry.record import RequestRecord


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


def record() -> RequestRecord:
    return RequestRecord.begin("req", "/v1/chat/completions", "gpt-4o-mini", stream=True)


def test_only_the_first_chunk_and_those_with_a_finish_reason_are_read() -> None:
    assert describing(PAYLOADS) == [PAYLOADS[0], PAYLOADS[2], PAYLOADS[3]]


def test_the_description_equals_that_of_the_assembled_answer() -> None:
    from llm_gateway.cache import chunks_to_completion

    quick, whole = record(), record()
    describe_chunks(quick, _parse(describing(PAYLOADS)))
    describe_answer(whole, chunks_to_completion(_parse(PAYLOADS)))
    assert quick.response_model == whole.response_model == "gpt-4o-mini-2024-07-18"
    assert quick.finish_reasons == whole.finish_reasons == ("stop", "length")  # by choice index
