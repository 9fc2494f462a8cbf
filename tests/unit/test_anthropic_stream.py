"""Anthropic stream events -> OpenAI chat.completion.chunk objects, from recorded-looking SSE fixtures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from llm_gateway.errors import UpstreamStreamError
from llm_gateway.providers.anthropic.translate import AnthropicStreamTranslator

FIXTURES = Path(__file__).parent / "fixtures" / "anthropic"
CREATED = 1700000000


def sse_events(name: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for record in (FIXTURES / name).read_text().strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in record.splitlines())
        events.append((fields["event"], orjson.loads(fields["data"])))
    return events


def run(name: str, *, include_usage: bool) -> tuple[AnthropicStreamTranslator, list[dict[str, Any]]]:
    translator = AnthropicStreamTranslator(model="gpt-4o-mini", created=CREATED, include_usage=include_usage)
    chunks = [chunk for event, data in sse_events(name) for chunk in translator.feed(event, data)]
    return translator, chunks


def chunk(chunk_id: str, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": chunk_id,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        **extra,
    }


TEXT_ID = "chatcmpl-014p7gG3wDgGV9EUtLvnow3U"
TEXT_USAGE = {
    "prompt_tokens": 35,
    "completion_tokens": 15,
    "total_tokens": 50,
    "prompt_tokens_details": {"cached_tokens": 10},
}


def test_text_stream_without_usage() -> None:
    translator, chunks = run("stream_text.sse", include_usage=False)
    assert chunks == [
        chunk(TEXT_ID, {"role": "assistant", "content": ""}),
        chunk(TEXT_ID, {"content": "Hello"}),
        chunk(TEXT_ID, {"content": "!"}),
        chunk(TEXT_ID, {}, "stop"),
    ]
    assert translator.finished
    assert translator.usage == TEXT_USAGE  # tracked for the ledger even when the caller did not ask


def test_text_stream_with_usage_ends_with_a_choiceless_usage_chunk() -> None:
    translator, chunks = run("stream_text.sse", include_usage=True)
    assert chunks == [
        chunk(TEXT_ID, {"role": "assistant", "content": ""}, usage=None),
        chunk(TEXT_ID, {"content": "Hello"}, usage=None),
        chunk(TEXT_ID, {"content": "!"}, usage=None),
        chunk(TEXT_ID, {}, "stop", usage=None),
        {
            "id": TEXT_ID,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": "gpt-4o-mini",
            "choices": [],
            "usage": TEXT_USAGE,
        },
    ]
    assert translator.finished


TOOLS_ID = "chatcmpl-01T1x1fJ34qAmk2tNTrN7Up6"


def test_thinking_then_two_tool_calls_interleaved_with_text() -> None:
    # Thinking first: the role chunk has null content (no text yet), thinking is reasoning_content,
    # its signature is not relayed; each tool call gets its own index.
    translator, chunks = run("stream_tools.sse", include_usage=False)
    first_call = {
        "index": 0,
        "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    second_call = {
        "index": 1,
        "id": "toolu_01B4q90qw90lq917835lq8",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert chunks == [
        chunk(TOOLS_ID, {"role": "assistant", "content": None}),
        chunk(TOOLS_ID, {"reasoning_content": "Two cities, two calls."}),
        chunk(TOOLS_ID, {"content": "Checking San Francisco."}),
        chunk(TOOLS_ID, {"tool_calls": [first_call]}),
        chunk(TOOLS_ID, {"tool_calls": [{"index": 0, "function": {"arguments": '{"location": "San Fra'}}]}),
        chunk(TOOLS_ID, {"tool_calls": [{"index": 0, "function": {"arguments": 'ncisco, CA"}'}}]}),
        chunk(TOOLS_ID, {"content": "And Paris."}),
        chunk(TOOLS_ID, {"tool_calls": [second_call]}),
        chunk(TOOLS_ID, {"tool_calls": [{"index": 1, "function": {"arguments": '{"location": "Paris, France"}'}}]}),
        chunk(TOOLS_ID, {}, "tool_calls"),
    ]
    assert translator.finished
    assert translator.usage == {
        "prompt_tokens": 472,
        "completion_tokens": 89,
        "total_tokens": 561,
        "prompt_tokens_details": {"cached_tokens": 0},
    }


def test_error_event_raises_upstream_stream_error_and_stream_is_not_finished() -> None:
    translator = AnthropicStreamTranslator(model="gpt-4o-mini", created=CREATED, include_usage=True)
    events = sse_events("stream_error.sse")
    chunks = [c for event, data in events[:-1] for c in translator.feed(event, data)]
    assert [c["choices"][0]["delta"] for c in chunks] == [
        {"role": "assistant", "content": ""},
        {"content": "Once upon"},
    ]
    with pytest.raises(UpstreamStreamError) as caught:
        translator.feed(*events[-1])
    assert caught.value.message == "overloaded_error: Overloaded"
    assert caught.value.provider == "anthropic"
    assert caught.value.code == "upstream_stream_error"
    assert not translator.finished
    assert translator.usage == {
        "prompt_tokens": 9,
        "completion_tokens": 1,
        "total_tokens": 10,
        "prompt_tokens_details": {"cached_tokens": 0},
    }


def test_json_tool_streams_as_content_and_finishes_with_stop() -> None:
    translator = AnthropicStreamTranslator(model="m", created=1, include_usage=False)
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": {"id": "msg_j", "usage": {"input_tokens": 3}}}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "tool_use", "id": "toolu_j", "name": "json_response", "input": {}},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": '{"name": '},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": '"Ada"}'},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}},
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    deltas = [
        (c["choices"][0]["delta"], c["choices"][0]["finish_reason"]) for e, d in events for c in translator.feed(e, d)
    ]
    assert deltas == [
        ({"role": "assistant", "content": ""}, None),
        ({"content": '{"name": '}, None),
        ({"content": '"Ada"}'}, None),
        ({}, "stop"),
    ]


def test_ping_unknown_events_and_before_start() -> None:
    translator = AnthropicStreamTranslator(model="m", created=1, include_usage=True)
    assert translator.feed("ping", {"type": "ping"}) == []
    assert translator.feed("brand_new_event", {"type": "brand_new_event"}) == []
    assert translator.feed("content_block_stop", {"type": "content_block_stop", "index": 0}) == []
    assert (
        translator.feed(
            "content_block_delta", {"index": 7, "delta": {"type": "input_json_delta", "partial_json": "{}"}}
        )
        == []
    )
    assert translator.usage is None
    assert not translator.finished


def test_event_name_falls_back_to_data_type_and_stop_without_delta_still_finishes() -> None:
    translator = AnthropicStreamTranslator(model="m", created=1, include_usage=True)
    start = translator.feed("", {"type": "message_start", "message": {"id": "msg_x", "usage": {"input_tokens": 4}}})
    assert start == []  # the role chunk waits for the first block (or, here, the end)
    assert translator.feed("message_stop", {"type": "message_stop"}) == [
        chunk_for("m", "chatcmpl-x", {"role": "assistant", "content": ""}),
        chunk_for("m", "chatcmpl-x", {}, "stop"),
        {
            "id": "chatcmpl-x",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [],
            "usage": {
                "prompt_tokens": 4,
                "completion_tokens": 0,
                "total_tokens": 4,
                "prompt_tokens_details": {"cached_tokens": 0},
            },
        },
    ]
    assert translator.finished
    assert translator.feed("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "late"}}) == []


def chunk_for(model: str, chunk_id: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": chunk_id,
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        "usage": None,
    }


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        ("tool_use", "stop"),
        ("mystery", "stop"),
    ],
)
def test_message_delta_finish_reasons(stop_reason: str, finish: str) -> None:
    translator = AnthropicStreamTranslator(model="m", created=1, include_usage=False)
    translator.feed("message_start", {"message": {"id": "msg_f"}})
    opening, final = translator.feed(
        "message_delta", {"delta": {"stop_reason": stop_reason}, "usage": {"output_tokens": 2}}
    )
    assert opening["choices"][0]["delta"] == {"role": "assistant", "content": ""}  # an empty answer
    assert final["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish}
    assert translator.usage == {
        "prompt_tokens": 0,
        "completion_tokens": 2,
        "total_tokens": 2,
        "prompt_tokens_details": {"cached_tokens": 0},
    }


TOOL_ONLY_ID = "chatcmpl-01Kx7cQ9b4mV2ZkE8pL3sN1r"


def test_a_tool_call_only_answer_starts_like_openais_with_null_content() -> None:
    # OpenAI's first chunk of a tool-call answer: role, "content": null and the first call, together.
    translator, chunks = run("stream_tool_only.sse", include_usage=False)
    call = {
        "index": 0,
        "id": "toolu_01Kx7cQ9b4mV2ZkE8pL3sN1r",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert chunks == [
        chunk(TOOL_ONLY_ID, {"role": "assistant", "content": None, "tool_calls": [call]}),
        chunk(TOOL_ONLY_ID, {"tool_calls": [{"index": 0, "function": {"arguments": '{"location": '}}]}),
        chunk(TOOL_ONLY_ID, {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris, France"}'}}]}),
        chunk(TOOL_ONLY_ID, {}, "tool_calls"),
    ]
    assert translator.finished


def test_a_text_answer_starts_with_empty_string_content_once() -> None:
    _, chunks = run("stream_text.sse", include_usage=False)
    openings = [c for c in chunks if "role" in c["choices"][0]["delta"]]
    assert openings == [chunks[0]] and chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
