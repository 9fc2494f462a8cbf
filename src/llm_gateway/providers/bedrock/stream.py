"""ConverseStream events -> OpenAI ``chat.completion.chunk`` objects, one event at a time.

Pure and synchronous: the client decodes the event-stream frames (botocore's parser) and feeds each event's
type and JSON payload; the translator keeps the little state a stream needs. As the Anthropic translator does,
the first chunk carries the role with ``"content": ""`` when the answer starts with text, ``"content": null``
(with the first tool call) when it starts with a tool call or reasoning; reasoning streams as
``delta.reasoning_content``. Converse sends ``messageStop`` (the stop reason) before ``metadata`` (the usage):
the finish chunk goes out at the first, the usage chunk at the second, which ends the stream.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llm_gateway.providers.bedrock.wire import JSON_TOOL_NAME, completion_id, finish_reason, openai_usage

Chunk = dict[str, Any]


class ConverseStreamTranslator:
    def __init__(self, *, model: str, created: int, include_usage: bool) -> None:
        self._model = model
        self._created = created
        self._include_usage = include_usage
        self._id = completion_id()
        self._usage: dict[str, Any] | None = None
        self._tool_indexes: dict[int, int] = {}  # Converse content-block index -> OpenAI tool-call index
        self._json_blocks: set[int] = set()  # blocks of the response_format tool, streamed as content
        self._opened = False  # whether the role chunk went out
        self.stopped = False  # messageStop seen: the answer is whole (metadata may still come)
        self.finished = False  # metadata seen: nothing more to read
        self._handlers: dict[str, Callable[[dict[str, Any]], list[Chunk]]] = {
            "contentBlockStart": self._block_start,
            "contentBlockDelta": self._block_delta,
            "messageStop": self._message_stop,
            "metadata": self._metadata,
        }

    @property
    def usage(self) -> dict[str, Any] | None:
        """OpenAI-shaped usage, once ``metadata`` brought it."""
        return openai_usage(self._usage) if self._usage is not None else None

    def feed(self, event: str, data: dict[str, Any]) -> list[Chunk]:
        """One event -> zero or more chunks. messageStart, contentBlockStop and unknown events yield nothing."""
        handler = self._handlers.get(event)
        if handler is None or self.finished:
            return []
        return handler(data)

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> Chunk:
        chunk: Chunk = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if self._include_usage:
            chunk["usage"] = None  # as OpenAI does: only the final, choice-less chunk carries usage
        return chunk

    def _opening(self, content: str | None) -> list[Chunk]:
        if self._opened:
            return []
        self._opened = True
        return [self._chunk({"role": "assistant", "content": content})]

    def _block_start(self, data: dict[str, Any]) -> list[Chunk]:
        start, index = data.get("start"), data.get("contentBlockIndex")
        tool_use = start.get("toolUse") if isinstance(start, dict) else None
        if not isinstance(tool_use, dict) or not isinstance(index, int) or self.stopped:
            return []
        if tool_use.get("name") == JSON_TOOL_NAME:
            self._json_blocks.add(index)
            return self._opening("")  # its input is the answer's content
        tool_index = self._tool_indexes[index] = len(self._tool_indexes)
        call = {
            "index": tool_index,
            "id": str(tool_use.get("toolUseId", "")),
            "type": "function",
            "function": {"name": str(tool_use.get("name", "")), "arguments": ""},
        }
        if self._opened:
            return [self._chunk({"tool_calls": [call]})]
        self._opened = True  # OpenAI's first chunk of a tool-call answer: role, null content, the call
        return [self._chunk({"role": "assistant", "content": None, "tool_calls": [call]})]

    def _block_delta(self, data: dict[str, Any]) -> list[Chunk]:
        delta, index = data.get("delta"), data.get("contentBlockIndex")
        if not isinstance(delta, dict) or self.stopped:
            return []
        text = delta.get("text")
        if isinstance(text, str):
            return [*self._opening(""), self._chunk({"content": text})] if text else []
        reasoning = delta.get("reasoningContent")
        if isinstance(reasoning, dict):
            thought = reasoning.get("text")  # a signature or redacted content is not relayed
            return [*self._opening(None), self._chunk({"reasoning_content": thought})] if thought else []
        tool_use = delta.get("toolUse")
        partial = tool_use.get("input") if isinstance(tool_use, dict) else None
        if not isinstance(partial, str) or not partial or not isinstance(index, int):
            return []
        if index in self._json_blocks:
            return [*self._opening(""), self._chunk({"content": partial})]
        if index not in self._tool_indexes:
            return []
        return [self._chunk({"tool_calls": [{"index": self._tool_indexes[index], "function": {"arguments": partial}}]})]

    def _message_stop(self, data: dict[str, Any]) -> list[Chunk]:
        if self.stopped:
            return []
        self.stopped = True
        finish = finish_reason(data.get("stopReason"), has_tool_calls=bool(self._tool_indexes))
        return [*self._opening(""), self._chunk({}, finish)]

    def _metadata(self, data: dict[str, Any]) -> list[Chunk]:
        usage = data.get("usage")
        self._usage = usage if isinstance(usage, dict) else {}
        chunks = [] if self.stopped else self._message_stop({})  # a stream always ends with a finish_reason
        self.finished = True
        if not self._include_usage:
            return chunks
        final = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": [],
            "usage": openai_usage(self._usage),
        }
        return [*chunks, final]
