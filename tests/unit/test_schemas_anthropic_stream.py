"""Anthropic message objects and stream events: framing, assembly checked against the Anthropic SDK's own
accumulation, replay checked against the SDK's event types, usage and generated text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message, RawMessageStreamEvent
from pydantic import TypeAdapter

from llm_gateway.schemas.anthropic_stream import (
    MessageAssembly,
    is_complete_message,
    message_text,
    message_to_events,
    message_usage,
    stop_reasons,
)
from llm_gateway.schemas.core import Usage
from llm_gateway.schemas.sse_frames import frame, split_frame

FIXTURES = Path(__file__).parent / "fixtures" / "anthropic"
STREAM_EVENT = TypeAdapter(RawMessageStreamEvent)
Events = list[tuple[str, dict[str, Any]]]


def fixture_events(name: str) -> Events:
    records = (FIXTURES / name).read_bytes().strip().split(b"\n\n")
    return [(event, orjson.loads(data)) for event, data in map(split_frame, records)]


def start(**usage: int) -> tuple[str, dict[str, Any]]:
    message = {"id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
               "content": [], "stop_reason": None, "stop_sequence": None,
               "usage": {"input_tokens": 10, "output_tokens": 1, **usage}}  # fmt: skip
    return "message_start", {"type": "message_start", "message": message}


def block(index: int, content_block: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return "content_block_start", {"type": "content_block_start", "index": index, "content_block": content_block}


def delta(index: int, **fields: Any) -> tuple[str, dict[str, Any]]:
    return "content_block_delta", {"type": "content_block_delta", "index": index, "delta": fields}


def stop(index: int) -> tuple[str, dict[str, Any]]:
    return "content_block_stop", {"type": "content_block_stop", "index": index}


def end(reason: str, **usage: Any) -> Events:
    return [
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": None},
                           "usage": usage}),
        ("message_stop", {"type": "message_stop"}),
    ]  # fmt: skip


CITATION = {"type": "char_location", "cited_text": "The grass is green.", "document_index": 0,
            "document_title": "Facts", "start_char_index": 0, "end_char_index": 19, "file_id": None}  # fmt: skip
SEARCH_RESULT = {"type": "web_search_result", "url": "https://example.com", "title": "Example",
                 "encrypted_content": "EqgfCioIARgB", "page_age": None}  # fmt: skip
WEB_CITATION = {"type": "web_search_result_location", "url": "https://example.com", "title": "Example",
                "encrypted_index": "Eo8BCioIAhgB", "cited_text": "Example text"}  # fmt: skip

CITATIONS: Events = [
    start(cache_read_input_tokens=5),
    block(0, {"type": "text", "text": "", "citations": None}),
    delta(0, type="text_delta", text="According to the document, "),
    stop(0),
    block(1, {"type": "text", "text": ""}),
    delta(1, type="citations_delta", citation=CITATION),
    delta(1, type="text_delta", text="the grass "),
    delta(1, type="text_delta", text="is green."),
    delta(1, type="citations_delta", citation={**CITATION, "start_char_index": 3}),
    stop(1),
    *end("end_turn", output_tokens=30),
]
WEB_SEARCH: Events = [
    start(),
    block(0, {"type": "text", "text": "Let me search."}),
    stop(0),
    block(1, {"type": "server_tool_use", "id": "srvtoolu_01", "name": "web_search", "input": {}}),
    delta(1, type="input_json_delta", partial_json='{"query": "wea'),
    delta(1, type="input_json_delta", partial_json='ther"}'),
    stop(1),
    block(2, {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_01", "content": [SEARCH_RESULT]}),
    stop(2),
    block(3, {"type": "text", "text": ""}),
    delta(3, type="citations_delta", citation=WEB_CITATION),
    delta(3, type="text_delta", text="Sunny."),
    stop(3),
    ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                       "usage": {"input_tokens": 12, "output_tokens": 40,
                                 "server_tool_use": {"web_search_requests": 1, "web_fetch_requests": 0}}}),
    ("message_stop", {"type": "message_stop"}),
]  # fmt: skip
REDACTED: Events = [
    start(),
    block(0, {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4a"}),
    stop(0),
    block(1, {"type": "thinking", "thinking": "", "signature": ""}),
    delta(1, type="thinking_delta", thinking="Let me "),
    delta(1, type="thinking_delta", thinking="think."),
    delta(1, type="signature_delta", signature="sig-1"),
    stop(1),
    block(2, {"type": "tool_use", "id": "toolu_01", "name": "noop", "input": {}}),
    delta(2, type="input_json_delta", partial_json=""),
    stop(2),
    ("message_delta", {"type": "message_delta",
                       "delta": {"stop_reason": "stop_sequence", "stop_sequence": "END"},
                       "usage": {"output_tokens": 7, "cache_read_input_tokens": None}}),
    ("message_stop", {"type": "message_stop"}),
]  # fmt: skip

SEQUENCES: dict[str, Events] = {
    "text": fixture_events("stream_text.sse"),
    "tools": fixture_events("stream_tools.sse"),
    "tool only": fixture_events("stream_tool_only.sse"),
    "citations": CITATIONS,
    "web search": WEB_SEARCH,
    "redacted, thinking, empty tool input": REDACTED,
}


def assemble(events: Events) -> dict[str, Any]:
    assembly = MessageAssembly()
    for event, data in events:
        assembly.feed(event, data)
    return assembly.result()


def sdk_accumulate(events: Events) -> Message:
    """The Anthropic SDK's ``MessageStream`` accumulation (ping skipped, as its stream reader does)."""
    snapshot = None
    json_bufs: dict[int, bytes] = {}
    for event, data in events:
        if event != "ping":
            snapshot = accumulate_event(event=data, current_snapshot=snapshot, json_bufs=json_bufs)  # type: ignore[arg-type]
    assert snapshot is not None
    return Message.model_validate(snapshot.to_dict())


