"""Which Anthropic Messages parameters a Chat Completions request honours, and how: sampling, stop
sequences, tools and ``tool_choice``, thinking as ``reasoning_effort``, structured output.

``messages_to_chat`` builds its parameters from the functions here and ``dropped_params`` lists what
they leave out, so the two cannot disagree.
"""

from __future__ import annotations

from typing import Any

from llm_gateway.errors import InvalidRequest, UnsupportedFeature

MAX_STOP_SEQUENCES = 4  # OpenAI's limit
MAX_TOOL_NAME = 64  # OpenAI's limit on function names

# Request parameters that need Anthropic's servers: without them the answer would not be the one asked for.
_REFUSED_PARAMS = {"container": "containers (code execution, skills)", "mcp_servers": "MCP servers"}
# Honoured (output_config's format as a json_schema response_format); cache_control is an optimization,
# not semantics. Thinking is not: see ``dropped_params``.
_HONOURED = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "stream",
        "stop_sequences",
        "temperature",
        "top_p",
        "tools",
        "tool_choice",
        "metadata",
        "output_config",
        "output_format",
        "cache_control",
    }
)

# thinking.budget_tokens -> reasoning_effort: below 4096 "low", below 16384 "medium", else "high" (the
# inverse of the Anthropic provider's effort table). Only the three efforts every OpenAI reasoning model
# and compatible server accepts.
_EFFORT_BY_BUDGET = ((4096, "low"), (16384, "medium"))
# output_config.effort -> reasoning_effort
_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}


def dropped_params(body: dict[str, Any]) -> tuple[str, ...]:
    """The caller's parameters (sorted) that ``messages_to_chat(body)`` accepts but does not honour."""
    dropped = [
        name
        for name, value in body.items()
        if value is not None
        and name not in _HONOURED
        and name not in _REFUSED_PARAMS
        and not (name == "service_tier" and value == "auto")  # "auto" is every deployment's default
        and not (name == "thinking" and isinstance(value, dict) and value.get("type") == "disabled")
    ]
    output_config = body.get("output_config")
    if isinstance(output_config, dict) and output_config.get("effort") is not None:
        dropped.append("output_config.effort")
    return tuple(sorted(dropped))


def refuse_server_features(body: dict[str, Any]) -> None:
    for name, feature in _REFUSED_PARAMS.items():
        if body.get(name) is not None:
            raise UnsupportedFeature(feature, param=name)


