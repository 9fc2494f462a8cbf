"""Properties of the Anthropic stream translator, over generated event sequences.

A valid Messages stream (any mix of text, tool-use, JSON-answer and thinking blocks, pings anywhere)
becomes well-formed ``chat.completion.chunk`` objects that carry exactly the text, reasoning and
tool-call arguments sent, open as OpenAI's do (``"content": ""`` only when text comes first), end
with one finish reason, and usage when asked; arbitrary events never raise anything but
``UpstreamStreamError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from hypothesis import example, given
from hypothesis import strategies as st

from llm_gateway.errors import UpstreamStreamError
from llm_gateway.providers.anthropic.translate import AnthropicStreamTranslator
from llm_gateway.providers.anthropic.wire import JSON_TOOL_NAME
from tests.strategies import IGNORE_RANDOM_FROM_OTHER_THREADS, JSON_VALUES, PROPERTY_SETTINGS

pytestmark = IGNORE_RANDOM_FROM_OTHER_THREADS

Event = tuple[str, dict[str, Any]]
STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "stop",
}


@dataclass
class Stream:
    """A generated stream and what it carries, for comparison with the chunks."""

    events: list[Event] = field(default_factory=list)
    text: str = ""  # text blocks and the JSON-answer tool's input, in order
    reasoning: str = ""  # thinking blocks, in order
    first_block: str | None = None  # the kind of the first block
    tool_calls: list[tuple[str, str, str]] = field(default_factory=list)  # (id, name, arguments)
    stop_reason: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0


def _ev(name: str, **fields: Any) -> Event:
    return name, {"type": name, **fields}


pieces = st.lists(st.text(max_size=8), max_size=4)


@st.composite
def streams(draw: st.DrawFn) -> Stream:
    out = Stream(input_tokens=draw(st.integers(0, 10**6)), output_tokens=draw(st.integers(0, 10**6)))
    message = {"id": f"msg_{draw(st.text('abc123', min_size=1, max_size=8))}", "type": "message", "role": "assistant"}
    message["usage"] = {"input_tokens": out.input_tokens, "output_tokens": 1}
    out.events.append(_ev("message_start", message=message))
    for index in range(draw(st.integers(0, 4))):
        if draw(st.booleans()):
            out.events.append(_ev("ping"))
        kind = draw(st.sampled_from(["text", "tool_use", "json_tool", "thinking"]))
        out.first_block = out.first_block or kind
        parts = draw(pieces)
        if kind == "text":
            first = draw(st.text(max_size=5))
            out.events.append(_ev("content_block_start", index=index, content_block={"type": "text", "text": first}))
            deltas = [{"type": "text_delta", "text": piece} for piece in parts]
            out.text += first + "".join(parts)
        elif kind in ("tool_use", "json_tool"):
            name = JSON_TOOL_NAME if kind == "json_tool" else draw(st.sampled_from(["get_weather", "search", "calc"]))
            call_id = f"toolu_{index}"
            block = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
            out.events.append(_ev("content_block_start", index=index, content_block=block))
            deltas = [{"type": "input_json_delta", "partial_json": piece} for piece in parts]
            if kind == "json_tool":
                out.text += "".join(parts)
            else:
                out.tool_calls.append((call_id, name, "".join(parts)))
        else:
            out.events.append(
                _ev("content_block_start", index=index, content_block={"type": "thinking", "thinking": ""})
            )
            deltas = [{"type": "thinking_delta", "thinking": piece} for piece in parts]
            deltas.append({"type": "signature_delta", "signature": "sig"})
            out.reasoning += "".join(parts)
        out.events += [_ev("content_block_delta", index=index, delta=delta) for delta in deltas]
        out.events.append(_ev("content_block_stop", index=index))
    out.stop_reason = draw(st.none() | st.sampled_from(sorted(STOP_REASONS)))
    delta = {"stop_reason": out.stop_reason, "stop_sequence": None}
    out.events.append(_ev("message_delta", delta=delta, usage={"output_tokens": out.output_tokens}))
    out.events.append(_ev("message_stop"))
    return out


def run(stream: Stream, *, include_usage: bool, upto: int | None = None) -> tuple[AnthropicStreamTranslator, list[Any]]:
    translator = AnthropicStreamTranslator(model="gpt-4o-mini", created=1_700_000_000, include_usage=include_usage)
    chunks = [chunk for name, data in stream.events[:upto] for chunk in translator.feed(name, data)]
    return translator, chunks


def expected_finish(stream: Stream) -> str:
    reason = STOP_REASONS.get(stream.stop_reason or "", "stop")
    return "stop" if reason == "tool_calls" and not stream.tool_calls else reason


def check_chunk_shape(chunk: dict[str, Any], *, include_usage: bool) -> None:
    orjson.dumps(chunk)
    assert chunk["object"] == "chat.completion.chunk"
    assert chunk["model"] == "gpt-4o-mini" and chunk["created"] == 1_700_000_000
    assert chunk["id"].startswith("chatcmpl-")
    if chunk["choices"]:
        (choice,) = chunk["choices"]
        assert set(choice) == {"index", "delta", "logprobs", "finish_reason"} and choice["index"] == 0
        assert isinstance(choice["delta"], dict)
        assert ("usage" in chunk) == include_usage and chunk.get("usage") is None
    else:
        assert include_usage, "a choice-less chunk is only the final usage chunk"


def collect_tool_calls(chunks: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    calls: dict[int, list[str]] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            for call in choice["delta"].get("tool_calls", []):
                if call["index"] not in calls:
                    assert call["index"] == len(calls), "tool call indexes count up from 0"
                    assert call["type"] == "function" and call["function"]["arguments"] == ""
                    calls[call["index"]] = [call["id"], call["function"]["name"], ""]
                else:
                    assert set(call) == {"index", "function"}
                    calls[call["index"]][2] += call["function"]["arguments"]
    return [(entry[0], entry[1], entry[2]) for entry in calls.values()]


@PROPERTY_SETTINGS
@given(streams(), st.booleans())
def test_a_valid_stream_becomes_well_formed_chunks_carrying_the_same_answer(
    stream: Stream, include_usage: bool
) -> None:
    translator, chunks = run(stream, include_usage=include_usage)
    assert translator.finished
    for chunk in chunks:
        check_chunk_shape(chunk, include_usage=include_usage)
    assert len({chunk["id"] for chunk in chunks}) == 1
    with_choices = [chunk for chunk in chunks if chunk["choices"]]
    first = with_choices[0]["choices"][0]["delta"]
    opens_with_text = stream.first_block in (None, "text", "json_tool")
    assert first["role"] == "assistant" and first["content"] == ("" if opens_with_text else None)
    assert set(first) == (
        {"role", "content", "tool_calls"} if stream.first_block == "tool_use" else {"role", "content"}
    )
    assert all("role" not in chunk["choices"][0]["delta"] for chunk in with_choices[1:])
    reasoning = "".join(chunk["choices"][0]["delta"].get("reasoning_content") or "" for chunk in with_choices)
    assert reasoning == stream.reasoning
    finishes = [chunk["choices"][0]["finish_reason"] for chunk in with_choices]
    assert finishes[-1] == expected_finish(stream) and all(reason is None for reason in finishes[:-1])
    text = "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in with_choices)
    assert text == stream.text
    assert collect_tool_calls(with_choices) == stream.tool_calls
    usage = {
        "prompt_tokens": stream.input_tokens,
        "completion_tokens": stream.output_tokens,
        "total_tokens": stream.input_tokens + stream.output_tokens,
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    assert translator.usage == usage
    if include_usage:
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == usage
    else:
        assert chunks[-1] is with_choices[-1]


@PROPERTY_SETTINGS
@given(streams(), st.data())
def test_a_stream_cut_before_message_stop_is_never_finished(stream: Stream, data: st.DataObject) -> None:
    upto = data.draw(st.integers(0, len(stream.events) - 1))
    translator, chunks = run(stream, include_usage=True, upto=upto)
    assert not translator.finished
    assert all(chunk["choices"] for chunk in chunks), "no final usage chunk before message_stop"


@PROPERTY_SETTINGS
@given(streams())
def test_events_after_message_stop_are_ignored(stream: Stream) -> None:
    translator, _ = run(stream, include_usage=False)
    for name, data in stream.events:
        assert translator.feed(name, data) == []


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the right kind of value, sometimes any JSON value at all."""
    return st.one_of(strategy, strategy, JSON_VALUES)


