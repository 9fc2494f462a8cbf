"""OpenAI Chat Completions -> a Gemini ``GenerateContentRequest``, as pure functions (the answer side is in
``answer.py``, streams in ``stream.py``, embeddings in ``embed.py``).

It validates only what it must translate: ``InvalidRequest`` for what is malformed, ``UnsupportedFeature`` for
what a Gemini deployment cannot carry (``n`` above 8, image URLs that are not ``data:`` URLs): the router then
skips the deployment. What it accepts without honouring, ``params.dropped_params`` lists.

Tool schemas go as ``parametersJsonSchema`` (and ``response_format`` schemas as ``responseJsonSchema``): Gemini
takes JSON Schema as it is there (``$ref``, ``anyOf``, ``additionalProperties``...), where the older
``parameters`` field takes only its OpenAPI subset, which would mean rewriting (and silently loosening) schemas.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson

from llm_gateway.errors import InvalidRequest, UnsupportedFeature
from llm_gateway.providers.chat_request import assistant_tool_calls, function_tools, stop_sequences
from llm_gateway.providers.gemini.params import NUMBERS, completion_cap, number, thinking_config
from llm_gateway.providers.gemini.wire import (
    MAX_CANDIDATES,
    Content,
    FunctionCallingConfig,
    FunctionDeclaration,
    Part,
    signature_of,
)

# Gemini 3 refuses a function call turn without its thought signature; for calls that never had one (a dialogue
# begun on another model) Google documents this value to skip the check.
SKIP_SIGNATURE = "skip_thought_signature_validator"
AUDIO_TYPES = {"wav": "audio/wav", "mp3": "audio/mp3"}


def to_gemini_request(body: dict[str, Any], model: str) -> dict[str, Any]:
    """An OpenAI Chat Completions request body -> the generateContent body for ``model`` (the model and whether
    it streams are said by the URL)."""
    n = body.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and n > MAX_CANDIDATES:
        raise UnsupportedFeature(f"'n' above {MAX_CANDIDATES}", param="n")
    system, contents = translate_messages(body.get("messages"), model)
    request: dict[str, Any] = {"contents": contents}
    if system:
        request["systemInstruction"] = {"parts": system}
    tools = _tools(body.get("tools"))
    if tools:
        request["tools"] = [{"functionDeclarations": tools}]
    tool_config = _tool_config(body.get("tool_choice"))
    if tool_config is not None:
        request["toolConfig"] = {"functionCallingConfig": tool_config}
    generation = generation_config(body, model)
    if generation:
        request["generationConfig"] = generation
    return request


# ------------------------------------------------------------------------------------ messages


def translate_messages(raw: Any, model: str) -> tuple[list[Part], list[Content]]:
    """``messages`` -> (systemInstruction parts, contents). Consecutive turns of one role are joined (a tool
    turn's function responses must come together, as many as the calls)."""
    if not isinstance(raw, list) or not raw:
        raise InvalidRequest("'messages' must be a non-empty array", param="messages")
    system: list[Part] = []
    contents: list[Content] = []
    names: dict[str, str] = {}  # tool call id -> function name, from earlier assistant turns
    signed = model.startswith("gemini-3") or "/gemini-3" in model
    for i, message in enumerate(raw):
        param = f"messages[{i}]"
        if not isinstance(message, dict):
            raise InvalidRequest("each message must be an object", param=param)
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_text_parts(message.get("content"), f"{param}.content"))
        elif role == "user":
            _append(contents, "user", _user_parts(message.get("content"), f"{param}.content"))
        elif role == "assistant":
            _append(contents, "model", _model_parts(message, param, names, signed=signed))
        elif role == "tool":
            _append(contents, "user", [_function_response(message, param, names)])
        else:
            raise InvalidRequest(f"unsupported message role {role!r}", param=f"{param}.role")
    if not contents:
        raise InvalidRequest("at least one user or assistant message is required", param="messages")
    return system, contents


