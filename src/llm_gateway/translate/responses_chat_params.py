"""Which OpenAI Responses parameters a Chat Completions request honours, and how: sampling and the output
cap, function tools and ``tool_choice``, ``text.format`` as ``response_format``, logprobs.

``responses_to_chat`` builds its parameters from the functions here and ``dropped_params`` lists what
they leave out, so the two cannot disagree.
"""

from __future__ import annotations

from typing import Any

from llm_gateway.errors import InvalidRequest, UnsupportedFeature

LOGPROBS_INCLUDE = "message.output_text.logprobs"
MAX_TOP_LOGPROBS = 20  # OpenAI's limit, on both APIs

# Parameters that change what the model reads, held by OpenAI's servers only: answering without them would
# be answering another question. (The route refuses some of them earlier; the translation never trusts that.)
_REFUSED_PARAMS = {"prompt": "Stored prompts ('prompt')", "conversation": "Conversations ('conversation')"}
# Carried to the chat request, or honoured by the gateway itself (store, previous_response_id and metadata:
# the gateway keeps the response, expands the conversation, echoes the metadata). Partly honoured ones
# (include, truncation, background, text, safety_identifier, reasoning) are looked at by ``dropped_params``.
_HONOURED = frozenset(
    {
        "model",
        "input",
        "instructions",
        "previous_response_id",
        "store",
        "metadata",
        "stream",
        "stream_options",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "text",
        "max_output_tokens",
        "temperature",
        "top_p",
        "user",
        "safety_identifier",
        "service_tier",
        "top_logprobs",
        "include",
        "truncation",
        "background",
        "reasoning",
    }
)


def dropped_params(body: dict[str, Any]) -> tuple[str, ...]:
    """The caller's parameters (sorted) that ``responses_to_chat(body)`` accepts but does not honour."""
    dropped = [
        name
        for name, value in body.items()
        if value is not None and name not in _HONOURED and name not in _REFUSED_PARAMS
    ]
    include = body.get("include")
    if isinstance(include, list) and any(value != LOGPROBS_INCLUDE for value in include):
        dropped.append("include")  # reasoning.encrypted_content, file search results, ...: nothing to include
    if body.get("truncation") not in (None, "disabled"):
        dropped.append("truncation")  # an over-long conversation is the upstream's 400, not a shortened one
    if body.get("background") is True:
        dropped.append("background")
    text = body.get("text")
    if isinstance(text, dict) and text.get("verbosity") is not None:
        dropped.append("text.verbosity")
    user, safety_identifier = body.get("user"), body.get("safety_identifier")
    if isinstance(user, str) and user and safety_identifier is not None and safety_identifier != user:
        dropped.append("safety_identifier")  # chat has one end-user field, and ``user`` has it
    reasoning = body.get("reasoning")
    if reasoning is not None and not (isinstance(reasoning, dict) and all(v is None for v in reasoning.values())):
        # Not sent as ``reasoning_effort``: that is a 400 on a model that does not reason, which would end a
        # fallback instead of answering.
        dropped.append("reasoning")
    return tuple(sorted(dropped))


def refuse_server_features(body: dict[str, Any]) -> None:
    for name, feature in _REFUSED_PARAMS.items():
        if body.get(name) is not None:
            raise UnsupportedFeature(feature, param=name)


def builtin_tools(body: dict[str, Any]) -> tuple[str, ...]:
    """The types of the request's tools that are not function tools, in order, without duplicates."""
    tools = body.get("tools")
    found: list[str] = []
    for tool in tools if isinstance(tools, list) else ():
        kind = tool.get("type") if isinstance(tool, dict) else None
        if isinstance(kind, str) and kind != "function" and kind not in found:
            found.append(kind)
    return tuple(found)