def max_tokens(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidRequest("'max_tokens' is required and must be a positive integer", param="max_tokens")
    return value


def sampling(body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("temperature", "top_p"):  # top_k: OpenAI has none (dropped_params lists it)
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 1:
            raise InvalidRequest(f"'{name}' must be a number between 0 and 1", param=name)
        out[name] = value
    stop = body.get("stop_sequences")
    if stop is not None:
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise InvalidRequest("'stop_sequences' must be an array of strings", param="stop_sequences")
        if len(stop) > MAX_STOP_SEQUENCES:
            raise UnsupportedFeature(f"more than {MAX_STOP_SEQUENCES} stop sequences", param="stop_sequences")
        if stop:
            out["stop"] = stop
    metadata = body.get("metadata")
    if metadata is not None:
        user_id = metadata.get("user_id") if isinstance(metadata, dict) else 0
        if user_id is not None and not isinstance(user_id, str):
            raise InvalidRequest("'metadata.user_id' must be a string", param="metadata.user_id")
        if user_id:
            out["user"] = user_id
    return out


def tooling(tools: Any, choice: Any) -> dict[str, Any]:
    if tools is None:
        return {}
    if not isinstance(tools, list):
        raise InvalidRequest("'tools' must be an array", param="tools")
    functions = [_function(tool, f"tools[{i}]") for i, tool in enumerate(tools)]
    if not functions:
        return {}  # OpenAI refuses tool_choice and parallel_tool_calls without tools
    out: dict[str, Any] = {"tools": functions}
    if choice is None:
        return out
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind in ("auto", "none"):
        out["tool_choice"] = kind
    elif kind == "any":
        out["tool_choice"] = "required"
    elif kind == "tool" and isinstance(choice, dict) and isinstance(choice.get("name"), str) and choice["name"]:
        out["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    else:
        raise InvalidRequest(
            "'tool_choice' must be {'type': 'auto' | 'any' | 'none'} or {'type': 'tool', 'name': ...}",
            param="tool_choice",
        )
    if isinstance(choice, dict) and choice.get("disable_parallel_tool_use") is True and kind != "none":
        out["parallel_tool_calls"] = False
    return out


def _function(tool: Any, param: str) -> dict[str, Any]:
    kind = tool.get("type") if isinstance(tool, dict) else None
    if not isinstance(tool, dict):
        raise InvalidRequest("each tool must be an object", param=param)
    if kind not in (None, "custom"):
        raise UnsupportedFeature(f"server tool '{kind}'", param=f"{param}.type")
    name, schema, description = tool.get("name"), tool.get("input_schema"), tool.get("description")
    if not isinstance(name, str) or not name:
        raise InvalidRequest("a tool needs a string 'name'", param=f"{param}.name")
    if len(name) > MAX_TOOL_NAME:
        raise UnsupportedFeature(f"tool names longer than {MAX_TOOL_NAME} characters", param=f"{param}.name")
    if not isinstance(schema, dict):
        raise InvalidRequest("a tool needs an object 'input_schema'", param=f"{param}.input_schema")
    function: dict[str, Any] = {"name": name, "parameters": schema}
    if isinstance(description, str) and description:
        function["description"] = description
    if isinstance(tool.get("strict"), bool):
        function["strict"] = tool["strict"]
    return {"type": "function", "function": function}


def reasoning(thinking: Any, output_config: Any) -> dict[str, Any]:
    """thinking / output_config.effort -> reasoning_effort (approximate: OpenAI takes a level, not a budget).

    ``messages_to_chat`` only checks them with it: sent, ``reasoning_effort`` is a 400 on a deployment
    whose model does not reason, so it is listed by ``dropped_params`` instead of sent."""
    effort: str | None = None
    if thinking is not None:
        kind = thinking.get("type") if isinstance(thinking, dict) else None
        if kind == "enabled" and isinstance(thinking, dict):
            budget = thinking.get("budget_tokens")
            if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
                raise InvalidRequest(
                    "'thinking.budget_tokens' must be a positive integer", param="thinking.budget_tokens"
                )
            effort = next((level for limit, level in _EFFORT_BY_BUDGET if budget < limit), "high")
        elif kind not in ("disabled", "adaptive", "between_tools"):
            # adaptive: the model decides how much to think, as an OpenAI reasoning model does by default
            raise InvalidRequest("'thinking.type' must be 'enabled', 'adaptive' or 'disabled'", param="thinking.type")
    if output_config is not None and not isinstance(output_config, dict):
        raise InvalidRequest("'output_config' must be an object", param="output_config")
    level = output_config.get("effort") if output_config else None
    if level is not None:
        if level not in _EFFORTS:
            raise InvalidRequest(
                f"'output_config.effort' must be one of {', '.join(_EFFORTS)}", param="output_config.effort"
            )
        effort = _EFFORTS[level]  # the caller's explicit effort wins over one read from a budget
    return {"reasoning_effort": effort} if effort else {}


def response_format(body: dict[str, Any]) -> dict[str, Any]:
    """output_config.format (or the beta's output_format) -> a strict json_schema response_format."""
    output_config = body.get("output_config")
    param = "output_config.format"
    spec = output_config.get("format") if isinstance(output_config, dict) else None
    if spec is None:
        spec, param = body.get("output_format"), "output_format"
    if spec is None:
        return {}
    kind = spec.get("type") if isinstance(spec, dict) else None
    if kind != "json_schema" or not isinstance(spec, dict):
        raise UnsupportedFeature(f"output formats of type {kind!r}", param=f"{param}.type")
    schema = spec.get("schema")
    if not isinstance(schema, dict):
        raise InvalidRequest("a json_schema output format needs an object 'schema'", param=f"{param}.schema")
    return {
        "response_format": {"type": "json_schema", "json_schema": {"name": "output", "schema": schema, "strict": True}}
    }
