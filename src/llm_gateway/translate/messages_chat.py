"""Anthropic Messages <-> OpenAI Chat Completions, for a Messages call routed to an OpenAI-compatible
deployment: the request here; the answer and the stream in ``messages_chat_answer`` / ``_stream``.

The request side reads what it translates and raises ``InvalidRequest`` when that is malformed,
``UnsupportedFeature`` for what only Anthropic's servers can carry (the router then skips the
deployment); what it accepts without honouring, ``dropped_params`` lists.
"""

from __future__ import annotations

from typing import Any

import orjson

from llm_gateway.errors import InvalidRequest, UnsupportedFeature
from llm_gateway.translate.chat_wire import stream_fields
from llm_gateway.translate.messages_chat_answer import chat_to_message
from llm_gateway.translate.messages_chat_params import (
    dropped_params,
    max_tokens,
    reasoning,
    refuse_server_features,
    response_format,
    sampling,
    tooling,
)
from llm_gateway.translate.messages_chat_stream import ChatToMessagesStream

__all__ = ["ChatToMessagesStream", "chat_to_message", "dropped_params", "messages_to_chat"]

# Content blocks that only Anthropic's servers produce or read.
_SERVER_BLOCKS = {
    "document": "document blocks",
    "search_result": "search_result blocks",
    "container_upload": "container_upload blocks",
    "server_tool_use": "server tool calls (server_tool_use blocks)",
    "mcp_tool_use": "MCP tool calls (mcp_tool_use blocks)",
    "mcp_tool_result": "MCP tool results (mcp_tool_result blocks)",
}


def messages_to_chat(body: dict[str, Any]) -> dict[str, Any]:
    """An Anthropic Messages request body -> an OpenAI Chat Completions request body (same `model`, `stream` kept).
    Raises UnsupportedFeature naming what an OpenAI-compatible deployment cannot carry."""
    refuse_server_features(body)
    messages = _system(body.get("system"))
    messages.extend(_dialogue(body.get("messages")))
    request: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    request["max_completion_tokens"] = max_tokens(body.get("max_tokens"))
    request.update(sampling(body))
    request.update(tooling(body.get("tools"), body.get("tool_choice")))
    # Checked, not sent: ``reasoning_effort`` is a 400 on a model that does not reason (gpt-4o, most
    # open models), which would end a fallback instead of answering; ``dropped_params`` names it.
    reasoning(body.get("thinking"), body.get("output_config"))
    request.update(response_format(body))
    request.update(stream_fields(body))
    return request


# ------------------------------------------------------------------------------------ messages


def _block_type(block: Any, param: str) -> str:
    kind = block.get("type") if isinstance(block, dict) else None
    if not isinstance(kind, str):
        raise InvalidRequest("a content block must be an object with a string 'type'", param=param)
    return kind


def _unsupported(kind: str, role: str, param: str) -> UnsupportedFeature:
    return UnsupportedFeature(_SERVER_BLOCKS.get(kind, f"'{kind}' content blocks in {role} messages"), param=param)


