"""Replay a cached answer as stream chunks, and assemble streamed chunks into the answer to store."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from llm_gateway.cache import chunks_to_completion, completion_to_chunks, is_complete

HEAD: dict[str, Any] = {
    "id": "chatcmpl-abc",
    "created": 1741570283,
    "model": "gpt-4o-mini",
    "system_fingerprint": "fp_44709d6fcb",
}
USAGE: dict[str, Any] = {
    "prompt_tokens": 19,
    "completion_tokens": 10,
    "total_tokens": 29,
    "prompt_tokens_details": {"cached_tokens": 0},
}
TEXT: dict[str, Any] = {
    **HEAD,
    "object": "chat.completion",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello! How can I help?", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": USAGE,
}
TOOLS: dict[str, Any] = {
    **HEAD,
    "object": "chat.completion",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "refusal": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    },
                    {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
                ],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "usage": USAGE,
}


def replay(completion: dict[str, Any], *, include_usage: bool) -> list[dict[str, Any]]:
    return [orjson.loads(chunk) for chunk in completion_to_chunks(completion, include_usage=include_usage)]


def chunk(delta: dict[str, Any], finish: str | None = None, *, index: int = 0, logprobs: Any = None) -> dict[str, Any]:
    return {
        **HEAD,
        "object": "chat.completion.chunk",
        "choices": [{"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}],
    }


def test_text_answer_replays_as_openai_streams_it() -> None:
    assert replay(TEXT, include_usage=False) == [
        chunk({"role": "assistant", "content": "", "refusal": None}),
        chunk({"content": "Hello! How can I help?"}),
        chunk({}, "stop"),
    ]


def test_with_include_usage_every_chunk_has_null_usage_and_a_last_chunk_carries_it() -> None:
    chunks = replay(TEXT, include_usage=True)
    assert [c["usage"] for c in chunks[:-1]] == [None, None, None]
    assert chunks[-1] == {**HEAD, "object": "chat.completion.chunk", "choices": [], "usage": USAGE}


def test_tool_calls_replay_with_index_id_type_name_then_arguments() -> None:
    assert replay(TOOLS, include_usage=False) == [
        chunk({"role": "assistant", "content": None, "refusal": None}),
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":"Paris"}'}}]}),
        chunk(
            {
                "tool_calls": [
                    {"index": 1, "id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": ""}}
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}),
        chunk({}, "tool_calls"),
    ]


def with_message(base: dict[str, Any], **message: Any) -> dict[str, Any]:
    completion = copy.deepcopy(base)
    completion["choices"][0]["message"].update(message)
    return completion


def two_choices() -> dict[str, Any]:
    completion = copy.deepcopy(TEXT)
    second = copy.deepcopy(completion["choices"][0])
    second["index"] = 1
    second["message"]["content"] = "Hi there."
    second["finish_reason"] = "length"
    completion["choices"].append(second)
    return completion


def with_logprobs() -> dict[str, Any]:
    completion = copy.deepcopy(TEXT)
    completion["choices"][0]["logprobs"] = {
        "content": [{"token": "Hello", "logprob": -0.1, "bytes": [72, 101, 108, 108, 111], "top_logprobs": []}],
        "refusal": None,
    }
    return completion


@pytest.mark.parametrize(
    "completion",
    [
        TEXT,
        TOOLS,
        with_message(TEXT, content=""),
        with_message(TOOLS, content="Let me check."),
        with_message(TEXT, content=None, refusal="I can't help with that."),
        with_message(TEXT, annotations=[]),
        with_message(TEXT, reasoning_content="The user greets; greet back."),
        with_message(
            TEXT,
            annotations=[{"type": "url_citation", "url_citation": {"url": "https://example.com", "title": "Ex"}}],
        ),
        with_message(TEXT, content=None, function_call={"name": "legacy", "arguments": '{"a":1}'}),
        two_choices(),
        with_logprobs(),
        {**TEXT, "service_tier": "default"},
    ],
    ids=[
        "text",
        "tools",
        "empty",
        "text+tools",
        "refusal",
        "empty-annotations",
        "reasoning",
        "annotations",
        "function-call",
        "two-choices",
        "logprobs",
        "service-tier",
    ],
)
@pytest.mark.parametrize("include_usage", [True, False])
def test_round_trip(completion: dict[str, Any], include_usage: bool) -> None:
    assembled = chunks_to_completion(replay(completion, include_usage=include_usage))
    expected = completion if include_usage else {k: v for k, v in completion.items() if k != "usage"}
    assert assembled == expected
    assert is_complete(assembled)


def test_a_recorded_openai_stream_assembles_into_its_answer() -> None:
    """Arguments in fragments, parallel calls, the name only in each call's first delta, usage at the end."""
    stream = [
        chunk({"role": "assistant", "content": None, "tool_calls": [], "refusal": None}),
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ty":"Par'}}]}),
        chunk(
            {
                "tool_calls": [
                    {"index": 1, "id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": ""}}
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'is"}'}}]}),
        chunk({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}),
        chunk({}, "tool_calls"),
        {**HEAD, "object": "chat.completion.chunk", "choices": [], "usage": USAGE},
    ]
    assert chunks_to_completion(stream) == TOOLS


