"""An OpenAI ``chat.completion`` -> the Anthropic ``message`` a Messages caller expects, and the readers
of OpenAI's values (stop reason, usage, ids) that the stream translator shares.

Upstream JSON is read defensively: a missing or malformed field becomes Anthropic's neutral value.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from llm_gateway.ids import new_id
from llm_gateway.schemas.core import Usage
from llm_gateway.translate.chat_wire import choice_message

# OpenAI finish_reason -> Anthropic stop_reason; anything else (null included) is "end_turn". OpenAI does
# not say which stop sequence matched, so "stop" is never "stop_sequence".
STOP_REASONS: dict[str, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

# Anthropic's tool_use ids match this; an id from elsewhere ("functions.Bash:0") would be refused when the
# caller sends it back to an Anthropic deployment.
_NOT_TOOL_ID_CHARS = re.compile(r"[^a-zA-Z0-9_-]")


def stop_reason(finish_reason: Any, *, has_tool_use: bool, refused: bool = False) -> str:
    if refused:
        return "refusal"
    reason = STOP_REASONS.get(finish_reason, "end_turn") if isinstance(finish_reason, str) else "end_turn"
    # Some servers (Ollama, older vLLM) finish a tool-call answer with "stop"; a "tool_calls" finish with
    # no call left would send an agent looking for a tool_use block that is not there.
    if reason == "end_turn" and has_tool_use:
        return "tool_use"
    if reason == "tool_use" and not has_tool_use:
        return "end_turn"
    return reason


def message_id(completion_id: Any) -> str:
    if isinstance(completion_id, str) and completion_id:
        return "msg_" + completion_id.removeprefix("chatcmpl-")
    return "msg_" + new_id()


def tool_use_id(call_id: Any) -> str:
    if isinstance(call_id, str) and call_id:
        return _NOT_TOOL_ID_CHARS.sub("_", call_id)
    return "toolu_" + new_id()


def input_usage(usage: Usage | None) -> dict[str, int]:
    """The input side of Anthropic's usage: its input_tokens exclude cache reads, OpenAI's prompt_tokens do not."""
    prompt = max(usage.prompt_tokens, 0) if usage else 0
    cached = min(max(usage.cached_tokens, 0), prompt) if usage else 0
    return {"input_tokens": prompt - cached, "cache_creation_input_tokens": 0, "cache_read_input_tokens": cached}


def anthropic_usage(usage: Usage | None) -> dict[str, int]:
    output = max(usage.completion_tokens, 0) if usage else 0
    return {**input_usage(usage), "output_tokens": output}


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # a few servers answer with content parts
        return "".join(part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str))
    return ""


def tool_input(arguments: Any) -> dict[str, Any]:
    """Arguments -> a tool_use ``input``. Unparsable or non-object arguments become ``{}``: the agent's tool
    then refuses the call and the model retries, where a 502 would end the whole turn."""
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str) or not arguments.strip():
        return {}
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _tool_use_block(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function")
    function = function if isinstance(function, dict) else {}
    name = function.get("name")
    return {
        "type": "tool_use",
        "id": tool_use_id(call.get("id")),
        "name": name if isinstance(name, str) else "",
        "input": tool_input(function.get("arguments")),
    }


def chat_to_message(completion: dict[str, Any], *, model: str) -> dict[str, Any]:
    """An OpenAI ``chat.completion`` -> an Anthropic ``message`` object (as the Messages API returns it)."""
    choice, message = choice_message(completion)
    # An OpenAI model's reasoning is not relayed as a thinking block: Anthropic would refuse it, unsigned,
    # when the caller sends the conversation back and the next turn goes to a native deployment.
    content: list[dict[str, Any]] = []
    if text := _content_text(message.get("content")):
        content.append({"type": "text", "text": text})
    refusal = message.get("refusal")
    refused = isinstance(refusal, str) and bool(refusal)
    if refused:
        content.append({"type": "text", "text": refusal})
    calls = message.get("tool_calls")
    tool_uses = [_tool_use_block(call) for call in calls if isinstance(call, dict)] if isinstance(calls, list) else []
    content.extend(tool_uses)
    return {
        "id": message_id(completion.get("id")),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(choice.get("finish_reason"), has_tool_use=bool(tool_uses), refused=refused),
        "stop_sequence": None,
        "usage": anthropic_usage(Usage.from_openai(completion.get("usage"))),
    }
