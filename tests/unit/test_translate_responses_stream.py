"""Chat Completions chunks -> OpenAI Responses stream events, a Response replayed as events, and events assembled
back: whole event sequences from recorded-style chat streams, every event checked against the official
``openai`` SDK's types and fed through the SDK's own stream accumulator."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from openai import omit
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import FunctionToolParam, Response, ResponseStreamEvent
from pydantic import TypeAdapter

from llm_gateway.errors import UpstreamStreamError
from llm_gateway.schemas.core import Usage
from llm_gateway.translate.responses_chat import chat_to_response
from llm_gateway.translate.responses_chat_stream import (
    ChatToResponsesStream,
    ResponseAssembly,
    frame,
    response_to_events,
)

FIXTURES = Path(__file__).parent / "fixtures"
EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
MODEL = "gpt-4o-mini-2024-07-18"
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "name": "get_weather",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}
Event = tuple[str, dict[str, Any]]
Chunk = dict[str, Any]
IDS = re.compile(r"\b(msg|fc|call)_[0-9a-f]{32}\b")


def sse_chunks(name: str) -> list[dict[str, Any]]:
    records = (FIXTURES / name).read_text().strip().split("\n\n")
    payloads = [record.removeprefix("data: ") for record in records]
    return [orjson.loads(payload) for payload in payloads if payload != "[DONE]"]


def request(**fields: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "input": "Hi", "store": False, **fields}


def translator(body: dict[str, Any] | None = None) -> ChatToResponsesStream:
    return ChatToResponsesStream(body or request(), response_id="resp_s", model=MODEL, created_at=7)


def translate(chunks: list[dict[str, Any]], body: dict[str, Any] | None = None) -> list[Event]:
    stream = translator(body)
    events = [event for chunk in chunks for event in stream.feed(chunk)]
    return events + stream.finish()


def checked(events: list[Event], tools: list[dict[str, Any]] | None = None) -> Response:
    """Every event validated by the SDK and numbered in order, fed through the SDK's accumulator; the Response
    it ends with (the terminal event's, validated, for an incomplete one)."""
    state: ResponseStreamState[Any] = ResponseStreamState(
        input_tools=[FunctionToolParam(**tool) for tool in tools] if tools else omit, text_format=omit
    )
    for number, (kind, data) in enumerate(events):
        assert data["type"] == kind
        assert data["sequence_number"] == number
        event = EVENTS.validate_python(data)
        assert event.type == kind
        state.handle_event(event)
    kind, last = events[-1]
    if kind == "response.completed":
        assert state._completed_response is not None
        return state._completed_response
    return Response.model_validate(last["response"])


def masked(value: Any) -> Any:
    return orjson.loads(IDS.sub(lambda m: f"{m.group(1)}_*", orjson.dumps(value).decode()))


def kinds(events: list[Event]) -> list[str]:
    return [kind for kind, _ in events]


def collapsed(events: list[Event]) -> list[str]:
    """The event types with runs of deltas counted once: the shape a replay shares with a live stream."""
    return [kind for kind, _ in itertools.groupby(kinds(events))]


def text_chunk(text: str, **choice: Any) -> dict[str, Any]:
    return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}, **choice}]}


def call_chunk(index: int | None, call_id: str | None = None, name: str | None = None, args: str = "") -> Chunk:
    call: dict[str, Any] = {"function": {"arguments": args}}
    if index is not None:
        call["index"] = index
    if call_id is not None:
        call["id"] = call_id
        call["type"] = "function"
    if name is not None:
        call["function"]["name"] = name
    return {"choices": [{"index": 0, "delta": {"tool_calls": [call]}}]}


def finish_chunk(reason: str) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {}, "finish_reason": reason}]}


def usage_chunk(prompt: int = 5, completion: int = 3) -> dict[str, Any]:
    return {"choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": 8}}


# ------------------------------------------------------------------------------------- live