def test_text_in_pieces_and_repeated_names_assemble() -> None:
    stream = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hello! "}),
        chunk({"content": "How can "}),
        chunk({"content": "I help?"}),
        # some OpenAI-compatible servers repeat the name, or leave out the index
        chunk({"tool_calls": [{"id": "call_9", "function": {"name": "f", "arguments": "{"}}]}),
        chunk({"tool_calls": [{"function": {"name": "f", "arguments": "}"}}]}),
        chunk({}, "stop"),
    ]
    message = chunks_to_completion(stream)["choices"][0]["message"]
    assert message["content"] == "Hello! How can I help?"
    assert message["tool_calls"] == [{"id": "call_9", "type": "function", "function": {"name": "f", "arguments": "{}"}}]


def test_a_stream_without_finish_reason_is_not_complete() -> None:
    truncated = chunks_to_completion([chunk({"role": "assistant", "content": ""}), chunk({"content": "Hel"})])
    assert truncated["choices"][0]["finish_reason"] is None
    assert not is_complete(truncated)
    assert not is_complete(chunks_to_completion([]))


def test_replay_chunk_by_chunk_content_equals_the_answer() -> None:
    long_text = with_message(TEXT, content="Paragraph one.\n\nParagraph two, with ünïcode and emoji 🎉.")
    chunks = replay(long_text, include_usage=False)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == long_text["choices"][0]["message"]["content"]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == "chatcmpl-abc" for c in chunks)


def test_a_long_stream_with_logprobs_is_assembled_in_linear_time() -> None:
    """64,000 chunks with logprobs once took 16 s (text and lists re-copied per chunk); the guard below is
    generous (a linear assembly takes well under a second here, the quadratic one minutes at this size)."""
    import time

    pieces = 100_000
    token = {"token": "ab", "logprob": -0.1, "bytes": [97, 98], "top_logprobs": []}
    stream = [chunk({"role": "assistant", "content": ""})]
    stream += [chunk({"content": "ab"}, logprobs={"content": [token]}) for _ in range(pieces)]
    stream.append(chunk({}, "stop"))
    started = time.perf_counter()
    completion = chunks_to_completion(stream)
    elapsed = time.perf_counter() - started
    choice = completion["choices"][0]
    assert choice["message"]["content"] == "ab" * pieces
    assert len(choice["logprobs"]["content"]) == pieces
    assert choice["finish_reason"] == "stop"
    assert elapsed < 10, f"assembly took {elapsed:.1f} s"


def test_streamed_tool_call_arguments_in_many_pieces_are_joined() -> None:
    stream = [chunk({"role": "assistant", "content": None})]
    stream.append(chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "f"}}]}))
    stream += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": "x"}}]}) for _ in range(1000)]
    stream.append(chunk({}, "tool_calls"))
    call = chunks_to_completion(stream)["choices"][0]["message"]["tool_calls"][0]
    assert call == {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "x" * 1000}}
