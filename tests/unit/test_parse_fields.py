"""``parse_chat_request``'s bounds and the fields it checks: each refusal names its field in ``param``,
and the shapes OpenAI's API accepts (custom tools and calls, audio and file parts, ...) pass.

Every refused body here is one that a later reader (the cache key, the token estimate, the Anthropic
translation) failed on, or that passed through unchecked, before these checks existed.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from llm_gateway import tokens
from llm_gateway.cache.keys import cache_key
from llm_gateway.errors import InvalidRequest
from llm_gateway.schemas.openai import MAX_DEPTH, parse_chat_request

USER = {"role": "user", "content": "hi"}
BASE: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [USER]}


def refused(body: dict[str, Any] | bytes, **options: Any) -> dict[str, Any]:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    with pytest.raises(InvalidRequest) as caught:
        parse_chat_request(raw, **options)
    assert caught.value.status_code == 400
    error: dict[str, Any] = orjson.loads(caught.value.body())["error"]
    assert error["type"] == "invalid_request_error"
    return error


def with_raw_field(name: str, raw_value: bytes) -> bytes:
    """BASE plus ``name``, its value given as raw JSON (``orjson.dumps`` itself stops at 255 levels)."""
    return orjson.dumps(BASE)[:-1] + b',"' + name.encode() + b'":' + raw_value + b"}"


def nested(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


# -- depth ---------------------------------------------------------------------------------------


def test_nesting_up_to_the_bound_is_accepted_one_more_level_is_refused() -> None:
    # The body object is level 1, so a field holding `levels` nested arrays reaches 1 + levels.
    assert parse_chat_request(with_raw_field("metadata", nested(MAX_DEPTH - 1))).body["metadata"]
    error = refused(with_raw_field("metadata", nested(MAX_DEPTH)))
    assert error["param"] == "metadata"
    assert "nested deeper than 64 levels" in error["message"]


@pytest.mark.parametrize("levels", [65, 254, 255, 256, 300, 1023])
def test_deep_nesting_is_400_naming_the_field_where_the_cache_key_failed(levels: int) -> None:
    raw = with_raw_field("tools", nested(levels))
    assert refused(raw)["param"] == "tools"


def test_nesting_beyond_the_json_parsers_own_limit_is_the_same_400() -> None:
    error = refused(with_raw_field("metadata", nested(5000)))
    assert "nested deeper than 64 levels" in error["message"] and error["param"] is None


def test_deep_nesting_inside_a_message_is_found_too() -> None:
    message = b'[{"role": "user", "content": [{"type": "text", "text": "x", "extra": ' + nested(70) + b"}]}]"
    assert refused(with_raw_field("messages", message))["param"] == "messages"


def test_depth_counts_objects_and_arrays_alike() -> None:
    value: Any = "leaf"
    for level in range(MAX_DEPTH - 1):
        value = {"k": value} if level % 2 else [value]
    assert parse_chat_request(orjson.dumps({**BASE, "metadata": value}))
    assert refused({**BASE, "metadata": {"k": value}})["param"] == "metadata"


# -- malformed fields ----------------------------------------------------------------------------


def assistant(**fields: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [USER, {"role": "assistant", "content": None, **fields}]}


def call(function: Any, **fields: Any) -> dict[str, Any]:
    return {"id": "call_1", "type": "function", "function": function, **fields}


def content(value: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": value}]}


MALFORMED = [
    ({**BASE, "tools": 5}, "tools"),
    ({**BASE, "tools": {"type": "function"}}, "tools"),
    ({**BASE, "tools": [5]}, "tools[0]"),
    ({**BASE, "tools": [{"function": {"name": "f"}}]}, "tools[0].type"),
    ({**BASE, "tools": [{"type": 1, "function": {"name": "f"}}]}, "tools[0].type"),
    ({**BASE, "tools": [{"type": "function"}]}, "tools[0].function"),
    ({**BASE, "tools": [{"type": "function", "function": "f"}]}, "tools[0].function"),
    ({**BASE, "tools": [{"type": "function", "function": {"name": 5}}]}, "tools[0].function.name"),
    ({**BASE, "functions": 5}, "functions"),
    ({**BASE, "functions": ["f"]}, "functions[0]"),
    ({**BASE, "functions": [{"description": "no name"}]}, "functions[0].name"),
    ({**BASE, "tool_choice": 5}, "tool_choice"),
    ({**BASE, "tool_choice": ["auto"]}, "tool_choice"),
    (assistant(tool_calls="x"), "messages[1].tool_calls"),
    (assistant(tool_calls={"id": "call_1"}), "messages[1].tool_calls"),
    (assistant(tool_calls=[5]), "messages[1].tool_calls[0]"),
    (assistant(tool_calls=[call({"name": "f", "arguments": "{}"}, type=5)]), "messages[1].tool_calls[0].type"),
    (assistant(tool_calls=[{"id": "call_1", "type": "function"}]), "messages[1].tool_calls[0].function"),
    (assistant(tool_calls=[call("f")]), "messages[1].tool_calls[0].function"),
    (assistant(tool_calls=[call({"arguments": "{}"})]), "messages[1].tool_calls[0].function.name"),
    (
        assistant(tool_calls=[call({"name": "f", "arguments": {"a": 1}})]),
        "messages[1].tool_calls[0].function.arguments",
    ),
    (content(5), "messages[0].content"),
    (content({"type": "text", "text": "hi"}), "messages[0].content"),
    (content(["hi"]), "messages[0].content[0]"),
    (content([{"text": "hi"}]), "messages[0].content[0]"),
    (content([{"type": 5}]), "messages[0].content[0]"),
    (content([{"type": "text"}]), "messages[0].content[0].text"),
    (content([{"type": "text", "text": ["hi"]}]), "messages[0].content[0].text"),
    (content([{"type": "image_url"}]), "messages[0].content[0].image_url"),
    (content([{"type": "image_url", "image_url": {"detail": "low"}}]), "messages[0].content[0].image_url"),
    (content([{"type": "image_url", "image_url": {"url": 5}}]), "messages[0].content[0].image_url"),
    (assistant(content=[{"type": "refusal", "refusal": None}]), "messages[1].content[0].refusal"),
    ({**BASE, "messages": [{"role": "tool", "tool_call_id": 5, "content": "x"}]}, "messages[0].tool_call_id"),
    ({**BASE, "messages": [{"role": "user", "name": ["x"], "content": "x"}]}, "messages[0].name"),
    ({**BASE, "stop": 5}, "stop"),
    ({**BASE, "stop": {"a": "b"}}, "stop"),
    ({**BASE, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({**BASE, "stop": ["a", 5]}, "stop[1]"),
    ({**BASE, "user": 5}, "user"),
    ({**BASE, "user": {"id": "u"}}, "user"),
    ({**BASE, "stream_options": {"include_usage": "yes"}}, "stream_options.include_usage"),
    ({**BASE, "stream_options": {"include_usage": 1}}, "stream_options.include_usage"),
    ({**BASE, "n": 17}, "n"),
    ({**BASE, "n": 10**6}, "n"),
    ({**BASE, "logit_bias": [1, 2]}, "logit_bias"),
    ({**BASE, "logit_bias": {"50256": "-100"}}, "logit_bias.50256"),
    ({**BASE, "logit_bias": {"50256": True}}, "logit_bias.50256"),
    ({**BASE, "response_format": "json_object"}, "response_format"),
    ({**BASE, "response_format": {"json_schema": {}}}, "response_format"),
    ({**BASE, "response_format": {"type": None}}, "response_format"),
]


@pytest.mark.parametrize(("body", "param"), MALFORMED)
def test_a_malformed_field_the_gateway_reads_is_400_naming_it(body: dict[str, Any], param: str) -> None:
    assert refused(body)["param"] == param


def test_n_is_bounded_by_the_configured_max_choices() -> None:
    assert parse_chat_request(orjson.dumps({**BASE, "n": 16})).body["n"] == 16
    assert parse_chat_request(orjson.dumps({**BASE, "n": 4}), max_choices=4).body["n"] == 4
    error = refused({**BASE, "n": 5}, max_choices=4)
    assert error["param"] == "n" and "at most 4" in error["message"]


@pytest.mark.parametrize(
    "body",
    [{**BASE, "tools": 5}, {**BASE, "functions": 5}, assistant(tool_calls=5)],
    ids=["tools", "functions", "tool_calls"],
)
def test_what_is_refused_is_what_the_token_estimate_failed_on(body: dict[str, Any]) -> None:
    with pytest.raises(TypeError):
        tokens.estimate_prompt_tokens(body)
    refused(body)


def test_what_is_refused_is_what_the_cache_key_failed_on() -> None:
    deep: Any = []
    for _ in range(300):
        deep = [deep]
    with pytest.raises(TypeError):
        cache_key({**BASE, "metadata": None, "tools": deep}, group="g", scope_id=None)
    refused(with_raw_field("tools", nested(301)))


# -- valid OpenAI requests pass ------------------------------------------------------------------


VALID = [
    assistant(tool_calls=[call({"name": "f", "arguments": "{}"})]),
    assistant(tool_calls=[call({"name": "f", "arguments": ""})]),
    assistant(tool_calls=[{"id": "call_1", "function": {"name": "f"}}]),  # no type, no arguments: read as empty
    assistant(tool_calls=[{"id": "call_2", "type": "custom", "custom": {"name": "grep", "input": "x"}}]),
    assistant(content=[{"type": "text", "text": ""}, {"type": "refusal", "refusal": "no"}]),
    assistant(content="", refusal=None, audio={"id": "audio_1"}, function_call={"name": "f", "arguments": "{}"}),
    content(
        [
            {"type": "text", "text": "look"},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "original"}},
            {"type": "image_url", "image_url": "https://example.com/b.png"},
            {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
            {"type": "file", "file": {"file_id": "file-abc"}},
            {"type": "some_future_part", "whatever": [1, 2]},
        ]
    ),
    content(None),
    {**BASE, "messages": [{"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "ok"}]}]},
    {**BASE, "messages": [{"role": "developer", "content": "be brief", "name": "ops"}, USER]},
    {
        **BASE,
        "tools": [
            {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}, "strict": True}},
            {"type": "custom", "custom": {"name": "grep", "format": {"type": "grammar", "grammar": {}}}},
        ],
        "tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}},
        "parallel_tool_calls": False,
    },
    {**BASE, "tools": [], "tool_choice": "none"},
    {**BASE, "functions": [{"name": "f", "parameters": {}}], "function_call": "auto"},
    {**BASE, "stop": None, "user": None, "logit_bias": None, "response_format": None, "stream_options": None},
    {**BASE, "stop": "\n"},
    {**BASE, "stop": ["a", "b", "c", "d"]},
    {**BASE, "stop": []},
    {**BASE, "user": "user-123", "logit_bias": {"50256": -100, "1": 0.5}},
    {**BASE, "stream": True, "stream_options": {"include_usage": False, "include_obfuscation": True}},
    {**BASE, "stream_options": {}},
    {**BASE, "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}},
    {**BASE, "response_format": {"type": "text"}},
    {**BASE, "n": 1, "metadata": {"a": "b"}, "modalities": ["text"], "service_tier": "auto"},
]


@pytest.mark.parametrize("body", VALID)
def test_valid_openai_requests_are_accepted_untouched(body: dict[str, Any]) -> None:
    chat = parse_chat_request(orjson.dumps(body))
    assert chat.body == body
    cache_key(chat.body, group="g", scope_id=None)
    tokens.estimate_prompt_tokens(chat.body)