EVENT_NAMES = st.sampled_from(
    ["message_start", "content_block_start", "content_block_delta", "content_block_stop", "message_delta",
     "message_stop", "ping", "error", "unknown"]
)  # fmt: skip
short_text = st.text(max_size=4)
usages = st.dictionaries(
    st.sampled_from(["input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"]),
    maybe(st.integers(0, 100)),
)
blocks = st.fixed_dictionaries(
    {"type": maybe(st.sampled_from(["text", "tool_use", "thinking"]))},
    optional={
        "text": maybe(short_text),
        "id": maybe(short_text),
        "name": maybe(st.sampled_from(["f", JSON_TOOL_NAME])),
    },
)
deltas = st.fixed_dictionaries(
    {"type": maybe(st.sampled_from(["text_delta", "input_json_delta", "thinking_delta"]))},
    optional={"text": maybe(short_text), "partial_json": maybe(short_text), "stop_reason": maybe(short_text)},
)
loose_events = st.tuples(
    EVENT_NAMES,
    st.fixed_dictionaries(
        {},
        optional={
            "index": maybe(st.integers(0, 2)),
            "message": maybe(st.fixed_dictionaries({}, optional={"id": maybe(short_text), "usage": maybe(usages)})),
            "content_block": maybe(blocks),
            "delta": maybe(deltas),
            "usage": maybe(usages),
            "error": maybe(
                st.fixed_dictionaries({}, optional={"type": maybe(short_text), "message": maybe(short_text)})
            ),
        },
    ),
)


@PROPERTY_SETTINGS
@given(st.lists(loose_events, max_size=10), st.booleans())
@example([_ev("content_block_delta", index=[0], delta={"type": "input_json_delta", "partial_json": "{"})], False)
def test_arbitrary_events_yield_chunks_or_an_upstream_stream_error(events: list[Event], include_usage: bool) -> None:
    translator = AnthropicStreamTranslator(model="m", created=1, include_usage=include_usage)
    try:
        for name, data in events:
            for chunk in translator.feed(name, data):
                orjson.dumps(chunk)
    except UpstreamStreamError as exc:
        assert exc.retryable and exc.message
