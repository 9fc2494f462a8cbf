"""OpenAI Chat Completions <-> Gemini generateContent, both ways, as pure functions (no network)."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from llm_gateway.errors import InvalidRequest, UnsupportedFeature
from llm_gateway.providers.gemini.answer import from_gemini_response
from llm_gateway.providers.gemini.embed import (
    batch_embed_request,
    batch_embed_vectors,
    embedding_texts,
    openai_embeddings,
    predict_vectors,
)
from llm_gateway.providers.gemini.params import dropped_params, thinking_config
from llm_gateway.providers.gemini.translate import SKIP_SIGNATURE, to_gemini_request
from llm_gateway.providers.gemini.wire import (
    error_message,
    model_path,
    openai_usage,
    signature_of,
    tool_call_id,
    vertex_origin,
)

USER = {"role": "user", "content": "Hi"}
SIGNATURE = base64.b64encode(b"\x00\xff signature bytes \xfe").decode()


def request(**fields: Any) -> dict[str, Any]:
    return to_gemini_request({"messages": [USER], **fields}, "gemini-2.5-flash")


# ------------------------------------------------------------------------------------- request


def test_system_developer_and_turns() -> None:
    out = to_gemini_request(
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
                {"role": "user", "content": "Hi"},
                {"role": "user", "content": [{"type": "text", "text": "again"}]},
                {"role": "assistant", "content": "Bonjour"},
                {"role": "assistant", "content": ""},
                {"role": "user", "content": "?"},
            ]
        },
        "gemini-2.5-flash",
    )
    assert out == {
        "systemInstruction": {"parts": [{"text": "Be brief."}, {"text": "Use French."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "Hi"}, {"text": "again"}]},
            {"role": "model", "parts": [{"text": "Bonjour"}]},
            {"role": "user", "parts": [{"text": "?"}]},
        ],
    }


def test_inline_image_audio_and_file() -> None:
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0="}},
    ]
    out = to_gemini_request({"messages": [{"role": "user", "content": content}]}, "gemini-2.5-flash")
    assert out["contents"][0]["parts"] == [
        {"text": "What is this?"},
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
        {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
        {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}},
    ]


def test_an_image_url_is_a_feature_gemini_lacks() -> None:
    content = [{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]
    with pytest.raises(UnsupportedFeature) as caught:
        to_gemini_request({"messages": [{"role": "user", "content": content}]}, "gemini-2.5-flash")
    assert caught.value.param == "messages[0].content[0].image_url.url"


def test_tool_calls_and_responses_matched_by_name() -> None:
    signed = tool_call_id(SIGNATURE)
    messages = [
        USER,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": signed, "type": "function", "function": {"name": "a", "arguments": '{"x": 1}'}},
                {"id": "call_2", "type": "function", "function": {"name": "b", "arguments": ""}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_2", "content": '{"ok": true}'},
        {"role": "tool", "tool_call_id": signed, "content": "plain text"},
    ]
    out = to_gemini_request({"messages": messages}, "gemini-2.5-flash")
    assert out["contents"][1:] == [
        {
            "role": "model",
            "parts": [
                {"functionCall": {"name": "a", "args": {"x": 1}}, "thoughtSignature": SIGNATURE},
                {"functionCall": {"name": "b", "args": {}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "b", "response": {"ok": True}}},
                {"functionResponse": {"name": "a", "response": {"result": "plain text"}}},
            ],
        },
    ]


def test_gemini_3_calls_without_a_signature_skip_its_check() -> None:
    call = {"id": "call_abc", "type": "function", "function": {"name": "a", "arguments": "{}"}}
    messages = [USER, {"role": "assistant", "tool_calls": [call, {**call, "id": "call_def"}]}]
    out = to_gemini_request({"messages": messages}, "gemini-3-pro-preview")
    parts = out["contents"][1]["parts"]
    assert parts[0]["thoughtSignature"] == SKIP_SIGNATURE and "thoughtSignature" not in parts[1]


def test_a_tool_message_for_an_unknown_call_is_refused() -> None:
    with pytest.raises(InvalidRequest) as caught:
        to_gemini_request({"messages": [USER, {"role": "tool", "tool_call_id": "nope", "content": "x"}]}, "m")
    assert caught.value.param == "messages[1].tool_call_id"


def test_tools_and_tool_choice() -> None:
    schema = {"type": "object", "properties": {"q": {"type": "string"}}, "additionalProperties": False}
    tools = [
        {"type": "function", "function": {"name": "search", "description": "Search", "parameters": schema}},
        {"type": "function", "function": {"name": "now"}},
    ]
    out = request(tools=tools, tool_choice={"type": "function", "function": {"name": "search"}})
    assert out["tools"] == [
        {
            "functionDeclarations": [
                {"name": "search", "description": "Search", "parametersJsonSchema": schema},
                {"name": "now"},
            ]
        }
    ]
    assert out["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["search"]}}
    for choice, mode in (("auto", "AUTO"), ("none", "NONE"), ("required", "ANY")):
        assert request(tools=tools, tool_choice=choice)["toolConfig"] == {"functionCallingConfig": {"mode": mode}}
    with pytest.raises(UnsupportedFeature):
        request(tools=[{"type": "custom", "custom": {"name": "x"}}])


def test_generation_config() -> None:
    out = request(
        temperature=0.5,
        top_p=0.9,
        max_completion_tokens=300,
        max_tokens=10,
        stop="END",
        n=2,
        seed=3,
        presence_penalty=0.1,
        frequency_penalty=-0.2,
        response_format={"type": "json_object"},
    )
    assert out["generationConfig"] == {
        "temperature": 0.5,
        "topP": 0.9,
        "seed": 3,
        "presencePenalty": 0.1,
        "frequencyPenalty": -0.2,
        "maxOutputTokens": 300,
        "stopSequences": ["END"],
        "candidateCount": 2,
        "responseMimeType": "application/json",
    }
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    out = request(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}})
    assert out["generationConfig"] == {"responseMimeType": "application/json", "responseJsonSchema": schema}
    assert "generationConfig" not in request(response_format={"type": "text"})


def test_n_above_eight_is_unsupported() -> None:
    assert request(n=8)["generationConfig"]["candidateCount"] == 8
    with pytest.raises(UnsupportedFeature) as caught:
        request(n=9)
    assert caught.value.param == "n"


@pytest.mark.parametrize(
    ("model", "effort", "cap", "expected"),
    [
        ("gemini-2.5-flash", "low", None, {"thinkingBudget": 1024}),
        ("gemini-2.5-flash", "high", None, {"thinkingBudget": 24576}),
        ("gemini-2.5-flash", "high", 4096, {"thinkingBudget": 2048}),  # half the cap at most
        ("gemini-2.5-flash", "none", None, {"thinkingBudget": 0}),
        ("gemini-2.5-pro", "none", None, None),  # Pro cannot stop thinking
        ("gemini-2.5-pro", "xhigh", None, {"thinkingBudget": 32768}),
        ("gemini-2.5-flash", "low", 200, None),  # no room for thinking
        ("gemini-3-pro-preview", "low", None, {"thinkingLevel": "low"}),
        ("gemini-3-pro-preview", "high", None, {"thinkingLevel": "high"}),
        ("gemini-3-pro-preview", "medium", None, None),
        ("gemini-2.0-flash", "high", None, None),
    ],
)
def test_reasoning_effort(model: str, effort: str, cap: int | None, expected: dict[str, Any] | None) -> None:
    body: dict[str, Any] = {"messages": [USER], "reasoning_effort": effort}
    if cap is not None:
        body["max_completion_tokens"] = cap
    assert thinking_config(body, model) == expected
    assert to_gemini_request(body, model).get("generationConfig", {}).get("thinkingConfig") == expected
    assert ("reasoning_effort" in dropped_params(body, model)) is (expected is None)


def test_dropped_params() -> None:
    body = {
        "messages": [USER],
        "temperature": 1,
        "user": "u",
        "logprobs": True,
        "logit_bias": {},
        "parallel_tool_calls": False,
        "service_tier": "auto",
        "store": False,
        "web_search_options": {},
        "max_tokens": None,
    }
    assert dropped_params(body, "gemini-2.5-flash") == ("logprobs", "parallel_tool_calls", "user", "web_search_options")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "function", "content": "x"}]}, "messages[0].role"),
        ({"messages": [USER], "temperature": "hot"}, "temperature"),
        ({"messages": [USER], "max_tokens": 0}, "max_tokens"),
        ({"messages": [USER], "stop": [1]}, "stop"),
        ({"messages": [USER], "tool_choice": "sometimes"}, "tool_choice"),
        ({"messages": [USER], "response_format": {"type": "yaml"}}, "response_format"),
        ({"messages": [{"role": "system", "content": "only"}]}, "messages"),
    ],
)
def test_malformed_requests(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        to_gemini_request(body, "gemini-2.5-flash")
    assert caught.value.param == param


# -------------------------------------------------------------------------------------- answer


def test_answer_with_text_thoughts_and_calls() -> None:
    resp = {
        "responseId": "abc",
        "candidates": [
            {
                "index": 0,
                "finishReason": "STOP",
                "content": {
                    "role": "model",
                    "parts": [
                        {"text": "thinking...", "thought": True},
                        {"text": "Let me check."},
                        {"functionCall": {"name": "a", "args": {"x": 1}}, "thoughtSignature": SIGNATURE},
                    ],
                },
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 10,
            "candidatesTokenCount": 5,
            "thoughtsTokenCount": 20,
            "cachedContentTokenCount": 4,
            "toolUsePromptTokenCount": 3,
            "totalTokenCount": 38,
        },
    }
    out = from_gemini_response(resp, model="gemini-2.5-flash", created=1)
    message = out["choices"][0]["message"]
    assert out["id"] == "chatcmpl-abc" and out["object"] == "chat.completion" and out["model"] == "gemini-2.5-flash"
    assert message["content"] == "Let me check." and message["reasoning_content"] == "thinking..."
    (call,) = message["tool_calls"]
    assert call["function"] == {"name": "a", "arguments": '{"x":1}'} and signature_of(call["id"]) == SIGNATURE
    assert out["choices"][0]["finish_reason"] == "tool_calls"
    assert out["usage"] == {
        "prompt_tokens": 13,
        "completion_tokens": 25,
        "total_tokens": 38,
        "prompt_tokens_details": {"cached_tokens": 4},
        "completion_tokens_details": {"reasoning_tokens": 20},
    }


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("OTHER", "stop"),
        (None, "stop"),
    ],
)
def test_finish_reasons(reason: str | None, finish: str) -> None:
    candidate: dict[str, Any] = {"content": {"parts": [{"text": "x"}]}}
    if reason:
        candidate["finishReason"] = reason
    assert from_gemini_response({"candidates": [candidate]}, model="m", created=1)["choices"][0]["finish_reason"] == (
        finish
    )


def test_a_blocked_prompt_is_an_empty_content_filter_answer() -> None:
    resp = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 8}}
    out = from_gemini_response(resp, model="m", created=1)
    assert out["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "", "refusal": None},
            "logprobs": None,
            "finish_reason": "content_filter",
        }
    ]
    assert out["usage"]["prompt_tokens"] == 8 and out["usage"]["completion_tokens"] == 0


def test_a_safety_candidate_without_content() -> None:
    out = from_gemini_response({"candidates": [{"finishReason": "SAFETY", "index": 0}]}, model="m", created=1)
    assert out["choices"][0]["message"]["content"] == "" and out["choices"][0]["finish_reason"] == "content_filter"


def test_several_candidates() -> None:
    candidates = [{"index": i, "content": {"parts": [{"text": str(i)}]}, "finishReason": "STOP"} for i in range(3)]
    out = from_gemini_response({"candidates": candidates}, model="m", created=1)
    assert [(c["index"], c["message"]["content"]) for c in out["choices"]] == [(0, "0"), (1, "1"), (2, "2")]


# ------------------------------------------------------------------------------- wire helpers


@given(st.binary(min_size=1, max_size=300))
def test_thought_signatures_survive_the_tool_call_id(raw: bytes) -> None:
    signature = base64.b64encode(raw).decode()
    call_id = tool_call_id(signature)
    assert signature_of(call_id) == signature
    assert all(c.isalnum() or c in "_-" for c in call_id)


def test_ids_without_signature() -> None:
    assert signature_of(tool_call_id(None)) is None
    assert signature_of("call_123") is None
    assert signature_of(tool_call_id("not base64!")) is None


def test_paths_and_origins() -> None:
    assert model_path("gemini-2.5-flash") == "models/gemini-2.5-flash"
    assert model_path("tunedModels/mine") == "tunedModels/mine"
    assert model_path("a b") == "models/a%20b"
    assert vertex_origin("global") == "https://aiplatform.googleapis.com"
    assert vertex_origin("europe-west4") == "https://europe-west4-aiplatform.googleapis.com"


def test_usage_ignores_junk() -> None:
    assert openai_usage({"promptTokenCount": "x", "candidatesTokenCount": True})["total_tokens"] == 0
    assert openai_usage(None)["prompt_tokens"] == 0


def test_error_messages() -> None:
    body = {"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}}
    assert error_message(body, "x") == "RESOURCE_EXHAUSTED: Quota exceeded"
    assert error_message([body], "x") == "RESOURCE_EXHAUSTED: Quota exceeded"
    assert error_message({"nothing": 1}, "fallback") == "fallback"


# ---------------------------------------------------------------------------------- embeddings


def test_embeddings_both_ways() -> None:
    assert embedding_texts({"input": "a"}) == ["a"]
    with pytest.raises(UnsupportedFeature):
        embedding_texts({"input": [[1, 2]]})
    with pytest.raises(InvalidRequest):
        embedding_texts({"input": []})
    assert batch_embed_request(["a", "b"], "gemini-embedding-001", 8) == {
        "requests": [
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": t}]}, "outputDimensionality": 8}
            for t in "ab"
        ]
    }
    assert batch_embed_vectors({"embeddings": [{"values": [1.0]}, {"values": [2.0]}]}, 2) == [[1.0], [2.0]]
    assert batch_embed_vectors({"embeddings": [{"values": [1.0]}]}, 2) is None
    answer = {"predictions": [{"embeddings": {"values": [0.5], "statistics": {"token_count": 3}}}]}
    assert predict_vectors(answer, 1) == ([[0.5]], 3)
    out = openai_embeddings([[0.5, -1.0]], "m", 3, base64_format=True)
    assert orjson.loads(orjson.dumps(out))["data"][0] == {
        "object": "embedding",
        "index": 0,
        "embedding": base64.b64encode(b"\x00\x00\x00?\x00\x00\x80\xbf").decode(),
    }
    assert out["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
