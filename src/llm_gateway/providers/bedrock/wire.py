"""The Bedrock Converse API's shapes, paths and constants, and how its values read in OpenAI's terms.

Request shapes are TypedDicts because we build them; answers, stream events and error bodies stay plain
dicts because they come off the wire and are read defensively (the readers below).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NotRequired, TypedDict

from llm_gateway.ids import new_id

SERVICE = "bedrock"  # the SigV4 signing name of bedrock-runtime
ENDPOINT = "https://bedrock-runtime.{region}.amazonaws.com"
STREAM_CONTENT_TYPE = "application/vnd.amazon.eventstream"

# response_format json_object / json_schema is answered through this forced tool (Converse has no JSON mode);
# its input becomes the message content. A caller tool with this name is refused.
JSON_TOOL_NAME = "json_response"

# data: URL media types -> Converse image formats.
IMAGE_FORMATS = {
    "image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/gif": "gif", "image/webp": "webp",
}  # fmt: skip
# s3:// object extensions -> Converse image formats.
IMAGE_EXTENSIONS = {"png": "png", "jpg": "jpeg", "jpeg": "jpeg", "gif": "gif", "webp": "webp"}

# Converse stopReason -> OpenAI finish_reason; anything else maps to "stop".
FINISH_REASONS: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}

# x-amzn-ErrorType values. Our credentials failing arrives as a 4xx but must fall back (the caller sees 502);
# a throttled or busy model (some as 400 or 424) falls back too; the caller's own mistakes go back to it.
CREDENTIAL_ERRORS = frozenset(
    {
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ExpiredTokenException",
        "IncompleteSignatureException",
        "MissingAuthenticationTokenException",
    }
)
BUSY_ERRORS = frozenset(
    {
        "ThrottlingException",
        "ModelNotReadyException",
        "ServiceQuotaExceededException",
        "ServiceUnavailableException",
        "ModelTimeoutException",
        "ModelErrorException",
        "ModelStreamErrorException",
        "InternalServerException",
    }
)
CALLER_ERRORS = frozenset({"ValidationException", "ResourceNotFoundException"})


class TextBlock(TypedDict):
    text: str


class CachePointBlock(TypedDict):
    cachePoint: dict[str, str]


class ImageSource(TypedDict, total=False):
    bytes: str  # base64, as JSON carries a blob
    s3Location: dict[str, str]


class Image(TypedDict):
    format: str
    source: ImageSource


class ImageBlock(TypedDict):
    image: Image


class ToolUse(TypedDict):
    toolUseId: str
    name: str
    input: dict[str, Any]


class ToolUseBlock(TypedDict):
    toolUse: ToolUse


class ToolResult(TypedDict):
    toolUseId: str
    content: list[TextBlock]


class ToolResultBlock(TypedDict):
    toolResult: ToolResult


ContentBlock = TextBlock | CachePointBlock | ImageBlock | ToolUseBlock | ToolResultBlock
SystemBlock = TextBlock | CachePointBlock


class Message(TypedDict):
    role: str  # "user" | "assistant"
    content: list[ContentBlock]


class ToolSpec(TypedDict):
    name: str
    inputSchema: dict[str, Any]  # {"json": <JSON schema>}
    description: NotRequired[str]


class Tool(TypedDict):
    toolSpec: ToolSpec


class InferenceConfig(TypedDict, total=False):
    maxTokens: int
    temperature: float
    topP: float
    stopSequences: list[str]


CACHE_POINT: CachePointBlock = {"cachePoint": {"type": "default"}}


# --------------------------------------- reading answers (shared by the translation and the stream)


def completion_id() -> str:
    return "chatcmpl-" + new_id()


def finish_reason(stop_reason: Any, *, has_tool_calls: bool) -> str:
    reason = FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"
    # A tool_use stop caused only by the response_format JSON tool is a normal answer.
    return "stop" if reason == "tool_calls" and not has_tool_calls else reason


def _count(usage: Mapping[str, Any], key: str) -> int:
    value = usage.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def openai_usage(usage: Any) -> dict[str, Any]:
    """Converse usage -> OpenAI's: inputTokens counts neither cache reads nor cache writes; prompt tokens do."""
    usage = usage if isinstance(usage, dict) else {}
    cached = _count(usage, "cacheReadInputTokens")
    prompt = _count(usage, "inputTokens") + cached + _count(usage, "cacheWriteInputTokens")
    completion = _count(usage, "outputTokens")
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def error_type(parsed: Any, headers: Mapping[str, str]) -> str | None:
    """``x-amzn-ErrorType`` (``ThrottlingException:http://internal.amazon.com/...``), else the body's ``__type``
    or ``code`` (``com.amazon.coral.service#ThrottlingException``): the bare exception name."""
    raw = headers.get("x-amzn-errortype")
    if not raw and isinstance(parsed, dict):
        raw = next((v for k in ("__type", "code") if isinstance(v := parsed.get(k), str) and v), None)
    if not raw:
        return None
    return raw.partition(":")[0].rpartition("#")[2] or None


def error_message(parsed: Any) -> str | None:
    if not isinstance(parsed, dict):
        return None
    message = parsed.get("message", parsed.get("Message"))
    return message if isinstance(message, str) and message else None
