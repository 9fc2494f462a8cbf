"""OpenAI Chat Completions <-> Anthropic Messages, as pure functions; the package's public face.

The request side validates only what it must translate and raises ``InvalidRequest`` for
anything Anthropic cannot express; what it accepts but cannot honour, ``dropped_params`` lists
(decided in ``params.py``). The response side reads upstream JSON defensively. Streaming lives
in ``stream.py`` and is re-exported here with the error-body reader.
"""

from __future__ import annotations

from typing import Any, Literal, cast

from llm_gateway.errors import InvalidRequest
from llm_gateway.providers.anthropic.params import (
    DEFAULT_MAX_TOKENS,
    ModelTraits,
    completion_cap,
    dropped_params,
    model_traits,
    reasoning_fields,
    sampling_fields,
    service_tier_fields,
)
from llm_gateway.providers.anthropic.stream import AnthropicStreamTranslator
from llm_gateway.providers.anthropic.wire import (
    IMAGE_MEDIA_TYPES,
    JSON_TOOL_NAME,
    CacheControl,
    ContentBlock,
    ImageBlock,
    MessageParam,
    TextBlock,
    Tool,
    ToolChoice,
    ToolResultBlock,
    ToolUseBlock,
    anthropic_error_message,
    completion_id,
    finish_reason,
    openai_usage,
)
from llm_gateway.providers.chat_answer import assistant_message, compact_json, function_call, one_choice_completion
from llm_gateway.providers.chat_request import (
    ToolCall,
    assistant_tool_calls,
    function_tools,
    json_answer_schema,
    stop_sequences,
)

__all__ = [
    "AnthropicStreamTranslator",
    "anthropic_error_message",
    "dropped_params",
    "from_anthropic_response",
    "to_anthropic_request",
]

# OpenAI parameters whose meaning Anthropic cannot deliver; silently dropping them would
# hand the caller a different answer than the one asked for.
_REFUSED_PARAMS = {
    "logprobs": "Anthropic models do not return log probabilities",
    "functions": "the deprecated 'functions' parameter is not supported; use 'tools'",
    "function_call": "the deprecated 'function_call' parameter is not supported; use 'tool_choice'",
}

# ---------------------------------------------------------------- request: OpenAI -> Anthropic


def to_anthropic_request(
    body: dict[str, Any], model: str, *, default_max_tokens: int = DEFAULT_MAX_TOKENS
) -> dict[str, Any]:
    """An OpenAI Chat Completions request body -> the Messages API request body for ``model``.

    What it accepts but cannot honour is what ``dropped_params(body, model)`` lists.
    """
    _refuse_unsupported(body)
    system, messages = _translate_messages(body.get("messages"))
    _check_max_tokens(body)
    cap = completion_cap(body, default_max_tokens)
    request: dict[str, Any] = {"model": model, "max_tokens": cap, "messages": messages}
    if system is not None:
        request["system"] = system
    traits = model_traits(model)
    reasoning = reasoning_fields(body, traits, cap)
    request.update(_sampling(body, traits, thinking=bool(reasoning)))
    request.update(_tooling(body))
    request.update(reasoning)
    request.update(service_tier_fields(body.get("service_tier")))
    if body.get("stream"):
        request["stream"] = True
    return request


def _refuse_unsupported(body: dict[str, Any]) -> None:
    n = body.get("n")
    if n is not None and n != 1:
        raise InvalidRequest("Anthropic models return a single choice: 'n' must be 1", param="n")
    for name, reason in _REFUSED_PARAMS.items():
        if body.get(name):
            raise InvalidRequest(reason, param=name)


def _translate_messages(raw: Any) -> tuple[str | list[TextBlock] | None, list[MessageParam]]:
    if not isinstance(raw, list) or not raw:
        raise InvalidRequest("'messages' must be a non-empty array", param="messages")
    system: list[TextBlock] = []
    turns: list[MessageParam] = []
    for i, message in enumerate(raw):
        param = f"messages[{i}]"
        if not isinstance(message, dict):
            raise InvalidRequest("each message must be an object", param=param)
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_text_blocks(message.get("content"), f"{param}.content"))
        elif role == "user":
            _append_turn(turns, "user", _user_blocks(message.get("content"), f"{param}.content"))
        elif role == "assistant":
            _append_turn(turns, "assistant", _assistant_blocks(message, param))
        elif role == "tool":
            _append_turn(turns, "user", [_tool_result_block(message, param)])
        else:
            raise InvalidRequest(f"unsupported message role {role!r}", param=f"{param}.role")
    if not turns:
        raise InvalidRequest("at least one user or assistant message is required", param="messages")
    return _system_param(system), turns


