"""Which OpenAI request parameters a Gemini request honours: ``generationConfig``, thinking, and the list of
those it does not (``dropped_params``).

``to_gemini_request`` builds its ``generationConfig`` from the decisions made here and ``dropped_params`` lists
what those decisions leave out, so the two cannot disagree. ``thinking_config`` and ``dropped_params`` never
raise and are cheap: ``dropped_params`` runs on every translated request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

# ---------------------------------------------------------------------------------- thinking


@dataclass(frozen=True, slots=True)
class ThinkingTraits:
    kind: Literal["budget", "level"] | None  # thinkingBudget (2.5), thinkingLevel (3), or no thinking control
    max_budget: int = 0
    can_disable: bool = False  # whether thinkingBudget 0 turns thinking off (Flash, Flash-Lite; not Pro)


# First match wins (ai.google.dev/gemini-api/docs/thinking). 2.5 Pro thinks 128..32768 tokens and cannot stop;
# 2.5 Flash 0..24576. Gemini 3 takes thinkingLevel ("low" / "high"; budgets are legacy there).
_TRAITS: tuple[tuple[re.Pattern[str], ThinkingTraits], ...] = (
    (re.compile(r"gemini-3"), ThinkingTraits("level")),
    (re.compile(r"gemini-2\.5-pro"), ThinkingTraits("budget", 32768)),
    (re.compile(r"gemini-2\.5-flash"), ThinkingTraits("budget", 24576, can_disable=True)),
)
_NO_THINKING = ThinkingTraits(None)  # Gemini 2.0, 1.5, unknown names: reasoning_effort is not honoured

# reasoning_effort -> thinkingBudget (before the model's maximum and the caller's cap).
THINKING_BUDGETS = {"minimal": 512, "low": 1024, "medium": 8192, "high": 24576, "xhigh": 32768}
THINKING_LEVELS = {"minimal": "low", "low": "low", "high": "high", "xhigh": "high"}
MIN_THINKING_BUDGET = 128  # Gemini 2.5 Pro's floor
# Gemini counts thoughts inside maxOutputTokens: thinking may take at most this share of the caller's cap.
THINKING_SHARE = 0.5


@lru_cache(maxsize=256)
def thinking_traits(model: str) -> ThinkingTraits:
    for pattern, traits in _TRAITS:
        if pattern.search(model):
            return traits
    return _NO_THINKING


def completion_cap(body: dict[str, Any]) -> int | None:
    """The cap the request carries (the newer name wins): the gateway always sends the one it reserved."""
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is not None:
            return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else None
    return None


def thinking_config(body: dict[str, Any], model: str) -> dict[str, Any] | None:
    """``generationConfig.thinkingConfig`` for ``reasoning_effort``, or None when it is not honoured."""
    effort = body.get("reasoning_effort")
    traits = thinking_traits(model)
    if not isinstance(effort, str) or traits.kind is None:
        return None
    if traits.kind == "level":
        level = THINKING_LEVELS.get(effort)  # "medium" is not offered on every Gemini 3 model; "none" not at all
        return {"thinkingLevel": level} if level else None
    if effort == "none":
        return {"thinkingBudget": 0} if traits.can_disable else None
    budget = THINKING_BUDGETS.get(effort)
    if budget is None:
        return None
    budget = min(budget, traits.max_budget)
    cap = completion_cap(body)
    if cap is not None:
        budget = min(budget, int(cap * THINKING_SHARE))
    if budget < MIN_THINKING_BUDGET:
        return None
    return {"thinkingBudget": budget}


# ---------------------------------------------------------------------------------- sampling


def number(value: Any) -> float | int | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


# OpenAI name -> generationConfig name, for the numbers passed as they are.
NUMBERS = {
    "temperature": "temperature",
    "top_p": "topP",
    "seed": "seed",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
}


# --------------------------------------------------------------------------- dropped parameters

# Parameters a Gemini request never carries: listed whenever set to anything but their no-op.
_NO_OP: dict[str, Any] = {
    "logit_bias": {},
    "logprobs": False,
    "top_logprobs": 0,
    "parallel_tool_calls": True,  # Gemini decides alone whether to call functions in parallel
    "store": False,
    "metadata": {},
    "modalities": ["text"],
    "service_tier": "auto",
}
# Honoured whenever the translation accepts them (it refuses what it cannot express).
_HONOURED = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "stream",
        "stream_options",
        "stop",
        "tools",
        "tool_choice",
        "response_format",
        "n",  # above 8: the deployment is skipped (UnsupportedFeature)
        *NUMBERS,
    }
)


def dropped_params(body: dict[str, Any], model: str) -> tuple[str, ...]:
    """The caller's parameters (sorted) that ``to_gemini_request(body, model)`` does not honour. A null parameter
    is absent; ``reasoning_effort`` is honoured when it becomes a ``thinkingConfig``."""
    dropped: list[str] = []
    for name, value in body.items():
        if value is None or name in _HONOURED:
            continue
        if name in _NO_OP:
            honoured = value == _NO_OP[name]
        elif name == "reasoning_effort":
            honoured = thinking_config(body, model) is not None
        else:
            honoured = False  # user, safety_identifier, audio, prediction, web_search_options, unknown names...
        if not honoured:
            dropped.append(name)
    return tuple(sorted(dropped))
