"""An OpenAI ``chat.completion`` -> the Response object a Responses caller expects, the pieces of a Response
the stream translator shares (the echoed request, output items, usage, status), and readers of any Response
(native ones too): usage, generated text, finish reasons, whether it may be cached.

Upstream JSON is read defensively: a missing or malformed field becomes the Responses API's neutral value.
"""

from __future__ import annotations

from typing import Any

import orjson

from llm_gateway.ids import new_id
from llm_gateway.schemas.core import Usage
from llm_gateway.translate.chat_wire import choice_message

# chat finish_reason -> the Response's incomplete_details.reason; any other (stop, tool_calls, null) completes it.
INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}


def new_response_id() -> str:
    return "resp_" + new_id()


def new_message_id() -> str:
    return "msg_" + new_id()


def new_call_item_id() -> str:
    return "fc_" + new_id()


def unique_call_id(call_id: Any, seen: set[str]) -> str:
    """The upstream's tool call id, or a new one when it sent none or repeated one: the caller answers each
    call by its ``call_id`` (and OpenAI's SDK refuses two calls with one id)."""
    unique = call_id if isinstance(call_id, str) and call_id and call_id not in seen else "call_" + new_id()
    seen.add(unique)
    return unique


def string(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _or(value: Any, kind: type | tuple[type, ...], default: Any) -> Any:
    return value if isinstance(value, kind) and not (kind is not bool and isinstance(value, bool)) else default


def response_skeleton(request: dict[str, Any], *, response_id: str, model: str, created_at: int) -> dict[str, Any]:
    """A Response still in progress (no output, no usage), with the request's fields echoed as OpenAI echoes
    them. ``model`` is the model that answers (the upstream's), not the group the caller named."""
    text = request.get("text")
    text = dict(text) if isinstance(text, dict) else {}
    if not isinstance(text.get("format"), dict):
        text["format"] = {"type": "text"}
    response: dict[str, Any] = {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": "in_progress",
        "error": None,
        "incomplete_details": None,
        "instructions": _or(request.get("instructions"), str, None),
        "max_output_tokens": _or(request.get("max_output_tokens"), int, None),
        "model": model,
        "output": [],
        "parallel_tool_calls": _or(request.get("parallel_tool_calls"), bool, True),
        "previous_response_id": _or(request.get("previous_response_id"), str, None),
        "temperature": _or(request.get("temperature"), (int, float), 1.0),
        "tool_choice": _or(request.get("tool_choice"), (str, dict), "auto"),
        "tools": _or(request.get("tools"), list, []),
        "top_p": _or(request.get("top_p"), (int, float), 1.0),
        "text": text,
        "truncation": "disabled",  # what a chat deployment does, whatever was asked (dropped_params says so)
        "usage": None,
        "metadata": _or(request.get("metadata"), dict, {}),
        "store": _or(request.get("store"), bool, True),
        "user": _or(request.get("user"), str, None),
    }
    for name in ("safety_identifier", "top_logprobs"):
        if request.get(name) is not None:
            response[name] = request[name]
    return response


def outcome(finish_reason: Any) -> tuple[str, dict[str, str] | None]:
    """chat's finish_reason -> (status, incomplete_details)."""
    reason = INCOMPLETE_REASONS.get(finish_reason) if isinstance(finish_reason, str) else None
    return ("incomplete", {"reason": reason}) if reason else ("completed", None)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def responses_usage(chat_usage: Any) -> dict[str, Any] | None:
    """chat's usage -> the Response's (details zero when the upstream gave none); None when it sent none, so
    that the gateway counts the tokens itself rather than charging zero."""
    usage = Usage.from_openai(chat_usage)
    if usage is None or not isinstance(chat_usage, dict):
        return None
    details = chat_usage.get("completion_tokens_details")
    reasoning = _count(details.get("reasoning_tokens")) if isinstance(details, dict) else 0
    prompt, completion = max(usage.prompt_tokens, 0), max(usage.completion_tokens, 0)
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": min(max(usage.cached_tokens, 0), prompt), "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": prompt + completion,
    }


def _token_logprob(entry: dict[str, Any]) -> dict[str, Any]:
    token = string(entry.get("token"))
    raw = entry.get("bytes")
    data = raw if isinstance(raw, list) else list(token.encode())
    logprob = entry.get("logprob")
    return {"token": token, "bytes": data, "logprob": logprob if isinstance(logprob, int | float) else 0.0}


def output_logprobs(chat_logprobs: Any) -> list[dict[str, Any]]:
    """A chat choice's (or chunk's) ``logprobs`` -> an output_text part's."""
    content = chat_logprobs.get("content") if isinstance(chat_logprobs, dict) else None
    out = []
    for entry in content if isinstance(content, list) else ():
        if isinstance(entry, dict):
            top = entry.get("top_logprobs")
            alternatives = [_token_logprob(t) for t in top if isinstance(t, dict)] if isinstance(top, list) else []
            out.append({**_token_logprob(entry), "top_logprobs": alternatives})
    return out


