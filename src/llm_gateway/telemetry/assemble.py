"""Rebuilds a ``chat.completion`` from the ``chat.completion.chunk`` payloads of a stream.

Helicone (and content recording) want the answer of a streamed request as one document. Only
used when one of them is on: the pipeline asks ``Telemetry.wants_stream_body`` first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass(slots=True)
class _Choice:
    role: str = "assistant"
    content: list[str] = field(default_factory=list)
    refusal: list[str] = field(default_factory=list)
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    finish_reason: str | None = None

    def add(self, delta: dict[str, Any]) -> None:
        role = delta.get("role")
        if isinstance(role, str):
            self.role = role
        for name, parts in (("content", self.content), ("refusal", self.refusal)):
            text = delta.get(name)
            if isinstance(text, str):
                parts.append(text)
        for call in delta.get("tool_calls") or ():
            if isinstance(call, dict):
                self._add_tool_call(call)

    def _add_tool_call(self, call: dict[str, Any]) -> None:
        index = call.get("index", len(self.tool_calls))
        merged = self.tool_calls.setdefault(
            index, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
        )
        for key in ("id", "type"):
            if call.get(key):
                merged[key] = call[key]
        function = call.get("function")
        if isinstance(function, dict):
            if function.get("name"):
                merged["function"]["name"] = function["name"]
            if isinstance(function.get("arguments"), str):
                merged["function"]["arguments"] += function["arguments"]

    def message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": self.role, "content": "".join(self.content) if self.content else None}
        if self.refusal:
            message["refusal"] = "".join(self.refusal)
        if self.tool_calls:
            message["tool_calls"] = [self.tool_calls[index] for index in sorted(self.tool_calls)]
        return message


class StreamAssembler:
    """Feed every chunk payload (the JSON after ``data: ``); ``completion()`` returns the whole answer."""

    __slots__ = ("_choices", "_head", "_usage")

    def __init__(self) -> None:
        self._choices: dict[int, _Choice] = {}
        self._head: dict[str, Any] = {}
        self._usage: dict[str, Any] | None = None

    def feed(self, chunk: bytes) -> None:
        try:
            data = orjson.loads(chunk)
        except orjson.JSONDecodeError:
            return
        if not isinstance(data, dict):
            return
        if not self._head:
            self._head = {key: data[key] for key in ("id", "created", "model", "system_fingerprint") if key in data}
        usage = data.get("usage")
        if isinstance(usage, dict):
            self._usage = usage
        for choice in data.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            state = self._choices.get(choice.get("index", 0))
            if state is None:
                state = self._choices[choice.get("index", 0)] = _Choice()
            delta = choice.get("delta")
            if isinstance(delta, dict):
                state.add(delta)
            if choice.get("finish_reason"):
                state.finish_reason = choice["finish_reason"]

    @property
    def finish_reasons(self) -> tuple[str, ...]:
        return tuple(c.finish_reason for _, c in sorted(self._choices.items()) if c.finish_reason)

    @property
    def usage(self) -> dict[str, Any] | None:
        return self._usage

    def completion(self) -> dict[str, Any]:
        body: dict[str, Any] = {"object": "chat.completion", **self._head}
        body["choices"] = [
            {"index": index, "message": choice.message(), "finish_reason": choice.finish_reason}
            for index, choice in sorted(self._choices.items())
        ]
        if self._usage is not None:
            body["usage"] = self._usage
        return body