@pytest.mark.parametrize("name", SEQUENCES)
def test_assembly_matches_the_sdk_accumulation(name: str) -> None:
    events = SEQUENCES[name]
    mine = assemble(events)
    assert Message.model_validate(mine).model_dump() == sdk_accumulate(events).model_dump()
    assert is_complete_message(mine)


def test_assembly_of_the_tools_stream_whole() -> None:
    message = assemble(SEQUENCES["tools"])
    assert [b["type"] for b in message["content"]] == ["thinking", "text", "tool_use", "text", "tool_use"]
    assert message["content"][0] == {"type": "thinking", "thinking": "Two cities, two calls.",
                                     "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"}  # fmt: skip
    assert message["content"][2]["input"] == {"location": "San Francisco, CA"}
    assert message["stop_reason"] == "tool_use"
    assert message_usage(message["usage"]) == Usage(prompt_tokens=472, completion_tokens=89, cached_tokens=0)


def test_assembly_of_citations_appends_to_the_block() -> None:
    message = assemble(CITATIONS)
    assert message["content"][0] == {"type": "text", "text": "According to the document, ", "citations": None}
    assert message["content"][1] == {"type": "text", "text": "the grass is green.",
                                     "citations": [CITATION, {**CITATION, "start_char_index": 3}]}  # fmt: skip


def test_usage_on_message_delta_replaces_and_keeps_what_it_omits() -> None:
    message = assemble(WEB_SEARCH)
    assert message["usage"] == {
        "input_tokens": 12, "output_tokens": 40, "server_tool_use": {"web_search_requests": 1, "web_fetch_requests": 0}
    }  # fmt: skip
    assert assemble(REDACTED)["usage"] == {"input_tokens": 10, "output_tokens": 7}
    assert assemble(REDACTED)["stop_sequence"] == "END"


def test_unparsable_tool_input_becomes_an_empty_object() -> None:
    events = [start(), block(0, {"type": "tool_use", "id": "t", "name": "f", "input": {}}),
              delta(0, type="input_json_delta", partial_json='{"city": "Par'), stop(0), *end("max_tokens")]  # fmt: skip
    assert assemble(events)["content"][0]["input"] == {}
    events[2] = delta(0, type="input_json_delta", partial_json="[1, 2]")  # JSON, but not an object
    assert assemble(events)["content"][0]["input"] == {}


def test_a_stream_cut_short_is_not_complete() -> None:
    events = fixture_events("stream_error.sse")
    message = assemble(events)
    assert message["content"] == [{"type": "text", "text": "Once upon"}]
    assert not is_complete_message(message)
    assert stop_reasons(message) == ()
    assert not is_complete_message(MessageAssembly().result())


