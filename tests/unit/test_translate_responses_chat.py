"""OpenAI Responses <-> Chat Completions for deployments that speak chat: whole request bodies, whole answers
from recorded-style chat completions, each Response checked against the official ``openai`` SDK's model."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from openai.types.responses import Response

from llm_gateway.errors import InvalidRequest, UnsupportedFeature
from llm_gateway.schemas.core import Usage
from llm_gateway.translate.responses_chat import (
    builtin_tools,
    chat_to_response,
    dropped_params,
    input_items,
    is_whole,
    new_response_id,
    response_finish_reasons,
    response_text,
    response_usage,
    responses_to_chat,
)

FIXTURES = Path(__file__).parent / "fixtures"
MODEL = "gpt-4o-mini"
WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "strict": True,
}
CHAT_WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        "strict": True,
    },
}


def weather_call(call_id: str, arguments: str) -> dict[str, Any]:
    """A chat assistant message's tool call to get_weather."""
    return {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": arguments}}


IDS = re.compile(r"\b(msg|fc|call|resp)_[0-9a-f]{32}\b")


def fixture(name: str) -> dict[str, Any]:
    return orjson.loads((FIXTURES / name).read_bytes())


def request(**fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "input": "Hi", **fields}


def answer(completion: dict[str, Any], body: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    """chat_to_response, checked against the SDK's Response model."""
    body = body if body is not None else request()
    response = chat_to_response(completion, body, response_id="resp_test", model="gpt-4o-2024-08-06", created_at=1)
    Response.model_validate(response)
    return response


def masked(value: Any) -> Any:
    """The value with generated ids (msg_/fc_/call_/resp_ + 32 hex) replaced by ``<kind>_*``."""
    return orjson.loads(IDS.sub(lambda m: f"{m.group(1)}_*", orjson.dumps(value).decode()))


def completion(message: dict[str, Any], finish: str | None = "stop", usage: Any = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
        "usage": usage,
    }


# ------------------------------------------------------------------------------------- request


def test_a_string_input_is_one_user_message() -> None:
    assert responses_to_chat(request()) == {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]}
    assert input_items(request()) == [{"type": "message", "role": "user", "content": "Hi"}]


def test_input_items_returns_a_list_as_it_is_and_nothing_for_no_input() -> None:
    items = [{"role": "user", "content": "a"}, {"type": "function_call_output", "call_id": "c", "output": "x"}]
    assert input_items(request(input=items)) is items
    assert input_items({"model": MODEL}) == []
    with pytest.raises(InvalidRequest) as caught:
        input_items(request(input=3))
    assert caught.value.param == "input"


def test_an_agent_turn_translates_whole() -> None:
    """What the Agents SDK sends on its second turn: instructions, the conversation so far (a reasoning item,
    the assistant's text and two calls, their outputs), tools, a schema, sampling, streaming."""
    body = {
        "model": MODEL,
        "instructions": "You are a weather agent.",
        "input": [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAA..."},
            {
                "type": "message",
                "id": "msg_1",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": "Checking both.", "annotations": []}],
            },
            {"type": "function_call", "id": "fc_1", "call_id": "call_p", "name": "get_weather",
             "arguments": "{\"city\":\"Paris\"}", "status": "completed"},
            {"type": "function_call", "id": "fc_2", "call_id": "call_r", "name": "get_weather",
             "arguments": "{\"city\":\"Rome\"}", "status": "completed"},
            {"type": "function_call_output", "call_id": "call_p", "output": "18C, sunny"},
            {"type": "function_call_output", "call_id": "call_r", "output": [{"type": "input_text", "text": "24C"}]},
        ],
        "tools": [WEATHER_TOOL],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "text": {"format": {"type": "json_schema", "name": "report", "strict": True,
                            "schema": {"type": "object", "properties": {"summary": {"type": "string"}}}}},
        "max_output_tokens": 512,
        "temperature": 0.2,
        "top_p": 0.9,
        "user": "user-42",
        "store": False,
        "stream": True,
    }  # fmt: skip
    assert responses_to_chat(body) == {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "You are a weather agent."},
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": "Checking both.",
                "tool_calls": [
                    weather_call("call_p", '{"city":"Paris"}'),
                    weather_call("call_r", '{"city":"Rome"}'),
                ],
            },
            {"role": "tool", "tool_call_id": "call_p", "content": "18C, sunny"},
            {"role": "tool", "tool_call_id": "call_r", "content": "24C"},
        ],
        "max_completion_tokens": 512,
        "temperature": 0.2,
        "top_p": 0.9,
        "user": "user-42",
        "tools": [CHAT_WEATHER_TOOL],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "response_format": {"type": "json_schema", "json_schema": {
            "name": "report", "schema": {"type": "object", "properties": {"summary": {"type": "string"}}},
            "strict": True}},
        "stream": True,
        "stream_options": {"include_usage": True},
    }  # fmt: skip
    assert dropped_params(body) == ()


