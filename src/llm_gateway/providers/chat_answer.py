"""What every translating adapter writes the same way in OpenAI's Chat Completions answer: the assistant message
(text, reasoning, tool calls, or a forced JSON tool's input as the content), a tool call, the ``chat.completion``.

Pure functions; each adapter reads its own wire's answer and hands the pieces here.
"""

from __future__ import annotations

from typing import Any

import orjson


def compact_json(value: Any) -> str:
    """A tool's input as OpenAI's ``arguments`` string (an absent input is ``{}``)."""
    return orjson.dumps(value if value is not None else {}).decode()


def function_call(call_id: Any, name: Any, arguments: Any) -> dict[str, Any]:
    """One of ``message.tool_calls``: ``arguments`` (an object) as compact JSON."""
    return {
        "id": str(call_id or ""),
        "type": "function",
        "function": {"name": str(name or ""), "arguments": compact_json(arguments)},
    }


def assistant_message(
    texts: list[str], thoughts: list[str], tool_calls: list[dict[str, Any]], *, json_answer: str | None = None
) -> dict[str, Any]:
    """The answer's message: a forced JSON tool's input (``json_answer``) is its content; reasoning goes in
    ``reasoning_content``, as DeepSeek, vLLM and LiteLLM answer it."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": json_answer if json_answer is not None else ("".join(texts) if texts else None),
        "refusal": None,
    }
    if thoughts:
        message["reasoning_content"] = "".join(thoughts)
    if tool_calls:
        message["tool_calls"] = tool_calls
    return message


def one_choice_completion(
    message: dict[str, Any], finish_reason: str, *, completion_id: str, created: int, model: str, usage: Any
) -> dict[str, Any]:
    """A ``chat.completion`` with one choice."""
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [choice],
        "usage": usage,
    }