def test_a_text_stream_translates_whole() -> None:
    events = translate(sse_chunks("messages_chat/stream_text.sse"))
    started = {
        "id": "resp_s", "object": "response", "created_at": 7, "status": "in_progress", "error": None,
        "incomplete_details": None, "instructions": None, "max_output_tokens": None, "model": MODEL, "output": [],
        "parallel_tool_calls": True, "previous_response_id": None, "temperature": 1.0, "tool_choice": "auto",
        "tools": [], "top_p": 1.0, "text": {"format": {"type": "text"}}, "truncation": "disabled", "usage": None,
        "metadata": {}, "store": False, "user": None,
    }  # fmt: skip
    item = {"id": "msg_*", "type": "message", "status": "completed", "role": "assistant"}
    part = {"type": "output_text", "text": "Hello there!", "annotations": [], "logprobs": []}
    where = {"item_id": "msg_*", "output_index": 0, "content_index": 0}
    assert masked(events) == [
        ["response.created", {"type": "response.created", "sequence_number": 0, "response": started}],
        ["response.in_progress", {"type": "response.in_progress", "sequence_number": 1, "response": started}],
        ["response.output_item.added", {"type": "response.output_item.added", "sequence_number": 2,
                                        "output_index": 0, "item": {**item, "status": "in_progress", "content": []}}],
        ["response.content_part.added", {"type": "response.content_part.added", "sequence_number": 3, **where,
                                         "part": {**part, "text": ""}}],
        ["response.output_text.delta", {"type": "response.output_text.delta", "sequence_number": 4, **where,
                                        "delta": "Hello", "logprobs": []}],
        ["response.output_text.delta", {"type": "response.output_text.delta", "sequence_number": 5, **where,
                                        "delta": " there!", "logprobs": []}],
        ["response.output_text.done", {"type": "response.output_text.done", "sequence_number": 6, **where,
                                       "text": "Hello there!", "logprobs": []}],
        ["response.content_part.done", {"type": "response.content_part.done", "sequence_number": 7, **where,
                                        "part": part}],
        ["response.output_item.done", {"type": "response.output_item.done", "sequence_number": 8, "output_index": 0,
                                       "item": {**item, "content": [part]}}],
        ["response.completed", {"type": "response.completed", "sequence_number": 9, "response": {
            **started,
            "status": "completed",
            "output": [{**item, "content": [part]}],
            "usage": {"input_tokens": 2100, "input_tokens_details": {"cached_tokens": 2048, "cache_write_tokens": 0},
                      "output_tokens": 3, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 2103},
        }}],
    ]  # fmt: skip
    final = checked(events)
    assert final.output_text == "Hello there!"
    assert final.usage is not None and final.usage.input_tokens_details.cached_tokens == 2048


def test_parallel_tool_calls_become_one_function_call_item_each() -> None:
    events = translate(sse_chunks("messages_chat/stream_tools.sse"), request(tools=[WEATHER_TOOL]))
    assert collapsed(events) == [
        "response.created",
        "response.in_progress",
        *["response.output_item.added", "response.function_call_arguments.delta",
          "response.function_call_arguments.done", "response.output_item.done"] * 2,
        "response.completed",
    ]  # fmt: skip
    assert masked(events[2][1]["item"]) == {
        "id": "fc_*", "type": "function_call", "status": "in_progress", "arguments": "", "call_id": "call_paris1",
        "name": "get_weather",
    }  # fmt: skip
    final = checked(events, tools=[WEATHER_TOOL])
    calls = [item for item in final.output if item.type == "function_call"]
    assert [(c.call_id, c.name, c.arguments) for c in calls] == [
        ("call_paris1", "get_weather", '{"city": "Paris"}'),
        ("call_rome2", "get_weather", '{"city": "Rome"}'),
    ]
    assert [c.parsed_arguments for c in calls] == [{"city": "Paris"}, {"city": "Rome"}]  # type: ignore[attr-defined]
    assert final.output_text == ""


def test_text_then_a_tool_call_closes_the_message_first() -> None:
    stream = translator(request(tools=[WEATHER_TOOL]))
    events = [event for chunk in sse_chunks("responses_chat/stream_text_then_tool.sse") for event in stream.feed(chunk)]
    events += stream.finish()
    assert collapsed(events) == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.completed",
    ]  # fmt: skip
    final = checked(events, tools=[WEATHER_TOOL])
    assert final.output_text == "Checking the weather."
    statuses = [(item.type, item.status) for item in final.output]
    assert statuses == [("message", "completed"), ("function_call", "completed")]
    assert final.output[1].arguments == '{"city":"Oslo"}'  # type: ignore[union-attr]
    assert stream.usage == Usage(prompt_tokens=412, completion_tokens=31, cached_tokens=256)


def test_a_refusal_streams_as_refusal_events() -> None:
    events = translate(sse_chunks("responses_chat/stream_refusal.sse"))
    assert collapsed(events) == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.refusal.delta", "response.refusal.done", "response.content_part.done",
        "response.output_item.done", "response.completed",
    ]  # fmt: skip
    assert events[3][1]["part"] == {"type": "refusal", "refusal": ""}
    assert events[6][1]["refusal"] == "I'm sorry, I can't help with that."
    final = checked(events)
    assert final.output_text == ""
    assert events[-1][1]["response"]["output"][0]["content"] == [
        {"type": "refusal", "refusal": "I'm sorry, I can't help with that."}
    ]


