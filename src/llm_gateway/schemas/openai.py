"""OpenAI's public wire types: the fast request check used on the hot path, and pydantic
models that only describe the API in ``/openapi.json`` (never built per request or per chunk).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from llm_gateway.errors import InvalidRequest
from llm_gateway.schemas.core import ChatRequest

# Nesting deeper than this is refused at parse time. Real requests stay far below it (a tool's JSON
# schema rarely passes 10 levels); ``orjson.dumps`` (the cache key, the upstream body) stops at 255,
# so the bound keeps everything the parser lets through serialisable.
MAX_DEPTH = 64
DEFAULT_MAX_CHOICES = 16
MAX_STOP_SEQUENCES = 4  # OpenAI's ``stop``: a string, or an array of up to 4 strings

_INT_FIELDS = ("max_tokens", "max_completion_tokens", "n", "seed", "top_logprobs")
_NUMBER_FIELDS = ("temperature", "top_p", "presence_penalty", "frequency_penalty")
_TOO_DEEP = f"The request JSON is nested deeper than {MAX_DEPTH} levels, the most this gateway accepts."


def parse_chat_request(raw: bytes, *, max_choices: int = DEFAULT_MAX_CHOICES) -> ChatRequest:
    """Check what the gateway itself reads; everything else passes through to the upstream.

    Once this returns, every field that the gateway or a translation reads (token estimates, the
    cache key, Anthropic's request) has the shape it expects: bad input is ``InvalidRequest``, a 400
    naming the field, never a failure further on.
    """
    body = load_json_object(raw)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("You must provide a model parameter (a non-empty string).", param="model")
    _check_messages(body.get("messages"))
    _check_numbers(body, max_choices)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be a boolean.", param="stream")
    include_usage = _include_usage(body.get("stream_options"))
    _check_options(body)
    _check_tools(body.get("tools"))
    _check_functions(body.get("functions"))
    tool_choice = body.get("tool_choice")
    if tool_choice is not None and not isinstance(tool_choice, str | dict):
        raise InvalidRequest("'tool_choice' must be a string or an object.", param="tool_choice")
    return ChatRequest(body=body, model=model, stream=bool(stream), include_usage=include_usage)


def load_json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc):  # orjson's own bound (1024), far above ours
            raise InvalidRequest(_TOO_DEEP) from None
        raise InvalidRequest("We could not parse the JSON body of your request.") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    for name, value in body.items():
        kind = type(value)
        if (kind is dict or kind is list) and _nests_too_deep(value, 2):
            raise InvalidRequest(_TOO_DEEP, param=name)
    return body


def _nests_too_deep(container: Any, depth: int) -> bool:
    """Whether ``container``, itself at nesting ``depth``, holds an array or object deeper than ``MAX_DEPTH``.

    Looks at each JSON value once and stops at the bound: the cost follows the number of values
    ``orjson.loads`` has just built (not depth x size, and not the length of any string), and the
    recursion never passes ``MAX_DEPTH`` frames.
    """
    for child in container.values() if type(container) is dict else container:
        kind = type(child)
        if (kind is dict or kind is list) and (depth >= MAX_DEPTH or _nests_too_deep(child, depth + 1)):
            return True
    return False


def _check_numbers(body: dict[str, Any], max_choices: int) -> None:
    for name in _INT_FIELDS:
        value = body.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise InvalidRequest(f"'{name}' must be an integer.", param=name)
    for name in _NUMBER_FIELDS:
        value = body.get(name)
        if value is not None and not _is_number(value):
            raise InvalidRequest(f"'{name}' must be a number.", param=name)
    for name in ("max_tokens", "max_completion_tokens", "n"):
        value = body.get(name)
        if value is not None and value < 1:
            raise InvalidRequest(f"'{name}' must be at least 1.", param=name)
    n = body.get("n")
    if n is not None and n > max_choices:
        raise InvalidRequest(f"'n' must be at most {max_choices} on this gateway (MAX_CHOICES).", param="n")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _include_usage(options: Any) -> bool:
    if options is None:
        return False
    if not isinstance(options, dict):
        raise InvalidRequest("'stream_options' must be an object.", param="stream_options")
    include_usage = options.get("include_usage")
    if include_usage is not None and not isinstance(include_usage, bool):
        raise InvalidRequest("'stream_options.include_usage' must be a boolean.", param="stream_options.include_usage")
    return bool(include_usage)


def _check_options(body: dict[str, Any]) -> None:
    """``user``, ``stop``, ``logit_bias`` and ``response_format``, which the translations and token counts read."""
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise InvalidRequest("'user' must be a string.", param="user")
    stop = body.get("stop")
    if stop is not None and not isinstance(stop, str):
        if not isinstance(stop, list) or len(stop) > MAX_STOP_SEQUENCES:
            raise InvalidRequest(
                f"'stop' must be a string or an array of at most {MAX_STOP_SEQUENCES} strings.", param="stop"
            )
        for index, sequence in enumerate(stop):
            if not isinstance(sequence, str):
                raise InvalidRequest("Each stop sequence must be a string.", param=f"stop[{index}]")
    logit_bias = body.get("logit_bias")
    if logit_bias is not None:
        if not isinstance(logit_bias, dict):
            raise InvalidRequest("'logit_bias' must be an object of token ids to numbers.", param="logit_bias")
        for token, bias in logit_bias.items():
            if not _is_number(bias):
                raise InvalidRequest("Each 'logit_bias' value must be a number.", param=f"logit_bias.{token}")
    response_format = body.get("response_format")
    if response_format is not None and not (
        isinstance(response_format, dict) and isinstance(response_format.get("type"), str)
    ):
        raise InvalidRequest("'response_format' must be an object with a string 'type'.", param="response_format")


def _check_tools(tools: Any) -> None:
    """An array of objects with a string ``type``; a ``function`` tool names its function.

    Other types (``custom``) pass through: their JSON is counted as prompt, and Anthropic refuses them.
    """
    if tools is None:
        return
    if not isinstance(tools, list):
        raise InvalidRequest("'tools' must be an array of objects.", param="tools")
    for index, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise InvalidRequest("Each tool must be an object.", param=f"tools[{index}]")
        kind = tool.get("type")
        if not isinstance(kind, str):
            raise InvalidRequest("Each tool needs a string 'type'.", param=f"tools[{index}].type")
        if kind == "function":
            _check_named(tool.get("function"), f"tools[{index}].function")


def _check_functions(functions: Any) -> None:
    """The deprecated ``functions``: an array of objects with a string ``name``."""
    if functions is None:
        return
    if not isinstance(functions, list):
        raise InvalidRequest("'functions' must be an array of objects.", param="functions")
    for index, function in enumerate(functions):
        _check_named(function, f"functions[{index}]")


def _check_named(function: Any, param: str) -> dict[str, Any]:
    if not isinstance(function, dict):
        raise InvalidRequest(f"'{param}' must be an object.", param=param)
    if not isinstance(function.get("name"), str):
        raise InvalidRequest(f"'{param}.name' must be a string.", param=f"{param}.name")
    return function


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty array.", param="messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise InvalidRequest(
                f"'messages[{index}]' must be an object with a string 'role'.", param=f"messages[{index}]"
            )
        content = message.get("content")
        if content is not None and not isinstance(content, str):
            _check_content(content, index)
        name, tool_call_id, tool_calls = message.get("name"), message.get("tool_call_id"), message.get("tool_calls")
        if name is not None and not isinstance(name, str):
            raise InvalidRequest("'name' must be a string.", param=f"messages[{index}].name")
        if tool_call_id is not None and not isinstance(tool_call_id, str):
            raise InvalidRequest("'tool_call_id' must be a string.", param=f"messages[{index}].tool_call_id")
        if tool_calls is not None:
            _check_tool_calls(tool_calls, index)


def _check_content(content: Any, index: int) -> None:
    """Null, a string, or an array of typed parts, of which those the gateway reads are checked.

    ``input_audio``, ``file`` and part types yet to come pass through (their JSON is counted as text).
    """
    if not isinstance(content, list):
        raise InvalidRequest(
            "'content' must be a string or an array of content parts.", param=f"messages[{index}].content"
        )
    for position, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if not isinstance(kind, str):
            raise InvalidRequest(
                "Each content part must be an object with a string 'type'.",
                param=f"messages[{index}].content[{position}]",
            )
        if kind == "text" or kind == "refusal":
            if not isinstance(part.get(kind), str):
                raise InvalidRequest(
                    f"A '{kind}' content part needs a string '{kind}'.",
                    param=f"messages[{index}].content[{position}].{kind}",
                )
        elif kind == "image_url":
            image = part.get("image_url")
            if not isinstance(image.get("url") if isinstance(image, dict) else image, str):
                raise InvalidRequest(
                    "An 'image_url' content part needs an 'image_url' object with a string 'url'.",
                    param=f"messages[{index}].content[{position}].image_url",
                )


def _check_tool_calls(tool_calls: Any, index: int) -> None:
    """An array of objects; a ``function`` call (the default type) names its function and carries its
    arguments as a string of JSON, or none at all. ``custom`` calls pass through."""
    param = f"messages[{index}].tool_calls"
    if not isinstance(tool_calls, list):
        raise InvalidRequest("'tool_calls' must be an array of objects.", param=param)
    for position, call in enumerate(tool_calls):
        if not isinstance(call, dict):
            raise InvalidRequest("Each tool call must be an object.", param=f"{param}[{position}]")
        kind = call.get("type")
        if kind is not None and not isinstance(kind, str):
            raise InvalidRequest("A tool call's 'type' must be a string.", param=f"{param}[{position}].type")
        if kind is not None and kind != "function":
            continue
        function = _check_named(call.get("function"), f"{param}[{position}].function")
        arguments = function.get("arguments")
        if arguments is not None and not isinstance(arguments, str):
            raise InvalidRequest(
                "'function.arguments' must be a string of JSON.", param=f"{param}[{position}].function.arguments"
            )


# --- Documentation-only models (OpenAPI) -------------------------------------------------------


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ChatMessage(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class StreamOptions(_Open):
    include_usage: bool | None = None


class ChatCompletionRequest(_Open):
    """OpenAI's Chat Completions request. Fields not listed here pass through to the upstream."""

    model: str = Field(min_length=1, description="A model group, a provider/model name, or a bare provider model")
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = None
    top_p: float | None = None
    n: int | None = Field(None, ge=1, description="At most MAX_CHOICES (16 unless configured)")
    stop: str | Annotated[list[str], Field(max_length=MAX_STOP_SEQUENCES)] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None


class Usage(_Open):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Choice(_Open):
    index: int
    message: dict[str, Any]
    finish_reason: str | None


class ChatCompletion(_Open):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[Choice]
    usage: Usage | None = None


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorEnvelope(BaseModel):
    error: ErrorBody
