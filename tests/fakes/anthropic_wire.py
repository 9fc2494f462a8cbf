"""Anthropic Messages API wire format (``POST /v1/messages``), as the fake speaks it.

Shapes follow the public API reference: ``message`` bodies with ``text``/``tool_use`` blocks, the named
stream events (``message_start`` ... ``message_stop``) and ``{"type": "error", "error": {...}}``.
Requests are checked as strictly as the real API does, so a fake proves the gateway's translation.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Mapping
from typing import Any

from .behaviours import Reply
from .sse import StreamPlan, halves, named_event, plan, split_text

JSON = dict[str, Any]
Problem = tuple[int, JSON]

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_DEFAULT_MESSAGES = {
    401: "invalid x-api-key",
    403: "Your API key does not have permission to use the specified resource.",
    404: "Not found",
    413: "Request exceeds the maximum allowed number of bytes.",
    429: "Number of request tokens has exceeded your per-minute rate limit.",
    500: "Internal server error",
    529: "Overloaded",
}
_STOP_REASONS = {"stop": "end_turn", "tool_calls": "tool_use", "length": "max_tokens", "content_filter": "refusal"}
_TOP_LEVEL = {
    "model", "messages", "max_tokens", "metadata", "stop_sequences", "stream", "system", "temperature",
    "tool_choice", "tools", "top_k", "top_p", "thinking", "service_tier", "container", "mcp_servers",
    "context_management",
}  # fmt: skip
_BLOCK_TYPES = {
    "text", "image", "document", "search_result", "thinking", "redacted_thinking", "tool_use", "tool_result",
    "server_tool_use", "web_search_tool_result", "container_upload",
}  # fmt: skip
# What /v1/messages/count_tokens takes (the SDK's MessageCountTokensParams); anything else is refused.
_COUNT_TOKENS_FIELDS = {
    "model", "messages", "system", "tools", "tool_choice", "thinking", "cache_control", "output_config", "speed",
    "context_management", "mcp_servers",
}  # fmt: skip
_MODELS = [("claude-3-5-haiku-20241022", "Claude Haiku 3.5"), ("claude-sonnet-4-20250514", "Claude Sonnet 4")]


def count_tokens(body: JSON) -> int:
    """The fake's token count: the body's compact JSON without ``model``, in characters, divided by 4."""
    return len(json.dumps({k: v for k, v in body.items() if k != "model"}, separators=(",", ":"))) // 4


def thinking_signature(thinking: str) -> str:
    """A deterministic stand-in for Anthropic's opaque signature of a thinking block."""
    return base64.b64encode(hashlib.sha256(thinking.encode()).digest()).decode()


def stop_reason(finish_reason: str) -> str:
    """OpenAI finish reason -> Anthropic stop reason; anything else is taken as already Anthropic's."""
    return _STOP_REASONS.get(finish_reason, finish_reason)