def test_text_then_a_refusal_are_two_parts_of_one_message() -> None:
    chunks = [text_chunk("Well"), {"choices": [{"index": 0, "delta": {"refusal": "No."}}]}, finish_chunk("stop")]
    events = translate(chunks)
    final = checked(events)
    assert events[-1][1]["response"]["output"][0]["content"] == [
        {"type": "output_text", "text": "Well", "annotations": [], "logprobs": []},
        {"type": "refusal", "refusal": "No."},
    ]
    assert final.output_text == "Well"
    assert [e[1]["content_index"] for e in events if e[0].startswith("response.content_part")] == [0, 0, 1, 1]


def test_a_length_cut_stream_is_incomplete_when_usage_comes_with_the_finish_reason() -> None:
    """DeepSeek sends usage beside the finish reason: the stream closes at that chunk."""
    chunks = sse_chunks("messages_chat/stream_reasoning_length.sse")
    stream = translator(request(max_output_tokens=16))
    per_chunk = [stream.feed(chunk) for chunk in chunks]
    assert per_chunk[-1][-1][0] == "response.incomplete"
    assert stream.finish() == []
    events = [event for batch in per_chunk for event in batch]
    final = checked(events)
    response = events[-1][1]["response"]
    assert (response["status"], response["incomplete_details"]) == ("incomplete", {"reason": "max_output_tokens"})
    assert response["max_output_tokens"] == 16
    assert final.output_text == "The answer"  # the reasoning_content deltas are not relayed
    assert events[-2][1]["item"]["status"] == "incomplete"
    assert stream.usage == Usage(prompt_tokens=12, completion_tokens=16, cached_tokens=0)


def test_a_content_filter_ends_incomplete() -> None:
    events = translate([text_chunk("Some"), finish_chunk("content_filter"), usage_chunk()])
    assert events[-1][0] == "response.incomplete"
    assert events[-1][1]["response"]["incomplete_details"] == {"reason": "content_filter"}
    checked(events)


def test_the_terminal_event_waits_for_usage_and_carries_it() -> None:
    stream = translator()
    assert kinds(stream.feed(text_chunk("Hi"))) == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta",
    ]  # fmt: skip
    assert kinds(stream.feed(finish_chunk("stop"))) == [
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
    ]  # fmt: skip
    assert stream.usage is None
    closing = stream.feed(usage_chunk(5, 3))
    assert kinds(closing) == ["response.completed"]
    assert closing[0][1]["response"]["usage"]["total_tokens"] == 8
    assert stream.usage == Usage(prompt_tokens=5, completion_tokens=3)
    assert stream.feed(text_chunk("late")) == [] and stream.finish() == []


def test_finish_closes_a_stream_without_usage_or_finish_reason() -> None:
    stream = translator()
    events = stream.feed(text_chunk("Hi")) + stream.finish()
    assert events[-1][0] == "response.completed"
    assert events[-1][1]["response"]["usage"] is None
    assert checked(events).output_text == "Hi"
    assert kinds(translate([])) == ["response.created", "response.in_progress", "response.completed"]
    assert checked(translate([])).output == []


def test_empty_deltas_and_junk_send_nothing() -> None:
    stream = translator()
    stream.feed(text_chunk("x"))
    assert stream.feed(text_chunk("")) == []
    assert stream.feed({"choices": [{"index": 0, "delta": {"content": None, "tool_calls": None}}]}) == []
    assert stream.feed({"choices": ["junk"]}) == []
    assert stream.feed("junk") == []  # type: ignore[arg-type]


def test_servers_that_number_every_call_zero_and_name_calls_late() -> None:
    chunks = [
        call_chunk(0, "call_a", "f", '{"x":'),
        call_chunk(0, None, None, "1}"),
        call_chunk(0, "call_b", None, "{}"),
        call_chunk(0, None, "g"),
        call_chunk(None, "", "h", ""),  # no index, no id: the open call goes on (and keeps its name)
        finish_chunk("tool_calls"),
    ]
    events = translate(chunks)
    final = checked(events)
    calls = [(item.name, item.arguments) for item in final.output if item.type == "function_call"]
    assert calls == [("f", '{"x":1}'), ("g", "{}")]
    call_ids = [item.call_id for item in final.output if item.type == "function_call"]
    assert call_ids == ["call_a", "call_b"]