def _append_turn(turns: list[MessageParam], role: Literal["user", "assistant"], blocks: list[ContentBlock]) -> None:
    """Anthropic wants alternating roles: a message with the previous one's role joins it."""
    if not blocks:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": blocks})


def _system_param(blocks: list[TextBlock]) -> str | list[TextBlock] | None:
    if not blocks:
        return None
    if len(blocks) == 1 and "cache_control" not in blocks[0]:
        return blocks[0]["text"]
    return blocks


def _text_block(text: str, part: dict[str, Any] | None = None) -> TextBlock:
    block: TextBlock = {"type": "text", "text": text}
    if part is not None and isinstance(part.get("cache_control"), dict):
        block["cache_control"] = cast(CacheControl, part["cache_control"])
    return block


def _text_part(part: Any, param: str, *, types: tuple[str, ...] = ("text",)) -> TextBlock | None:
    if not isinstance(part, dict) or part.get("type") not in types:
        kind = part.get("type") if isinstance(part, dict) else type(part).__name__
        raise InvalidRequest(f"content part type {kind!r} is not supported by Anthropic models", param=param)
    text = part.get("text") if part["type"] == "text" else part.get("refusal")
    if not isinstance(text, str):
        raise InvalidRequest("a text content part needs a string 'text'", param=param)
    # Anthropic refuses empty and whitespace-only text blocks ("must contain non-whitespace text").
    return _text_block(text, part) if text.strip() else None


