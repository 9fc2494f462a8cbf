"""OpenAI Responses <-> OpenAI Chat Completions, for a Responses call routed to a deployment that speaks chat
(every one but a native Responses server): the request here; the answer in ``responses_chat_answer``, the
stream in ``responses_chat_stream``.

The request side reads what it translates and raises ``InvalidRequest`` (naming the field, e.g.
``input[2].content``) when that is malformed, ``UnsupportedFeature`` for what only OpenAI's servers can
carry (built-in tools, uploaded files, item references; the router then skips the deployment); what it
accepts without honouring, ``dropped_params`` lists.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from llm_gateway.errors import InvalidRequest, UnsupportedFeature
from llm_gateway.translate.chat_wire import stream_fields
from llm_gateway.translate.responses_chat_answer import (
    chat_to_response,
    is_whole,
    new_response_id,
    response_finish_reasons,
    response_text,
    response_usage,
)
from llm_gateway.translate.responses_chat_params import (
    builtin_tools,
    dropped_params,
    refuse_server_features,
    response_format,
    sampling,
    tooling,
)

__all__ = [
    "builtin_tools",
    "chat_to_response",
    "dropped_params",
    "input_items",
    "is_whole",
    "new_response_id",
    "response_finish_reasons",
    "response_text",
    "response_usage",
    "responses_to_chat",
]

# The param named for a malformed item of the stored conversation: the caller sent its id, not its items.
HISTORY_PARAM = "previous_response_id"
_TEXT_PARTS = ("input_text", "output_text")
_IMAGE_DETAILS = ("auto", "low", "high")  # chat's; Responses' "original" is left to the upstream's default


def input_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's ``input`` as a list of items: a string is one user message; a list is returned as it is
    (items without ``type`` but with a ``role`` are messages); no input, no items."""
    raw = body.get("input")
    if raw is None:
        return []
    if isinstance(raw, str):
        return [{"type": "message", "role": "user", "content": raw}]
    if not isinstance(raw, list):
        raise InvalidRequest("'input' must be a string or an array of input items", param="input")
    return raw


