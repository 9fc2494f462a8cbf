"""How the Gemini and Vertex AI fakes judge a request body, as strictly as the real API (messages as Google words
them): unknown fields, roles, parts, function calling, generationConfig, embeddings batches."""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]

_TOP_LEVEL = {
    "contents", "systemInstruction", "tools", "toolConfig", "generationConfig", "safetySettings", "cachedContent",
    "labels",
}  # fmt: skip
_PART_DATA = ("text", "inlineData", "fileData", "functionCall", "functionResponse", "executableCode",
              "codeExecutionResult")  # fmt: skip
_PART_FIELDS = {*_PART_DATA, "thought", "thoughtSignature", "videoMetadata", "partMetadata"}
_GENERATION = {
    "temperature", "topP", "topK", "candidateCount", "maxOutputTokens", "stopSequences", "seed", "presencePenalty",
    "frequencyPenalty", "responseMimeType", "responseSchema", "responseJsonSchema", "responseLogprobs", "logprobs",
    "thinkingConfig", "responseModalities", "mediaResolution", "speechConfig",
}  # fmt: skip
_THINKING = {"thinkingBudget", "thinkingLevel", "includeThoughts"}
_MODES = {"AUTO", "ANY", "NONE", "VALIDATED"}


def _unknown(name: str, where: str) -> str:
    return f"Invalid JSON payload received. Unknown name \"{name}\" at '{where}': Cannot find field."


def request_problem(body: JSON) -> str | None:
    for name in body:
        if name not in _TOP_LEVEL:
            return _unknown(name, "")
    return (
        _contents_problem(body.get("contents"))
        or _system_problem(body.get("systemInstruction"))
        or _tools_problem(body.get("tools"), body.get("toolConfig"))
        or _generation_problem(body.get("generationConfig"))
    )


def _contents_problem(contents: Any) -> str | None:
    if not isinstance(contents, list) or not contents:
        return "* GenerateContentRequest.contents: contents is not specified"
    pending_calls = 0
    for i, content in enumerate(contents):
        if not isinstance(content, dict):
            return f"Invalid value at 'contents[{i}]'"
        role = content.get("role")
        if role not in ("user", "model"):
            return f"Please use a valid role: user, model. (contents[{i}].role = {role!r})"
        problem = _parts_problem(content.get("parts"), f"contents[{i}]")
        if problem:
            return problem
        parts = content["parts"]
        responses = sum("functionResponse" in part for part in parts)
        if pending_calls and responses != pending_calls:
            return (
                "Please ensure that the number of function response parts is equal to the number of function call "
                "parts of the function call turn."
            )
        if responses and not pending_calls:
            return "Please ensure that function response turn comes immediately after a function call turn."
        if responses and role != "user":
            return "Please ensure that function responses are in a user turn."
        pending_calls = sum("functionCall" in part for part in parts) if role == "model" else 0
    return None


def _parts_problem(parts: Any, where: str) -> str | None:
    if not isinstance(parts, list) or not parts:
        return f"* GenerateContentRequest.{where}.parts: contents.parts must not be empty."
    for j, part in enumerate(parts):
        at = f"{where}.parts[{j}]"
        if not isinstance(part, dict):
            return f"Invalid value at '{at}'"
        for name in part:
            if name not in _PART_FIELDS:
                return _unknown(name, at)
        data = [name for name in _PART_DATA if name in part]
        if len(data) != 1:
            return f"* GenerateContentRequest.{at}.data: required oneof field 'data' must have one initialized field"
        problem = _part_data_problem(data[0], part[data[0]], at)
        if problem:
            return problem
    return None


def _part_data_problem(kind: str, value: Any, at: str) -> str | None:
    if kind == "text":
        return None if isinstance(value, str) else f"Invalid value at '{at}.text'"
    if kind == "inlineData":
        ok = isinstance(value, dict) and isinstance(value.get("mimeType"), str) and isinstance(value.get("data"), str)
        return None if ok else f"* GenerateContentRequest.{at}.inline_data: mime_type and data are required"
    if kind == "functionCall":
        if not isinstance(value, dict) or not value.get("name"):
            return f"* GenerateContentRequest.{at}.function_call.name: Name cannot be empty."
        if "args" in value and not isinstance(value["args"], dict):
            return f"Invalid value at '{at}.function_call.args' (type.googleapis.com/google.protobuf.Struct)"
    if kind == "functionResponse":
        if not isinstance(value, dict) or not value.get("name"):
            return f"* GenerateContentRequest.{at}.function_response.name: Name cannot be empty."
        if not isinstance(value.get("response"), dict):
            return f"Invalid value at '{at}.function_response.response' (type.googleapis.com/google.protobuf.Struct)"
    return None


def _system_problem(system: Any) -> str | None:
    if system is None:
        return None
    if not isinstance(system, dict):
        return "Invalid value at 'system_instruction'"
    problem = _parts_problem(system.get("parts"), "system_instruction")
    if problem:
        return problem
    if any("text" not in part for part in system["parts"]):
        return "* GenerateContentRequest.system_instruction: only text parts are supported"
    return None