def _number(body: dict[str, Any], name: str, highest: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= highest:
        raise InvalidRequest(f"'{name}' must be a number between 0 and {highest:g}", param=name)
    return value


def _string(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidRequest(f"'{name}' must be a string", param=name)
    return value or None


def sampling(body: dict[str, Any]) -> dict[str, Any]:
    """The cap, temperature, top_p, the end user, the service tier and logprobs."""
    out: dict[str, Any] = {}
    cap = body.get("max_output_tokens")
    if cap is not None:
        if not isinstance(cap, int) or isinstance(cap, bool) or cap < 1:
            raise InvalidRequest("'max_output_tokens' must be a positive integer", param="max_output_tokens")
        out["max_completion_tokens"] = cap
    for name, highest in (("temperature", 2.0), ("top_p", 1.0)):
        value = _number(body, name, highest)
        if value is not None:
            out[name] = value
    user = _string(body, "user") or _string(body, "safety_identifier")
    if user:
        out["user"] = user
    tier = _string(body, "service_tier")
    if tier:
        out["service_tier"] = tier
    out.update(_logprobs(body))
    return out


def _logprobs(body: dict[str, Any]) -> dict[str, Any]:
    include = body.get("include")
    if include is not None and (not isinstance(include, list) or not all(isinstance(v, str) for v in include)):
        raise InvalidRequest("'include' must be an array of strings", param="include")
    top = body.get("top_logprobs")
    if top is not None and (not isinstance(top, int) or isinstance(top, bool) or not 0 <= top <= MAX_TOP_LOGPROBS):
        message = f"'top_logprobs' must be an integer between 0 and {MAX_TOP_LOGPROBS}"
        raise InvalidRequest(message, param="top_logprobs")
    if not (include and LOGPROBS_INCLUDE in include) and not top:
        return {}
    return {"logprobs": True, "top_logprobs": top} if top else {"logprobs": True}


def tooling(body: dict[str, Any]) -> dict[str, Any]:
    """Function tools in chat's nested form, ``tool_choice`` and ``parallel_tool_calls``; any other tool type
    is an UnsupportedFeature (it runs on OpenAI's servers, or needs a grammar chat servers do not take)."""
    tools = body.get("tools")
    if tools is None:
        return {}
    if not isinstance(tools, list):
        raise InvalidRequest("'tools' must be an array", param="tools")
    functions = [_function(tool, f"tools[{i}]") for i, tool in enumerate(tools)]
    out: dict[str, Any] = _tool_choice(body.get("tool_choice"), functions)
    if not out.get("tools"):
        return {}  # OpenAI refuses tool_choice and parallel_tool_calls without tools
    parallel = body.get("parallel_tool_calls")
    if parallel is not None:
        if not isinstance(parallel, bool):
            raise InvalidRequest("'parallel_tool_calls' must be a boolean", param="parallel_tool_calls")
        out["parallel_tool_calls"] = parallel
    return out


def _function(tool: Any, param: str) -> dict[str, Any]:
    kind = tool.get("type") if isinstance(tool, dict) else None
    if not isinstance(tool, dict) or not isinstance(kind, str):
        raise InvalidRequest("each tool must be an object with a string 'type'", param=param)
    if kind != "function":
        raise UnsupportedFeature(f"The built-in tool '{kind}'", param=f"{param}.type")
    name, parameters, description = tool.get("name"), tool.get("parameters"), tool.get("description")
    if not isinstance(name, str) or not name:
        raise InvalidRequest("a function tool needs a string 'name'", param=f"{param}.name")
    function: dict[str, Any] = {"name": name}
    if isinstance(description, str) and description:
        function["description"] = description
    if parameters is not None:
        if not isinstance(parameters, dict):
            raise InvalidRequest("a function tool's 'parameters' must be an object", param=f"{param}.parameters")
        function["parameters"] = parameters
    if isinstance(tool.get("strict"), bool):
        function["strict"] = tool["strict"]
    return {"type": "function", "function": function}


def _tool_choice(choice: Any, functions: list[dict[str, Any]]) -> dict[str, Any]:
    """{"tools": ..., "tool_choice"?: ...}; allowed_tools narrows the tools themselves (portable, where chat's
    own allowed_tools choice is OpenAI's alone)."""
    if choice is None:
        return {"tools": functions}
    if choice in ("auto", "none", "required"):
        return {"tools": functions, "tool_choice": choice}
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "function" and isinstance(choice, dict):
        name = choice.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequest("a function tool_choice needs a string 'name'", param="tool_choice.name")
        return {"tools": functions, "tool_choice": {"type": "function", "function": {"name": name}}}
    if kind == "allowed_tools" and isinstance(choice, dict):
        mode, allowed = choice.get("mode"), choice.get("tools")
        if mode not in ("auto", "required") or not isinstance(allowed, list):
            raise InvalidRequest(
                "an allowed_tools tool_choice needs 'mode' 'auto' or 'required' and an array 'tools'",
                param="tool_choice",
            )
        names = set()
        for i, tool in enumerate(allowed):
            if not isinstance(tool, dict) or tool.get("type") != "function":
                kind = tool.get("type") if isinstance(tool, dict) else None
                raise UnsupportedFeature(f"The built-in tool '{kind}'", param=f"tool_choice.tools[{i}]")
            names.add(tool.get("name"))
        kept = [function for function in functions if function["function"]["name"] in names]
        return {"tools": kept, "tool_choice": mode}
    if isinstance(kind, str):
        raise UnsupportedFeature(f"tool_choice of type '{kind}'", param="tool_choice.type")
    raise InvalidRequest(
        "'tool_choice' must be 'auto', 'none', 'required' or an object with a 'type'", param="tool_choice"
    )


def response_format(body: dict[str, Any]) -> dict[str, Any]:
    """text.format -> response_format: json_schema and json_object carried, text the default."""
    text = body.get("text")
    if text is None:
        return {}
    if not isinstance(text, dict):
        raise InvalidRequest("'text' must be an object", param="text")
    spec = text.get("format")
    if spec is None:
        return {}
    kind = spec.get("type") if isinstance(spec, dict) else None
    if kind == "text":
        return {}
    if kind == "json_object":
        return {"response_format": {"type": "json_object"}}
    if kind != "json_schema" or not isinstance(spec, dict):
        raise InvalidRequest(
            "'text.format.type' must be 'text', 'json_schema' or 'json_object'", param="text.format.type"
        )
    name, schema, description = spec.get("name"), spec.get("schema"), spec.get("description")
    if not isinstance(name, str) or not name:
        raise InvalidRequest("a json_schema format needs a string 'name'", param="text.format.name")
    if not isinstance(schema, dict):
        raise InvalidRequest("a json_schema format needs an object 'schema'", param="text.format.schema")
    json_schema: dict[str, Any] = {"name": name, "schema": schema}
    if isinstance(description, str) and description:
        json_schema["description"] = description
    if isinstance(spec.get("strict"), bool):
        json_schema["strict"] = spec["strict"]
    return {"response_format": {"type": "json_schema", "json_schema": json_schema}}