def test_a_call_without_an_id_gets_one_and_repeated_ids_are_made_unique() -> None:
    events = translate([call_chunk(0, None, "f", "{}"), call_chunk(1, "call_1", "g"), call_chunk(2, "call_1", "h")])
    items = [data["item"] for kind, data in events if kind == "response.output_item.done"]
    assert re.fullmatch(r"call_[0-9a-f]{32}", items[0]["call_id"])
    assert items[1]["call_id"] == "call_1"
    assert re.fullmatch(r"call_[0-9a-f]{32}", items[2]["call_id"])
    checked(events)


def test_interleaved_parallel_call_arguments_are_an_upstream_error() -> None:
    stream = translator()
    stream.feed(call_chunk(0, "call_a", "f", "{"))
    stream.feed(call_chunk(1, "call_b", "g", "{"))
    with pytest.raises(UpstreamStreamError):
        stream.feed(call_chunk(0, None, None, "}"))


def test_logprobs_stream_on_the_text_events_and_land_on_the_part() -> None:
    body = request(include=["message.output_text.logprobs"], top_logprobs=2)
    events = translate(sse_chunks("responses_chat/stream_logprobs.sse"), body)
    deltas = [data for kind, data in events if kind == "response.output_text.delta"]
    assert [d["logprobs"] for d in deltas] == [
        [{"token": "Yes", "logprob": -0.0012,
          "top_logprobs": [{"token": "Yes", "logprob": -0.0012}, {"token": "No", "logprob": -6.9}]}],
        [{"token": ".", "logprob": -0.31,
          "top_logprobs": [{"token": ".", "logprob": -0.31}, {"token": "!", "logprob": -1.4}]}],
    ]  # fmt: skip
    done = next(data for kind, data in events if kind == "response.output_text.done")
    assert done["logprobs"] == [entry for d in deltas for entry in d["logprobs"]]
    part = events[-1][1]["response"]["output"][0]["content"][0]
    assert [(p["token"], p["bytes"]) for p in part["logprobs"]] == [("Yes", [89, 101, 115]), (".", [46])]
    assert events[-1][1]["response"]["top_logprobs"] == 2
    assert checked(events).output_text == "Yes."


def test_frame() -> None:
    assert frame("response.output_text.delta", {"type": "response.output_text.delta", "delta": "é"}) == (
        b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"\xc3\xa9"}\n\n'
    )


# ------------------------------------------------------------------------------------- replay and assembly

STREAMS = [
    ("messages_chat/stream_text.sse", None),
    ("messages_chat/stream_tools.sse", [WEATHER_TOOL]),
    ("messages_chat/stream_reasoning_length.sse", None),
    ("responses_chat/stream_text_then_tool.sse", [WEATHER_TOOL]),
    ("responses_chat/stream_refusal.sse", None),
    ("responses_chat/stream_logprobs.sse", None),
]


@pytest.mark.parametrize(("name", "tools"), STREAMS)
def test_a_replay_has_the_live_stream_s_shape_and_assembles_back(name: str, tools: list[dict[str, Any]] | None) -> None:
    live = translate(sse_chunks(name), request(tools=tools) if tools else None)
    response = live[-1][1]["response"]
    replay = response_to_events(response)
    assert collapsed(replay) == collapsed(live)
    assert masked(replay[:2]) == masked(live[:2])
    assert replay[-1] == (live[-1][0], {**live[-1][1], "sequence_number": len(replay) - 1})
    checked(replay, tools)
    for events in (live, replay):
        assembly = ResponseAssembly()
        for _, data in events:
            assembly.feed(data)
        assert assembly.result() == response
        # Before the terminal event (a stream cut short), the items are rebuilt as they were done.
        cut = ResponseAssembly()
        for _, data in events[:-1]:
            cut.feed(data)
        rebuilt = cut.result()
        assert rebuilt["output"] == response["output"]
        assert rebuilt["status"] == "in_progress" and rebuilt["usage"] is None


@pytest.mark.parametrize(
    "completion",
    [
        "messages_chat/completion_tools.json",
        "messages_chat/completion_reasoning.json",
        "responses_chat/completion_logprobs.json",
    ],
)
def test_a_translated_answer_replays_through_the_sdk(completion: str) -> None:
    response = chat_to_response(
        orjson.loads((FIXTURES / completion).read_bytes()),
        request(tools=[WEATHER_TOOL]),
        response_id="resp_r",
        model=MODEL,
        created_at=1,
    )
    events = response_to_events(response)
    final = checked(events, [WEATHER_TOOL])
    assert Response.model_validate(response).output_text == final.output_text
    assembly = ResponseAssembly()
    for _, data in events:
        assembly.feed(data)
    assert assembly.result() == response


