"""What every translating adapter reads the same way from an OpenAI Chat Completions request: function tools,
an assistant's tool calls and their JSON arguments, and ``response_format`` as the schema of a JSON answer.

Pure functions that validate as they read (``InvalidRequest`` naming the field); each adapter then writes what it
read in its own wire's shapes (Anthropic's ``tool_use``, Bedrock's ``toolUse``, Gemini's ``functionCall``).
"""

from __future__ import annotations

from typing import Any, NamedTuple, cast

import orjson

from llm_gateway.errors import InvalidRequest, UnsupportedFeature

# What a model is told about the forced tool that carries a JSON answer (providers without a JSON mode).
JSON_ANSWER_DESCRIPTION = "Give your final answer to the user as this tool's input: a JSON object."


class FunctionTool(NamedTuple):
    name: str
    description: str | None
    parameters: dict[str, Any] | None  # the JSON schema as sent; None when the caller sent none


class ToolCall(NamedTuple):
    id: str
    name: str
    arguments: dict[str, Any]


def function_tools(raw: Any, *, reserved: str | None = None, skip_other_kinds: bool = False) -> list[FunctionTool]:
    """``tools`` -> its functions. A tool of another type is a 400, or with ``skip_other_kinds`` a feature the
    deployment lacks (the router tries the next); ``reserved``: a name the adapter keeps for itself."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InvalidRequest("'tools' must be an array", param="tools")
    return [_function_tool(tool, f"tools[{i}]", reserved, skip_other_kinds) for i, tool in enumerate(raw)]


def _function_tool(raw: Any, param: str, reserved: str | None, skip_other_kinds: bool) -> FunctionTool:
    function = raw.get("function") if isinstance(raw, dict) else None
    if not isinstance(raw, dict) or raw.get("type") != "function" or not isinstance(function, dict):
        if skip_other_kinds:
            raise UnsupportedFeature("tools other than functions", param=f"{param}.type")
        raise InvalidRequest("only tools of type 'function' are supported", param=f"{param}.type")
    name, description, schema = function.get("name"), function.get("description"), function.get("parameters")
    if not isinstance(name, str) or not name:
        raise InvalidRequest("a tool needs a string 'function.name'", param=f"{param}.function.name")
    if name == reserved:
        raise InvalidRequest(f"the tool name {reserved!r} is reserved", param=f"{param}.function.name")
    if schema is not None and not isinstance(schema, dict):
        raise InvalidRequest("'function.parameters' must be a JSON schema object", param=f"{param}.function.parameters")
    return FunctionTool(name, description if isinstance(description, str) and description else None, schema)


def tool_call(call: Any, param: str) -> ToolCall:
    """One of an assistant message's ``tool_calls``: its id, its function's name, its arguments as an object."""
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(call, dict) or not isinstance(function, dict):
        raise InvalidRequest("a tool call needs 'id' and 'function'", param=param)
    call_id, name = call.get("id"), function.get("name")
    if not isinstance(call_id, str) or not call_id:
        raise InvalidRequest("a tool call needs a string 'id'", param=f"{param}.id")
    if not isinstance(name, str) or not name:
        raise InvalidRequest("a tool call needs a string 'function.name'", param=f"{param}.function.name")
    return ToolCall(call_id, name, call_arguments(function.get("arguments"), param))


def assistant_tool_calls(message: dict[str, Any], param: str) -> list[ToolCall]:
    """An assistant message's ``tool_calls`` (none: an empty list), each read as ``tool_call`` reads it."""
    calls = message.get("tool_calls")
    if calls is None:
        return []
    if not isinstance(calls, list):
        raise InvalidRequest("'tool_calls' must be an array", param=f"{param}.tool_calls")
    return [tool_call(call, f"{param}.tool_calls[{i}]") for i, call in enumerate(calls)]


def stop_sequences(body: dict[str, Any]) -> list[str]:
    """``stop`` (a string or an array of strings) as a list, empty strings left out."""
    stop = body.get("stop")
    if stop is None:
        return []
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise InvalidRequest("'stop' must be a string or an array of strings", param="stop")
    return [s for s in stop if s]


def call_arguments(arguments: Any, param: str) -> dict[str, Any]:
    """A call's ``function.arguments`` (a JSON string) as the object it encodes."""
    param = f"{param}.function.arguments"
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        return {}  # some clients send "" for a call without arguments
    if not isinstance(arguments, str):
        raise InvalidRequest("'function.arguments' must be a JSON string", param=param)
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"'function.arguments' is not valid JSON: {exc}", param=param) from None
    if not isinstance(parsed, dict):
        raise InvalidRequest("'function.arguments' must encode a JSON object", param=param)
    return cast(dict[str, Any], parsed)


def json_answer_schema(response_format: Any) -> tuple[str, dict[str, Any]] | None:
    """``response_format`` -> (the forced tool's description, the answer's object schema), for a provider that
    carries structured answers as a forced tool's input; None for text."""
    kind = response_format.get("type") if isinstance(response_format, dict) else response_format
    if response_format is None or kind == "text":
        return None
    if kind == "json_object":
        return JSON_ANSWER_DESCRIPTION, {"type": "object"}
    spec = response_format.get("json_schema") if isinstance(response_format, dict) else None
    if kind != "json_schema" or not isinstance(spec, dict):
        raise InvalidRequest(
            "'response_format' must be of type 'text', 'json_object' or 'json_schema'", param="response_format"
        )
    schema = spec.get("schema", {"type": "object"})
    if not isinstance(schema, dict) or schema.get("type", "object") != "object":
        raise InvalidRequest("the response JSON schema must describe an object", param="response_format.json_schema")
    description = JSON_ANSWER_DESCRIPTION
    if isinstance(spec.get("description"), str) and spec["description"]:
        description = f"{description} {spec['description']}"
    return description, {"type": "object", **schema}