def test_a_conversation_round_trips_through_history_and_function_call_output() -> None:
    """Turn one's input and output items (as the store keeps them) become turn two's history; the caller's
    function_call_output answers the call by the call_id the translated answer gave it."""
    turn_one = request(input="Weather in Paris and Rome?", tools=[WEATHER_TOOL])
    first = answer(fixture("messages_chat/completion_tools.json"), turn_one)
    calls = [item for item in first["output"] if item["type"] == "function_call"]
    history = [*input_items(turn_one), *first["output"]]
    turn_two = request(
        previous_response_id=first["id"],
        input=[
            {"type": "function_call_output", "call_id": calls[0]["call_id"], "output": "18C"},
            {"type": "function_call_output", "call_id": calls[1]["call_id"], "output": "24C"},
        ],
        tools=[WEATHER_TOOL],
    )
    chat = responses_to_chat(turn_two, history)
    assert chat["messages"] == [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": "Let me check both cities.",
            "tool_calls": [
                weather_call("call_paris1", '{"city": "Paris"}'),
                weather_call("call_rome2", '{"city": "Rome", "unit": "c"}'),
            ],
        },
        {"role": "tool", "tool_call_id": "call_paris1", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_rome2", "content": "24C"},
    ]  # fmt: skip
    assert "previous_response_id" not in chat
    assert dropped_params(turn_two) == ()


def test_function_calls_join_the_assistant_message_before_them_and_only_that() -> None:
    call = {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}
    chat = responses_to_chat(
        request(
            input=[
                {"role": "user", "content": "go"},
                {**call, "call_id": "c1"},
                {**call, "call_id": "c2"},
                {"type": "function_call_output", "call_id": "c1", "output": "a"},
                {"type": "function_call_output", "call_id": "c2", "output": "b"},
                {"role": "assistant", "content": ""},
                {**call, "call_id": "c3"},
                {"type": "function_call_output", "call_id": "c3", "output": "c"},
            ]
        )
    )
    tool_call = {"type": "function", "function": {"name": "f", "arguments": "{}"}}
    assert chat["messages"] == [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", **tool_call}, {"id": "c2", **tool_call}]},
        {"role": "tool", "tool_call_id": "c1", "content": "a"},
        {"role": "tool", "tool_call_id": "c2", "content": "b"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c3", **tool_call}]},
        {"role": "tool", "tool_call_id": "c3", "content": "c"},
    ]


def test_images_translate_and_images_of_function_outputs_follow_the_tool_messages() -> None:
    data_url = "data:image/png;base64,iVBORw0KGgo="
    chat = responses_to_chat(
        request(
            input=[
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "What is this?"},
                        {"type": "input_image", "image_url": "https://example.com/cat.png", "detail": "low"},
                        {"type": "input_image", "image_url": data_url, "detail": "original"},
                    ],
                },
                {"type": "function_call", "call_id": "c1", "name": "screenshot", "arguments": "{}"},
                {
                    "type": "function_call_output",
                    "call_id": "c1",
                    "output": [
                        {"type": "input_text", "text": "Here it is"},
                        {"type": "input_image", "image_url": data_url},
                    ],
                },
                {"role": "user", "content": [{"type": "input_text", "text": "And now?"}]},
            ]
        )
    )
    assert chat["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "low"}},
                {"type": "image_url", "image_url": {"url": data_url}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "screenshot", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "Here it is"},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url}}]},
        {"role": "user", "content": "And now?"},
    ]


