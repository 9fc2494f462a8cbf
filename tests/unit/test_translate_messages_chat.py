"""Anthropic Messages <-> OpenAI Chat Completions for OpenAI-compatible deployments: whole request bodies,
answers and event sequences from recorded-style fixtures, each answer and event checked against the
official ``anthropic`` SDK's types (and its stream accumulator)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anthropic
import orjson
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from pydantic import TypeAdapter

from llm_gateway.errors import InvalidRequest, UnsupportedFeature, UpstreamStreamError
from llm_gateway.schemas.core import Usage
from llm_gateway.translate.messages_chat import (
    ChatToMessagesStream,
    chat_to_message,
    dropped_params,
    messages_to_chat,
)

FIXTURES = Path(__file__).parent / "fixtures" / "messages_chat"
MODEL = "claude-sonnet-4-5"
EVENTS: TypeAdapter[Any] = TypeAdapter(anthropic.types.RawMessageStreamEvent)
Event = tuple[str, dict[str, Any]]


def fixture(name: str) -> dict[str, Any]:
    return orjson.loads((FIXTURES / name).read_bytes())


def sse_chunks(name: str) -> list[dict[str, Any]]:
    records = (FIXTURES / name).read_text().strip().split("\n\n")
    payloads = [record.removeprefix("data: ") for record in records]
    return [orjson.loads(payload) for payload in payloads if payload != "[DONE]"]


def translate_stream(chunks: list[dict[str, Any]]) -> tuple[ChatToMessagesStream, list[Event]]:
    stream = ChatToMessagesStream(model=MODEL)
    events = [event for chunk in chunks for event in stream.feed(chunk)]
    return stream, events + stream.finish()


def assembled(events: list[Event]) -> anthropic.types.Message:
    """Each event as the SDK parses it, and the message its own accumulator builds from them."""
    snapshot = None
    json_bufs: dict[int, bytes] = {}
    for name, data in events:
        event = EVENTS.validate_python(data)
        assert event.type == name
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=json_bufs)
    assert snapshot is not None
    return anthropic.types.Message.model_validate(snapshot.to_dict())


def request(**fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 1024, "messages": [{"role": "user", "content": "Hi"}], **fields}


# ------------------------------------------------------------------------------------- request


def test_a_tool_loop_request_translates_whole() -> None:
    body = {
        "model": MODEL,
        "max_tokens": 32000,
        "stream": True,
        "system": [
            {"type": "text", "text": "You are a coding agent."},
            {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}},
        ],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "I should call the tool.", "signature": "EqQBCkYIB..."},
                    {"type": "redacted_thinking", "data": "EmwKAhgB..."},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "18°C, sunny"},
                    {"type": "text", "text": "And tomorrow?", "cache_control": {"type": "ephemeral"}},
                ],
            },
        ],
        "tools": [
            {
                "name": "get_weather",
                "description": "Current weather",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
                "cache_control": {"type": "ephemeral"},
            }
        ],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
        "metadata": {"user_id": "user-42"},
        "temperature": 0.5,
        "stop_sequences": ["END"],
        "thinking": {"type": "enabled", "budget_tokens": 10000},
        "top_k": 40,
    }
    assert messages_to_chat(body) == {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "You are a coding agent.\nBe brief."},
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "toolu_01A",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_01A", "content": "18°C, sunny"},
            {"role": "user", "content": "And tomorrow?"},
        ],
        "max_completion_tokens": 32000,
        "temperature": 0.5,
        "stop": ["END"],
        "user": "user-42",
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                    "description": "Current weather",
                },
            }
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert dropped_params(body) == ("thinking", "top_k")  # thinking: not sent to a model that may not reason


def test_images_and_tool_results_with_errors_blocks_and_images() -> None:
    png = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}
    body = request(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": png},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "t1", "name": "shot", "input": {}},
                    {"type": "tool_use", "id": "t2", "name": "run", "input": {"cmd": "ls"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "image", "source": png}]},
                    {
                        "type": "tool_result",
                        "tool_use_id": "t2",
                        "is_error": True,
                        "content": [{"type": "text", "text": "line 1"}, {"type": "text", "text": "line 2"}],
                    },
                ],
            },
        ]
    )
    png_part = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    assert messages_to_chat(body)["messages"] == [
        {
            "role": "user",
            "content": [png_part, {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "shot", "arguments": "{}"}},
                {"id": "t2", "type": "function", "function": {"name": "run", "arguments": '{"cmd":"ls"}'}},
            ],
        },
        {"role": "tool", "tool_call_id": "t1", "content": ""},
        {"role": "tool", "tool_call_id": "t2", "content": "Error: line 1\nline 2"},
        {"role": "user", "content": [png_part]},  # a tool message carries text only
    ]


def test_an_assistant_turn_of_only_thinking_is_dropped() -> None:
    body = request(
        system="Be kind.",
        messages=[
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "sig"}]},
            {"role": "user", "content": "Hello?"},
        ],
    )
    assert messages_to_chat(body)["messages"] == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "Hi"},
        {"role": "user", "content": "Hello?"},
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, {"tool_choice": "auto"}),
        ({"type": "any"}, {"tool_choice": "required"}),
        ({"type": "none", "disable_parallel_tool_use": True}, {"tool_choice": "none"}),
        (
            {"type": "tool", "name": "f", "disable_parallel_tool_use": True},
            {"tool_choice": {"type": "function", "function": {"name": "f"}}, "parallel_tool_calls": False},
        ),
        (None, {}),
    ],
)
def test_tool_choice(choice: dict[str, Any] | None, expected: dict[str, Any]) -> None:
    tool = {"name": "f", "input_schema": {"type": "object"}, "type": "custom", "strict": True}
    chat = messages_to_chat(request(tools=[tool], tool_choice=choice))
    assert chat["tools"] == [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}, "strict": True}}
    ]
    assert {key: chat[key] for key in ("tool_choice", "parallel_tool_calls") if key in chat} == expected


def test_tool_choice_without_tools_is_not_sent() -> None:
    chat = messages_to_chat(request(tools=[], tool_choice={"type": "any", "disable_parallel_tool_use": True}))
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & chat.keys()


@pytest.mark.parametrize(
    ("fields", "dropped"),
    [
        ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, ("thinking",)),
        ({"thinking": {"type": "adaptive"}}, ("thinking",)),
        ({"thinking": {"type": "adaptive"}, "output_config": {"effort": "max"}}, ("output_config.effort", "thinking")),
        ({"thinking": {"type": "disabled"}}, ()),
        ({"output_config": {"effort": "low"}}, ("output_config.effort",)),
    ],
)
def test_thinking_is_not_sent_but_named(fields: dict[str, Any], dropped: tuple[str, ...]) -> None:
    """``reasoning_effort`` is a 400 on an OpenAI-compatible model that does not reason, which would end a
    fallback instead of answering: thinking is not sent to such a deployment, and the answer says so."""
    chat = messages_to_chat(request(**fields))
    assert "reasoning_effort" not in chat
    assert dropped_params(request(**fields)) == dropped


def test_structured_output_becomes_a_strict_json_schema() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": False}
    expected = {"type": "json_schema", "json_schema": {"name": "output", "schema": schema, "strict": True}}
    fmt = {"type": "json_schema", "schema": schema}
    assert messages_to_chat(request(output_config={"format": fmt}))["response_format"] == expected
    assert messages_to_chat(request(output_format=fmt))["response_format"] == expected


def test_a_plain_request() -> None:
    assert messages_to_chat(request(stream=False, top_p=0.9, stop_sequences=[])) == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Hi"}],
        "max_completion_tokens": 1024,
        "top_p": 0.9,
        "stream": False,
    }


def test_dropped_params_lists_what_is_not_honoured() -> None:
    body = request(
        top_k=5,
        service_tier="standard_only",
        speed="fast",
        inference_geo="us",
        context_management={"edits": []},
        cache_control={"type": "ephemeral"},
        metadata=None,
    )
    assert dropped_params(body) == ("context_management", "inference_geo", "service_tier", "speed", "top_k")
    assert dropped_params(request(service_tier="auto")) == ()


@pytest.mark.parametrize(
    ("fields", "param", "feature"),
    [
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0].type", "web_search_20250305"),
        ({"tools": [{"type": "bash_20250124", "name": "bash"}]}, "tools[0].type", "bash_20250124"),
        ({"tools": [{"name": "x" * 65, "input_schema": {}}]}, "tools[0].name", "longer than 64"),
        ({"stop_sequences": ["a", "b", "c", "d", "e"]}, "stop_sequences", "more than 4 stop sequences"),
        ({"container": "container_01"}, "container", "containers"),
        ({"mcp_servers": [{"type": "url", "url": "https://mcp", "name": "m"}]}, "mcp_servers", "MCP servers"),
        (
            {"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]},
            "messages[0].content[0]",
            "document blocks",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "search_result", "source": "s"}]}]},
            "messages[0].content[0]",
            "search_result",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "container_upload", "file_id": "f"}]}]},
            "messages[0].content[0]",
            "container_upload",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "q"},
                    {"role": "assistant", "content": [{"type": "server_tool_use", "id": "s", "name": "web_search"}]},
                    {"role": "user", "content": "go on"},
                ]
            },
            "messages[1].content[0]",
            "server_tool_use",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "q"},
                    {"role": "assistant", "content": [{"type": "web_search_tool_result", "tool_use_id": "s"}]},
                    {"role": "user", "content": "go on"},
                ]
            },
            "messages[1].content[0]",
            "web_search_tool_result",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "document"}]}],
                    }
                ]
            },
            "messages[0].content[0].content[0]",
            "document blocks",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}
                ]
            },
            "messages[0].content[0].source.type",
            "image sources of type 'file'",
        ),
        (
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "{"}]},
            "messages[1]",
            "prefilled assistant turn",
        ),
        ({"output_config": {"format": {"type": "regex"}}}, "output_config.format.type", "'regex'"),
    ],
)
def test_what_an_openai_deployment_cannot_carry(fields: dict[str, Any], param: str, feature: str) -> None:
    with pytest.raises(UnsupportedFeature) as raised:
        messages_to_chat(request(**fields))
    assert raised.value.param == param
    assert feature in raised.value.feature


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages[0]"),
        ({"messages": [{"role": "user", "content": 3}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": [{"text": "no type"}]}]}, "messages[0].content[0]"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}]}, "messages[0].content[0].text"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "url"}}]}]},
            "messages[0].content[0].source",
        ),
        ({"messages": [{"role": "user", "content": [{"type": "tool_result"}]}]}, "messages[0].content[0].tool_use_id"),
        (
            {
                "messages": [
                    {"role": "user", "content": "q"},
                    {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": "x"}]},
                    {"role": "user", "content": "r"},
                ]
            },
            "messages[1].content[0].input",
        ),
        ({"system": [{"type": "image"}]}, "system[0].type"),
        ({"system": 5}, "system"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": None}, "max_tokens"),
        ({"temperature": 1.5}, "temperature"),
        ({"top_p": "high"}, "top_p"),
        ({"stop_sequences": "END"}, "stop_sequences"),
        ({"metadata": {"user_id": 7}}, "metadata.user_id"),
        ({"tools": {"name": "f"}}, "tools"),
        ({"tools": [{"name": "f"}]}, "tools[0].input_schema"),
        ({"tools": [{"name": "f", "input_schema": {}}], "tool_choice": {"type": "tool"}}, "tool_choice"),
        ({"thinking": {"type": "enabled"}}, "thinking.budget_tokens"),
        ({"thinking": {"type": "sometimes"}}, "thinking.type"),
        ({"output_config": {"effort": "extreme"}}, "output_config.effort"),
        ({"output_config": {"format": {"type": "json_schema"}}}, "output_config.format.schema"),
        ({"stream": "yes"}, "stream"),
    ],
)
def test_malformed_requests(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        messages_to_chat(request(**fields))
    assert not isinstance(raised.value, UnsupportedFeature)
    assert raised.value.param == param


# -------------------------------------------------------------------------------------- answer


def test_an_answer_with_parallel_tool_calls_and_cached_tokens() -> None:
    message = chat_to_message(fixture("completion_tools.json"), model=MODEL)
    assert message == {
        "id": "msg_BxT3kR9aQp2mZ",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [
            {"type": "text", "text": "Let me check both cities."},
            {"type": "tool_use", "id": "call_paris1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "call_rome2", "name": "get_weather", "input": {"city": "Rome", "unit": "c"}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 176,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 1024,
            "output_tokens": 48,
        },
    }
    anthropic.types.Message.model_validate(message)


def test_an_answer_with_reasoning_cut_at_the_length_limit() -> None:
    message = chat_to_message(fixture("completion_reasoning.json"), model=MODEL)
    # The model's reasoning is not relayed: unsigned, it would be refused when sent back to a native deployment.
    assert message["content"] == [{"type": "text", "text": "The answer is 42."}]
    assert message["stop_reason"] == "max_tokens"
    assert message["usage"] == {
        "input_tokens": 20,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 30,
    }
    anthropic.types.Message.model_validate(message)


@pytest.mark.parametrize(
    ("message", "finish", "content", "stop"),
    [
        ({"content": "Sorry"}, "content_filter", [{"type": "text", "text": "Sorry"}], "refusal"),
        ({"content": None, "refusal": "I can't help."}, "stop", [{"type": "text", "text": "I can't help."}], "refusal"),
        ({"content": ""}, "stop", [], "end_turn"),
        (
            {"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            None,
            [{"type": "text", "text": "ab"}],
            "end_turn",
        ),
        (
            {"content": "x", "reasoning": "r"},
            "stop",
            [{"type": "text", "text": "x"}],  # reasoning not relayed
            "end_turn",
        ),
        ({"content": "hi"}, "tool_calls", [{"type": "text", "text": "hi"}], "end_turn"),  # no call left
        (
            {"tool_calls": [{"id": "functions.Bash:0", "function": {"name": "Bash", "arguments": "{not json"}}]},
            "stop",  # Ollama's finish for a tool call
            [{"type": "tool_use", "id": "functions_Bash_0", "name": "Bash", "input": {}}],
            "tool_use",
        ),
        (
            {"tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "[1]"}}, "junk"]},
            "tool_calls",
            [{"type": "tool_use", "id": "c", "name": "f", "input": {}}],
            "tool_use",
        ),
    ],
)
def test_answer_contents_and_stop_reasons(
    message: dict[str, Any], finish: str | None, content: list[dict[str, Any]], stop: str
) -> None:
    completion = {"id": "chatcmpl-1", "choices": [{"index": 0, "message": message, "finish_reason": finish}]}
    answer = chat_to_message(completion, model=MODEL)
    assert (answer["content"], answer["stop_reason"]) == (content, stop)
    anthropic.types.Message.model_validate(answer)


def test_a_malformed_completion_still_makes_a_valid_message() -> None:
    answer = chat_to_message({"choices": "nope", "usage": {"prompt_tokens": "x"}}, model=MODEL)
    assert answer["id"].startswith("msg_") and len(answer["id"]) == 36
    assert answer["content"] == [] and answer["stop_reason"] == "end_turn"
    assert answer["usage"] == {
        "input_tokens": 0,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 0,
    }
    anthropic.types.Message.model_validate(answer)
    generated = chat_to_message({"choices": [{"message": {"tool_calls": [{"function": {"name": "f"}}]}}]}, model=MODEL)
    assert generated["content"][0]["id"].startswith("toolu_")


# -------------------------------------------------------------------------------------- stream


def test_a_text_stream_waits_for_the_usage_chunk() -> None:
    chunks = sse_chunks("stream_text.sse")
    stream = ChatToMessagesStream(model=MODEL)
    per_chunk = [stream.feed(chunk) for chunk in chunks]
    assert per_chunk[-2] == [("content_block_stop", {"type": "content_block_stop", "index": 0})]  # the finish
    assert stream.finished and stream.finish() == []
    assert stream.usage == Usage(prompt_tokens=2100, completion_tokens=3, cached_tokens=2048)
    events = [event for chunk_events in per_chunk for event in chunk_events]
    assert events == [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_C1aT",
                    "type": "message",
                    "role": "assistant",
                    "model": MODEL,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": 0,
                        "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 0,
                        "output_tokens": 0,
                    },
                },
            },
        ),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}},
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " there!"}},
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {
                    "input_tokens": 52,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 2048,
                    "output_tokens": 3,
                },
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    message = assembled(events)
    assert [block.to_dict() for block in message.content] == [{"type": "text", "text": "Hello there!"}]
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens, message.usage.output_tokens) == (
        52,
        2048,
        3,
    )


def test_parallel_tool_calls_stream_as_separate_blocks() -> None:
    stream, events = translate_stream(sse_chunks("stream_tools.sse"))
    blocks = [(data["index"], data["content_block"]) for name, data in events if name == "content_block_start"]
    assert blocks == [
        (0, {"type": "tool_use", "id": "call_paris1", "name": "get_weather", "input": {}}),
        (1, {"type": "tool_use", "id": "call_rome2", "name": "get_weather", "input": {}}),
    ]
    deltas = [(data["index"], data["delta"]) for name, data in events if name == "content_block_delta"]
    assert deltas == [
        (0, {"type": "input_json_delta", "partial_json": '{"ci'}),
        (0, {"type": "input_json_delta", "partial_json": 'ty": "Paris"}'}),
        (1, {"type": "input_json_delta", "partial_json": '{"city": "Rome"}'}),
    ]
    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    message = assembled(events)
    assert [(block.type, getattr(block, "input", None)) for block in message.content] == [
        ("tool_use", {"city": "Paris"}),
        ("tool_use", {"city": "Rome"}),
    ]
    assert message.stop_reason == "tool_use"
    assert stream.usage == Usage(prompt_tokens=300, completion_tokens=40, cached_tokens=0)


def test_reasoning_then_text_cut_at_the_length_limit_with_usage_on_the_last_chunk() -> None:
    chunks = sse_chunks("stream_reasoning_length.sse")
    stream = ChatToMessagesStream(model=MODEL)
    fed = [event for chunk in chunks for event in stream.feed(chunk)]
    assert not stream.finished  # usage rode on the finish chunk: the end comes with finish()
    events = fed + stream.finish()
    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    message = assembled(events)  # the reasoning is not relayed (see chat_to_message)
    assert [block.to_dict() for block in message.content] == [{"type": "text", "text": "The answer"}]
    assert (message.stop_reason, message.usage.input_tokens, message.usage.output_tokens) == ("max_tokens", 12, 16)


def test_a_stream_without_usage_or_finish_reason_ends_on_finish() -> None:
    stream, events = translate_stream([{"id": "chatcmpl-x", "choices": [{"index": 0, "delta": {"content": "Hi"}}]}])
    assert events[-3:] == [
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 0},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    assert stream.usage is None
    assembled(events)


def test_an_empty_upstream_stream_still_makes_a_whole_message() -> None:
    stream = ChatToMessagesStream(model=MODEL)
    events = stream.finish()
    assert [name for name, _ in events] == ["message_start", "message_delta", "message_stop"]
    assert stream.finished and stream.feed({"choices": [{"delta": {"content": "late"}}]}) == []
    assert assembled(events).content == []


def test_calls_numbered_zero_with_their_own_ids_are_separate_blocks() -> None:
    call = {"index": 0, "type": "function"}
    chunks = [
        {
            "id": "c",
            "choices": [
                {
                    "index": 0,
                    "delta": {"tool_calls": [{**call, "id": "a", "function": {"name": "f", "arguments": "{}"}}]},
                }
            ],
        },
        {
            "id": "c",
            "choices": [
                {
                    "index": 0,
                    "delta": {"tool_calls": [{**call, "id": "b", "function": {"name": "g", "arguments": "{}"}}]},
                }
            ],
        },
        {"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]
    _, events = translate_stream(chunks)
    message = assembled(events)
    assert [(block.type, block.id) for block in message.content if block.type == "tool_use"] == [
        ("tool_use", "a"),
        ("tool_use", "b"),
    ]
    assert message.stop_reason == "tool_use"


def test_interleaved_tool_call_arguments_end_the_stream() -> None:
    def fragment(index: int, **call: Any) -> dict[str, Any]:
        return {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": index, **call}]}}]}

    stream = ChatToMessagesStream(model=MODEL)
    stream.feed(fragment(0, id="a", function={"name": "f", "arguments": '{"x":'}))
    stream.feed(fragment(1, id="b", function={"name": "g", "arguments": "{}"}))
    with pytest.raises(UpstreamStreamError):
        stream.feed(fragment(0, function={"arguments": "1}"}))


def test_empty_deltas_and_refusals() -> None:
    stream = ChatToMessagesStream(model=MODEL)
    assert [
        name for name, _ in stream.feed({"id": "chatcmpl-r", "choices": [{"index": 0, "delta": {"role": "assistant"}}]})
    ] == ["message_start"]
    assert (
        stream.feed({"choices": [{"index": 0, "delta": {"content": "", "reasoning_content": None, "tool_calls": []}}]})
        == []
    )
    assert stream.feed("not a chunk") == []  # type: ignore[arg-type]
    events = (
        stream.feed({"choices": [{"index": 0, "delta": {"refusal": "No."}, "finish_reason": "stop"}]}) + stream.finish()
    )
    assert events[-2][1]["delta"]["stop_reason"] == "refusal"
