"""The Gemini API's JSON shapes (``GenerateContentRequest`` / ``Response``), its paths, and how its values read
in OpenAI's terms. Vertex AI's ``publishers/google`` models take and answer the very same bodies.

Request shapes are TypedDicts because we build them; answers and stream events stay plain dicts because they
come off the wire and are read defensively (the readers below).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, Literal, NotRequired, TypedDict
from urllib.parse import quote

from llm_gateway.ids import new_id

PROVIDER = "gemini"
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)  # what a Vertex AI access token must carry
MAX_CANDIDATES = 8  # generationConfig.candidateCount: Gemini's limit (OpenAI's n goes up to 128)
MAX_EMBED_BATCH = 100  # batchEmbedContents: requests per call

# Gemini finishReason -> OpenAI finish_reason; anything else (OTHER, MALFORMED_FUNCTION_CALL, ...) is "stop".
FINISH_REASONS: dict[str, str] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
}
# Google's canonical error statuses that mean "our side failed: another deployment may answer"; the rest of
# the 4xx are the caller's request. (429/5xx/401/403 are retryable by their HTTP status already.)
RETRYABLE_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED", "SERVICE_DISABLED", "BILLING_DISABLED"})
RETRYABLE_STATUSES = frozenset(
    {"RESOURCE_EXHAUSTED", "UNAVAILABLE", "INTERNAL", "DEADLINE_EXCEEDED", "UNAUTHENTICATED", "PERMISSION_DENIED"}
)


class Blob(TypedDict):
    mimeType: str
    data: str


class FunctionCall(TypedDict):
    name: str
    args: dict[str, Any]


class FunctionResponse(TypedDict):
    name: str
    response: dict[str, Any]


class Part(TypedDict, total=False):
    text: str
    inlineData: Blob
    functionCall: FunctionCall
    functionResponse: FunctionResponse
    thoughtSignature: str


class Content(TypedDict):
    role: Literal["user", "model"]
    parts: list[Part]


class FunctionDeclaration(TypedDict):
    name: str
    description: NotRequired[str]
    parametersJsonSchema: NotRequired[dict[str, Any]]


class FunctionCallingConfig(TypedDict):
    mode: Literal["AUTO", "ANY", "NONE"]
    allowedFunctionNames: NotRequired[list[str]]


# ------------------------------------------------------------------------------------------ paths


def model_path(model: str) -> str:
    """``models/{model}`` (a configured ``tunedModels/…`` or ``models/…`` name kept as it is), URL-quoted."""
    name = model if model.startswith(("models/", "tunedModels/")) else f"models/{model}"
    return quote(name, safe="/-._~")


def vertex_origin(location: str) -> str:
    """Vertex AI's regional endpoint; ``global`` has none of its own."""
    if location == "global":
        return "https://aiplatform.googleapis.com"
    return f"https://{location}-aiplatform.googleapis.com"


def vertex_prefix(project: str, location: str) -> str:
    return f"/v1/projects/{quote(project, safe='')}/locations/{quote(location, safe='')}/publishers/google"


# ------------------------------------------------------------------------------ tool call ids

# A Gemini 2.5+/3 function call may carry a ``thoughtSignature`` that must come back with the call on the next turn
# (Gemini 3 refuses the turn without it). OpenAI's format has no field for it, so it travels inside the tool call
# id the client echoes: ``call_<24 hex>_ts_<signature, URL-safe base64 without padding>`` (ids stay [A-Za-z0-9_-]).
_SIGNED_ID = re.compile(r"call_[0-9a-f]{24}_ts_([A-Za-z0-9_-]+)")


def tool_call_id(signature: Any) -> str:
    call_id = f"call_{new_id()[:24]}"
    if not isinstance(signature, str) or not signature:
        return call_id
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return call_id
    return f"{call_id}_ts_{base64.urlsafe_b64encode(raw).decode().rstrip('=')}"


def signature_of(call_id: str) -> str | None:
    """The thought signature a tool call id of ours carries (standard base64, as Gemini sent it), or None."""
    match = _SIGNED_ID.fullmatch(call_id)
    if match is None:
        return None
    packed = match.group(1)
    try:
        raw = base64.urlsafe_b64decode(packed + "=" * (-len(packed) % 4))
    except (binascii.Error, ValueError):
        return None
    return base64.b64encode(raw).decode()


# ----------------------------------------------------------- reading answers (translate and stream)


def completion_id(response_id: Any) -> str:
    if isinstance(response_id, str) and response_id:
        return f"chatcmpl-{response_id}"
    return f"chatcmpl-{new_id()}"


def finish_reason(reason: Any, *, has_tool_calls: bool) -> str:
    mapped = FINISH_REASONS.get(reason, "stop") if isinstance(reason, str) else "stop"
    return "tool_calls" if mapped == "stop" and has_tool_calls else mapped


def _count(usage: dict[str, Any], key: str) -> int:
    value = usage.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def openai_usage(usage: Any) -> dict[str, Any]:
    """``usageMetadata`` -> OpenAI's usage: thoughts are completion (and reasoning) tokens, tool-use prompts are
    prompt tokens, cached content is cached prompt tokens."""
    usage = usage if isinstance(usage, dict) else {}
    prompt = _count(usage, "promptTokenCount") + _count(usage, "toolUsePromptTokenCount")
    thoughts = _count(usage, "thoughtsTokenCount")
    completion = _count(usage, "candidatesTokenCount") + thoughts
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": _count(usage, "cachedContentTokenCount")},
        "completion_tokens_details": {"reasoning_tokens": thoughts},
    }


def error_object(body: Any) -> dict[str, Any] | None:
    """``{"error": {"code", "message", "status", "details"}}`` (or a one-element list of it, as the non-SSE
    stream endpoint answers) -> the inner object."""
    if isinstance(body, list) and body:
        body = body[0]
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else None


def error_reasons(error: dict[str, Any]) -> set[str]:
    """The ``reason`` of each ``google.rpc.ErrorInfo`` in ``details``."""
    details = error.get("details")
    if not isinstance(details, list):
        return set()
    return {
        detail["reason"] for detail in details if isinstance(detail, dict) and isinstance(detail.get("reason"), str)
    }


def error_message(body: Any, fallback: str) -> str:
    error = error_object(body)
    if error is None:
        return fallback
    message, status = error.get("message"), error.get("status")
    text = message if isinstance(message, str) and message else fallback
    return f"{status}: {text}" if isinstance(status, str) and status else text