def test_instructions_lead_and_developer_and_system_messages_are_system_ones() -> None:
    chat = responses_to_chat(
        request(
            instructions="Be brief.",
            input=[
                {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Rule one."},
                                                                     {"type": "input_text", "text": "Rule two."}]},
                {"role": "system", "content": "Rule three."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": [{"type": "refusal", "refusal": "I can't."}]},
                {"role": "user", "content": [{"type": "input_text", "text": "Please"}, {"type": "input_text",
                                                                                     "text": "now"}]},
            ],
        )
    )  # fmt: skip
    assert chat["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "Rule one.\nRule two."},
        {"role": "system", "content": "Rule three."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "I can't."},
        {"role": "user", "content": [{"type": "text", "text": "Please"}, {"type": "text", "text": "now"}]},
    ]


def test_instructions_alone_make_a_conversation_but_nothing_at_all_does_not() -> None:
    assert responses_to_chat(request(input=[], instructions="Say hi."))["messages"] == [
        {"role": "system", "content": "Say hi."}
    ]
    with pytest.raises(InvalidRequest) as caught:
        responses_to_chat(request(input=[]))
    assert caught.value.param == "input"


@pytest.mark.parametrize(
    ("items", "param", "named"),
    [
        ([{"type": "item_reference", "id": "msg_1"}], "input[0].type", "'item_reference' input items"),
        ([{"type": "web_search_call", "id": "ws_1", "status": "completed"}], "input[0].type", "'web_search_call'"),
        (
            [{"role": "user", "content": [{"type": "input_file", "file_id": "file-1"}]}],
            "input[0].content[0].type",
            "File inputs (input_file)",
        ),
        (
            [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1", "detail": "auto"}]}],
            "input[0].content[0].file_id",
            "Images by file_id",
        ),
        (
            [{"role": "user", "content": "x"}, {"role": "user", "content": [{"type": "input_audio", "data": "…"}]}],
            "input[1].content[0].type",
            "'input_audio' content in user messages",
        ),
        (
            [{"role": "system", "content": [{"type": "input_image", "image_url": "https://e.com/a.png"}]}],
            "input[0].content[0].type",
            "'input_image' content in system messages",
        ),
        (
            [{"type": "function_call_output", "call_id": "c", "output": [{"type": "input_file", "file_id": "f"}]}],
            "input[0].output[0].type",
            "File inputs",
        ),
    ],
)
def test_what_only_openai_can_read_is_an_unsupported_feature_naming_it(
    items: list[dict[str, Any]], param: str, named: str
) -> None:
    with pytest.raises(UnsupportedFeature) as caught:
        responses_to_chat(request(input=items))
    assert caught.value.param == param
    assert named in caught.value.message


def test_a_stored_conversation_s_faults_name_previous_response_id() -> None:
    with pytest.raises(UnsupportedFeature) as caught:
        responses_to_chat(request(), [{"type": "image_generation_call", "id": "ig_1", "status": "completed"}])
    assert caught.value.param == "previous_response_id"


def test_builtin_tools_are_listed_in_order_and_refused_by_the_translation() -> None:
    body = request(
        tools=[
            {"type": "web_search_preview"},
            WEATHER_TOOL,
            {"type": "file_search", "vector_store_ids": ["vs_1"]},
            {"type": "web_search_preview", "search_context_size": "low"},
            {"type": "mcp", "server_label": "deepwiki", "server_url": "https://mcp.deepwiki.com/mcp"},
            "junk",
        ]
    )
    assert builtin_tools(body) == ("web_search_preview", "file_search", "mcp")
    assert builtin_tools(request()) == ()
    assert builtin_tools(request(tools=[WEATHER_TOOL])) == ()
    with pytest.raises(UnsupportedFeature) as caught:
        responses_to_chat(body)
    assert caught.value.param == "tools[0].type"
    assert "web_search_preview" in caught.value.message


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", "auto"),
        ("none", "none"),
        ("required", "required"),
        ({"type": "function", "name": "get_weather"}, {"type": "function", "function": {"name": "get_weather"}}),
    ],
)
def test_tool_choice(choice: Any, expected: Any) -> None:
    chat = responses_to_chat(request(tools=[WEATHER_TOOL], tool_choice=choice))
    assert chat["tools"] == [CHAT_WEATHER_TOOL]
    assert chat["tool_choice"] == expected


