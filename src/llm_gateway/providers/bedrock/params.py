"""Which OpenAI request parameters a Converse request honours: sampling, reasoning, tool choice, the rest.

``to_converse_request`` builds its request from the decisions made here and ``dropped_params`` lists what
those decisions leave out, so the two cannot disagree. Everything here is total (it never raises) and
cheap: ``dropped_params`` runs on every translated request. Claude models on Bedrock keep their own rules
(the Anthropic adapter's model table): one of temperature / top_p, extended thinking by budget.
"""

from __future__ import annotations

from typing import Any

from llm_gateway.providers.anthropic.params import (
    completion_cap,
    model_traits,
    number,
    reasoning_fields,
    sampling_fields,
)

__all__ = ["completion_cap", "dropped_params", "sampling", "thinking_fields", "tool_choice_dropped"]


def is_claude(model: str) -> bool:
    """``anthropic.claude-…``, ``us.anthropic.claude-…``, a system inference profile's ARN; an application
    inference profile's ARN hides the model and is taken as a plain model."""
    return "claude" in model


def thinking_fields(body: dict[str, Any], model: str, cap: int) -> dict[str, Any]:
    """``additionalModelRequestFields`` for reasoning_effort: Claude's ``thinking`` by budget (it stays inside the
    caller's cap), or {} when not honoured (other models, adaptive-thinking Claude models, a cap too small)."""
    if not is_claude(model) or body.get("reasoning_effort") in (None, "none"):
        return {}
    traits = model_traits(model)
    if traits.thinking != "budget":
        return {}
    return reasoning_fields(body, traits, cap)


def sampling(temperature: float | None, top_p: float | None, model: str, *, thinking: bool) -> dict[str, float]:
    """inferenceConfig's temperature / topP. Converse's temperature range is 0..1 (OpenAI's 0..2): clamped."""
    if is_claude(model):
        fields = sampling_fields(temperature, top_p, model_traits(model), thinking=thinking)
        return {("topP" if name == "top_p" else name): value for name, value in fields.items()}
    out: dict[str, float] = {}
    if temperature is not None:
        out["temperature"] = min(temperature, 1)
    if top_p is not None:
        out["topP"] = top_p
    return out


def has_tool_history(messages: Any) -> bool:
    """Whether the dialogue carries tool calls or results (Converse then needs a toolConfig)."""
    if not isinstance(messages, list):
        return False
    return any(
        isinstance(m, dict) and (m.get("role") == "tool" or (m.get("role") == "assistant" and m.get("tool_calls")))
        for m in messages
    )


def tool_choice_dropped(body: dict[str, Any]) -> bool:
    """Converse has no tool_choice "none": honoured by sending no tools, which it refuses when the dialogue
    already holds tool calls; the tools are then sent and "none" is not honoured."""
    return body.get("tool_choice") == "none" and bool(body.get("tools")) and has_tool_history(body.get("messages"))


# --------------------------------------------------------------------------- dropped parameters

# Parameters a Converse request never carries: listed whenever set to anything but their no-op.
_NO_OP: dict[str, Any] = {
    "presence_penalty": 0,
    "frequency_penalty": 0,
    "logit_bias": {},
    "logprobs": False,  # true is refused (UnsupportedFeature) by the translation
    "n": 1,  # other values are refused (UnsupportedFeature)
    "store": False,
    "metadata": {},
    "modalities": ["text"],
    "functions": [],  # non-empty is refused (400)
}
_HONOURED = frozenset(
    {
        "model",  # in the URL
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "stream",  # the path: /converse or /converse-stream
        "stream_options",  # include_usage is honoured
        "stop",
        "tools",
        "response_format",  # through a forced tool
    }
)


def dropped_params(body: dict[str, Any], model: str, *, default_max_tokens: int) -> tuple[str, ...]:
    """The caller's parameters (sorted) that ``to_converse_request(body, model)`` does not honour: dropped, or
    changed (a temperature above 1 clamped). A null parameter is absent."""
    thinking: bool | None = None  # decided only when a parameter depends on it
    dropped: list[str] = []
    for name, value in body.items():
        if value is None or name in _HONOURED:
            continue
        if name in _NO_OP:
            honoured = value == _NO_OP[name]
        elif name in ("temperature", "top_p", "reasoning_effort"):
            if thinking is None:
                thinking = bool(thinking_fields(body, model, completion_cap(body, default_max_tokens)))
            honoured = _sampling_honoured(body, name, model, thinking)
        elif name == "tool_choice":
            honoured = not tool_choice_dropped(body)
        elif name == "parallel_tool_calls":
            honoured = value is True or not body.get("tools")  # Converse cannot forbid parallel calls
        elif name == "service_tier":
            honoured = value in ("auto", "default")  # on-demand throughput
        else:
            honoured = False  # seed, user, safety_identifier, ..., and names OpenAI does not define
        if not honoured:
            dropped.append(name)
    return tuple(sorted(dropped))


def _sampling_honoured(body: dict[str, Any], name: str, model: str, thinking: bool) -> bool:
    if name == "reasoning_effort":
        return thinking or body["reasoning_effort"] == "none"
    temperature, top_p = number(body.get("temperature")), number(body.get("top_p"))
    value = temperature if name == "temperature" else top_p
    if value is None:
        return False  # not a number: the translation refuses it
    key = "topP" if name == "top_p" else name
    return bool(sampling(temperature, top_p, model, thinking=thinking).get(key, 1) == value)
