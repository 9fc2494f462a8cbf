"""OpenAI Chat Completions <-> Bedrock Converse: the pure translation both ways, dropped parameters, error fields."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llm_gateway.errors import InvalidRequest, UnsupportedFeature
from llm_gateway.providers.bedrock.client import BedrockProvider, converse_path
from llm_gateway.providers.bedrock.params import dropped_params
from llm_gateway.providers.bedrock.translate import from_converse_response, to_converse_request
from llm_gateway.providers.bedrock.wire import error_type, openai_usage
from llm_gateway.settings import ProviderConfig

LLAMA = "meta.llama3-1-70b-instruct-v1:0"
CLAUDE = "us.anthropic.claude-sonnet-4-20250514-v1:0"
USER = {"role": "user", "content": "Hi"}
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
CALL = {"id": "t1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}


def converse(body: dict[str, Any], model: str = LLAMA) -> dict[str, Any]:
    return to_converse_request(body, model, default_max_tokens=4096)


def test_messages_system_and_inference_config() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "developer",
                "content": [{"type": "text", "text": "Cite.", "cache_control": {"type": "ephemeral"}}],
            },
            {"role": "user", "content": "Hi"},
            {"role": "user", "content": [{"type": "text", "text": "there"}, {"type": "text", "text": "  "}]},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]},
            {"role": "user", "content": "Please"},
        ],
        "max_completion_tokens": 99,
        "max_tokens": 5,
        "temperature": 1.5,
        "top_p": 0.9,
        "stop": "END",
    }
    assert converse(body) == {
        "messages": [
            {"role": "user", "content": [{"text": "Hi"}, {"text": "there"}]},
            {"role": "assistant", "content": [{"text": "No."}]},
            {"role": "user", "content": [{"text": "Please"}]},
        ],
        "system": [{"text": "Be brief."}, {"text": "Cite."}, {"cachePoint": {"type": "default"}}],
        "inferenceConfig": {"maxTokens": 99, "temperature": 1, "topP": 0.9, "stopSequences": ["END"]},
    }
    assert dropped_params(body, LLAMA, default_max_tokens=4096) == ("temperature",)  # clamped to 1


def test_claude_takes_one_of_temperature_and_top_p_and_thinks_by_budget() -> None:
    body = {"messages": [USER], "temperature": 0.5, "top_p": 0.9, "max_tokens": 8192, "reasoning_effort": "low"}
    request = converse(body, CLAUDE)
    assert request["inferenceConfig"] == {"maxTokens": 8192}  # thinking: no temperature, top_p out of 0.95..1
    assert request["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 2048}}
    assert dropped_params(body, CLAUDE, default_max_tokens=4096) == ("temperature", "top_p")
    plain = {"messages": [USER], "temperature": 0.5, "top_p": 0.9}
    assert converse(plain, CLAUDE)["inferenceConfig"] == {"maxTokens": 4096, "temperature": 0.5}
    assert dropped_params(plain, CLAUDE, default_max_tokens=4096) == ("top_p",)
    assert dropped_params({**plain, "reasoning_effort": "high"}, LLAMA, default_max_tokens=4096) == (
        "reasoning_effort",
    )


def test_images_from_data_and_s3_urls_and_http_urls_are_unsupported() -> None:
    parts = [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "s3://bucket/photos/cat.JPG"}},
        {"type": "text", "text": "What is this?"},
    ]
    assert converse({"messages": [{"role": "user", "content": parts}]})["messages"][0]["content"] == [
        {"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}},
        {"image": {"format": "jpeg", "source": {"s3Location": {"uri": "s3://bucket/photos/cat.JPG"}}}},
        {"text": "What is this?"},
    ]
    web = [{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]
    with pytest.raises(UnsupportedFeature) as caught:
        converse({"messages": [{"role": "user", "content": web}]})
    assert caught.value.param == "messages[0].content[0].image_url.url"
    for url in ("data:image/bmp;base64,AA==", "data:image/png,raw", "s3://bucket/file.tiff", "ftp://x/y.png"):
        with pytest.raises(InvalidRequest):
            converse({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]})


def test_tools_calls_and_results() -> None:
    body = {
        "messages": [
            USER,
            {"role": "assistant", "content": "Let me look.", "tool_calls": [CALL]},
            {"role": "tool", "tool_call_id": "t1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "t2", "content": [{"type": "text", "text": "rainy"}]},
        ],
        "tools": [{**WEATHER, "function": {**WEATHER["function"], "description": "Weather."}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
    }
    request = converse(body)
    assert request["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"text": "Let me look."},
                {"toolUse": {"toolUseId": "t1", "name": "get_weather", "input": {"city": "Paris"}}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"toolResult": {"toolUseId": "t1", "content": [{"text": "sunny"}]}},
                {"toolResult": {"toolUseId": "t2", "content": [{"text": "rainy"}]}},
            ],
        },
    ]
    spec = {"name": "get_weather", "inputSchema": {"json": {"type": "object"}}, "description": "Weather."}
    assert request["toolConfig"] == {"tools": [{"toolSpec": spec}], "toolChoice": {"tool": {"name": "get_weather"}}}
    assert dropped_params(body, LLAMA, default_max_tokens=4096) == ("parallel_tool_calls",)


@pytest.mark.parametrize(("choice", "expected"), [("auto", {"auto": {}}), ("required", {"any": {}}), (None, None)])
def test_tool_choice(choice: str | None, expected: dict[str, Any] | None) -> None:
    config = converse({"messages": [USER], "tools": [WEATHER], "tool_choice": choice})["toolConfig"]
    assert config.get("toolChoice") == expected


def test_tool_choice_none_sends_no_tools_unless_the_dialogue_needs_them() -> None:
    body = {"messages": [USER], "tools": [WEATHER], "tool_choice": "none"}
    assert "toolConfig" not in converse(body)
    assert dropped_params(body, LLAMA, default_max_tokens=4096) == ()
    history = {
        **body,
        "messages": [
            USER,
            {"role": "assistant", "tool_calls": [CALL]},
            {"role": "tool", "tool_call_id": "t1", "content": "x"},
        ],
    }
    assert converse(history)["toolConfig"] == {
        "tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": {"type": "object"}}}}]
    }
    assert dropped_params(history, LLAMA, default_max_tokens=4096) == ("tool_choice",)


def test_response_format_is_a_forced_json_tool() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    body = {
        "messages": [USER],
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
    }
    config = converse(body)["toolConfig"]
    assert config["toolChoice"] == {"tool": {"name": "json_response"}}
    assert config["tools"][0]["toolSpec"]["inputSchema"] == {"json": schema}
    with_tools = converse({**body, "tools": [WEATHER]})["toolConfig"]
    assert with_tools["toolChoice"] == {"any": {}} and len(with_tools["tools"]) == 2
    assert converse({"messages": [USER], "response_format": {"type": "json_object"}})["toolConfig"]["tools"][0][
        "toolSpec"
    ]["inputSchema"] == {"json": {"type": "object"}}
    answer = {
        "output": {
            "message": {
                "role": "assistant",
                "content": [{"toolUse": {"toolUseId": "x", "name": "json_response", "input": {"a": 1}}}],
            }
        },
        "stopReason": "tool_use",
    }
    message = from_converse_response(answer, model="m", created=1)["choices"][0]
    assert message["message"]["content"] == '{"a":1}' and message["finish_reason"] == "stop"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"messages": [USER], "n": 2}, UnsupportedFeature),
        ({"messages": [USER], "logprobs": True}, UnsupportedFeature),
        ({"messages": []}, InvalidRequest),
        ({"messages": [{"role": "system", "content": "x"}]}, InvalidRequest),
        ({"messages": [{"role": "critic", "content": "x"}]}, InvalidRequest),
        ({"messages": [USER], "functions": [{"name": "f"}]}, InvalidRequest),
        ({"messages": [USER], "max_tokens": 0}, InvalidRequest),
        ({"messages": [USER], "temperature": 3}, InvalidRequest),
        ({"messages": [USER], "stop": [1]}, InvalidRequest),
        ({"messages": [USER], "tools": [{"type": "function", "function": {"name": "json_response"}}]}, InvalidRequest),
        ({"messages": [USER], "tool_choice": "sometimes"}, InvalidRequest),
        (
            {
                "messages": [
                    {"role": "assistant", "tool_calls": [{"id": "x", "function": {"name": "f", "arguments": "[1]"}}]}
                ]
            },
            InvalidRequest,
        ),
        ({"messages": [{"role": "tool", "content": "x"}]}, InvalidRequest),
    ],
)
def test_refusals(body: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        converse(body)


def test_dropped_params_lists_what_converse_cannot_carry() -> None:
    body = {
        "messages": [USER], "seed": 1, "user": "u", "presence_penalty": 0, "frequency_penalty": 0.5,
        "service_tier": "auto", "store": True, "logprobs": False, "stream_options": {"include_usage": True},
        "metadata": {"a": "b"}, "n": 1, "unknown_field": 1, "stream": True, "response_format": {"type": "text"},
    }  # fmt: skip
    assert dropped_params(body, LLAMA, default_max_tokens=4096) == (
        "frequency_penalty", "metadata", "seed", "store", "unknown_field", "user",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [("end_turn", "stop"), ("stop_sequence", "stop"), ("tool_use", "tool_calls"), ("max_tokens", "length"),
     ("guardrail_intervened", "content_filter"), ("content_filtered", "content_filter"), ("unknown", "stop"),
     (None, "stop")],
)  # fmt: skip
def test_answers_and_finish_reasons(stop_reason: str | None, finish: str) -> None:
    answer = {
        "output": {
            "message": {
                "role": "assistant",
                "content": [
                    {"reasoningContent": {"reasoningText": {"text": "Hmm.", "signature": "s"}}},
                    {"reasoningContent": {"redactedContent": "AAAA"}},
                    {"text": "It is "},
                    {"text": "sunny."},
                    {"toolUse": {"toolUseId": "t1", "name": "get_weather", "input": {"city": "Paris"}}},
                ],
            }
        },
        "stopReason": stop_reason,
        "usage": {
            "inputTokens": 10,
            "outputTokens": 5,
            "totalTokens": 22,
            "cacheReadInputTokens": 4,
            "cacheWriteInputTokens": 3,
        },
    }
    completion = from_converse_response(answer, model="claude", created=7)
    assert completion["id"].startswith("chatcmpl-")
    assert {k: v for k, v in completion.items() if k != "id"} == {
        "object": "chat.completion",
        "created": 7,
        "model": "claude",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "It is sunny.",
                    "refusal": None,
                    "reasoning_content": "Hmm.",
                    "tool_calls": [
                        {
                            "id": "t1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                        }
                    ],
                },
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "usage": {
            "prompt_tokens": 17,
            "completion_tokens": 5,
            "total_tokens": 22,
            "prompt_tokens_details": {"cached_tokens": 4},
        },
    }


def test_an_empty_or_malformed_answer_reads_as_empty() -> None:
    completion = from_converse_response(
        {"output": {"message": {"content": [None, {"image": {}}]}}}, model="m", created=1
    )
    assert completion["choices"][0]["message"]["content"] is None
    assert openai_usage({"inputTokens": True, "outputTokens": -1}) == {
        "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "prompt_tokens_details": {"cached_tokens": 0},
    }  # fmt: skip


def test_the_model_id_is_percent_encoded_as_botocore_does() -> None:
    profile = "arn:aws:bedrock:us-east-1:123:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0"
    assert converse_path(profile, stream=True) == (
        "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123%3Ainference-profile%2Fus.anthropic.claude-3-5-haiku-20241022-v1%3A0"
        "/converse-stream"
    )
    assert converse_path("amazon.nova-lite-v1:0", stream=False) == "/model/amazon.nova-lite-v1%3A0/converse"


THROTTLED = "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/"


@pytest.fixture
def provider() -> BedrockProvider:
    return BedrockProvider("bedrock", ProviderConfig(type="bedrock", region="eu-west-1", api_key="ABSKkey"))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "header", "body", "expected"),
    [
        (429, THROTTLED, {"message": "slow"}, ("ThrottlingException: slow", None, True)),
        (400, "ServiceQuotaExceededException", {"Message": "quota"},
         ("ServiceQuotaExceededException: quota", None, True)),
        (424, "ModelErrorException", {}, ("ModelErrorException", None, True)),
        (403, "ExpiredTokenException", {"message": "expired"}, ("ExpiredTokenException: expired", None, True)),
        (400, "ValidationException", {"message": "bad"}, ("ValidationException: bad", "invalid_request_error", False)),
        (404, None, {"__type": "com.amazon.coral#ResourceNotFoundException", "message": "no model"},
         ("ResourceNotFoundException: no model", "invalid_request_error", False)),
        (500, None, None, (None, None, None)),
    ],
)  # fmt: skip
def test_error_fields(
    provider: BedrockProvider, status: int, header: str | None, body: Any, expected: tuple[Any, ...]
) -> None:
    fields = provider.error_fields(body, {"x-amzn-errortype": header} if header else {})
    assert (fields.message, fields.type, fields.retryable) == expected
    assert fields.code == error_type(body, {"x-amzn-errortype": header} if header else {})


def test_a_bearer_key_and_configured_headers_are_masked(provider: BedrockProvider) -> None:
    assert (
        provider.mask("Authorization: Bearer ABSKkey; Signature=" + "a" * 64)
        == "Authorization: Bearer ***; Signature=***"
    )
    assert provider.transport.host == "bedrock-runtime.eu-west-1.amazonaws.com"


@given(st.text(min_size=1, max_size=40).filter(str.strip), st.booleans())
def test_any_user_text_translates_and_drops_nothing(text: str, stream: bool) -> None:
    body = {"messages": [{"role": "user", "content": text}], "stream": stream, "max_completion_tokens": 10}
    request = converse(body)
    assert request == {
        "messages": [{"role": "user", "content": [{"text": text}]}],
        "inferenceConfig": {"maxTokens": 10},
    }
    assert dropped_params(body, LLAMA, default_max_tokens=4096) == ()
