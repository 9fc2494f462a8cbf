"""OpenAI Chat Completions <-> Bedrock Converse, as pure functions.

The request side validates only what it must translate: ``InvalidRequest`` for a malformed request,
``UnsupportedFeature`` for one Bedrock cannot carry (``n`` > 1, log probabilities, an image by http URL: Bedrock
fetches no URL and the gateway will not fetch one for it), so the router tries another deployment. What it accepts
but cannot honour, ``dropped_params`` lists (decided in ``params.py``). The response side reads JSON defensively.
"""

from __future__ import annotations

from typing import Any, cast

from llm_gateway.errors import InvalidRequest, UnsupportedFeature
from llm_gateway.providers.bedrock.params import (
    completion_cap,
    dropped_params,
    has_tool_history,
    sampling,
    thinking_fields,
)
from llm_gateway.providers.bedrock.wire import (
    CACHE_POINT,
    IMAGE_EXTENSIONS,
    IMAGE_FORMATS,
    JSON_TOOL_NAME,
    ContentBlock,
    ImageBlock,
    InferenceConfig,
    Message,
    SystemBlock,
    TextBlock,
    Tool,
    ToolResultBlock,
    ToolUseBlock,
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

__all__ = ["dropped_params", "from_converse_response", "to_converse_request"]

PROVIDER = "bedrock"
_REFUSED_PARAMS = {
    "functions": "the deprecated 'functions' parameter is not supported; use 'tools'",
    "function_call": "the deprecated 'function_call' parameter is not supported; use 'tool_choice'",
}

# ---------------------------------------------------------------- request: OpenAI -> Converse


def to_converse_request(body: dict[str, Any], model: str, *, default_max_tokens: int) -> dict[str, Any]:
    """An OpenAI Chat Completions body -> the Converse body for ``model`` (which goes in the URL, not here)."""
    _refuse_unsupported(body)
    system, messages = _translate_messages(body.get("messages"))
    _check_max_tokens(body)
    cap = completion_cap(body, default_max_tokens)
    request: dict[str, Any] = {"messages": messages}
    if system:
        request["system"] = system
    thinking = thinking_fields(body, model, cap)
    request["inferenceConfig"] = _inference_config(body, model, cap, thinking=bool(thinking))
    tool_config = _tool_config(body)
    if tool_config:
        request["toolConfig"] = tool_config
    if thinking:
        request["additionalModelRequestFields"] = thinking
    return request


def _refuse_unsupported(body: dict[str, Any]) -> None:
    n = body.get("n")
    if n is not None and n != 1:
        raise UnsupportedFeature("More than one choice ('n' above 1)", provider=PROVIDER, param="n")
    if body.get("logprobs"):
        raise UnsupportedFeature("Log probabilities ('logprobs')", provider=PROVIDER, param="logprobs")
    for name, reason in _REFUSED_PARAMS.items():
        if body.get(name):
            raise InvalidRequest(reason, param=name)


def _translate_messages(raw: Any) -> tuple[list[SystemBlock], list[Message]]:
    if not isinstance(raw, list) or not raw:
        raise InvalidRequest("'messages' must be a non-empty array", param="messages")
    system: list[SystemBlock] = []
    turns: list[Message] = []
    for i, message in enumerate(raw):
        param = f"messages[{i}]"
        if not isinstance(message, dict):
            raise InvalidRequest("each message must be an object", param=param)
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(cast(list[SystemBlock], _text_blocks(message.get("content"), f"{param}.content")))
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
    return system, turns


def _append_turn(turns: list[Message], role: str, blocks: list[ContentBlock]) -> None:
    """Converse wants alternating roles: a message with the previous one's role joins it."""
    if not blocks:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": blocks})


def _text_part(part: Any, param: str, types: tuple[str, ...]) -> list[ContentBlock]:
    """A text part as a text block (and a cache point after it when it asks for one); blank text is left out:
    Converse refuses blank text blocks."""
    if not isinstance(part, dict) or part.get("type") not in types:
        kind = part.get("type") if isinstance(part, dict) else type(part).__name__
        raise InvalidRequest(f"content part type {kind!r} is not supported by Bedrock models", param=param)
    text = part.get("text") if part["type"] == "text" else part.get("refusal")
    if not isinstance(text, str):
        raise InvalidRequest("a text content part needs a string 'text'", param=param)
    if not text.strip():
        return []
    block: TextBlock = {"text": text}
    return [block, CACHE_POINT] if isinstance(part.get("cache_control"), dict) else [block]


def _text_blocks(content: Any, param: str, types: tuple[str, ...] = ("text",)) -> list[ContentBlock]:
    """String or array-of-text-parts content (system, developer, assistant, tool messages)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content.strip() else []
    if not isinstance(content, list):
        raise InvalidRequest("'content' must be a string or an array of content parts", param=param)
    return [block for i, part in enumerate(content) for block in _text_part(part, f"{param}[{i}]", types)]


def _user_blocks(content: Any, param: str) -> list[ContentBlock]:
    if isinstance(content, str):
        return [{"text": content}] if content.strip() else []
    if not isinstance(content, list):
        raise InvalidRequest("user 'content' must be a string or an array of content parts", param=param)
    blocks: list[ContentBlock] = []
    for i, part in enumerate(content):
        part_param = f"{param}[{i}]"
        if isinstance(part, dict) and part.get("type") == "image_url":
            blocks.append(image_block(part.get("image_url"), f"{part_param}.image_url"))
        else:
            blocks.extend(_text_part(part, part_param, ("text",)))
    return blocks


def image_block(image: Any, param: str) -> ImageBlock:
    """A data: URL -> the image's bytes (base64, as JSON carries them: not decoded here); an ``s3://`` URL -> an
    S3 location Bedrock reads itself; an http(s) URL -> ``UnsupportedFeature`` (Converse fetches no URL)."""
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise InvalidRequest("'image_url.url' must be a string", param=f"{param}.url")
    if url.startswith(("http://", "https://")):
        raise UnsupportedFeature("An image by http(s) URL", provider=PROVIDER, param=f"{param}.url")
    if url.startswith("s3://"):
        extension = url.rpartition(".")[2].lower()
        if extension not in IMAGE_EXTENSIONS:
            raise InvalidRequest("an s3:// image must end in .png, .jpg, .jpeg, .gif or .webp", param=f"{param}.url")
        return {"image": {"format": IMAGE_EXTENSIONS[extension], "source": {"s3Location": {"uri": url}}}}
    if not url.startswith("data:"):
        raise InvalidRequest("'image_url.url' must be a base64 data URL or an s3:// URL", param=f"{param}.url")
    header, comma, data = url[len("data:") :].partition(",")
    media_type, *attributes = header.split(";")
    if not comma or not data or "base64" not in attributes:
        raise InvalidRequest("image data URLs must be base64-encoded", param=f"{param}.url")
    image_format = IMAGE_FORMATS.get(media_type.lower())
    if image_format is None:
        allowed = ", ".join(sorted(IMAGE_FORMATS))
        raise InvalidRequest(f"image type {media_type!r} is not supported (use {allowed})", param=f"{param}.url")
    return {"image": {"format": image_format, "source": {"bytes": data}}}


def _assistant_blocks(message: dict[str, Any], param: str) -> list[ContentBlock]:
    blocks = _text_blocks(message.get("content"), f"{param}.content", types=("text", "refusal"))
    blocks.extend(_tool_use_block(read) for read in assistant_tool_calls(message, param))
    return blocks


def _tool_use_block(read: ToolCall) -> ToolUseBlock:
    return {"toolUse": {"toolUseId": read.id, "name": read.name, "input": read.arguments}}


def _tool_result_block(message: dict[str, Any], param: str) -> ToolResultBlock:
    tool_call_id = message.get("tool_call_id")
    if not isinstance(tool_call_id, str) or not tool_call_id:
        raise InvalidRequest("a tool message needs a string 'tool_call_id'", param=f"{param}.tool_call_id")
    content = [
        cast(TextBlock, block)
        for block in _text_blocks(message.get("content"), f"{param}.content")
        if "text" in block  # a cache point has no place in a tool result
    ]
    return {"toolResult": {"toolUseId": tool_call_id, "content": content}}


def _check_max_tokens(body: dict[str, Any]) -> None:
    for name in ("max_completion_tokens", "max_tokens"):  # the newer name wins, as in OpenAI
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InvalidRequest(f"'{name}' must be a positive integer", param=name)
        return


def _number(body: dict[str, Any], name: str, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= high:
        raise InvalidRequest(f"'{name}' must be a number between 0 and {high:g}", param=name)
    return value


def _inference_config(body: dict[str, Any], model: str, cap: int, *, thinking: bool) -> InferenceConfig:
    config: InferenceConfig = {"maxTokens": cap}
    temperature, top_p = _number(body, "temperature", 2), _number(body, "top_p", 1)
    config.update(cast(InferenceConfig, sampling(temperature, top_p, model, thinking=thinking)))
    if sequences := stop_sequences(body):
        config["stopSequences"] = sequences
    return config


# ------------------------------------------------------------------------------------ tools


def _tool_config(body: dict[str, Any]) -> dict[str, Any]:
    """``toolConfig``: the caller's tools (and the JSON tool for response_format) with ``toolChoice``."""
    tools = _tools(body.get("tools"))
    choice = _tool_choice(body.get("tool_choice"))
    json_tool = _json_tool(body.get("response_format"))
    if choice == "none":
        if not has_tool_history(body.get("messages")):
            tools = []  # "none", honoured: no tool to call (Converse has no "none")
        choice = None  # else Converse needs the tools to read the dialogue; "none" is then dropped
    if json_tool is not None:
        choice = _force_json_tool(choice, has_caller_tools=bool(tools))
        tools.append(json_tool)
    if not tools:
        return {}
    return {"tools": tools, "toolChoice": choice} if choice else {"tools": tools}


def _tools(raw: Any) -> list[Tool]:
    tools: list[Tool] = []
    for function in function_tools(raw, reserved=JSON_TOOL_NAME):
        schema = function.parameters if function.parameters is not None else {"type": "object", "properties": {}}
        tool: Tool = {"toolSpec": {"name": function.name, "inputSchema": {"json": schema}}}
        if function.description:
            tool["toolSpec"]["description"] = function.description
        tools.append(tool)
    return tools


def _tool_choice(raw: Any) -> dict[str, Any] | str | None:
    """Converse's ``toolChoice`` ({"auto": {}}, {"any": {}}, {"tool": {"name"}}), or "none", or None."""
    if raw is None:
        return None
    if raw == "none":
        return "none"
    if raw == "auto":
        return {"auto": {}}
    if raw == "required":
        return {"any": {}}
    function = raw.get("function") if isinstance(raw, dict) and raw.get("type") == "function" else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str) or not name:
        raise InvalidRequest(
            "'tool_choice' must be 'auto', 'none', 'required' or {'type': 'function', 'function': {'name': ...}}",
            param="tool_choice",
        )
    return {"tool": {"name": name}}


