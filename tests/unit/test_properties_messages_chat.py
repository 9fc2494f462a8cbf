"""Properties of the Chat-chunks -> Messages-events stream translator, over generated chunk sequences.

Any mix of reasoning, text and tool-call fragments (parallel calls, empty deltas, usage or not) becomes
a well-formed Anthropic event sequence: one ``message_start`` first, every block started before its
deltas and stopped once, indices in order, one ``message_delta`` then ``message_stop`` last; each event
is one the ``anthropic`` SDK parses; the text and tool arguments are exactly those sent (reasoning is not
relayed: unsigned thinking would be refused by a native deployment when the conversation comes back).
Arbitrary chunks never raise anything but ``UpstreamStreamError``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import anthropic
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter

from llm_gateway.errors import UpstreamStreamError
from llm_gateway.translate.messages_chat import ChatToMessagesStream
from tests.strategies import IGNORE_RANDOM_FROM_OTHER_THREADS, JSON_VALUES, PROPERTY_SETTINGS, identifiers

pytestmark = IGNORE_RANDOM_FROM_OTHER_THREADS

EVENTS: TypeAdapter[Any] = TypeAdapter(anthropic.types.RawMessageStreamEvent)
Event = tuple[str, dict[str, Any]]


@dataclass
class Answer:
    """Generated chunks and what they carry."""

    chunks: list[dict[str, Any]] = field(default_factory=list)
    text: str = ""
    reasoning: str = ""
    calls: list[tuple[str, str, str]] = field(default_factory=list)  # (id, name, arguments)
    finish: str = "stop"
    usage: bool = False


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-p",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _split(text: str, cuts: list[int]) -> list[str]:
    points = sorted({min(cut, len(text)) for cut in cuts})
    return [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]


pieces = st.lists(st.text(max_size=8), min_size=1, max_size=4)
segments = st.one_of(
    st.tuples(st.just("text"), pieces),
    st.tuples(st.just("reasoning"), pieces),
    st.tuples(
        st.just("tools"),
        st.lists(
            st.tuples(
                identifiers,
                identifiers,
                st.dictionaries(identifiers, JSON_VALUES, max_size=3),
                st.lists(st.integers(0, 40), max_size=3),
            ),
            min_size=1,
            max_size=3,
        ),
    ),
)


@st.composite
def answers(draw: st.DrawFn) -> Answer:
    answer = Answer(chunks=[_chunk({"role": "assistant", "content": ""})])
    next_call = 0
    for kind, body in draw(st.lists(segments, max_size=5)):
        if kind == "text":
            answer.chunks += [_chunk({"content": piece}) for piece in body]
            answer.text += "".join(body)
        elif kind == "reasoning":
            # Reasoning is not relayed (unsigned thinking would be refused by a native deployment later).
            answer.chunks += [_chunk({"content": None, "reasoning_content": piece}) for piece in body]
        else:
            for call_id, name, arguments, cuts in body:
                call_id = f"call_{next_call}_{call_id}"
                text = json.dumps(arguments)
                first = {
                    "index": next_call,
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": ""},
                }
                answer.chunks.append(_chunk({"tool_calls": [first]}))
                for piece in _split(text, cuts):
                    answer.chunks.append(
                        _chunk({"tool_calls": [{"index": next_call, "function": {"arguments": piece}}]})
                    )
                answer.calls.append((call_id, name, text))
                next_call += 1
        if draw(st.booleans()):
            answer.chunks.append(_chunk({}))  # an empty delta
    answer.finish = draw(st.sampled_from(["stop", "length", "tool_calls", "content_filter"]))
    answer.chunks.append(_chunk({}, answer.finish))
    answer.usage = draw(st.booleans())
    if answer.usage:
        usage = {"prompt_tokens": 10, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 4}}
        answer.chunks.append({"id": "chatcmpl-p", "choices": [], "usage": usage})
    return answer


def check_well_formed(events: list[Event]) -> None:
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names.count("message_start") == 1
    assert names[-2:] == ["message_delta", "message_stop"]
    assert names.count("message_delta") == names.count("message_stop") == 1
    open_index: int | None = None
    next_index = 0
    for name, data in events[1:-2]:
        assert EVENTS.validate_python(data).type == name
        if name == "content_block_start":
            assert open_index is None and data["index"] == next_index
            open_index, next_index = next_index, next_index + 1
        elif name == "content_block_delta":
            assert data["index"] == open_index
            delta = data["delta"]
            assert delta.get("text") or delta.get("thinking") or delta.get("partial_json")  # nothing empty
        else:
            assert name == "content_block_stop" and data["index"] == open_index
            open_index = None
    assert open_index is None
    for _, data in (events[0], *events[-2:]):
        EVENTS.validate_python(data)


@PROPERTY_SETTINGS
@given(answers())
def test_events_are_well_formed_and_carry_what_was_sent(answer: Answer) -> None:
    stream = ChatToMessagesStream(model="claude-x")
    events = [event for chunk in answer.chunks for event in stream.feed(chunk)]
    events += stream.finish()
    assert stream.finished
    check_well_formed(events)
    kinds: dict[int, str] = {}
    text = reasoning = ""
    calls: list[list[str]] = []
    for name, data in events:
        if name == "content_block_start":
            block = data["content_block"]
            kinds[data["index"]] = block["type"]
            if block["type"] == "tool_use":
                calls.append([block["id"], block["name"], ""])
        elif name == "content_block_delta":
            delta = data["delta"]
            text += delta.get("text", "")
            reasoning += delta.get("thinking", "")
            if "partial_json" in delta:
                assert kinds[data["index"]] == "tool_use"
                calls[-1][2] += delta["partial_json"]
    assert (text, reasoning) == (answer.text, answer.reasoning)
    assert [tuple(call) for call in calls] == answer.calls
    expected = {"length": "max_tokens", "content_filter": "refusal"}.get(answer.finish)
    expected = expected or ("tool_use" if answer.calls else "end_turn")
    assert events[-2][1]["delta"]["stop_reason"] == expected
    usage = events[-2][1]["usage"]
    assert usage == (
        {"input_tokens": 6, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 4, "output_tokens": 5}
        if answer.usage
        else {"output_tokens": 0}
    )


chunk_values = st.dictionaries(
    st.sampled_from(["id", "choices", "usage", "delta"]),
    JSON_VALUES
    | st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                "index": st.integers(0, 2) | JSON_VALUES,
                "finish_reason": st.sampled_from(["stop", "length", None]) | JSON_VALUES,
                "delta": st.fixed_dictionaries(
                    {},
                    optional={
                        "content": st.text(max_size=3) | JSON_VALUES,
                        "reasoning_content": st.text(max_size=3) | JSON_VALUES,
                        "tool_calls": st.lists(
                            st.fixed_dictionaries(
                                {},
                                optional={
                                    "index": st.integers(0, 3) | JSON_VALUES,
                                    "id": identifiers | JSON_VALUES,
                                    "function": st.fixed_dictionaries(
                                        {},
                                        optional={
                                            "name": identifiers | JSON_VALUES,
                                            "arguments": st.text(max_size=3) | JSON_VALUES,
                                        },
                                    )
                                    | JSON_VALUES,
                                },
                            )
                            | JSON_VALUES,
                            max_size=2,
                        )
                        | JSON_VALUES,
                    },
                )
                | JSON_VALUES,
            },
        ),
        max_size=2,
    ),
)


@PROPERTY_SETTINGS
@given(st.lists(chunk_values, max_size=8))
def test_arbitrary_chunks_make_valid_events_or_a_stream_error(chunks: list[dict[str, Any]]) -> None:
    stream = ChatToMessagesStream(model="claude-x")
    try:
        events = [event for chunk in chunks for event in stream.feed(chunk)]
    except UpstreamStreamError:
        return
    check_well_formed(events + stream.finish())