def text_part(text: str, logprobs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs}


def refusal_part(refusal: str) -> dict[str, Any]:
    return {"type": "refusal", "refusal": refusal}


def message_item(item_id: str, content: list[dict[str, Any]], status: str) -> dict[str, Any]:
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": content}


def call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "arguments": arguments,
        "call_id": call_id,
        "name": name,
    }


def _content_text(content: Any) -> str:
    if isinstance(content, list):  # a few servers answer with content parts
        return "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return content if isinstance(content, str) else ""


def _arguments(arguments: Any) -> str:
    if isinstance(arguments, str):
        return arguments
    return orjson.dumps(arguments).decode() if isinstance(arguments, dict) else ""


def chat_to_response(
    completion: dict[str, Any], request: dict[str, Any], *, response_id: str, model: str, created_at: int
) -> dict[str, Any]:
    """A ``chat.completion`` -> a Response: a message item (text, then a refusal) and a function_call item per
    tool call. A cut answer (``length``, ``content_filter``) is ``incomplete``, and so is its last item.
    Reasoning some servers send beside the content is not relayed (no signature, no encrypted form)."""
    choice, message = choice_message(completion)
    content: list[dict[str, Any]] = []
    if text := _content_text(message.get("content")):
        content.append(text_part(text, output_logprobs(choice.get("logprobs"))))
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal:
        content.append(refusal_part(refusal))
    output = [message_item(new_message_id(), content, "completed")] if content else []
    calls = message.get("tool_calls")
    seen: set[str] = set()
    for call in calls if isinstance(calls, list) else ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(call, dict) and isinstance(function, dict):
            arguments = _arguments(function.get("arguments"))
            call_id = unique_call_id(call.get("id"), seen)
            output.append(call_item(new_call_item_id(), call_id, string(function.get("name")), arguments, "completed"))
    status, incomplete = outcome(choice.get("finish_reason"))
    if incomplete and output:
        output[-1]["status"] = "incomplete"
    response = response_skeleton(request, response_id=response_id, model=model, created_at=created_at)
    response.update(
        status=status, incomplete_details=incomplete, output=output, usage=responses_usage(completion.get("usage"))
    )
    return response


# ------------------------------------------------------------------------------------ any Response


def response_usage(response: dict[str, Any]) -> Usage | None:
    """The Response's usage in the gateway's terms (prompt = input, completion = output, cached = cached
    input); None when absent or malformed."""
    usage = response.get("usage") if isinstance(response, dict) else None
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("input_tokens"), usage.get("output_tokens")
    if not isinstance(prompt, int) or isinstance(prompt, bool):
        return None
    if not isinstance(completion, int) or isinstance(completion, bool):
        return None
    details = usage.get("input_tokens_details")
    cached = _count(details.get("cached_tokens")) if isinstance(details, dict) else 0
    return Usage(prompt_tokens=max(prompt, 0), completion_tokens=max(completion, 0), cached_tokens=cached)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _items(response: Any) -> list[dict[str, Any]]:
    output = response.get("output") if isinstance(response, dict) else None
    return [item for item in output if isinstance(item, dict)] if isinstance(output, list) else []


def _item_text(item: dict[str, Any]) -> list[str]:
    kind = item.get("type")
    if kind == "message" or kind == "reasoning":
        parts = [*_list(item.get("content")), *_list(item.get("summary"))]
        fields = ("text", "refusal")
        return [str(p[f]) for p in parts if isinstance(p, dict) for f in fields if isinstance(p.get(f), str)]
    if kind == "function_call":
        return [str(item.get("name") or ""), str(item.get("arguments") or "")]
    if kind == "custom_tool_call":
        return [str(item.get("name") or ""), str(item.get("input") or "")]
    return []


def response_text(response: dict[str, Any]) -> str:
    """What the model generated, for counting output tokens when no usage came: output text, refusals,
    reasoning summaries, and each function call's name and arguments."""
    return "".join(text for item in _items(response) for text in _item_text(item))


def response_finish_reasons(response: dict[str, Any]) -> tuple[str, ...]:
    """Why the response ended, in the Responses API's own words (as the Messages surface records Anthropic's
    stop reasons): ``("completed",)``, the incomplete_details reason (``("max_output_tokens",)``,
    ``("content_filter",)``; ``("incomplete",)`` when none is given), ``("failed",)``, ``("cancelled",)``;
    () while it has not ended (a stream cut short). Tool calls are not a reason here: a response that calls
    a tool completes, and its function_call items say so."""
    status = response.get("status") if isinstance(response, dict) else None
    if status == "incomplete":
        details = response.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, dict) else None
        return (reason if isinstance(reason, str) and reason else "incomplete",)
    if status in ("completed", "failed", "cancelled"):
        return (status,)
    return ()


def is_whole(response: dict[str, Any]) -> bool:
    """A completed Response: the only kind that may be cached."""
    if not isinstance(response, dict):
        return False
    return response.get("status") == "completed" and isinstance(response.get("output"), list)