def _text_blocks(content: Any, param: str, *, types: tuple[str, ...] = ("text",)) -> list[TextBlock]:
    """String or array-of-text-parts content (system, developer, assistant, tool messages)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [_text_block(content)] if content.strip() else []
    if not isinstance(content, list):
        raise InvalidRequest("'content' must be a string or an array of content parts", param=param)
    blocks = [_text_part(part, f"{param}[{i}]", types=types) for i, part in enumerate(content)]
    return [block for block in blocks if block is not None]


def _user_blocks(content: Any, param: str) -> list[ContentBlock]:
    if isinstance(content, str):
        return [_text_block(content)] if content.strip() else []
    if not isinstance(content, list):
        raise InvalidRequest("user 'content' must be a string or an array of content parts", param=param)
    blocks: list[ContentBlock] = []
    for i, part in enumerate(content):
        part_param = f"{param}[{i}]"
        if isinstance(part, dict) and part.get("type") == "image_url":
            blocks.append(_image_block(part.get("image_url"), f"{part_param}.image_url"))
        else:
            block = _text_part(part, part_param)
            if block is not None:
                blocks.append(block)
    return blocks


def _image_block(image: Any, param: str) -> ImageBlock:
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise InvalidRequest("'image_url.url' must be a string", param=f"{param}.url")
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    if not url.startswith("data:"):
        raise InvalidRequest("'image_url.url' must be an http(s) URL or a base64 data URL", param=f"{param}.url")
    header, comma, data = url[len("data:") :].partition(",")
    media_type, *attributes = header.split(";")
    if not comma or not data or "base64" not in attributes:
        raise InvalidRequest("image data URLs must be base64-encoded", param=f"{param}.url")
    if media_type not in IMAGE_MEDIA_TYPES:
        allowed = ", ".join(sorted(IMAGE_MEDIA_TYPES))
        raise InvalidRequest(f"image type {media_type!r} is not supported (use {allowed})", param=f"{param}.url")
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}


def _assistant_blocks(message: dict[str, Any], param: str) -> list[ContentBlock]:
    blocks: list[ContentBlock] = []
    blocks.extend(_text_blocks(message.get("content"), f"{param}.content", types=("text", "refusal")))
    blocks.extend(_tool_use_block(read) for read in assistant_tool_calls(message, param))
    return blocks


def _tool_use_block(read: ToolCall) -> ToolUseBlock:
    return {"type": "tool_use", "id": read.id, "name": read.name, "input": read.arguments}


def _tool_result_block(message: dict[str, Any], param: str) -> ToolResultBlock:
    tool_call_id = message.get("tool_call_id")
    if not isinstance(tool_call_id, str) or not tool_call_id:
        raise InvalidRequest("a tool message needs a string 'tool_call_id'", param=f"{param}.tool_call_id")
    block: ToolResultBlock = {"type": "tool_result", "tool_use_id": tool_call_id}
    content = message.get("content")
    if isinstance(content, str):
        if content.strip():
            block["content"] = content
    elif blocks := _text_blocks(content, f"{param}.content"):
        block["content"] = blocks
    return block


def _check_max_tokens(body: dict[str, Any]) -> None:
    for name in ("max_completion_tokens", "max_tokens"):  # the newer name wins, as in OpenAI
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InvalidRequest(f"'{name}' must be a positive integer", param=name)
        return


def _number(body: dict[str, Any], name: str, high: float) -> float | int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= high:
        raise InvalidRequest(f"'{name}' must be a number between 0 and {high:g}", param=name)
    return value


def _sampling(body: dict[str, Any], traits: ModelTraits, *, thinking: bool) -> dict[str, Any]:
    temperature, top_p = _number(body, "temperature", 2), _number(body, "top_p", 1)
    out = sampling_fields(temperature, top_p, traits, thinking=thinking)
    if sequences := stop_sequences(body):
        out["stop_sequences"] = sequences
    # Anthropic's user_id is an opaque id for abuse detection: OpenAI's safety_identifier, which
    # replaces `user`; when both are set and differ, `user` is the one dropped.
    for name in ("user", "safety_identifier"):
        value = body.get(name)
        if value is not None:
            if not isinstance(value, str):
                raise InvalidRequest(f"'{name}' must be a string", param=name)
            out["metadata"] = {"user_id": value}
    return out


def _tooling(body: dict[str, Any]) -> dict[str, Any]:
    tools = _tools(body.get("tools"))
    choice = _tool_choice(body.get("tool_choice"))
    json_tool = _json_tool(body.get("response_format"))
    if json_tool is not None:
        choice = _force_json_tool(choice, has_caller_tools=bool(tools))
        tools.append(json_tool)
    if not tools:
        return {}
    if body.get("parallel_tool_calls") is False:
        choice = choice or {"type": "auto"}
        if choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
    return {"tools": tools, "tool_choice": choice} if choice else {"tools": tools}


def _tools(raw: Any) -> list[Tool]:
    tools: list[Tool] = []
    for function in function_tools(raw, reserved=JSON_TOOL_NAME):
        schema = function.parameters if function.parameters is not None else {"type": "object", "properties": {}}
        tool: Tool = {"name": function.name, "input_schema": schema}
        if function.description:
            tool["description"] = function.description
        tools.append(tool)
    return tools


def _tool_choice(raw: Any) -> ToolChoice | None:
    if raw is None:
        return None
    if raw in ("auto", "none"):
        return {"type": raw}
    if raw == "required":
        return {"type": "any"}
    function = raw.get("function") if isinstance(raw, dict) and raw.get("type") == "function" else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str) or not name:
        raise InvalidRequest(
            "'tool_choice' must be 'auto', 'none', 'required' or {'type': 'function', 'function': {'name': ...}}",
            param="tool_choice",
        )
    return {"type": "tool", "name": name}


def _json_tool(response_format: Any) -> Tool | None:
    # Structured outputs via a forced tool work on every Claude model; the native
    # `output_config.format` only on Claude 4.5+ (platform.claude.com/docs/en/build-with-claude/structured-outputs).
    answer = json_answer_schema(response_format)
    if answer is None:
        return None
    description, schema = answer
    return {"name": JSON_TOOL_NAME, "description": description, "input_schema": schema}


def _force_json_tool(choice: ToolChoice | None, *, has_caller_tools: bool) -> ToolChoice:
    """Make the model answer through the JSON tool, leaving the caller's own tools usable."""
    if choice is not None and choice["type"] == "tool":
        return choice  # the caller forced one of its tools: the answer is that tool call
    if has_caller_tools and (choice is None or choice["type"] != "none"):
        return {"type": "any"}  # call a caller tool, or answer through the JSON tool
    return {"type": "tool", "name": JSON_TOOL_NAME}


# --------------------------------------------------------------- response: Anthropic -> OpenAI


def from_anthropic_response(resp: dict[str, Any], *, model: str, created: int) -> dict[str, Any]:
    """A Messages API response -> an OpenAI ``chat.completion`` object for the caller's ``model``."""
    content = resp.get("content")
    texts: list[str] = []
    thoughts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    json_answer: str | None = None
    for block in content if isinstance(content, list) else []:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "thinking" and isinstance(block.get("thinking"), str):
            thoughts.append(block["thinking"])
        elif kind == "tool_use" and block.get("name") == JSON_TOOL_NAME:
            json_answer = compact_json(block.get("input"))
        elif kind == "tool_use":
            tool_calls.append(function_call(block.get("id"), block.get("name"), block.get("input")))
        # thinking signatures, redacted_thinking and server-tool blocks have no OpenAI equivalent
    message = assistant_message(texts, thoughts, tool_calls, json_answer=json_answer)
    return one_choice_completion(
        message,
        finish_reason(resp.get("stop_reason"), has_tool_calls=bool(tool_calls)),
        completion_id=completion_id(resp.get("id")),
        created=created,
        model=model,
        usage=openai_usage(resp.get("usage")),
    )
