"""What an Anthropic deployment honours of an OpenAI request: dropped_params, reasoning_effort, sampling."""

from __future__ import annotations

from typing import Any

import pytest

from llm_gateway.providers.anthropic.params import model_traits
from llm_gateway.providers.anthropic.translate import dropped_params, to_anthropic_request

HAIKU_35 = "claude-3-5-haiku-latest"  # no extended thinking
SONNET_45 = "claude-sonnet-4-5-20250929"
OPUS_47 = "claude-opus-4-7"
HI = [{"role": "user", "content": "Hi"}]
HI_BLOCKS = [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


def body(**fields: Any) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": HI, **fields}


# --------------------------------------------------------------------------- dropped_params


@pytest.mark.parametrize(
    ("fields", "dropped"),
    [
        ({"seed": 7}, ("seed",)),
        ({"presence_penalty": 0.5, "frequency_penalty": -1}, ("frequency_penalty", "presence_penalty")),
        ({"logit_bias": {"50256": -100}}, ("logit_bias",)),
        ({"top_logprobs": 3}, ("top_logprobs",)),
        ({"reasoning_effort": "high"}, ("reasoning_effort",)),  # Claude 3.5 Haiku cannot think
        ({"temperature": 1.7}, ("temperature",)),  # clamped to 1
        ({"temperature": 0.2, "top_p": 0.9}, ("top_p",)),  # not both: temperature wins
        ({"seed": 1, "temperature": 2, "verbosity": "low"}, ("seed", "temperature", "verbosity")),  # sorted
        ({"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}}, ("audio", "modalities")),
        ({"prediction": {"type": "content", "content": "x"}}, ("prediction",)),
        ({"web_search_options": {}}, ("web_search_options",)),
        ({"store": True, "metadata": {"run": "7"}}, ("metadata", "store")),
        ({"prompt_cache_key": "k", "prompt_cache_retention": "24h"}, ("prompt_cache_key", "prompt_cache_retention")),
        ({"service_tier": "flex"}, ("service_tier",)),
        ({"user": "alice", "safety_identifier": "h-123"}, ("user",)),  # metadata.user_id holds one id
        ({"top_k": 40}, ("top_k",)),  # not an OpenAI parameter: not carried either
        ({"n": 2, "logprobs": True}, ("logprobs", "n")),  # the translation refuses these (400) anyway
    ],
)
def test_parameters_anthropic_does_not_honour_are_listed(fields: dict[str, Any], dropped: tuple[str, ...]) -> None:
    assert dropped_params(body(**fields), HAIKU_35) == dropped


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"top_p": 0.5},  # top_p alone is honoured
        {"temperature": 0.7, "top_p": 1},  # top_p 1 is the default: nothing lost
        {"presence_penalty": 0, "frequency_penalty": 0, "logit_bias": {}, "n": 1, "logprobs": False},
        {"store": False, "metadata": {}, "modalities": ["text"], "service_tier": "auto"},
        {"service_tier": "default", "user": "alice", "safety_identifier": "alice", "reasoning_effort": "none"},
        {"seed": None, "top_logprobs": None, "reasoning_effort": None, "temperature": None},  # null is absent
        {"stream": True, "stream_options": {"include_usage": True}, "stop": ["x"], "max_completion_tokens": 5},
        {"tools": [WEATHER_TOOL], "tool_choice": "required", "parallel_tool_calls": False},
        {"response_format": {"type": "json_object"}, "max_tokens": 9},
    ],
)
def test_honoured_and_default_valued_parameters_are_not_listed(fields: dict[str, Any]) -> None:
    assert dropped_params(body(**fields), HAIKU_35) == ()


def test_dropped_params_does_not_touch_the_body_and_never_raises_on_junk() -> None:
    junk = {"messages": "nope", "temperature": "hot", "top_p": [1], "reasoning_effort": 3, "max_tokens": -1}
    assert dropped_params(junk, SONNET_45) == ("reasoning_effort", "temperature", "top_p")
    assert junk["messages"] == "nope"


# -------------------------------------------------------------------------- reasoning_effort


@pytest.mark.parametrize(
    ("effort", "budget"),
    [("minimal", 1024), ("low", 2048), ("medium", 8192), ("high", 16384), ("xhigh", 31744), ("max", 31744)],
)
def test_reasoning_effort_becomes_a_thinking_budget_inside_the_callers_cap(effort: str, budget: int) -> None:
    request = to_anthropic_request(body(reasoning_effort=effort, max_completion_tokens=32768), SONNET_45)
    assert request == {
        "model": SONNET_45,
        "max_tokens": 32768,  # never raised: the gateway reserved the caller's cap
        "messages": HI_BLOCKS,
        "thinking": {"type": "enabled", "budget_tokens": budget},  # leaves at least 1024 for the answer
    }
    assert dropped_params(body(reasoning_effort=effort, max_completion_tokens=32768), SONNET_45) == ()


@pytest.mark.parametrize(
    ("cap", "thinking"),
    [
        (2048, {"type": "enabled", "budget_tokens": 1024}),  # the smallest cap that leaves room for an answer
        (4096, {"type": "enabled", "budget_tokens": 3072}),  # the budget shrinks, max_tokens stays
        (2047, None),  # below 1024 + 1024: no thinking, reasoning_effort listed
        (100, None),
    ],
)
def test_a_small_cap_shrinks_or_drops_thinking_but_is_never_raised(cap: int, thinking: dict[str, Any] | None) -> None:
    fields = body(reasoning_effort="high", max_tokens=cap)
    request = to_anthropic_request(fields, SONNET_45)
    assert request["max_tokens"] == cap
    assert request.get("thinking") == thinking
    assert dropped_params(fields, SONNET_45) == (() if thinking else ("reasoning_effort",))