def _append(contents: list[Content], role: Literal["user", "model"], parts: list[Part]) -> None:
    if not parts:
        return
    if contents and contents[-1]["role"] == role:
        contents[-1]["parts"].extend(parts)
    else:
        contents.append({"role": role, "parts": parts})


def _text_of(part: Any, param: str, types: tuple[str, ...]) -> str:
    kind = part.get("type") if isinstance(part, dict) else type(part).__name__
    if not isinstance(part, dict) or kind not in types:
        raise InvalidRequest(f"content part type {kind!r} is not supported here", param=param)
    text = part.get("text") if kind == "text" else part.get("refusal")
    if not isinstance(text, str):
        raise InvalidRequest("a text content part needs a string 'text'", param=param)
    return text


def _text_parts(content: Any, param: str, *, types: tuple[str, ...] = ("text",)) -> list[Part]:
    """String or array-of-text-parts content; empty text makes no part (Gemini refuses empty parts)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise InvalidRequest("'content' must be a string or an array of content parts", param=param)
    texts = (_text_of(part, f"{param}[{i}]", types) for i, part in enumerate(content))
    return [{"text": text} for text in texts if text]


def _user_parts(content: Any, param: str) -> list[Part]:
    if not isinstance(content, list):
        return _text_parts(content, param)
    parts: list[Part] = []
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        part_param = f"{param}[{i}]"
        if kind == "image_url" and isinstance(part, dict):
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            parts.append(_inline(url, f"{part_param}.image_url.url", "image/"))
        elif kind == "input_audio" and isinstance(part, dict):
            parts.append(_audio(part.get("input_audio"), f"{part_param}.input_audio"))
        elif kind == "file" and isinstance(part, dict):
            file = part.get("file")
            parts.append(_inline(file.get("file_data") if isinstance(file, dict) else None, f"{part_param}.file", ""))
        elif text := _text_of(part, part_param, ("text",)):
            parts.append({"text": text})
    return parts


def _inline(url: Any, param: str, kind: str) -> Part:
    """A base64 ``data:`` URL -> ``inlineData``. Gemini fetches no URL of ours: any other is unsupported."""
    if not isinstance(url, str):
        raise InvalidRequest("the part needs a string URL", param=param)
    if not url.startswith("data:"):
        raise UnsupportedFeature("content by URL (send it as a base64 data: URL)", param=param)
    header, comma, data = url[len("data:") :].partition(",")
    mime_type, *attributes = header.split(";")
    if not comma or not data or "base64" not in attributes or not mime_type.startswith(kind):
        raise InvalidRequest(f"expected a base64 data URL of a {kind or 'file'} type", param=param)
    return {"inlineData": {"mimeType": mime_type, "data": data}}


def _audio(audio: Any, param: str) -> Part:
    data = audio.get("data") if isinstance(audio, dict) else None
    kind = audio.get("format") if isinstance(audio, dict) else None
    mime_type = AUDIO_TYPES.get(kind) if isinstance(kind, str) else None
    if not isinstance(data, str) or not data or mime_type is None:
        raise InvalidRequest("'input_audio' needs base64 'data' and a 'format' of wav or mp3", param=param)
    return {"inlineData": {"mimeType": mime_type, "data": data}}


def _model_parts(message: dict[str, Any], param: str, names: dict[str, str], *, signed: bool) -> list[Part]:
    parts = _text_parts(message.get("content"), f"{param}.content", types=("text", "refusal"))
    for i, read in enumerate(assistant_tool_calls(message, param)):
        names[read.id] = read.name
        part: Part = {"functionCall": {"name": read.name, "args": read.arguments}}
        signature = signature_of(read.id)
        if signature is None and signed and i == 0:
            signature = SKIP_SIGNATURE  # only the first call of a turn carries one
        if signature is not None:
            part["thoughtSignature"] = signature
        parts.append(part)
    return parts


def _function_response(message: dict[str, Any], param: str, names: dict[str, str]) -> Part:
    """A tool message -> ``functionResponse``, named after the call it answers (Gemini matches by name).

    Content that is a JSON object is the response as it is; anything else is ``{"result": text}``."""
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise InvalidRequest("a tool message needs a string 'tool_call_id'", param=f"{param}.tool_call_id")
    name = names.get(call_id)
    if name is None:
        raise InvalidRequest(
            f"'tool_call_id' {call_id!r} answers no tool call of an earlier assistant message",
            param=f"{param}.tool_call_id",
        )
    content = message.get("content")
    text = content if isinstance(content, str) else "".join(p["text"] for p in _text_parts(content, param))
    response: dict[str, Any] = {"result": text}
    if text.startswith("{"):
        try:
            parsed = orjson.loads(text)
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict):
            response = parsed
    return {"functionResponse": {"name": name, "response": response}}


# --------------------------------------------------------------------------------------- tools


def _tools(raw: Any) -> list[FunctionDeclaration]:
    declarations: list[FunctionDeclaration] = []
    for function in function_tools(raw, skip_other_kinds=True):
        declaration: FunctionDeclaration = {"name": function.name}
        if function.description:
            declaration["description"] = function.description
        if function.parameters is not None:
            declaration["parametersJsonSchema"] = function.parameters
        declarations.append(declaration)
    return declarations


def _tool_config(raw: Any) -> FunctionCallingConfig | None:
    if raw is None:
        return None
    if raw == "auto":
        return {"mode": "AUTO"}
    if raw == "none":
        return {"mode": "NONE"}
    if raw == "required":
        return {"mode": "ANY"}
    function = raw.get("function") if isinstance(raw, dict) and raw.get("type") == "function" else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str) or not name:
        raise InvalidRequest(
            "'tool_choice' must be 'auto', 'none', 'required' or {'type': 'function', 'function': {'name': ...}}",
            param="tool_choice",
        )
    return {"mode": "ANY", "allowedFunctionNames": [name]}


# ---------------------------------------------------------------------------- generationConfig


def generation_config(body: dict[str, Any], model: str) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for name, field in NUMBERS.items():
        value = body.get(name)
        if value is None:
            continue
        if number(value) is None or (name == "seed" and not isinstance(value, int)):
            raise InvalidRequest(f"'{name}' must be a number", param=name)
        config[field] = value
    _check_cap(body)
    cap = completion_cap(body)
    if cap is not None:
        config["maxOutputTokens"] = cap
    if sequences := stop_sequences(body):
        config["stopSequences"] = sequences
    n = body.get("n")
    if n is not None:
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise InvalidRequest("'n' must be a positive integer", param="n")
        if n > 1:
            config["candidateCount"] = n
    config.update(_response_format(body.get("response_format")))
    thinking = thinking_config(body, model)
    if thinking is not None:
        config["thinkingConfig"] = thinking
    return config


def _check_cap(body: dict[str, Any]) -> None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InvalidRequest(f"'{name}' must be a positive integer", param=name)
        return


def _response_format(raw: Any) -> dict[str, Any]:
    kind = raw.get("type") if isinstance(raw, dict) else raw
    if raw is None or kind == "text":
        return {}
    if kind == "json_object":
        return {"responseMimeType": "application/json"}
    spec = raw.get("json_schema") if isinstance(raw, dict) else None
    if kind != "json_schema" or not isinstance(spec, dict):
        raise InvalidRequest(
            "'response_format' must be of type 'text', 'json_object' or 'json_schema'", param="response_format"
        )
    schema = spec.get("schema")
    if schema is None:
        return {"responseMimeType": "application/json"}
    if not isinstance(schema, dict):
        raise InvalidRequest("'json_schema.schema' must be an object", param="response_format.json_schema.schema")
    return {"responseMimeType": "application/json", "responseJsonSchema": schema}
