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
    """One choice's deltas so far, kept as pieces so that assembly stays linear in the stream's size.

    Text arrives a few characters a chunk; appending to a string per chunk would copy the answer
    so far each time (quadratic: 64,000 chunks with logprobs once stalled the event loop for 16 s).
    """

    def __init__(self) -> None:
        self.role = "assistant"
        self.fields: dict[str, Any] = {}  # content, refusal and any other streamed message field
        self.tool_calls: dict[int, _CallAssembly] = {}
        self.function_call: _CallAssembly | None = None
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
                if self.function_call is None:
                    self.function_call = _CallAssembly()
                self.function_call.feed(value)
            else:
                _merge_into(self.fields, name, value)
        logprobs = raw.get("logprobs")
        if isinstance(logprobs, dict):
            if self.logprobs is None:
                self.logprobs = {}
            for name, value in logprobs.items():
                _merge_into(self.logprobs, name, value)
        if raw.get("finish_reason") is not None:
            self.finish_reason = raw["finish_reason"]

    def _tool_call(self, call: Any) -> None:
        if not isinstance(call, dict):
            return
        index = call.get("index")
        if not isinstance(index, int):  # some OpenAI-compatible servers omit it: a new id starts a new call
            index = len(self.tool_calls) if call.get("id") or not self.tool_calls else max(self.tool_calls)
        slot = self.tool_calls.get(index)
        if slot is None:
            slot = self.tool_calls[index] = _CallAssembly()
        if call.get("id") and not slot.id:
            slot.id = call["id"]
        if call.get("type"):
            slot.type = call["type"]
        slot.feed(call.get("function"))

    def result(self, index: int) -> dict[str, Any]:
        fields = _finished(self.fields)
        message: dict[str, Any] = {
            "role": self.role,
            "content": fields.pop("content", None),
            "refusal": fields.pop("refusal", None),
            **fields,
        }
        if self.tool_calls:
            message["tool_calls"] = [self.tool_calls[key].tool_call() for key in sorted(self.tool_calls)]
        if self.function_call is not None:
            message["function_call"] = self.function_call.function()
        logprobs = _finished(self.logprobs) if self.logprobs is not None else None
        return {"index": index, "message": message, "logprobs": logprobs, "finish_reason": self.finish_reason}


class _CallAssembly:
    """A tool call (or legacy function call): the name arrives once (some servers repeat it: keep the
    first), the arguments in pieces."""

    __slots__ = ("arguments", "id", "name", "type")

    def __init__(self) -> None:
        self.id = ""
        self.type = "function"
        self.name = ""
        self.arguments: list[str] = []

    def feed(self, delta: Any) -> None:
        if not isinstance(delta, dict):
            return
        name, arguments = delta.get("name"), delta.get("arguments")
        if not self.name and isinstance(name, str):
            self.name = name
        if isinstance(arguments, str):
            self.arguments.append(arguments)

    def function(self) -> dict[str, Any]:
        return {"name": self.name, "arguments": "".join(self.arguments)}

    def tool_call(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "function": self.function()}


class _Text(list[str]):
    """The pieces of one streamed string, joined once at the end."""


def _merge_into(target: dict[str, Any], name: str, value: Any) -> None:
    """Streamed text is appended, lists extended (logprobs, annotations), dicts merged by key; else the last wins.

    In place, on containers this module made: linear in the size of what is merged.
    """
    old = target.get(name)
    if isinstance(value, str):
        if isinstance(old, _Text):
            old.append(value)
        else:
            target[name] = _Text((value,))
    elif isinstance(value, list):
        if isinstance(old, list) and not isinstance(old, _Text):
            old.extend(value)
        else:
            target[name] = list(value)
    elif isinstance(value, dict):
        if not isinstance(old, dict):
            old = target[name] = {}
        for key, item in value.items():
            _merge_into(old, key, item)
    else:
        target[name] = value


def _finished(fields: dict[str, Any]) -> dict[str, Any]:
    return {name: _finished_value(value) for name, value in fields.items()}


def _finished_value(value: Any) -> Any:
    if isinstance(value, _Text):
        return "".join(value)
    if isinstance(value, dict):
        return _finished(value)
    return value