def test_result_may_be_asked_for_while_the_stream_goes_on() -> None:
    assembly = MessageAssembly()
    events = SEQUENCES["text"]
    for event, data in events[:4]:
        assembly.feed(event, data)
    assert assembly.result()["content"] == [{"type": "text", "text": "Hello"}]
    for event, data in events[4:]:
        assembly.feed(event, data)
    assert assembly.result()["content"] == [{"type": "text", "text": "Hello!"}]
    assert assembly.result() == assemble(events)


def test_events_out_of_place_are_ignored() -> None:
    assembly = MessageAssembly()
    for event, data in [delta(3, type="text_delta", text="x"), ("", {"type": "ping"}), ("message_delta", [])]:
        assembly.feed(event, data)  # type: ignore[arg-type]
    events = [start(), block(0, {"type": "text", "text": ""}), delta(0, type="thinking_delta", thinking="no"),
              delta(0, type="input_json_delta", partial_json="{}"), delta(0, type="mystery_delta"),
              delta(0, type="text_delta", text="yes"), *end("end_turn")]  # fmt: skip
    for _, data in events:
        assembly.feed("", data)  # the event name may come from data["type"] alone
    assert assembly.result()["content"] == [{"type": "text", "text": "yes"}]


@pytest.mark.parametrize("name", SEQUENCES)
def test_replay_gives_the_message_back_and_every_event_is_anthropics(name: str) -> None:
    message = assemble(SEQUENCES[name])
    events = message_to_events(message)
    parsed = [split_frame(event) for event in events]
    for event, data in parsed:
        assert STREAM_EVENT.validate_json(data).type == event
    names = [event for event, _ in parsed]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert assemble([(event, orjson.loads(data)) for event, data in parsed]) == message
    assert sdk_accumulate([(event, orjson.loads(data)) for event, data in parsed]).model_dump() == (
        Message.model_validate(message).model_dump()
    )


def test_replay_streams_each_block_in_one_delta() -> None:
    message = assemble(SEQUENCES["tools"])
    parsed = [(event, orjson.loads(data)) for event, data in map(split_frame, message_to_events(message))]
    deltas = [data["delta"] for event, data in parsed if event == "content_block_delta"]
    assert deltas == [
        {"type": "thinking_delta", "thinking": "Two cities, two calls."},
        {"type": "signature_delta", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"},
        {"type": "text_delta", "text": "Checking San Francisco."},
        {"type": "input_json_delta", "partial_json": '{"location":"San Francisco, CA"}'},
        {"type": "text_delta", "text": "And Paris."},
        {"type": "input_json_delta", "partial_json": '{"location":"Paris, France"}'},
    ]
    start_message = parsed[0][1]["message"]
    assert start_message["content"] == [] and start_message["stop_reason"] is None
    assert start_message["usage"]["output_tokens"] == 0
    assert parsed[-2][1]["usage"] == message["usage"]


def test_frame_and_split_frame() -> None:
    framed = frame("message_stop", b'{"type":"message_stop"}')
    assert framed == b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    assert split_frame(framed) == ("message_stop", b'{"type":"message_stop"}')
    assert split_frame(b"event:ping\ndata:{}\n\n") == ("ping", b"{}")
    assert split_frame(b"data: a\ndata: b\n\n") == ("", b"a\nb")


def test_message_usage() -> None:
    usage = {"input_tokens": 10, "cache_creation_input_tokens": 200, "cache_read_input_tokens": 3000,
             "output_tokens": 42, "service_tier": "standard"}  # fmt: skip
    assert message_usage(usage) == Usage(prompt_tokens=3210, completion_tokens=42, cached_tokens=3000)
    assert message_usage({"input_tokens": 5, "cache_read_input_tokens": None, "output_tokens": True}) == Usage(5, 0, 0)
    assert message_usage(None) is None
    assert message_usage([1]) is None


def test_message_text_and_stop_reasons() -> None:
    message = assemble(SEQUENCES["tools"])
    assert message_text(message) == (
        "Two cities, two calls.Checking San Francisco."
        'get_weather{"location":"San Francisco, CA"}And Paris.get_weather{"location":"Paris, France"}'
    )
    assert message_text(assemble(REDACTED)) == "Let me think.noop{}"
    assert message_text({"content": "not a list"}) == ""
    assert stop_reasons(message) == ("tool_use",)
    assert stop_reasons({"stop_reason": None}) == ()