def _text(block: dict[str, Any], param: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise InvalidRequest("a text block needs a string 'text'", param=f"{param}.text")
    return text


def _system(system: Any) -> list[dict[str, Any]]:
    if system is None:
        return []
    if isinstance(system, str):
        return [{"role": "system", "content": system}] if system else []
    if not isinstance(system, list):
        raise InvalidRequest("'system' must be a string or an array of text blocks", param="system")
    texts = []
    for i, block in enumerate(system):
        if _block_type(block, f"system[{i}]") != "text":
            raise InvalidRequest("'system' takes only text blocks", param=f"system[{i}].type")
        texts.append(_text(block, f"system[{i}]"))
    return [{"role": "system", "content": "\n".join(texts)}] if texts else []


def _dialogue(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not raw:
        raise InvalidRequest("'messages' must be a non-empty array", param="messages")
    messages: list[dict[str, Any]] = []
    for i, message in enumerate(raw):
        param = f"messages[{i}]"
        role = message.get("role") if isinstance(message, dict) else None
        if role == "user":
            messages.extend(_user_turn(message.get("content"), f"{param}.content"))
        elif role == "assistant":
            if i == len(raw) - 1:
                # Anthropic continues a last assistant turn; a Chat Completions model answers it anew.
                raise UnsupportedFeature("a prefilled assistant turn (the last message)", param=param)
            messages.extend(_assistant_turn(message.get("content"), f"{param}.content"))
        else:
            raise InvalidRequest("each message must be an object with role 'user' or 'assistant'", param=param)
    return messages


def _blocks(content: Any, param: str) -> list[Any]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise InvalidRequest("'content' must be a string or an array of content blocks", param=param)
    return content


def _user_turn(content: Any, param: str) -> list[dict[str, Any]]:
    """Tool results first (OpenAI wants them right after the assistant's calls), then the rest as one user message."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for i, block in enumerate(_blocks(content, param)):
        block_param = f"{param}[{i}]"
        kind = _block_type(block, block_param)
        if kind == "text":
            parts.append({"type": "text", "text": _text(block, block_param)})
        elif kind == "image":
            parts.append(_image_part(block, block_param))
        elif kind == "tool_result":
            result, images = _tool_result(block, block_param)
            results.append(result)
            parts.extend(images)  # a tool message carries text only: its images follow in the user message
        else:
            raise _unsupported(kind, "user", block_param)
    if not parts:
        return results
    if len(parts) == 1 and parts[0]["type"] == "text":
        return [*results, {"role": "user", "content": parts[0]["text"]}]
    return [*results, {"role": "user", "content": parts}]


def _image_part(block: dict[str, Any], param: str) -> dict[str, Any]:
    source = block.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "url" and isinstance(source, dict) and isinstance(source.get("url"), str):
        return {"type": "image_url", "image_url": {"url": source["url"]}}
    if kind == "base64" and isinstance(source, dict):
        media_type, data = source.get("media_type"), source.get("data")
        if isinstance(media_type, str) and isinstance(data, str):
            return {"type": "image_url", "image_url": {"url": f"data:{media_type};base64,{data}"}}
    if isinstance(kind, str) and kind not in ("url", "base64"):
        raise UnsupportedFeature(f"image sources of type '{kind}'", param=f"{param}.source.type")
    raise InvalidRequest(
        "an image needs a 'url' source with a string 'url' or a 'base64' one with 'media_type' and 'data'",
        param=f"{param}.source",
    )


def _tool_result(block: dict[str, Any], param: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    tool_use_id = block.get("tool_use_id")
    if not isinstance(tool_use_id, str) or not tool_use_id:
        raise InvalidRequest("a tool_result needs a string 'tool_use_id'", param=f"{param}.tool_use_id")
    texts: list[str] = []
    images: list[dict[str, Any]] = []
    content = block.get("content")
    if content is not None:
        for i, part in enumerate(_blocks(content, f"{param}.content")):
            part_param = f"{param}.content[{i}]"
            kind = _block_type(part, part_param)
            if kind == "text":
                texts.append(_text(part, part_param))
            elif kind == "image":
                images.append(_image_part(part, part_param))
            else:
                raise _unsupported(kind, "tool_result", part_param)
    text = "\n".join(texts)
    if block.get("is_error") is True:  # Chat Completions has no error flag for a tool result
        text = f"Error: {text}" if text else "Error"
    return {"role": "tool", "tool_call_id": tool_use_id, "content": text}, images


def _assistant_turn(content: Any, param: str) -> list[dict[str, Any]]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for i, block in enumerate(_blocks(content, param)):
        block_param = f"{param}[{i}]"
        kind = _block_type(block, block_param)
        if kind == "text":
            texts.append(_text(block, block_param))
        elif kind == "tool_use":
            calls.append(_tool_call(block, block_param))
        elif kind not in ("thinking", "redacted_thinking"):
            # Earlier thinking is dropped: only Claude can verify its signature, and a fallback
            # model needs no other model's reasoning to go on.
            raise _unsupported(kind, "assistant", block_param)
    if not texts and not calls:
        return []
    message: dict[str, Any] = {"role": "assistant", "content": "\n".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    return [message]


def _tool_call(block: dict[str, Any], param: str) -> dict[str, Any]:
    call_id, name, arguments = block.get("id"), block.get("name"), block.get("input")
    if not isinstance(call_id, str) or not call_id:
        raise InvalidRequest("a tool_use block needs a string 'id'", param=f"{param}.id")
    if not isinstance(name, str) or not name:
        raise InvalidRequest("a tool_use block needs a string 'name'", param=f"{param}.name")
    if not isinstance(arguments, dict):
        raise InvalidRequest("a tool_use block needs an object 'input'", param=f"{param}.input")
    caller = block.get("caller")
    if isinstance(caller, dict) and caller.get("type") not in (None, "direct"):
        raise UnsupportedFeature("tool calls made by code execution (programmatic tool calling)", param=param)
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": orjson.dumps(arguments).decode()},
    }