def _json_tool(response_format: Any) -> Tool | None:
    answer = json_answer_schema(response_format)
    if answer is None:
        return None
    description, schema = answer
    return {"toolSpec": {"name": JSON_TOOL_NAME, "description": description, "inputSchema": {"json": schema}}}


def _force_json_tool(choice: dict[str, Any] | str | None, *, has_caller_tools: bool) -> dict[str, Any]:
    """Make the model answer through the JSON tool, leaving the caller's own tools usable."""
    if isinstance(choice, dict) and "tool" in choice:
        return choice  # the caller forced one of its tools: the answer is that tool call
    if has_caller_tools:
        return {"any": {}}  # call a caller tool, or answer through the JSON tool
    return {"tool": {"name": JSON_TOOL_NAME}}


# --------------------------------------------------------------- response: Converse -> OpenAI


def from_converse_response(resp: dict[str, Any], *, model: str, created: int) -> dict[str, Any]:
    """A Converse answer -> an OpenAI ``chat.completion`` object for the caller's ``model``."""
    output = resp.get("output")
    message = output.get("message") if isinstance(output, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    texts: list[str] = []
    thoughts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    json_answer: str | None = None
    for block in content if isinstance(content, list) else []:
        if not isinstance(block, dict):
            continue
        if isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif isinstance(tool_use := block.get("toolUse"), dict):
            if tool_use.get("name") == JSON_TOOL_NAME:
                json_answer = compact_json(tool_use.get("input"))
            else:
                tool_calls.append(function_call(tool_use.get("toolUseId"), tool_use.get("name"), tool_use.get("input")))
        elif isinstance(reasoning := block.get("reasoningContent"), dict):
            text = reasoning.get("reasoningText")
            if isinstance(text, dict) and isinstance(text.get("text"), str):
                thoughts.append(text["text"])
        # redacted reasoning, citations, guard content and documents have no OpenAI equivalent
    return one_choice_completion(
        assistant_message(texts, thoughts, tool_calls, json_answer=json_answer),
        finish_reason(resp.get("stopReason"), has_tool_calls=bool(tool_calls)),
        completion_id=completion_id(),
        created=created,
        model=model,
        usage=openai_usage(resp.get("usage")),
    )
