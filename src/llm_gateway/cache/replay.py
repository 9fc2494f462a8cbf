"""A cached ``chat.completion`` replayed as the ``chat.completion.chunk`` payloads of a well-formed stream, and
the inverse: a completed stream's chunks assembled into one ``chat.completion``, so one entry serves both.

Payloads carry no SSE framing and no ``[DONE]``: the route frames them like an upstream's.
"""

from __future__ import annotations

from typing import Any

import orjson

Chunk = dict[str, Any]
# Message fields with their own chunks; any other (annotations, reasoning_content, ...) is replayed as-is.
_OWN_FIELDS = frozenset({"role", "content", "refusal", "tool_calls", "function_call"})
_HEAD_FIELDS = ("id", "created", "model", "service_tier", "system_fingerprint")


def completion_to_chunks(completion: dict[str, Any], *, include_usage: bool) -> list[bytes]:
    """One choice after another: role, other fields, refusal, content, tool calls, then the finish chunk.

    Content comes whole in one chunk: the caller already waited for nothing, so splitting it only
    costs bytes. With ``include_usage`` every chunk carries ``"usage": null`` and a last chunk with
    ``choices: []`` carries the usage, as OpenAI streams do.
    """
    head: Chunk = {"object": "chat.completion.chunk"}
    for name in _HEAD_FIELDS:
        if name in completion:
            head[name] = completion[name]
    if include_usage:
        head["usage"] = None
    chunks: list[Chunk] = []
    for position, choice in enumerate(completion.get("choices") or []):
        index = choice.get("index", position)
        for delta, logprobs, finish in _choice_deltas(choice):
            choices = [{"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}]
            chunks.append({**head, "choices": choices})
    if include_usage:
        chunks.append({**head, "choices": [], "usage": completion.get("usage")})
    return [orjson.dumps(chunk) for chunk in chunks]


Delta = tuple[dict[str, Any], Any, str | None]  # delta, logprobs, finish_reason


def _choice_deltas(choice: dict[str, Any]) -> list[Delta]:
    message = choice.get("message") or {}
    content = message.get("content")
    extras = {name: value for name, value in message.items() if name not in _OWN_FIELDS and value is not None}
    empty = {name: value for name, value in extras.items() if value in ("", [], {})}
    # "" announces text to come, null an answer of tool calls only, as OpenAI's first chunk does
    opening = {"role": message.get("role", "assistant"), "content": "" if isinstance(content, str) else None}
    deltas: list[Delta] = [({**opening, "refusal": None, **empty}, None, None)]
    if len(extras) > len(empty):
        deltas.append(({name: value for name, value in extras.items() if name not in empty}, None, None))
    if isinstance(message.get("refusal"), str) and message["refusal"]:
        deltas.append(({"refusal": message["refusal"]}, None, None))
    logprobs = choice.get("logprobs")
    if isinstance(content, str) and content:
        deltas.append(({"content": content}, logprobs, None))
        logprobs = None
    for index, call in enumerate(message.get("tool_calls") or []):
        deltas.extend((delta, None, None) for delta in _tool_call_deltas(index, call))
    if isinstance(message.get("function_call"), dict):
        deltas.append(({"function_call": message["function_call"]}, None, None))
    deltas.append(({}, logprobs, choice.get("finish_reason")))
    return deltas


def _tool_call_deltas(index: int, call: dict[str, Any]) -> list[dict[str, Any]]:
    """As OpenAI streams a call: id, type and name with empty arguments, then the arguments."""
    function = call.get("function") or {}
    opening = {
        "index": index,
        "id": call.get("id"),
        "type": call.get("type", "function"),
        "function": {"name": function.get("name"), "arguments": ""},
    }
    deltas = [{"tool_calls": [opening]}]
    if function.get("arguments"):
        deltas.append({"tool_calls": [{"index": index, "function": {"arguments": function["arguments"]}}]})
    return deltas


def chunks_to_completion(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """Assemble parsed chunks: text fields concatenated, tool-call arguments joined per index, the last usage kept.

    A choice whose stream never carried a finish_reason keeps ``finish_reason: None``, which
    ``entry.is_complete`` refuses to store.
    """
    head: dict[str, Any] = {}
    choices: dict[int, _ChoiceAssembly] = {}
    usage = None
    for chunk in chunks:
        for name in _HEAD_FIELDS:
            if name not in head and chunk.get(name) is not None:
                head[name] = chunk[name]
        if chunk.get("usage") is not None:
            usage = chunk["usage"]
        for raw in chunk.get("choices") or []:
            if isinstance(raw, dict):
                index = raw.get("index", 0)
                choices.setdefault(index, _ChoiceAssembly()).feed(raw)
    completion: dict[str, Any] = {
        "id": head.pop("id", None),
        "object": "chat.completion",
        "created": head.pop("created", None),
        "model": head.pop("model", None),
        "choices": [choices[index].result(index) for index in sorted(choices)],
        **head,
    }
    if usage is not None:
        completion["usage"] = usage
    return completion


class _ChoiceAssembly:
    """One choice's deltas so far."""

    def __init__(self) -> None:
        self.role = "assistant"
        self.fields: dict[str, Any] = {}  # content, refusal and any other streamed message field
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.function_call: dict[str, Any] | None = None
        self.logprobs: dict[str, Any] | None = None
        self.finish_reason: str | None = None

    def feed(self, raw: dict[str, Any]) -> None:
        delta = raw.get("delta")
        for name, value in delta.items() if isinstance(delta, dict) else ():
            if value is None:
                continue
            if name == "role":
                self.role = value
            elif name == "tool_calls":
                for call in value if isinstance(value, list) else ():
                    self._tool_call(call)
            elif name == "function_call":
                self.function_call = _function(self.function_call or {"name": "", "arguments": ""}, value)
            else:
                self.fields[name] = _merge(self.fields.get(name), value)
        if isinstance(raw.get("logprobs"), dict):
            self.logprobs = _merge(self.logprobs, raw["logprobs"])
        if raw.get("finish_reason") is not None:
            self.finish_reason = raw["finish_reason"]

    def _tool_call(self, call: Any) -> None:
        if not isinstance(call, dict):
            return
        index = call.get("index")
        if not isinstance(index, int):  # some OpenAI-compatible servers omit it: a new id starts a new call
            index = len(self.tool_calls) if call.get("id") or not self.tool_calls else max(self.tool_calls)
        slot = self.tool_calls.setdefault(index, {"id": "", "type": "function", "function": {}})
        if call.get("id") and not slot["id"]:
            slot["id"] = call["id"]
        if call.get("type"):
            slot["type"] = call["type"]
        slot["function"] = _function(slot["function"] or {"name": "", "arguments": ""}, call.get("function"))

    def result(self, index: int) -> dict[str, Any]:
        fields = dict(self.fields)
        message: dict[str, Any] = {
            "role": self.role,
            "content": fields.pop("content", None),
            "refusal": fields.pop("refusal", None),
            **fields,
        }
        if self.tool_calls:
            message["tool_calls"] = [self.tool_calls[key] for key in sorted(self.tool_calls)]
        if self.function_call is not None:
            message["function_call"] = self.function_call
        return {"index": index, "message": message, "logprobs": self.logprobs, "finish_reason": self.finish_reason}


def _function(slot: dict[str, Any], delta: Any) -> dict[str, Any]:
    """The name arrives once (some servers repeat it: keep the first); arguments arrive in pieces."""
    if not isinstance(delta, dict):
        return slot
    name, arguments = delta.get("name"), delta.get("arguments")
    return {
        "name": slot["name"] or (name if isinstance(name, str) else ""),
        "arguments": slot["arguments"] + (arguments if isinstance(arguments, str) else ""),
    }


def _merge(old: Any, new: Any) -> Any:
    """Streamed text is appended, lists extended (logprobs, annotations), dicts merged by key; else the last wins."""
    if isinstance(old, str) and isinstance(new, str):
        return old + new
    if isinstance(old, list) and isinstance(new, list):
        return old + new
    if isinstance(old, dict) and isinstance(new, dict):
        return {**old, **{key: _merge(old.get(key), value) for key, value in new.items()}}
    return list(new) if isinstance(new, list) else new
