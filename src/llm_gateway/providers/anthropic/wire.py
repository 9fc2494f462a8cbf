"""The Anthropic Messages API's JSON shapes, constants, and how its values read in OpenAI's terms.

Request shapes are TypedDicts because we build them; responses and stream events stay
plain dicts because they come off the wire and are read defensively (the readers below).
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

import orjson

from llm_gateway.ids import new_id

API_VERSION = "2023-06-01"  # value of the `anthropic-version` header
MESSAGES_PATH = "/v1/messages"  # appended to the base URL (`https://api.anthropic.com`)
PROVIDER = "anthropic"

IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})

# response_format json_object / json_schema is answered through this forced tool; its
# input becomes the message content. A caller tool with this name is refused.
JSON_TOOL_NAME = "json_response"

# Anthropic stop_reason -> OpenAI finish_reason; anything else maps to "stop".
FINISH_REASONS: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


class CacheControl(TypedDict):
    type: Literal["ephemeral"]


class TextBlock(TypedDict):
    type: Literal["text"]
    text: str
    cache_control: NotRequired[CacheControl]


class Base64Source(TypedDict):
    type: Literal["base64"]
    media_type: str
    data: str


class UrlSource(TypedDict):
    type: Literal["url"]
    url: str


class ImageBlock(TypedDict):
    type: Literal["image"]
    source: Base64Source | UrlSource


class ToolUseBlock(TypedDict):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]


class ToolResultBlock(TypedDict):
    type: Literal["tool_result"]
    tool_use_id: str
    content: NotRequired[str | list[TextBlock]]


ContentBlock = TextBlock | ImageBlock | ToolUseBlock | ToolResultBlock


class MessageParam(TypedDict):
    role: Literal["user", "assistant"]
    content: list[ContentBlock]


class Tool(TypedDict):
    name: str
    input_schema: dict[str, Any]
    description: NotRequired[str]


class ToolChoice(TypedDict):
    type: Literal["auto", "any", "tool", "none"]
    name: NotRequired[str]
    disable_parallel_tool_use: NotRequired[bool]


# ------------------------------------- reading response values (shared by translate and stream)


def completion_id(message_id: Any) -> str:
    if isinstance(message_id, str) and message_id:
        return "chatcmpl-" + message_id.removeprefix("msg_")
    return "chatcmpl-" + new_id()


def finish_reason(stop_reason: Any, *, has_tool_calls: bool) -> str:
    reason = FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"
    # A tool_use stop caused only by the response_format JSON tool is a normal answer.
    return "stop" if reason == "tool_calls" and not has_tool_calls else reason


def _count(usage: dict[str, Any], key: str) -> int:
    value = usage.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def openai_usage(usage: Any) -> dict[str, Any]:
    """Anthropic usage -> OpenAI's: prompt tokens include cache reads and cache writes."""
    usage = usage if isinstance(usage, dict) else {}
    cached = _count(usage, "cache_read_input_tokens")
    prompt = _count(usage, "input_tokens") + cached + _count(usage, "cache_creation_input_tokens")
    completion = _count(usage, "output_tokens")
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def anthropic_error_message(body: Any) -> str:
    """``{"type": "error", "error": {"type": ..., "message": ...}}`` (parsed or raw) -> a readable message."""
    if isinstance(body, bytes | bytearray | str):
        try:
            body = orjson.loads(body)
        except orjson.JSONDecodeError:
            text = body.decode(errors="replace") if isinstance(body, bytes | bytearray) else body
            return text.strip()[:500] or "Anthropic returned an empty error"
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        kind, message = error.get("type"), error.get("message")
        if isinstance(message, str) and message:
            return f"{kind}: {message}" if isinstance(kind, str) and kind else message
        if isinstance(kind, str) and kind:
            return kind
    if isinstance(error, str) and error:
        return error
    return f"Anthropic returned an unrecognised error: {str(body)[:500]}"
