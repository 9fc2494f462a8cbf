"""Which OpenAI request parameters a Messages request honours: the model table, reasoning, sampling.

``to_anthropic_request`` builds its request from the decisions made here and ``dropped_params``
lists what those decisions leave out, so the two cannot disagree. Everything here is total (it
never raises) and cheap: ``dropped_params`` runs on every translated request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

DEFAULT_MAX_TOKENS = 4096  # the Messages API requires max_tokens; providers configure their own

# ------------------------------------------------------------------------------ the model table


@dataclass(frozen=True, slots=True)
class ModelTraits:
    thinking: Literal["budget", "adaptive"] | None  # how extended thinking is asked for, if at all
    sampling: bool  # whether temperature / top_p are accepted


# First match wins; names are searched, so "us.anthropic.claude-…" and dated snapshots match too.
#   budget:   thinking {"type": "enabled", "budget_tokens": N}, budget >= 1024 and < max_tokens
#   adaptive: thinking {"type": "adaptive"} + output_config.effort; Opus 4.7+ refuse "enabled"
#             thinking and any non-default temperature / top_p / top_k (400)
# Opus/Sonnet 4.6 accept "enabled" (deprecated there in favour of adaptive), so they stay on budgets.
MODEL_TRAITS: tuple[tuple[re.Pattern[str], ModelTraits], ...] = (
    (re.compile(r"claude-opus-4-[7-9]"), ModelTraits("adaptive", sampling=False)),
    (re.compile(r"claude-(?:opus|sonnet)-4"), ModelTraits("budget", sampling=True)),  # 4, 4.1, 4.5, 4.6
    (re.compile(r"claude-haiku-4-5"), ModelTraits("budget", sampling=True)),
    (re.compile(r"claude-3-7-sonnet"), ModelTraits("budget", sampling=True)),
)
PLAIN_MODEL = ModelTraits(None, sampling=True)  # Claude 3.5 and older Haiku/Sonnet/Opus, unknown names


@lru_cache(maxsize=256)
def model_traits(model: str) -> ModelTraits:
    for pattern, traits in MODEL_TRAITS:
        if pattern.search(model):
            return traits
    return PLAIN_MODEL


# ---------------------------------------------------------------------------------- reasoning

# reasoning_effort -> budget_tokens. 1024 is Anthropic's floor; each step roughly doubles to
# quadruples, as OpenAI's efforts do in reasoning tokens spent; above 32k Anthropic advises
# batch processing (long requests time out), so only "max" goes past it. A budget never exceeds
# what the caller's cap leaves for the answer (see reasoning_fields).
THINKING_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 32768, "max": 65536}
# reasoning_effort -> output_config.effort on adaptive-thinking models.
ADAPTIVE_EFFORTS = {"minimal": "low", "low": "low", "medium": "medium", "high": "high", "xhigh": "xhigh", "max": "max"}
MIN_THINKING_BUDGET = 1024  # Anthropic's minimum budget_tokens
MIN_ANSWER_TOKENS = 1024  # what thinking must leave of the caller's cap for the visible answer
MIN_THINKING_CAP = MIN_THINKING_BUDGET + MIN_ANSWER_TOKENS

# top_p Anthropic accepts while thinking (temperature and top_k must stay at their defaults).
THINKING_TOP_P = (0.95, 1)


def completion_cap(body: dict[str, Any], default: int) -> int:
    """The max_tokens the request carries (the newer name wins); ``default`` if absent or invalid."""
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is not None:
            valid = isinstance(value, int) and not isinstance(value, bool) and value >= 1
            return value if valid else default
    return default


def reasoning_fields(body: dict[str, Any], traits: ModelTraits, cap: int) -> dict[str, Any]:
    """``thinking`` (and ``output_config``) for the request, or {} when reasoning_effort is not honoured.

    Thinking stays inside the caller's cap: max_tokens is never raised, the budget shrinks to
    what leaves MIN_ANSWER_TOKENS for the answer, and below MIN_THINKING_CAP there is none.
    """
    effort = body.get("reasoning_effort")
    if (
        not isinstance(effort, str)
        or effort not in THINKING_BUDGETS
        or traits.thinking is None
        or cap < MIN_THINKING_CAP
        or _forces_a_tool(body)
        or _blocks_thinking(body.get("messages"))
    ):
        return {}
    if traits.thinking == "adaptive":
        return {
            "thinking": {"type": "adaptive", "display": "summarized"},  # Opus 4.7 omits thinking text otherwise
            "output_config": {"effort": ADAPTIVE_EFFORTS[effort]},
        }
    budget = min(THINKING_BUDGETS[effort], cap - MIN_ANSWER_TOKENS)
    return {"thinking": {"type": "enabled", "budget_tokens": budget}}


def _forces_a_tool(body: dict[str, Any]) -> bool:
    """Thinking refuses tool_choice "any"/"tool": response_format JSON and forced caller tools use them."""
    response_format = body.get("response_format")
    kind = response_format.get("type") if isinstance(response_format, dict) else response_format
    if kind not in (None, "text"):
        return True
    choice = body.get("tool_choice")
    return bool(body.get("tools")) and (choice == "required" or isinstance(choice, dict))


def _blocks_thinking(messages: Any) -> bool:
    """Whether the dialogue ends where thinking cannot start without the signed thinking of earlier turns.

    An assistant turn last (a prefill) cannot be continued with thinking, and when the last
    assistant turn called tools, Anthropic wants it to start with its (signed) thinking block,
    which OpenAI's format does not carry back.
    """
    if not isinstance(messages, list):
        return False
    seen_reply = False  # a user or tool turn after the last assistant turn
    in_assistant_turn = False
    for message in reversed(messages):
        if not isinstance(message, dict):
            continue  # refused by the translation
        role = message.get("role")
        if role in ("system", "developer") or not _has_blocks(message, role):
            continue  # hoisted to `system`, or dropped: neither separates turns
        if role == "assistant":
            if not seen_reply:
                return True
            in_assistant_turn = True
            if message.get("tool_calls"):
                return True
        elif in_assistant_turn:
            return False  # the last assistant turn is over and called no tool
        else:
            seen_reply = True
    return False


def _has_blocks(message: dict[str, Any], role: Any) -> bool:
    """Whether the translation makes at least one content block of this message (cheaply, no copies)."""
    if role == "tool":
        return True
    if role == "assistant" and message.get("tool_calls"):
        return True
    content = message.get("content")
    if isinstance(content, str):
        return bool(content.strip())
    if not isinstance(content, list):
        return False
    for part in content:
        if not isinstance(part, dict) or part.get("type") == "image_url":
            return True  # an image, or a part the translation refuses
        text = part.get("text") if part.get("type") == "text" else part.get("refusal")
        if not isinstance(text, str) or text.strip():
            return True
    return False


# ----------------------------------------------------------------------------------- sampling


def number(value: Any) -> float | int | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def sampling_fields(
    temperature: float | None, top_p: float | None, traits: ModelTraits, *, thinking: bool
) -> dict[str, Any]:
    """temperature / top_p for the request. Anthropic's default for both is 1 (no change)."""
    if not traits.sampling:
        return {}
    if thinking:
        low, high = THINKING_TOP_P
        return {"top_p": top_p} if top_p is not None and low <= top_p <= high else {}
    # Recent Claude models reject temperature and top_p together ("cannot both be specified for
    # this model"); temperature is the one callers usually mean.
    if temperature is not None:
        return {"temperature": min(temperature, 1)}  # OpenAI's range is 0..2, Anthropic's 0..1
    return {"top_p": top_p} if top_p is not None else {}


