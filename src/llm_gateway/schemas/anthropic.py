"""Anthropic's Messages API as the gateway receives it: the fast request check, the error envelope
(``{"type": "error", "error": {...}}``) and the models list shape the Anthropic SDK reads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeGuard

import orjson

from llm_gateway.errors import AllProvidersRefused, GatewayError, InvalidRequest
from llm_gateway.schemas.openai import load_json_object  # orjson, an object, at most 64 levels deep
from llm_gateway.schemas.sse_frames import frame

# Anthropic's floor for ``thinking.budget_tokens`` (it refuses less, whatever the model). It is not also
# held below ``max_tokens`` here: with interleaved thinking Anthropic lets the budget exceed it, and the
# gateway reserves ``max_tokens`` either way.
MIN_THINKING_BUDGET = 1024


@dataclass(slots=True)
class MessagesRequest:
    """A validated Messages request. ``body`` is the caller's JSON as received; ``forward``, the caller's
    headers a native deployment gets (``anthropic-version``, ``anthropic-beta``), set by the route."""

    body: dict[str, Any]
    model: str
    stream: bool
    max_tokens: int
    forward: Mapping[str, str] = dataclasses.field(default_factory=dict)


def parse_messages_request(raw: bytes) -> MessagesRequest:
    """Check what the gateway itself reads; everything else passes through to the upstream.

    Once this returns, every field that the gateway or a translation reads (the token estimate, the cache
    key, the OpenAI translation) has the shape it expects: bad input is ``InvalidRequest`` (a 400 naming the
    field), never a failure further on.
    """
    body = _checked_body(raw)
    max_tokens = body.get("max_tokens")
    if not _is_int(max_tokens) or max_tokens < 1:
        raise InvalidRequest("'max_tokens' is required: an integer of at least 1.", param="max_tokens")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be a boolean.", param="stream")
    return MessagesRequest(body=body, model=body["model"], stream=bool(stream), max_tokens=max_tokens)


def parse_count_tokens_request(raw: bytes) -> dict[str, Any]:
    """``POST /v1/messages/count_tokens``: the same checks as a Messages request, without ``max_tokens``
    and ``stream`` (which that endpoint does not take)."""
    return _checked_body(raw)


def _checked_body(raw: bytes) -> dict[str, Any]:
    body = load_json_object(raw)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("You must provide a model parameter (a non-empty string).", param="model")
    _check_messages(body.get("messages"))
    _check_system(body.get("system"))
    _check_tools(body.get("tools"))
    _check_sampling(body)
    _check_options(body)
    return body


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty array.", param="messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequest(f"'messages[{index}]' must be an object.", param=f"messages[{index}]")
        if message.get("role") not in ("user", "assistant"):
            raise InvalidRequest("A message's 'role' must be 'user' or 'assistant'.", param=f"messages[{index}].role")
        content = message.get("content")
        if not isinstance(content, str):
            _check_blocks(content, "messages[{}].content", index)


# What the gateway reads of each block type it knows: (field, JSON type, its name in the message).
_BLOCK_FIELDS: dict[str, tuple[tuple[str, type, str], ...]] = {
    "text": (("text", str, "a string"),),
    "image": (("source", dict, "an object"),),
    "tool_use": (("id", str, "a string"), ("name", str, "a string"), ("input", dict, "an object")),
    "tool_result": (("tool_use_id", str, "a string"),),
}


def _check_blocks(blocks: Any, template: str, key: object, *, nested: bool = False) -> None:
    """An array of content blocks, each an object with a string ``type``; the fields the gateway reads of
    text, image, tool_use and tool_result blocks are checked. Other types (document, thinking, server tool
    blocks, types yet to come) pass through. The parameter's name, ``template.format(key)``, is only built
    for an error: this loop runs for every block of the whole conversation."""
    if not isinstance(blocks, list):
        param = template.format(key)
        raise InvalidRequest("'content' must be a string or an array of content blocks.", param=param)
    for position, block in enumerate(blocks):
        kind = block.get("type") if isinstance(block, dict) else None
        if not isinstance(kind, str):
            param = f"{template.format(key)}[{position}]"
            raise InvalidRequest("Each content block must be an object with a string 'type'.", param=param)
        for field, expected, described in _BLOCK_FIELDS.get(kind, ()):
            if not isinstance(block.get(field), expected):
                param = f"{template.format(key)}[{position}].{field}"
                raise InvalidRequest(f"A {kind} block needs {described} '{field}'.", param=param)
        if kind == "tool_result" and not nested:  # a tool_result in a tool_result: nothing reads that deep
            content = block.get("content")
            if content is not None and not isinstance(content, str):
                _check_blocks(content, "{}", f"{template.format(key)}[{position}].content", nested=True)


def _need(block: dict[str, Any], field: str, kind: type, where: str, what: str) -> None:
    if not isinstance(block.get(field), kind):
        raise InvalidRequest(what[0].upper() + what[1:] + ".", param=f"{where}.{field}")


def _check_system(system: Any) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        raise InvalidRequest("'system' must be a string or an array of text blocks.", param="system")
    for position, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
            raise InvalidRequest(
                "Each 'system' block must be a text block with a string 'text'.", param=f"system[{position}]"
            )


def _check_tools(tools: Any) -> None:
    """Custom tools (no ``type``, or ``custom``) name themselves and give an ``input_schema`` object;
    server tools (``web_search_20250305``, ...) have a string ``type`` and ``name``."""
    if tools is None:
        return
    if not isinstance(tools, list):
        raise InvalidRequest("'tools' must be an array of objects.", param="tools")
    for index, tool in enumerate(tools):
        where = f"tools[{index}]"
        if not isinstance(tool, dict):
            raise InvalidRequest("Each tool must be an object.", param=where)
        kind = tool.get("type")
        if kind is not None and not isinstance(kind, str):
            raise InvalidRequest("A tool's 'type' must be a string.", param=f"{where}.type")
        _need(tool, "name", str, where, "each tool needs a string 'name'")
        if kind is None or kind == "custom":
            _need(tool, "input_schema", dict, where, "a custom tool needs an 'input_schema' object")


def _check_sampling(body: dict[str, Any]) -> None:
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is not None and not _is_number(value):
            raise InvalidRequest(f"'{name}' must be a number.", param=name)
    top_k = body.get("top_k")
    if top_k is not None and not _is_int(top_k):
        raise InvalidRequest("'top_k' must be an integer.", param="top_k")
    stop = body.get("stop_sequences")
    if stop is not None:
        if not isinstance(stop, list):
            raise InvalidRequest("'stop_sequences' must be an array of strings.", param="stop_sequences")
        for index, sequence in enumerate(stop):
            if not isinstance(sequence, str):
                raise InvalidRequest("Each stop sequence must be a string.", param=f"stop_sequences[{index}]")


def _check_options(body: dict[str, Any]) -> None:
    """``tool_choice``, ``metadata`` and ``thinking``, which the translation and the cache key read."""
    tool_choice = body.get("tool_choice")
    if tool_choice is not None:
        if not isinstance(tool_choice, dict) or not isinstance(tool_choice.get("type"), str):
            raise InvalidRequest("'tool_choice' must be an object with a string 'type'.", param="tool_choice")
        if tool_choice["type"] == "tool" and not isinstance(tool_choice.get("name"), str):
            raise InvalidRequest("A 'tool' tool_choice needs a string 'name'.", param="tool_choice.name")
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise InvalidRequest("'metadata' must be an object.", param="metadata")
        user_id = metadata.get("user_id")
        if user_id is not None and not isinstance(user_id, str):
            raise InvalidRequest("'metadata.user_id' must be a string or null.", param="metadata.user_id")
    thinking = body.get("thinking")
    if thinking is not None:
        if not isinstance(thinking, dict) or not isinstance(thinking.get("type"), str):
            raise InvalidRequest("'thinking' must be an object with a string 'type'.", param="thinking")
        budget = thinking.get("budget_tokens")
        if thinking["type"] == "enabled" and (not _is_int(budget) or budget < MIN_THINKING_BUDGET):
            raise InvalidRequest(
                f"Enabled thinking needs an integer 'budget_tokens' of at least {MIN_THINKING_BUDGET}.",
                param="thinking.budget_tokens",
            )


# --- The error envelope --------------------------------------------------------------------------

# Anthropic's documented error types by HTTP status (docs "Errors"; the SDK picks its exception class
# from the status alone: BadRequestError, AuthenticationError, ..., OverloadedError for 529). Any other
# 4xx is invalid_request_error, as Anthropic's own API answers them; any other 5xx api_error.
ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
OVERLOADED = 529


def error_type(exc: GatewayError) -> tuple[int, str]:
    """(HTTP status, Anthropic error type) of a gateway error on the Messages routes.

    Every deployment refused, one of them for overload (Anthropic's 529): the caller sees 529
    ``overloaded_error``, which the Anthropic SDK and Claude Code back off from, rather than 429.
    """
    if isinstance(exc, AllProvidersRefused) and exc.overloaded:
        return OVERLOADED, "overloaded_error"
    status = exc.status_code
    kind = ERROR_TYPES.get(status)
    if kind is None:
        kind = "invalid_request_error" if 400 <= status < 500 else "api_error"
    return status, kind


def _envelope(exc: GatewayError, request_id: str | None) -> dict[str, Any]:
    envelope: dict[str, Any] = {"type": "error", "error": {"type": error_type(exc)[1], "message": exc.message}}
    if request_id:
        envelope["request_id"] = request_id
    return envelope


def error_body(exc: GatewayError, *, request_id: str | None = None) -> bytes:
    """``{"type": "error", "error": {"type", "message"}, "request_id"?}`` (the status: ``error_type``)."""
    return orjson.dumps(_envelope(exc, request_id))


def error_event(exc: GatewayError, *, request_id: str | None = None) -> bytes:
    """The ``event: error`` frame that ends a stream failing after its first event (no ``message_stop``)."""
    return frame("error", orjson.dumps(_envelope(exc, request_id)))


# --- Models ----------------------------------------------------------------------------------------


def _rfc3339(moment: datetime) -> str:
    if moment.tzinfo is None:  # a naive datetime is taken as UTC, never as the host's local time
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def model_entry(name: str, created_at: datetime) -> dict[str, Any]:
    """One model as Anthropic's ``GET /v1/models/{id}`` gives it (``anthropic.types.ModelInfo``)."""
    return {
        "type": "model",
        "id": name,
        "display_name": name,
        "created_at": _rfc3339(created_at),
        "lifecycle": "active",
    }


def models_list(names: list[str], created_at: datetime) -> dict[str, Any]:
    """Anthropic's list shape, one page holding every name (``has_more`` false)."""
    return {
        "data": [model_entry(name, created_at) for name in names],
        "has_more": False,
        "first_id": names[0] if names else None,
        "last_id": names[-1] if names else None,
    }