def _tools_problem(tools: Any, tool_config: Any) -> str | None:
    names: set[str] = set()
    if tools is not None:
        if not isinstance(tools, list):
            return "Invalid value at 'tools'"
        for i, tool in enumerate(tools):
            for j, declaration in enumerate(tool.get("functionDeclarations", []) if isinstance(tool, dict) else []):
                at = f"tools[{i}].function_declarations[{j}]"
                name = declaration.get("name") if isinstance(declaration, dict) else None
                if not isinstance(name, str) or not name:
                    return f"* GenerateContentRequest.{at}.name: Name cannot be empty."
                if "parameters" in declaration and "parametersJsonSchema" in declaration:
                    return f"* GenerateContentRequest.{at}: parameters and parameters_json_schema cannot both be set."
                schema = declaration.get("parametersJsonSchema")
                if schema is not None and not isinstance(schema, dict):
                    return f"Invalid value at '{at}.parameters_json_schema'"
                names.add(name)
    if tool_config is None:
        return None
    config = tool_config.get("functionCallingConfig") if isinstance(tool_config, dict) else None
    if not isinstance(config, dict) or config.get("mode") not in _MODES:
        return "Invalid value at 'tool_config.function_calling_config.mode'"
    allowed = config.get("allowedFunctionNames")
    if allowed is not None:
        if config["mode"] != "ANY":
            return "* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names: only with ANY"
        if not set(allowed) <= names:
            return "* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names: unknown"
    return None


def _generation_problem(config: Any) -> str | None:
    if config is None:
        return None
    if not isinstance(config, dict):
        return "Invalid value at 'generation_config'"
    for name in config:
        if name not in _GENERATION:
            return _unknown(name, "generation_config")
    count = config.get("candidateCount", 1)
    if not isinstance(count, int) or not 1 <= count <= 8:
        return "* GenerateContentRequest.generation_config.candidate_count: must be in the range [1, 8]."
    cap = config.get("maxOutputTokens")
    if cap is not None and (not isinstance(cap, int) or cap < 1):
        return "* GenerateContentRequest.generation_config.max_output_tokens: must be positive"
    if "responseJsonSchema" in config and config.get("responseMimeType") != "application/json":
        return "* GenerateContentRequest.generation_config.response_mime_type: must be application/json with a schema"
    if "responseSchema" in config and "responseJsonSchema" in config:
        return "* GenerateContentRequest.generation_config: response_schema and response_json_schema are exclusive"
    thinking = config.get("thinkingConfig")
    if thinking is not None:
        if not isinstance(thinking, dict) or any(name not in _THINKING for name in thinking):
            return "Invalid value at 'generation_config.thinking_config'"
        if "thinkingBudget" in thinking and "thinkingLevel" in thinking:
            return "* GenerateContentRequest.generation_config.thinking_config: budget and level are exclusive"
    stops = config.get("stopSequences")
    if stops is not None and (not isinstance(stops, list) or len(stops) > 5):
        return "* GenerateContentRequest.generation_config.stop_sequences: at most 5"
    return None


def embed_problem(body: JSON, model: str) -> str | None:
    """``batchEmbedContents``: 1..100 requests, each naming the URL's model, with text parts."""
    requests = body.get("requests")
    if set(body) - {"requests"}:
        return _unknown(sorted(set(body) - {"requests"})[0], "")
    if not isinstance(requests, list) or not requests:
        return "* BatchEmbedContentsRequest.requests: requests is not specified"
    if len(requests) > 100:
        return "* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch"
    for i, request in enumerate(requests):
        if not isinstance(request, dict) or request.get("model") != f"models/{model}":
            return (
                f"* BatchEmbedContentsRequest.requests[{i}].model: Model names should start with `models/` and "
                "match the model of the URL"
            )
        problem = _parts_problem((request.get("content") or {}).get("parts"), f"requests[{i}].content")
        if problem:
            return problem
        size = request.get("outputDimensionality")
        if size is not None and (not isinstance(size, int) or size < 1):
            return f"* BatchEmbedContentsRequest.requests[{i}].output_dimensionality: must be positive"
    return None


def predict_problem(body: JSON, model: str) -> str | None:
    """Vertex AI ``:predict`` for a text-embedding model: ``instances`` of ``content`` (one for gemini-embedding)."""
    instances = body.get("instances")
    if not isinstance(instances, list) or not instances:
        return "instances is not specified"
    limit = 1 if "gemini-embedding" in model else 250
    if len(instances) > limit:
        return f"Unable to submit request because the model supports up to {limit} instances per request."
    for instance in instances:
        if not isinstance(instance, dict) or not isinstance(instance.get("content"), str) or not instance["content"]:
            return "Each instance needs a non-empty string 'content'."
    return None