def test_allowed_tools_narrow_the_tools_themselves() -> None:
    other = {"type": "function", "name": "get_time"}
    choice = {"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "get_time"}]}
    chat = responses_to_chat(request(tools=[WEATHER_TOOL, other], tool_choice=choice))
    assert chat["tools"] == [{"type": "function", "function": {"name": "get_time"}}]
    assert chat["tool_choice"] == "required"
    builtin = {**choice, "tools": [{"type": "image_generation"}]}
    with pytest.raises(UnsupportedFeature) as caught:
        responses_to_chat(request(tools=[WEATHER_TOOL], tool_choice=builtin))
    assert caught.value.param == "tool_choice.tools[0]"


def test_a_builtin_tool_choice_is_unsupported_and_no_tools_send_no_choice() -> None:
    with pytest.raises(UnsupportedFeature) as caught:
        responses_to_chat(request(tools=[WEATHER_TOOL], tool_choice={"type": "web_search_preview"}))
    assert caught.value.param == "tool_choice.type"
    chat = responses_to_chat(request(tools=[], tool_choice="none", parallel_tool_calls=True))
    assert chat == {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ({"format": {"type": "text"}}, None),
        ({"verbosity": "low"}, None),
        ({"format": {"type": "json_object"}}, {"type": "json_object"}),
        (
            {"format": {"type": "json_schema", "name": "x", "description": "An x", "schema": {"type": "object"}}},
            {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}, "description": "An x"}},
        ),
    ],
)
def test_text_format(text: dict[str, Any], expected: dict[str, Any] | None) -> None:
    assert responses_to_chat(request(text=text)).get("response_format") == expected


