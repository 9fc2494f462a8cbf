"""OpenAI Chat Completions <-> Anthropic Messages: whole bodies, both directions, no network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from llm_gateway.errors import InvalidRequest
from llm_gateway.providers.anthropic.translate import (
    anthropic_error_message,
    from_anthropic_response,
    to_anthropic_request,
)

FIXTURES = Path(__file__).parent / "fixtures" / "anthropic"
MODEL = "claude-3-5-haiku-latest"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
WEATHER_PARAMS = {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}
WEATHER_TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "description": "Current weather", "parameters": WEATHER_PARAMS},
}
WEATHER_INPUT_SCHEMA = {"name": "get_weather", "description": "Current weather", "input_schema": WEATHER_PARAMS}
HI = [{"role": "user", "content": "Hi"}]
HI_BLOCKS = [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads((FIXTURES / name).read_bytes())
    return data


def translate(**body: Any) -> dict[str, Any]:
    return to_anthropic_request(body, MODEL)


# ------------------------------------------------------------------------------- request


def test_minimal_request_gets_default_max_tokens() -> None:
    assert translate(model="gpt-4o-mini", messages=HI) == {"model": MODEL, "max_tokens": 4096, "messages": HI_BLOCKS}
    assert to_anthropic_request({"messages": HI}, MODEL, default_max_tokens=100)["max_tokens"] == 100


def test_system_and_developer_messages_are_hoisted_in_order() -> None:
    body = translate(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
        ]
    )
    assert body == {
        "model": MODEL,
        "max_tokens": 4096,
        "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Answer in French."}],
        "messages": HI_BLOCKS,
    }


def test_single_system_message_is_a_string_and_cache_control_forces_blocks() -> None:
    assert translate(messages=[{"role": "system", "content": "Be brief."}, *HI])["system"] == "Be brief."
    cached = {"type": "text", "text": "Long manual", "cache_control": {"type": "ephemeral"}}
    assert translate(messages=[{"role": "system", "content": [cached]}, *HI])["system"] == [cached]


def test_user_multipart_text_and_images() -> None:
    content = [
        {"type": "text", "text": "What is in these images?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]
    assert translate(messages=[{"role": "user", "content": content}])["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in these images?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
            ],
        }
    ]


def test_tool_conversation_merges_roles_and_groups_tool_results() -> None:
    messages = [
        {"role": "user", "content": "Weather in SF and Paris?"},
        {"role": "user", "content": [{"type": "text", "text": "Metric please."}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"location":"SF"}'},
                },
                {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": ""}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "21C"}]},
        {"role": "assistant", "content": "SF 18C, Paris 21C."},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "No more."}]},
    ]
    assert translate(messages=messages, tools=[WEATHER_TOOL])["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather in SF and Paris?"},
                {"type": "text", "text": "Metric please."},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"location": "SF"}},
                {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "21C"}]},
            ],
        },
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "SF 18C, Paris 21C."}, {"type": "text", "text": "No more."}],
        },
    ]


def test_assistant_text_and_tool_calls_and_empty_tool_result() -> None:
    messages = [
        *HI,
        {
            "role": "assistant",
            "content": "Let me look.",
            "tool_calls": [{"id": "c", "type": "function", "function": {"name": "now", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c", "content": ""},
        {"role": "user", "content": "Thanks"},
    ]
    assert translate(messages=messages)["messages"] == [
        *HI_BLOCKS,
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "c", "name": "now", "input": {}},
            ],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c"}, {"type": "text", "text": "Thanks"}]},
    ]


def test_sampling_stop_user_and_stream() -> None:
    body = translate(
        messages=HI,
        temperature=1.6,
        max_completion_tokens=256,
        max_tokens=999,
        stop="END",
        user="alice",
        stream=True,
        stream_options={"include_usage": True},
        seed=7,
        n=1,
    )
    assert body == {
        "model": MODEL,
        "max_tokens": 256,
        "messages": HI_BLOCKS,
        "temperature": 1,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "alice"},
        "stream": True,
    }


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"temperature": 0.4}, {"temperature": 0.4}),
        ({"temperature": 2}, {"temperature": 1}),
        ({"top_p": 0.9}, {"top_p": 0.9}),
        ({"temperature": 0.2, "top_p": 0.9}, {"temperature": 0.2}),  # newer Claude models refuse both
        ({"stop": ["a", "", "b"]}, {"stop_sequences": ["a", "b"]}),
        ({"stop": None, "temperature": None, "max_tokens": 10}, {"max_tokens": 10}),
        ({"stream": False, "response_format": {"type": "text"}}, {}),
    ],
)
def test_sampling_fields(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    assert translate(messages=HI, **fields) == {"model": MODEL, "max_tokens": 4096, "messages": HI_BLOCKS, **expected}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, {"tools": [WEATHER_INPUT_SCHEMA]}),
        ({"tool_choice": "auto"}, {"tools": [WEATHER_INPUT_SCHEMA], "tool_choice": {"type": "auto"}}),
        ({"tool_choice": "none"}, {"tools": [WEATHER_INPUT_SCHEMA], "tool_choice": {"type": "none"}}),
        ({"tool_choice": "required"}, {"tools": [WEATHER_INPUT_SCHEMA], "tool_choice": {"type": "any"}}),
        (
            {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
            {"tools": [WEATHER_INPUT_SCHEMA], "tool_choice": {"type": "tool", "name": "get_weather"}},
        ),
        (
            {"parallel_tool_calls": False},
            {"tools": [WEATHER_INPUT_SCHEMA], "tool_choice": {"type": "auto", "disable_parallel_tool_use": True}},
        ),
        (
            {"parallel_tool_calls": False, "tool_choice": "required"},
            {"tools": [WEATHER_INPUT_SCHEMA], "tool_choice": {"type": "any", "disable_parallel_tool_use": True}},
        ),
        (
            {"parallel_tool_calls": False, "tool_choice": "none"},
            {"tools": [WEATHER_INPUT_SCHEMA], "tool_choice": {"type": "none"}},
        ),
        ({"parallel_tool_calls": True}, {"tools": [WEATHER_INPUT_SCHEMA]}),
    ],
)
def test_tools_and_tool_choice(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    body = translate(messages=HI, tools=[WEATHER_TOOL], **fields)
    assert body == {"model": MODEL, "max_tokens": 4096, "messages": HI_BLOCKS, **expected}


def test_tool_without_parameters_gets_empty_object_schema_and_choice_without_tools_is_dropped() -> None:
    tool = {"type": "function", "function": {"name": "now"}}
    assert translate(messages=HI, tools=[tool])["tools"] == [
        {"name": "now", "input_schema": {"type": "object", "properties": {}}}
    ]
    assert translate(messages=HI, tool_choice="required", parallel_tool_calls=False) == {
        "model": MODEL,
        "max_tokens": 4096,
        "messages": HI_BLOCKS,
    }


PERSON_SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
JSON_DESCRIPTION = "Give your final answer to the user as this tool's input: a JSON object."


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"response_format": {"type": "json_object"}},
            {
                "tools": [
                    {"name": "json_response", "description": JSON_DESCRIPTION, "input_schema": {"type": "object"}}
                ],
                "tool_choice": {"type": "tool", "name": "json_response"},
            },
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "person", "description": "A person.", "schema": PERSON_SCHEMA},
                }
            },
            {
                "tools": [
                    {
                        "name": "json_response",
                        "description": f"{JSON_DESCRIPTION} A person.",
                        "input_schema": PERSON_SCHEMA,
                    }
                ],
                "tool_choice": {"type": "tool", "name": "json_response"},
            },
        ),
        (
            {
                "response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON_SCHEMA}},
                "tools": [WEATHER_TOOL],
            },
            {
                "tools": [
                    WEATHER_INPUT_SCHEMA,
                    {"name": "json_response", "description": JSON_DESCRIPTION, "input_schema": PERSON_SCHEMA},
                ],
                "tool_choice": {"type": "any"},
            },
        ),
        (
            {"response_format": {"type": "json_object"}, "tools": [WEATHER_TOOL], "tool_choice": "none"},
            {
                "tools": [
                    WEATHER_INPUT_SCHEMA,
                    {"name": "json_response", "description": JSON_DESCRIPTION, "input_schema": {"type": "object"}},
                ],
                "tool_choice": {"type": "tool", "name": "json_response"},
            },
        ),
        (
            {
                "response_format": {"type": "json_object"},
                "tools": [WEATHER_TOOL],
                "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            },
            {
                "tools": [
                    WEATHER_INPUT_SCHEMA,
                    {"name": "json_response", "description": JSON_DESCRIPTION, "input_schema": {"type": "object"}},
                ],
                "tool_choice": {"type": "tool", "name": "get_weather"},
            },
        ),
    ],
)
def test_response_format_becomes_a_forced_json_tool(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    body = translate(messages=HI, **fields)
    assert body == {"model": MODEL, "max_tokens": 4096, "messages": HI_BLOCKS, **expected}


def tool_call(arguments: Any) -> dict[str, Any]:
    return {"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}


def assistant_calls(*calls: Any) -> list[dict[str, Any]]:
    return [*HI, {"role": "assistant", "content": None, "tool_calls": list(calls)}]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": HI, "n": 2}, "n"),
        ({"messages": HI, "logprobs": True}, "logprobs"),
        ({"messages": HI, "functions": [{"name": "f"}]}, "functions"),
        ({"messages": []}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": ["hi"]}, "messages[0]"),
        ({"messages": [{"role": "function", "name": "f", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"content": "no role"}]}, "messages[0].role"),
        ({"messages": [{"role": "system", "content": "only system"}]}, "messages"),
        ({"messages": [{"role": "user", "content": None}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": {"text": "x"}}]}, "messages[0].content"),
        (
            {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
            "messages[0].content[0]",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "f"}}]}]},
            "messages[0].content[0]",
        ),
        ({"messages": [{"role": "user", "content": ["bare string part"]}]}, "messages[0].content[0]"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}, "messages[0].content[0]"),
        (
            {
                "messages": [
                    {"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x"}}]},
                    *HI,
                ]
            },
            "messages[0].content[0]",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/a.png"}}]}]},
            "messages[0].content[0].image_url.url",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,abc"}}]}
                ]
            },
            "messages[0].content[0].image_url.url",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AAAA"}}],
                    }
                ]
            },
            "messages[0].content[0].image_url.url",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
            "messages[0].content[0].image_url.url",
        ),
        ({"messages": assistant_calls(tool_call("{not json"))}, "messages[1].tool_calls[0].function.arguments"),
        ({"messages": assistant_calls(tool_call("[1, 2]"))}, "messages[1].tool_calls[0].function.arguments"),
        ({"messages": assistant_calls(tool_call({"a": 1}))}, "messages[1].tool_calls[0].function.arguments"),
        ({"messages": assistant_calls({"id": "c1", "type": "function"})}, "messages[1].tool_calls[0]"),
        (
            {"messages": assistant_calls({"type": "function", "function": {"name": "f"}})},
            "messages[1].tool_calls[0].id",
        ),
        (
            {"messages": assistant_calls({"id": "c", "function": {"arguments": "{}"}})},
            "messages[1].tool_calls[0].function.name",
        ),
        ({"messages": [*HI, {"role": "assistant", "tool_calls": {"id": "c"}}]}, "messages[1].tool_calls"),
        ({"messages": [*HI, {"role": "tool", "content": "18C"}]}, "messages[1].tool_call_id"),
        ({"messages": HI, "max_tokens": 0}, "max_tokens"),
        ({"messages": HI, "max_completion_tokens": "100"}, "max_completion_tokens"),
        ({"messages": HI, "max_tokens": True}, "max_tokens"),
        ({"messages": HI, "temperature": 2.5}, "temperature"),
        ({"messages": HI, "temperature": "hot"}, "temperature"),
        ({"messages": HI, "top_p": -0.1}, "top_p"),
        ({"messages": HI, "stop": [1]}, "stop"),
        ({"messages": HI, "user": 42}, "user"),
        ({"messages": HI, "tools": {"type": "function"}}, "tools"),
        ({"messages": HI, "tools": [{"type": "retrieval"}]}, "tools[0].type"),
        ({"messages": HI, "tools": [{"type": "function", "function": {}}]}, "tools[0].function.name"),
        (
            {"messages": HI, "tools": [{"type": "function", "function": {"name": "json_response"}}]},
            "tools[0].function.name",
        ),
        (
            {"messages": HI, "tools": [{"type": "function", "function": {"name": "f", "parameters": []}}]},
            "tools[0].function.parameters",
        ),
        ({"messages": HI, "tools": [WEATHER_TOOL], "tool_choice": "sometimes"}, "tool_choice"),
        ({"messages": HI, "tools": [WEATHER_TOOL], "tool_choice": {"type": "function"}}, "tool_choice"),
        ({"messages": HI, "response_format": {"type": "xml"}}, "response_format"),
        ({"messages": HI, "response_format": {"type": "json_schema"}}, "response_format"),
        (
            {"messages": HI, "response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "array"}}}},
            "response_format.json_schema",
        ),
    ],
)
def test_untranslatable_input_raises_invalid_request(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        to_anthropic_request(body, MODEL)
    assert caught.value.param == param
    assert caught.value.status == 400


# ------------------------------------------------------------------------------ response


def test_text_response() -> None:
    assert from_anthropic_response(fixture("response_text.json"), model="gpt-4o-mini", created=1700000000) == {
        "id": "chatcmpl-01XFDUDYJgAACzvnptvVoYEL",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello! How can I help you today?", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 12,
            "completion_tokens": 14,
            "total_tokens": 26,
            "prompt_tokens_details": {"cached_tokens": 0},
        },
    }


def test_tool_use_response_relays_thinking_as_reasoning_content_and_counts_cache_tokens() -> None:
    # The thinking block's signature is not relayed; its tokens are inside output_tokens already.
    assert from_anthropic_response(fixture("response_tool_use.json"), model="smart", created=1) == {
        "id": "chatcmpl-01Aq9w938a90dw8q",
        "object": "chat.completion",
        "created": 1,
        "model": "smart",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "I'll check both cities.",
                    "reasoning_content": "The user wants the weather in two cities.",
                    "refusal": None,
                    "tool_calls": [
                        {
                            "id": "toolu_01A09q90qw90lq917835lq9",
                            "type": "function",
                            "function": {
                                "name": "get_weather",
                                "arguments": '{"location":"San Francisco, CA","unit":"celsius"}',
                            },
                        },
                        {
                            "id": "toolu_01B4q90qw90lq917835lq8",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"location":"Paris, France"}'},
                        },
                    ],
                },
                "logprobs": None,
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {
            "prompt_tokens": 420 + 2048 + 1024,
            "completion_tokens": 96,
            "total_tokens": 420 + 2048 + 1024 + 96,
            "prompt_tokens_details": {"cached_tokens": 2048},
        },
    }


def test_json_tool_response_becomes_content_with_stop() -> None:
    assert from_anthropic_response(fixture("response_json_tool.json"), model="gpt-4o-mini", created=5) == {
        "id": "chatcmpl-013Zva2CMHLNnXjNJJKqJ2EF",
        "object": "chat.completion",
        "created": 5,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": '{"name":"Ada Lovelace","born":1815,"tags":["mathematician","writer"]}',
                    "refusal": None,
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 380,
            "completion_tokens": 41,
            "total_tokens": 421,
            "prompt_tokens_details": {"cached_tokens": 0},
        },
    }


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        ("model_context_window_exceeded", "length"),
        ("something_new", "stop"),
        (None, "stop"),
    ],
)
def test_finish_reason_mapping(stop_reason: Any, finish_reason: str) -> None:
    resp = {"id": "msg_1", "content": [{"type": "text", "text": "x"}], "stop_reason": stop_reason}
    assert from_anthropic_response(resp, model="m", created=0)["choices"][0]["finish_reason"] == finish_reason


def test_garbage_response_is_read_defensively() -> None:
    resp: dict[str, Any] = {"id": "weird", "content": "not a list", "usage": {"input_tokens": None}}
    assert from_anthropic_response(resp, model="m", created=0) == {
        "id": "chatcmpl-weird",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": None, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "total_tokens": 0,
            "prompt_tokens_details": {"cached_tokens": 0},
        },
    }
    assert from_anthropic_response({}, model="m", created=0)["id"].startswith("chatcmpl-")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            "overloaded_error: Overloaded",
        ),
        (
            b'{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: required"}}',
            "invalid_request_error: max_tokens: required",
        ),
        ('{"error": {"message": "just a message"}}', "just a message"),
        ({"error": {"type": "api_error"}}, "api_error"),
        ({"error": "flat string"}, "flat string"),
        (b"<html>502 Bad Gateway</html>", "<html>502 Bad Gateway</html>"),
        (b"", "Anthropic returned an empty error"),
        (None, "Anthropic returned an unrecognised error: None"),
        ([1, 2], "Anthropic returned an unrecognised error: [1, 2]"),
    ],
)
def test_anthropic_error_message(body: Any, message: str) -> None:
    assert anthropic_error_message(body) == message
