"""The pieces of OpenAI's Chat Completions wire format that every translation to and from chat reads the same
way (Anthropic Messages, OpenAI Responses): the stream request fields, a completion's (or chunk's) first
choice, a streamed tool call's index, id and function. Upstream JSON is read defensively."""

from __future__ import annotations

from typing import Any

from llm_gateway.errors import InvalidRequest


def stream_fields(body: dict[str, Any]) -> dict[str, Any]:
    """The caller's ``stream``, with usage asked for in the last chunk when it streams (chat sends none unless
    asked, and the gateway charges what the upstream reports)."""
    stream = body.get("stream")
    if stream is None:
        return {}
    if not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be a boolean", param="stream")
    return {"stream": True, "stream_options": {"include_usage": True}} if stream else {"stream": False}


def first_choice(answer: dict[str, Any]) -> dict[str, Any] | None:
    """A completion's or a chunk's first choice; None when it has none (chat's usage chunk) or it is malformed."""
    choices = answer.get("choices")
    return choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None


def choice_message(completion: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A completion's first choice and its message, ``{}`` for either when absent."""
    choice = first_choice(completion) or {}
    message = choice.get("message")
    return choice, message if isinstance(message, dict) else {}


def tool_call_delta(call: dict[str, Any]) -> tuple[int | None, str | None, dict[str, Any]]:
    """A streamed tool call's ``index`` and ``id`` (None when absent or empty) and ``function`` (``{}``)."""
    index = call.get("index")
    call_id = call.get("id")
    function = call.get("function")
    return (
        index if isinstance(index, int) and not isinstance(index, bool) else None,
        call_id if isinstance(call_id, str) and call_id else None,
        function if isinstance(function, dict) else {},
    )