def responses_to_chat(body: dict[str, Any], history: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """A Responses request body -> a Chat Completions request body (same ``model``). ``history``: the items
    before ``body["input"]`` (the stored conversation ``previous_response_id`` names, expanded by the caller
    of this function), which itself is not sent."""
    refuse_server_features(body)
    items = [(HISTORY_PARAM, item) for item in history]
    raw = body.get("input")
    items += [("input" if isinstance(raw, str) else f"input[{i}]", item) for i, item in enumerate(input_items(body))]
    messages = _instructions(body.get("instructions"))
    try:
        messages.extend(_dialogue(items))
    except InvalidRequest as error:  # UnsupportedFeature too
        if error.param and error.param.startswith(HISTORY_PARAM):
            error.param = HISTORY_PARAM  # the caller sent the id, not the stored items: nothing more to name
        raise
    if not messages:
        raise InvalidRequest("'input' must not be empty", param="input")
    request: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    request.update(sampling(body))
    request.update(tooling(body))
    request.update(response_format(body))
    request.update(stream_fields(body))
    return request


def _instructions(instructions: Any) -> list[dict[str, Any]]:
    if instructions is None or instructions == "":
        return []
    if not isinstance(instructions, str):
        raise InvalidRequest("'instructions' must be a string", param="instructions")
    return [{"role": "system", "content": instructions}]


# ------------------------------------------------------------------------------------ items


def _dialogue(items: Iterable[tuple[str, Any]]) -> list[dict[str, Any]]:
    """(param, item) pairs -> chat messages. Consecutive function calls join one assistant message (and the
    assistant's text just before them); reasoning items are dropped (no visible content, and encrypted for
    the provider that made them)."""
    messages: list[dict[str, Any]] = []
    images: list[dict[str, Any]] = []  # of function outputs: a tool message carries text only
    for param, item in items:
        kind = _item_type(item, param)
        if images and kind != "function_call_output":
            messages.append({"role": "user", "content": images})  # after the tool messages, which must come first
            images = []
        if kind == "message":
            messages.append(_message(item, param))
        elif kind == "function_call":
            _join_call(messages, _tool_call(item, param))
        elif kind == "function_call_output":
            messages.append(_tool_result(item, param, images))
        elif kind != "reasoning":
            raise UnsupportedFeature(f"'{kind}' input items", param=f"{param}.type")
    if images:
        messages.append({"role": "user", "content": images})
    return messages


def _item_type(item: Any, param: str) -> str:
    if not isinstance(item, dict):
        raise InvalidRequest("each input item must be an object", param=param)
    kind = item.get("type")
    if kind is None and "role" in item:
        return "message"
    if not isinstance(kind, str):
        raise InvalidRequest("an input item needs a string 'type' (or a 'role', for a message)", param=f"{param}.type")
    return kind


def _message(item: dict[str, Any], param: str) -> dict[str, Any]:
    role, content = item.get("role"), item.get("content")
    content_param = f"{param}.content"
    if role == "user":
        return {"role": "user", "content": _user_content(content, content_param)}
    if role in ("system", "developer"):  # developer is OpenAI's alone; its meaning is system's
        return {"role": "system", "content": _text(content, content_param, "system")}
    if role == "assistant":
        return {"role": "assistant", "content": _text(content, content_param, "assistant")}
    raise InvalidRequest(
        "a message's 'role' must be 'user', 'assistant', 'system' or 'developer'", param=f"{param}.role"
    )


def _parts(content: Any, param: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(param, type, part) of a content list."""
    if not isinstance(content, list):
        raise InvalidRequest("'content' must be a string or an array of content parts", param=param)
    parts = []
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if not isinstance(part, dict) or not isinstance(kind, str):
            raise InvalidRequest("a content part must be an object with a string 'type'", param=f"{param}[{i}]")
        parts.append((f"{param}[{i}]", kind, part))
    return parts


def _part_text(part: dict[str, Any], field: str, param: str) -> str:
    text = part.get(field)
    if not isinstance(text, str):
        raise InvalidRequest(f"a {part['type']} part needs a string '{field}'", param=f"{param}.{field}")
    return text


def _user_content(content: Any, param: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for part_param, kind, part in _parts(content, param):
        if kind in _TEXT_PARTS:
            parts.append({"type": "text", "text": _part_text(part, "text", part_param)})
        elif kind == "input_image":
            parts.append(_image(part, part_param))
        else:
            raise _unsupported_part(kind, "user messages", part_param)
    if len(parts) == 1 and parts[0]["type"] == "text":
        return str(parts[0]["text"])
    return parts


def _text(content: Any, param: str, role: str) -> str:
    """A system or assistant message's content: text only (a refusal is what the assistant said)."""
    if isinstance(content, str):
        return content
    texts = []
    for part_param, kind, part in _parts(content, param):
        if kind in _TEXT_PARTS:
            texts.append(_part_text(part, "text", part_param))
        elif kind == "refusal" and role == "assistant":
            texts.append(_part_text(part, "refusal", part_param))
        else:
            raise _unsupported_part(kind, f"{role} messages", part_param)
    return "\n".join(texts)


def _unsupported_part(kind: str, where: str, param: str) -> UnsupportedFeature:
    if kind == "input_file":
        return UnsupportedFeature("File inputs (input_file)", param=f"{param}.type")
    return UnsupportedFeature(f"'{kind}' content in {where}", param=f"{param}.type")


def _image(part: dict[str, Any], param: str) -> dict[str, Any]:
    url = part.get("image_url")
    if url is None and part.get("file_id") is not None:
        raise UnsupportedFeature("Images by file_id (uploaded files)", param=f"{param}.file_id")
    if not isinstance(url, str) or not url:
        raise InvalidRequest("an input_image part needs a string 'image_url'", param=f"{param}.image_url")
    image: dict[str, Any] = {"url": url}
    if part.get("detail") in _IMAGE_DETAILS:
        image["detail"] = part["detail"]
    return {"type": "image_url", "image_url": image}


def _required_string(item: dict[str, Any], field: str, param: str, kind: str) -> str:
    value = item.get(field)
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"a {kind} item needs a string '{field}'", param=f"{param}.{field}")
    return value


def _tool_call(item: dict[str, Any], param: str) -> dict[str, Any]:
    call_id = _required_string(item, "call_id", param, "function_call")
    name = _required_string(item, "name", param, "function_call")
    arguments = item.get("arguments")
    if not isinstance(arguments, str):
        raise InvalidRequest("a function_call item needs a string 'arguments'", param=f"{param}.arguments")
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _join_call(messages: list[dict[str, Any]], call: dict[str, Any]) -> None:
    """A call joins the assistant message just before it (its text, or the calls before it), as chat has them."""
    last = messages[-1] if messages else None
    if last is not None and last["role"] == "assistant":
        last.setdefault("tool_calls", []).append(call)
        if last["content"] == "":
            last["content"] = None
    else:
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})


def _tool_result(item: dict[str, Any], param: str, images: list[dict[str, Any]]) -> dict[str, Any]:
    call_id = _required_string(item, "call_id", param, "function_call_output")
    output = item.get("output")
    if isinstance(output, str):
        return {"role": "tool", "tool_call_id": call_id, "content": output}
    texts = []
    for part_param, kind, part in _parts(output, f"{param}.output"):
        if kind in _TEXT_PARTS:
            texts.append(_part_text(part, "text", part_param))
        elif kind == "input_image":
            images.append(_image(part, part_param))
        else:
            raise _unsupported_part(kind, "function_call_output items", part_param)
    return {"role": "tool", "tool_call_id": call_id, "content": "\n".join(texts)}