def test_a_stream_cut_mid_item_is_rebuilt_from_its_deltas() -> None:
    stream = translator()
    events = stream.feed(text_chunk("Hel")) + stream.feed(text_chunk("lo"))
    events += stream.feed(call_chunk(0, "call_1", "f", '{"a"')) + stream.feed(call_chunk(0, None, None, ":1}"))
    assembly = ResponseAssembly()
    for _, data in events:
        assembly.feed(data)
    rebuilt = assembly.result()
    assert rebuilt["status"] == "in_progress"
    assert masked(rebuilt["output"]) == [
        {"id": "msg_*", "type": "message", "status": "completed", "role": "assistant",
         "content": [{"type": "output_text", "text": "Hello", "annotations": [], "logprobs": []}]},
        {"id": "fc_*", "type": "function_call", "status": "in_progress", "arguments": '{"a":1}', "call_id": "call_1",
         "name": "f"},
    ]  # fmt: skip
    assert assembly.result() == rebuilt  # asking twice joins nothing twice
    assert ResponseAssembly().result() == {"object": "response", "status": "in_progress", "usage": None, "output": []}


def test_a_native_response_replays_with_items_a_chat_answer_never_has() -> None:
    native = {
        "id": "resp_n", "object": "response", "created_at": 1, "status": "completed", "error": None,
        "incomplete_details": None, "instructions": None, "model": "gpt-5", "parallel_tool_calls": True,
        "tool_choice": "auto", "tools": [{"type": "web_search"}],
        "output": [
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Searching."}]},
            {"type": "web_search_call", "id": "ws_1", "status": "completed",
             "action": {"type": "search", "query": "weather"}},
            {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant", "content": [
                {"type": "output_text", "text": "Sunny [1].", "logprobs": [], "annotations": [
                    {"type": "url_citation", "start_index": 6, "end_index": 9, "url": "https://w.com", "title": "W"}
                ]},
            ]},
        ],
        "usage": {"input_tokens": 1, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                  "output_tokens": 2, "output_tokens_details": {"reasoning_tokens": 1}, "total_tokens": 3},
    }  # fmt: skip
    events = response_to_events(native)
    assert kinds(events)[2:6] == [
        "response.output_item.added", "response.output_item.done",
        "response.output_item.added", "response.output_item.done",
    ]  # fmt: skip
    part_added = next(data for kind, data in events if kind == "response.content_part.added")
    assert part_added["part"] == {"type": "output_text", "text": "", "logprobs": [], "annotations": []}
    final = checked(events)
    assert final.output_text == "Sunny [1]."
    assembly = ResponseAssembly()
    for _, data in events:
        assembly.feed(data)
    assert assembly.result() == native


def test_a_failed_response_replays_to_response_failed_and_one_in_progress_to_no_end() -> None:
    failed = {"id": "r", "object": "response", "status": "failed", "output": [],
              "error": {"code": "server_error", "message": "boom"}}  # fmt: skip
    events = response_to_events(failed)
    assert kinds(events) == ["response.created", "response.in_progress", "response.failed"]
    assert events[0][1]["response"]["error"] is None
    assert kinds(response_to_events({**failed, "status": "in_progress"})) == [
        "response.created",
        "response.in_progress",
    ]


# ------------------------------------------------------------------------------------- linear time


def _best_of(runs: int, work: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


def _long_stream(chunks: int) -> list[dict[str, Any]]:
    delta = "tokens " * 30
    text = [text_chunk(delta) for _ in range(chunks // 2)]
    arguments = [call_chunk(0, "call_1", "f", '{"a":"')] + [call_chunk(0, None, None, delta)] * (chunks // 2)
    return [*text, *arguments, call_chunk(0, None, None, '"}'), finish_chunk("stop"), usage_chunk()]


def test_a_long_stream_translates_and_assembles_in_linear_time() -> None:
    """20,000 chunks (~4 MB of text and arguments): deltas are kept in lists and joined once, so eight times
    the chunks take about eight times as long (a join per delta would take sixty times as long)."""
    short, long = _long_stream(2_500), _long_stream(20_000)

    def run(chunks: list[dict[str, Any]]) -> None:
        events = translate(chunks)
        assembly = ResponseAssembly()
        for _, data in events[:-1]:  # without the terminal event: the rebuild joins the deltas
            assembly.feed(data)
        assembly.result()

    events = translate(long)
    response = events[-1][1]["response"]
    assert len(response["output"][0]["content"][0]["text"]) == 10_000 * len("tokens " * 30)
    assert len(response["output"][1]["arguments"]) == 10_000 * len("tokens " * 30) + len('{"a":""}')
    ratio = _best_of(3, lambda: run(long)) / _best_of(3, lambda: run(short))
    assert ratio < 20, f"20,000 chunks took {ratio:.1f} times as long as 2,500"
