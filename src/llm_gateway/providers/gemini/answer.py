"""A Gemini ``GenerateContentResponse`` -> an OpenAI ``chat.completion``, as a pure function.

Each candidate is a choice; text parts join into ``content``, thought parts (``thought: true``) go to
``reasoning_content`` (never into ``content``), function calls are ``tool_calls``. A prompt blocked before any
candidate (``promptFeedback.blockReason``) is an answer, not an error: one empty choice, ``content_filter``.
"""

from __future__ import annotations

from typing import Any

from llm_gateway.providers.chat_answer import function_call
from llm_gateway.providers.gemini.wire import completion_id, finish_reason, openai_usage, tool_call_id


def from_gemini_response(resp: dict[str, Any], *, model: str, created: int) -> dict[str, Any]:
    candidates = resp.get("candidates")
    choices = [
        _choice(candidate, position)
        for position, candidate in enumerate(candidates if isinstance(candidates, list) else [])
        if isinstance(candidate, dict)
    ]
    if not choices:
        choices = [blocked_choice()]
    return {
        "id": completion_id(resp.get("responseId")),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": choices,
        "usage": openai_usage(resp.get("usageMetadata")),
    }


def blocked_choice() -> dict[str, Any]:
    """No candidate (the prompt was blocked, or nothing came back): an empty answer stopped by the filter."""
    message = {"role": "assistant", "content": "", "refusal": None}
    return {"index": 0, "message": message, "logprobs": None, "finish_reason": "content_filter"}


def read_parts(content: Any) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    """A candidate's ``content.parts`` -> (texts, thoughts, tool calls in OpenAI's shape)."""
    parts = content.get("parts") if isinstance(content, dict) else None
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in parts if isinstance(parts, list) else []:
        if not isinstance(part, dict):
            continue
        text, call = part.get("text"), part.get("functionCall")
        if isinstance(text, str):
            (thoughts if part.get("thought") is True else texts).append(text)
        elif isinstance(call, dict):
            calls.append(openai_tool_call(call, part.get("thoughtSignature")))
    return texts, thoughts, calls


def openai_tool_call(call: dict[str, Any], signature: Any) -> dict[str, Any]:
    args = call.get("args")
    return function_call(tool_call_id(signature), call.get("name"), args if isinstance(args, dict) else None)


def _choice(candidate: dict[str, Any], position: int) -> dict[str, Any]:
    texts, thoughts, calls = read_parts(candidate.get("content"))
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    message["refusal"] = None
    if thoughts:
        message["reasoning_content"] = "".join(thoughts)
    if calls:
        message["tool_calls"] = calls
    index = candidate.get("index")
    return {
        "index": index if isinstance(index, int) and not isinstance(index, bool) else position,
        "message": message,
        "logprobs": None,
        "finish_reason": finish_reason(candidate.get("finishReason"), has_tool_calls=bool(calls)),
    }