def test_without_a_cap_the_providers_default_bounds_thinking() -> None:
    fields = body(reasoning_effort="high")
    assert to_anthropic_request(fields, SONNET_45, default_max_tokens=1500).get("thinking") is None
    assert dropped_params(fields, SONNET_45, default_max_tokens=1500) == ("reasoning_effort",)
    assert to_anthropic_request(fields, SONNET_45)["thinking"] == {"type": "enabled", "budget_tokens": 3072}
    assert dropped_params(fields, SONNET_45) == ()


@pytest.mark.parametrize(
    ("model", "mode"),
    [
        ("claude-3-7-sonnet-20250219", "budget"),
        ("claude-sonnet-4-20250514", "budget"),
        ("claude-sonnet-4-0", "budget"),
        ("claude-sonnet-4-5", "budget"),
        ("claude-sonnet-4-6", "budget"),
        ("claude-opus-4-1-20250805", "budget"),
        ("claude-opus-4-5-20251101", "budget"),
        ("claude-opus-4-6", "budget"),
        ("claude-haiku-4-5-20251001", "budget"),
        ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "budget"),
        ("claude-opus-4-7", "adaptive"),
        ("claude-3-5-haiku-latest", None),
        ("claude-3-5-sonnet-20241022", None),
        ("claude-3-haiku-20240307", None),
        ("my-proxy-model", None),
    ],
)
def test_model_table(model: str, mode: str | None) -> None:
    assert model_traits(model).thinking == mode


def test_adaptive_models_get_effort_and_no_sampling_parameters() -> None:
    fields = body(reasoning_effort="minimal", temperature=0.3, top_p=0.9, max_tokens=8000)
    assert to_anthropic_request(fields, OPUS_47) == {
        "model": OPUS_47,
        "max_tokens": 8000,
        "messages": HI_BLOCKS,
        "thinking": {"type": "adaptive", "display": "summarized"},
        "output_config": {"effort": "low"},
    }
    assert dropped_params(fields, OPUS_47) == ("temperature", "top_p")  # Opus 4.7 refuses them (400)
    assert dropped_params(body(temperature=1, top_p=1), OPUS_47) == ()  # the defaults: nothing lost


@pytest.mark.parametrize(
    ("fields", "sent", "dropped"),
    [
        ({"temperature": 0.2}, {}, ("temperature",)),  # thinking needs the default temperature
        ({"temperature": 1}, {}, ()),
        ({"top_p": 0.97}, {"top_p": 0.97}, ()),  # 0.95..1 is allowed with thinking
        ({"top_p": 0.5}, {}, ("top_p",)),
        ({"temperature": 1.5, "top_p": 0.99}, {"top_p": 0.99}, ("temperature",)),
    ],
)
def test_sampling_with_thinking(fields: dict[str, Any], sent: dict[str, Any], dropped: tuple[str, ...]) -> None:
    request = to_anthropic_request(body(reasoning_effort="low", max_tokens=4096, **fields), SONNET_45)
    assert request["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert {k: request[k] for k in ("temperature", "top_p") if k in request} == sent
    assert dropped_params(body(reasoning_effort="low", max_tokens=4096, **fields), SONNET_45) == dropped


CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}


@pytest.mark.parametrize(
    "fields",
    [
        {"tools": [WEATHER_TOOL], "tool_choice": "required"},  # thinking refuses a forced tool
        {"tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
        {"response_format": {"type": "json_object"}},  # answered through a forced tool
        # the last assistant turn called a tool: Anthropic wants its signed thinking back, which OpenAI lacks
        {"messages": [*HI, {"role": "assistant", "tool_calls": [CALL]}, {"role": "tool", "tool_call_id": "call_1"}]},
        {"messages": [*HI, {"role": "assistant", "content": "The answer is"}]},  # a prefill
    ],
)
def test_thinking_is_dropped_where_anthropic_refuses_it(fields: dict[str, Any]) -> None:
    request = to_anthropic_request(body(**{"reasoning_effort": "medium", "max_tokens": 16000, **fields}), SONNET_45)
    assert "thinking" not in request
    assert dropped_params(body(**{"reasoning_effort": "medium", "max_tokens": 16000, **fields}), SONNET_45) == (
        "reasoning_effort",
    )


def test_thinking_after_a_finished_tool_exchange_and_with_optional_tools() -> None:
    messages = [
        *HI,
        {"role": "assistant", "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        {"role": "assistant", "content": "It is 18C."},
        {"role": "user", "content": "And tomorrow?"},
        {"role": "assistant", "content": "  "},  # blank: not a turn, so not a prefill
    ]
    fields = body(messages=messages, tools=[WEATHER_TOOL], reasoning_effort="low", max_tokens=4096)
    request = to_anthropic_request(fields, SONNET_45)
    assert request["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert dropped_params(fields, SONNET_45) == ()


# ----------------------------------------------------------------------------- other fields


def test_safety_identifier_is_the_user_id_and_default_service_tier_is_standard_only() -> None:
    request = to_anthropic_request(body(user="alice", safety_identifier="h-1", service_tier="default"), HAIKU_35)
    assert request["metadata"] == {"user_id": "h-1"}
    assert request["service_tier"] == "standard_only"
    assert "service_tier" not in to_anthropic_request(body(service_tier="auto"), HAIKU_35)