class AnthropicWire:
    """The Anthropic side of a fake: request checks, success bodies, streams and errors."""

    kind = "anthropic"
    chat_path = "/v1/messages"
    count_tokens_path = "/v1/messages/count_tokens"
    models_path = "/v1/models"
    request_id_header = "request-id"
    stream_error_status = 529

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key

    # -- errors -------------------------------------------------------------------------------

    def error(
        self, status: int, message: str | None = None, error_type: str | None = None, code: str | None = None
    ) -> JSON:
        """``code`` is OpenAI's notion; Anthropic's envelope has only ``type`` and ``message``."""
        default_type = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return {
            "type": "error",
            "error": {
                "type": error_type or default_type,
                "message": message or _DEFAULT_MESSAGES.get(status, f"Upstream error {status}"),
            },
            "request_id": f"req_{uuid.uuid4().hex[:24]}",
        }

    def stream_error(self, message: str | None, error_type: str | None) -> bytes:
        body = self.error(529, message, error_type)
        body.pop("request_id")
        return named_event("error", body)

    def not_found(self, method: str, path: str) -> Problem:
        return 404, self.error(404, "Not Found")

    # -- request checks -----------------------------------------------------------------------

    def check_auth(self, headers: Mapping[str, str]) -> Problem | None:
        """``x-api-key``, else ``Authorization: Bearer`` (how the official SDK 2.x sends ``api_key``)."""
        bearer = headers.get("authorization", "")
        key = headers.get("x-api-key") or (bearer[7:] if bearer[:7].lower() == "bearer " else None)
        if not key:
            return 401, self.error(401, "x-api-key header is required")
        if key != self.api_key:
            return 401, self.error(401, "invalid x-api-key")
        return None

    def check_request(self, body: Any, headers: Mapping[str, str]) -> Problem | None:
        if not headers.get("anthropic-version"):
            return 400, self.error(400, "anthropic-version: header is required")
        if not isinstance(body, dict):
            return 400, self.error(400, "There was an issue with your request body: invalid JSON")
        message = _field_problem(body) or _messages_problem(body["messages"]) or _tools_problem(body)
        return (400, self.error(400, message)) if message else None

    def check_count_tokens(self, body: Any, headers: Mapping[str, str]) -> Problem | None:
        """As strict as ``check_request``, with count_tokens' own fields (no ``max_tokens``, no ``stream``)."""
        if not headers.get("anthropic-version"):
            return 400, self.error(400, "anthropic-version: header is required")
        if not isinstance(body, dict):
            return 400, self.error(400, "There was an issue with your request body: invalid JSON")
        required = [field for field in ("model", "messages") if field not in body]
        extra = sorted(set(body) - _COUNT_TOKENS_FIELDS)
        message = (
            (f"{required[0]}: Field required" if required else None)
            or (f"{extra[0]}: Extra inputs are not permitted" if extra else None)
            or _messages_problem(body["messages"])
            or _tools_problem(body)
        )
        return (400, self.error(400, message)) if message else None

    # -- answers ------------------------------------------------------------------------------

    def models(self) -> JSON:
        data = [
            {"type": "model", "id": model_id, "display_name": name, "created_at": "2024-10-22T00:00:00Z"}
            for model_id, name in _MODELS
        ]
        return {"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[-1]["id"]}

    def completion(self, request: JSON, reply: Reply) -> JSON:
        text = reply.text(self.kind)
        content: list[JSON] = []
        if reply.thinking is not None:
            content.append(
                {"type": "thinking", "thinking": reply.thinking, "signature": thinking_signature(reply.thinking)}
            )
        content += [{"type": "text", "text": text}] if text else []
        content += [_tool_use(call, with_input=True) for call in reply.tool_calls or []]
        return {
            **self._message(request),
            "content": content,
            "stop_reason": stop_reason(reply.finish()),
            "usage": _usage(reply, reply.completion_tokens),
        }

    def stream(self, request: JSON, reply: Reply) -> StreamPlan:
        start = {**self._message(request), "content": [], "stop_reason": None, "usage": _usage(reply, 1)}
        events: list[tuple[bytes, bool]] = [
            (named_event("message_start", {"type": "message_start", "message": start}), False)
        ]
        blocks: list[tuple[JSON, list[JSON]]] = []
        if reply.thinking is not None:
            deltas = [{"type": "thinking_delta", "thinking": piece} for piece in split_text(reply.thinking, None)]
            deltas.append({"type": "signature_delta", "signature": thinking_signature(reply.thinking)})
            blocks.append(({"type": "thinking", "thinking": "", "signature": ""}, deltas))
        text = reply.text(self.kind)
        if text:
            deltas = [{"type": "text_delta", "text": piece} for piece in split_text(text, reply.chunks)]
            blocks.append(({"type": "text", "text": ""}, deltas))
        for call in reply.tool_calls or []:
            pieces = halves(call.get("function", {}).get("arguments", ""))
            blocks.append(
                (_tool_use(call, with_input=False), [{"type": "input_json_delta", "partial_json": p} for p in pieces])
            )
        for index, (block, deltas) in enumerate(blocks):
            events.append((_event("content_block_start", index=index, content_block=block), False))
            if index == 0:
                events.append((_event("ping"), False))
            events += [
                (_event("content_block_delta", index=index, delta=delta), delta["type"] != "signature_delta")
                for delta in deltas
            ]
            events.append((_event("content_block_stop", index=index), False))
        if not blocks:
            events.append((_event("ping"), False))
        finish = {"stop_reason": stop_reason(reply.finish()), "stop_sequence": None}
        events.append((_event("message_delta", delta=finish, usage={"output_tokens": reply.completion_tokens}), False))
        events.append((_event("message_stop"), False))
        return plan(events)

    def _message(self, request: JSON) -> JSON:
        return {
            "id": f"msg_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": request.get("model"),
            "stop_sequence": None,
        }


def _event(name: str, **fields: Any) -> bytes:
    return named_event(name, {"type": name, **fields})


def _usage(reply: Reply, output_tokens: int) -> JSON:
    return {
        "input_tokens": reply.prompt_tokens,
        "cache_creation_input_tokens": reply.cache_creation_tokens,
        "cache_read_input_tokens": reply.cache_read_tokens,
        "output_tokens": output_tokens,
    }


def _tool_use(call: JSON, *, with_input: bool) -> JSON:
    """An OpenAI-style tool call as a ``tool_use`` block; streams start with ``input: {}`` and send JSON deltas."""
    function = call.get("function", {})
    tool_input = json.loads(function.get("arguments") or "{}") if with_input else {}
    return {"type": "tool_use", "id": call.get("id"), "name": function.get("name"), "input": tool_input}


def _field_problem(body: JSON) -> str | None:
    for required in ("model", "messages", "max_tokens"):
        if required not in body:
            return f"{required}: Field required"
    extra = sorted(set(body) - _TOP_LEVEL)
    if extra:
        return f"{extra[0]}: Extra inputs are not permitted"
    max_tokens = body["max_tokens"]
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        return "max_tokens: Input should be a valid integer greater than or equal to 1"
    tool_choice = body.get("tool_choice")
    if tool_choice is not None and not isinstance(tool_choice, dict):
        return "tool_choice: Input should be a valid dictionary or object to extract fields from"
    return None


def _messages_problem(messages: Any) -> str | None:
    if not isinstance(messages, list):
        return "messages: Input should be a valid list"
    if not messages:
        return "messages: at least one message is required"
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            return f"messages.{i}: Input should be a valid dictionary or object to extract fields from"
        role = message.get("role")
        if role == "system":
            return (
                'messages: Unexpected role "system". The Messages API accepts a top-level `system` parameter, '
                'not "system" as an input message role.'
            )
        if role not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        extra = sorted(set(message) - {"role", "content"})
        if extra:
            return f"messages.{i}.{extra[0]}: Extra inputs are not permitted"
        problem = _content_problem(i, message.get("content"), last=i == len(messages) - 1 and role == "assistant")
        if problem:
            return problem
    return None


def _content_problem(i: int, content: Any, *, last: bool) -> str | None:
    if isinstance(content, str):
        if not content and not last:
            return (
                f"messages.{i}: all messages must have non-empty content except for the optional final "
                "assistant message"
            )
        return None
    if not isinstance(content, list):
        return f"messages.{i}.content: Input should be a valid string or a valid list"
    for j, block in enumerate(content):
        block_type = block.get("type") if isinstance(block, dict) else None
        if block_type not in _BLOCK_TYPES:
            expected = ", ".join(f"'{t}'" for t in sorted(_BLOCK_TYPES))
            return (
                f"messages.{i}.content.{j}: Input tag '{block_type}' found using 'type' does not match any of the "
                f"expected tags: {expected}"
            )
    return None


def _tools_problem(body: JSON) -> str | None:
    tools = body.get("tools")
    if tools is None:
        return None
    if not isinstance(tools, list):
        return "tools: Input should be a valid list"
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            return f"tools.{i}: Input should be a valid dictionary or object to extract fields from"
        tool_type = tool.get("type")
        if tool_type == "function" or "function" in tool:
            return f"tools.{i}.function: Extra inputs are not permitted"
        if tool_type in (None, "custom"):
            for required in ("name", "input_schema"):
                if required not in tool:
                    return f"tools.{i}.custom.{required}: Field required"
    return None