def service_tier_fields(tier: Any) -> dict[str, Any]:
    """OpenAI "auto" is Anthropic's default; "default" (standard processing) is "standard_only"."""
    return {"service_tier": "standard_only"} if tier == "default" else {}


# --------------------------------------------------------------------------- dropped parameters

# Parameters a Messages request never carries: listed whenever set to anything but their no-op.
_NO_OP: dict[str, Any] = {
    "presence_penalty": 0,
    "frequency_penalty": 0,
    "logit_bias": {},
    "logprobs": False,  # true is refused (400) by the translation
    "n": 1,  # other values are refused (400)
    "store": False,
    "metadata": {},  # OpenAI's stored-completion tags; Anthropic's metadata holds only user_id
    "modalities": ["text"],
    "functions": [],  # non-empty is refused (400)
}
_NEVER_HONOURED = frozenset(
    {
        "seed",
        "top_logprobs",
        "audio",
        "prediction",
        "verbosity",
        "web_search_options",
        "prompt_cache_key",
        "prompt_cache_retention",
        "prompt_cache_options",
        "moderation",
        "function_call",  # refused (400) by the translation
    }
)
# Honoured whenever the translation accepts them (it refuses what it cannot express).
_HONOURED = frozenset(
    {
        "model",  # replaced by the deployment's model
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "stream",
        "stream_options",  # include_usage is honoured; include_obfuscation only pads chunks
        "stop",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "safety_identifier",
    }
)


def dropped_params(
    body: dict[str, Any], model: str, *, default_max_tokens: int = DEFAULT_MAX_TOKENS
) -> tuple[str, ...]:
    """The caller's parameters (sorted) that ``to_anthropic_request(body, model)`` does not honour.

    Dropped, or changed (a temperature above 1 clamped). A null parameter is absent. Pass the
    provider's ``default_max_tokens`` when the body may have no completion cap: thinking depends on it.
    """
    traits = model_traits(model)
    thinking: bool | None = None  # decided only when a parameter depends on it
    dropped: list[str] = []
    for name, value in body.items():
        if value is None or name in _HONOURED:
            continue
        if name in _NO_OP:
            honoured = value == _NO_OP[name]
        elif name in ("temperature", "top_p", "reasoning_effort"):
            if thinking is None:
                thinking = bool(reasoning_fields(body, traits, completion_cap(body, default_max_tokens)))
            honoured = _sampling_honoured(body, name, traits, thinking)
        elif name == "user":
            identifier = body.get("safety_identifier")
            honoured = identifier is None or identifier == value  # metadata.user_id holds one of them
        elif name == "service_tier":
            honoured = value in ("auto", "default")
        else:
            honoured = False  # _NEVER_HONOURED, and names OpenAI does not define
        if not honoured:
            dropped.append(name)
    return tuple(sorted(dropped))


def _sampling_honoured(body: dict[str, Any], name: str, traits: ModelTraits, thinking: bool) -> bool:
    if name == "reasoning_effort":
        return thinking or body["reasoning_effort"] == "none"
    temperature, top_p = number(body.get("temperature")), number(body.get("top_p"))
    value = temperature if name == "temperature" else top_p
    if value is None:
        return False  # not a number: the translation refuses it
    return bool(sampling_fields(temperature, top_p, traits, thinking=thinking).get(name, 1) == value)