def test_logprobs_user_and_service_tier() -> None:
    body = request(
        include=["message.output_text.logprobs"], top_logprobs=2, safety_identifier="hash-1", service_tier="flex"
    )
    chat = responses_to_chat(body)
    assert {k: chat[k] for k in ("logprobs", "top_logprobs", "user", "service_tier")} == {
        "logprobs": True,
        "top_logprobs": 2,
        "user": "hash-1",
        "service_tier": "flex",
    }
    assert dropped_params(body) == ()
    assert responses_to_chat(request(include=["message.output_text.logprobs"]))["logprobs"] is True
    assert "logprobs" not in responses_to_chat(request(top_logprobs=0))
    assert responses_to_chat(request(user="u", safety_identifier="s"))["user"] == "u"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"input": 5}, "input"),
        ({"input": ["hi"]}, "input[0]"),
        ({"input": [{"content": "no role or type"}]}, "input[0].type"),
        ({"input": [{"type": 7}]}, "input[0].type"),
        ({"input": [{"role": "user", "content": "a"}, {"role": "user", "content": 3}]}, "input[1].content"),
        ({"input": [{"role": "user", "content": ["text"]}]}, "input[0].content[0]"),
        ({"input": [{"role": "user", "content": [{"type": "input_text"}]}]}, "input[0].content[0].text"),
        ({"input": [{"role": "user", "content": [{"type": "input_image"}]}]}, "input[0].content[0].image_url"),
        ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role"),
        ({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, "input[0].call_id"),
        ({"input": [{"type": "function_call", "call_id": "c", "arguments": "{}"}]}, "input[0].name"),
        ({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": {}}]}, "input[0].arguments"),
        ({"input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id"),
        ({"input": [{"type": "function_call_output", "call_id": "c", "output": 1}]}, "input[0].output"),
        ({"instructions": 5}, "instructions"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"max_output_tokens": True}, "max_output_tokens"),
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": -1}, "top_p"),
        ({"user": 5}, "user"),
        ({"service_tier": 1}, "service_tier"),
        ({"include": "message.output_text.logprobs"}, "include"),
        ({"top_logprobs": 21}, "top_logprobs"),
        ({"tools": {}}, "tools"),
        ({"tools": [WEATHER_TOOL, {"name": "x"}]}, "tools[1]"),
        ({"tools": [{"type": "function"}]}, "tools[0].name"),
        ({"tools": [{"type": "function", "name": "f", "parameters": []}]}, "tools[0].parameters"),
        ({"tools": [WEATHER_TOOL], "tool_choice": 5}, "tool_choice"),
        ({"tools": [WEATHER_TOOL], "tool_choice": {"type": "function"}}, "tool_choice.name"),
        ({"tools": [WEATHER_TOOL], "tool_choice": {"type": "allowed_tools", "mode": "any"}}, "tool_choice"),
        ({"tools": [WEATHER_TOOL], "parallel_tool_calls": "yes"}, "parallel_tool_calls"),
        ({"text": "json"}, "text"),
        ({"text": {"format": {"type": "yaml"}}}, "text.format.type"),
        ({"text": {"format": {"type": "json_schema", "schema": {}}}}, "text.format.name"),
        ({"text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format.schema"),
        ({"stream": "yes"}, "stream"),
    ],
)
def test_malformed_input_is_invalid_naming_the_field(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        responses_to_chat(request(**fields))
    assert not isinstance(caught.value, UnsupportedFeature)
    assert caught.value.param == param


@pytest.mark.parametrize(("name", "value"), [("prompt", {"id": "pmpt_1"}), ("conversation", "conv_1")])
def test_stored_prompts_and_conversations_are_unsupported(name: str, value: Any) -> None:
    """They change what the model reads: answering without them would answer another question."""
    with pytest.raises(UnsupportedFeature) as caught:
        responses_to_chat(request(**{name: value}))
    assert caught.value.param == name
    assert dropped_params(request(**{name: value})) == ()


def test_dropped_params_lists_what_the_translation_accepts_without_honouring() -> None:
    body = request(
        reasoning={"effort": "high", "summary": "auto"},
        include=["reasoning.encrypted_content", "message.output_text.logprobs"],
        truncation="auto",
        background=True,
        max_tool_calls=3,
        prompt_cache_key="k",
        text={"format": {"type": "text"}, "verbosity": "low"},
        user="u",
        safety_identifier="s",
        metadata={"run": "1"},
        store=True,
        previous_response_id="resp_1",
        stream_options={"include_obfuscation": False},
    )
    assert dropped_params(body) == (
        "background",
        "include",
        "max_tool_calls",
        "prompt_cache_key",
        "reasoning",
        "safety_identifier",
        "text.verbosity",
        "truncation",
    )
    honoured = request(
        reasoning={"effort": None}, truncation="disabled", background=False, include=[], metadata={}, user="u",
        safety_identifier="u", top_logprobs=None,
    )  # fmt: skip
    assert dropped_params(honoured) == ()
    responses_to_chat(body)  # accepted


# ------------------------------------------------------------------------------------- answer


def test_a_tool_call_answer_translates_whole() -> None:
    body = request(input="Weather in Paris and Rome?", tools=[WEATHER_TOOL], metadata={"run": "7"}, user="u-1")
    response = answer(fixture("messages_chat/completion_tools.json"), body)
    assert masked(response) == {
        "id": "resp_test",
        "object": "response",
        "created_at": 1,
        "status": "completed",
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": None,
        "model": "gpt-4o-2024-08-06",
        "output": [
            {
                "id": "msg_*",
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [
                    {"type": "output_text", "text": "Let me check both cities.", "annotations": [], "logprobs": []}
                ],
            },
            {"id": "fc_*", "type": "function_call", "status": "completed",
             "arguments": "{\"city\": \"Paris\"}", "call_id": "call_paris1", "name": "get_weather"},
            {"id": "fc_*", "type": "function_call", "status": "completed",
             "arguments": "{\"city\": \"Rome\", \"unit\": \"c\"}", "call_id": "call_rome2", "name": "get_weather"},
        ],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "temperature": 1.0,
        "tool_choice": "auto",
        "tools": [WEATHER_TOOL],
        "top_p": 1.0,
        "text": {"format": {"type": "text"}},
        "truncation": "disabled",
        "usage": {
            "input_tokens": 1200,
            "input_tokens_details": {"cached_tokens": 1024, "cache_write_tokens": 0},
            "output_tokens": 48,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 1248,
        },
        "metadata": {"run": "7"},
        "store": True,
        "user": "u-1",
    }  # fmt: skip
    ids = [item["id"] for item in response["output"]]
    assert len(set(ids)) == 3
    assert all(re.fullmatch(r"(msg|fc)_[0-9a-f]{32}", item_id) for item_id in ids)
    parsed = Response.model_validate(response)
    assert parsed.output_text == "Let me check both cities."
    assert response_usage(response) == Usage(prompt_tokens=1200, completion_tokens=48, cached_tokens=1024)
    assert response_finish_reasons(response) == ("completed",)
    assert is_whole(response)
    assert response_text(response) == (
        'Let me check both cities.get_weather{"city": "Paris"}get_weather{"city": "Rome", "unit": "c"}'
    )


def test_the_request_s_fields_are_echoed() -> None:
    body = request(
        instructions="Be brief.",
        max_output_tokens=100,
        parallel_tool_calls=False,
        previous_response_id="resp_prev",
        temperature=0.3,
        top_p=0.5,
        tool_choice={"type": "function", "name": "get_weather"},
        tools=[WEATHER_TOOL],
        text={"format": {"type": "json_object"}, "verbosity": "low"},
        truncation="auto",
        metadata={"k": "v"},
        store=False,
        user="u",
        safety_identifier="sid",
        top_logprobs=3,
    )
    response = answer(completion({"content": "{}"}), body)
    expected = {
        "instructions": "Be brief.",
        "max_output_tokens": 100,
        "parallel_tool_calls": False,
        "previous_response_id": "resp_prev",
        "temperature": 0.3,
        "top_p": 0.5,
        "tool_choice": {"type": "function", "name": "get_weather"},
        "tools": [WEATHER_TOOL],
        "text": {"format": {"type": "json_object"}, "verbosity": "low"},
        "truncation": "disabled",
        "metadata": {"k": "v"},
        "store": False,
        "user": "u",
        "safety_identifier": "sid",
        "top_logprobs": 3,
    }
    assert {name: response[name] for name in expected} == expected
    assert "input" not in response
    assert answer(completion({"content": "x"}), request(text={"format": None}))["text"] == {"format": {"type": "text"}}


@pytest.mark.parametrize(
    ("finish", "status", "details"),
    [
        ("stop", "completed", None),
        ("tool_calls", "completed", None),
        (None, "completed", None),
        ("length", "incomplete", {"reason": "max_output_tokens"}),
        ("content_filter", "incomplete", {"reason": "content_filter"}),
    ],
)
def test_status_follows_the_finish_reason_and_a_cut_answer_s_last_item_is_incomplete(
    finish: str | None, status: str, details: dict[str, str] | None
) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a":'}}
    response = answer(completion({"content": "Partial", "tool_calls": [call]}, finish))
    assert (response["status"], response["incomplete_details"]) == (status, details)
    assert [item["status"] for item in response["output"]] == ["completed", status]
    assert is_whole(response) is (status == "completed")
    reason = details["reason"] if details else status
    assert response_finish_reasons(response) == (reason,)


def test_reasoning_content_is_not_relayed_and_reasoning_tokens_are_counted() -> None:
    response = answer(fixture("messages_chat/completion_reasoning.json"))
    assert [part["text"] for part in response["output"][0]["content"]] == ["The answer is 42."]
    assert response["output"][0]["status"] == "incomplete"
    usage = answer(fixture("responses_chat/completion_reasoning_model.json"))["usage"]
    assert usage == {
        "input_tokens": 88,
        "input_tokens_details": {"cached_tokens": 64, "cache_write_tokens": 0},
        "output_tokens": 210,
        "output_tokens_details": {"reasoning_tokens": 192},
        "total_tokens": 298,
    }


def test_a_refusal_is_a_refusal_part() -> None:
    response = answer(completion({"content": None, "refusal": "I can't help with that."}))
    assert masked(response["output"]) == [
        {
            "id": "msg_*",
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "refusal", "refusal": "I can't help with that."}],
        }
    ]
    assert Response.model_validate(response).output_text == ""
    assert response_text(response) == "I can't help with that."


def test_logprobs_are_mapped_onto_the_output_text() -> None:
    response = answer(fixture("responses_chat/completion_logprobs.json"))
    assert response["output"][0]["content"][0]["logprobs"] == [
        {
            "token": "Yes",
            "bytes": [89, 101, 115],
            "logprob": -0.0012,
            "top_logprobs": [
                {"token": "Yes", "bytes": [89, 101, 115], "logprob": -0.0012},
                {"token": "No", "bytes": [78, 111], "logprob": -6.9},
            ],
        },
        {
            "token": ".",
            "bytes": [46],
            "logprob": -0.31,
            "top_logprobs": [
                {"token": ".", "bytes": [46], "logprob": -0.31},
                {"token": "!", "bytes": [33], "logprob": -1.4},
            ],
        },
    ]


def test_missing_or_repeated_tool_call_ids_get_new_ones_and_malformed_answers_are_empty() -> None:
    calls = [
        {"id": "call_same", "type": "function", "function": {"name": "a", "arguments": "{}"}},
        {"id": "call_same", "type": "function", "function": {"name": "b", "arguments": {"x": 1}}},
        {"type": "function", "function": {"name": "c"}},
        "junk",
    ]
    output = answer(completion({"content": None, "tool_calls": calls}, "tool_calls"))["output"]
    assert [(item["name"], item["arguments"]) for item in output] == [("a", "{}"), ("b", '{"x":1}'), ("c", "")]
    call_ids = [item["call_id"] for item in output]
    assert call_ids[0] == "call_same"
    assert len(set(call_ids)) == 3
    assert all(re.fullmatch(r"call_[0-9a-f]{32}", call_id) for call_id in call_ids[1:])
    empty = answer({"choices": "nope"})
    assert (empty["output"], empty["status"], empty["usage"]) == ([], "completed", None)


def test_no_upstream_usage_is_no_usage_so_the_gateway_counts() -> None:
    response = answer(completion({"content": "Hi"}))
    assert response["usage"] is None
    assert response_usage(response) is None
    assert response_text(response) == "Hi"


# ------------------------------------------------------------------------------------- any Response


def test_readers_of_a_native_response() -> None:
    native = {
        "id": "resp_n",
        "status": "incomplete",
        "incomplete_details": {"reason": "max_output_tokens"},
        "output": [
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Thinking. "}]},
            {"type": "web_search_call", "id": "ws_1", "status": "completed"},
            {"type": "custom_tool_call", "call_id": "c", "name": "sh", "input": "ls"},
            {"type": "message", "content": [{"type": "output_text", "text": "Done", "annotations": []}]},
            "junk",
        ],
        "usage": {"input_tokens": 10, "output_tokens": 20, "total_tokens": 30},
    }
    assert response_text(native) == "Thinking. shlsDone"
    assert response_usage(native) == Usage(prompt_tokens=10, completion_tokens=20, cached_tokens=0)
    assert response_finish_reasons(native) == ("max_output_tokens",)
    assert not is_whole(native)


@pytest.mark.parametrize(
    ("response", "reasons"),
    [
        ({"status": "failed"}, ("failed",)),
        ({"status": "cancelled"}, ("cancelled",)),
        ({"status": "incomplete"}, ("incomplete",)),
        ({"status": "in_progress"}, ()),
        ({}, ()),
    ],
)
def test_finish_reasons(response: dict[str, Any], reasons: tuple[str, ...]) -> None:
    assert response_finish_reasons(response) == reasons


@pytest.mark.parametrize(
    "usage", [None, "x", {"input_tokens": "1", "output_tokens": 2}, {"input_tokens": 1}, {"input_tokens": True}]
)
def test_malformed_usage_is_none(usage: Any) -> None:
    assert response_usage({"usage": usage}) is None
    assert response_text({"output": "x"}) == ""
    assert not is_whole({"status": "completed"})


def test_response_ids() -> None:
    ids = {new_response_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(re.fullmatch(r"resp_[0-9a-f]{32}", response_id) for response_id in ids)
