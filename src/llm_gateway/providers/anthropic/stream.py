"""Anthropic Messages stream events -> OpenAI ``chat.completion.chunk`` objects, one event at a time.

Pure and synchronous: the HTTP client parses SSE and feeds each event; the translator keeps
the little state a stream needs (ids, tool-call indexes, usage, whether it ended cleanly).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llm_gateway.errors import UpstreamStreamError
from llm_gateway.providers.anthropic.wire import (
    JSON_TOOL_NAME,
    PROVIDER,
    anthropic_error_message,
    completion_id,
    finish_reason,
    openai_usage,
)

Chunk = dict[str, Any]


class AnthropicStreamTranslator:
    def __init__(self, *, model: str, created: int, include_usage: bool) -> None:
        self._model = model
        self._created = created
        self._include_usage = include_usage
        self._id = completion_id(None)
        self._usage: dict[str, Any] | None = None
        self._tool_indexes: dict[int, int] = {}  # Anthropic content-block index -> OpenAI tool-call index
        self._json_blocks: set[int] = set()  # blocks of the response_format tool, streamed as content
        self._finish_sent = False
        self._finished = False
        self._handlers: dict[str, Callable[[dict[str, Any]], list[Chunk]]] = {
            "message_start": self._message_start,
            "content_block_start": self._block_start,
            "content_block_delta": self._block_delta,
            "message_delta": self._message_delta,
            "message_stop": self._message_stop,
            "error": self._error,
        }

    @property
    def usage(self) -> dict[str, Any] | None:
        """OpenAI-shaped usage so far: input from message_start, output from message_delta."""
        return openai_usage(self._usage) if self._usage is not None else None

    @property
    def finished(self) -> bool:
        return self._finished

    def feed(self, event: str, data: dict[str, Any]) -> list[Chunk]:
        """One SSE event -> zero or more chunks. Unknown events (ping, future ones) yield nothing."""
        name = event or (data.get("type") if isinstance(data, dict) else None)
        handler = self._handlers.get(name) if isinstance(name, str) else None
        if handler is None or (self._finished and name != "error"):
            return []
        return handler(data if isinstance(data, dict) else {})

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

    def _add_usage(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        # message_delta usage is cumulative; newer API versions repeat the input counts there
        counts = {key: value for key, value in usage.items() if isinstance(value, int)}
        self._usage = {**(self._usage or {}), **counts}

    def _message_start(self, data: dict[str, Any]) -> list[Chunk]:
        message = data.get("message")
        message = message if isinstance(message, dict) else {}
        if isinstance(message.get("id"), str):
            self._id = completion_id(message["id"])
        self._add_usage(message.get("usage"))
        return [self._chunk({"role": "assistant", "content": ""})]

    def _block_start(self, data: dict[str, Any]) -> list[Chunk]:
        block, index = data.get("content_block"), data.get("index")
        if not isinstance(block, dict) or not isinstance(index, int):
            return []
        if block.get("type") == "text" and isinstance(block.get("text"), str) and block["text"]:
            return [self._chunk({"content": block["text"]})]
        if block.get("type") != "tool_use":
            return []  # thinking and server-tool blocks have no OpenAI equivalent
        if block.get("name") == JSON_TOOL_NAME:
            self._json_blocks.add(index)
            return []
        tool_index = self._tool_indexes[index] = len(self._tool_indexes)
        call = {
            "index": tool_index,
            "id": str(block.get("id", "")),
            "type": "function",
            "function": {"name": str(block.get("name", "")), "arguments": ""},
        }
        return [self._chunk({"tool_calls": [call]})]

    def _block_delta(self, data: dict[str, Any]) -> list[Chunk]:
        delta, index = data.get("delta"), data.get("index")
        if not isinstance(delta, dict):
            return []
        if delta.get("type") == "text_delta" and isinstance(delta.get("text"), str) and delta["text"]:
            return [self._chunk({"content": delta["text"]})]
        partial = delta.get("partial_json")
        if delta.get("type") != "input_json_delta" or not isinstance(partial, str) or not partial:
            return []  # thinking_delta, signature_delta, citations_delta, empty JSON fragments
        if not isinstance(index, int):
            return []  # a malformed index (a list, an object) would not even be hashable
        if index in self._json_blocks:
            return [self._chunk({"content": partial})]
        if index not in self._tool_indexes:
            return []
        call = {"index": self._tool_indexes[index], "function": {"arguments": partial}}
        return [self._chunk({"tool_calls": [call]})]

    def _message_delta(self, data: dict[str, Any]) -> list[Chunk]:
        self._add_usage(data.get("usage"))
        delta = data.get("delta")
        stop_reason = delta.get("stop_reason") if isinstance(delta, dict) else None
        if stop_reason is None or self._finish_sent:
            return []
        self._finish_sent = True
        return [self._chunk({}, finish_reason(stop_reason, has_tool_calls=bool(self._tool_indexes)))]

    def _message_stop(self, data: dict[str, Any]) -> list[Chunk]:
        self._finished = True
        # A stream always ends with a finish_reason, even if message_delta carried none.
        chunks = [] if self._finish_sent else [self._chunk({}, "stop")]
        self._finish_sent = True
        if not self._include_usage:
            return chunks
        return [
            *chunks,
            {
                "id": self._id,
                "object": "chat.completion.chunk",
                "created": self._created,
                "model": self._model,
                "choices": [],
                "usage": openai_usage(self._usage),
            },
        ]

    def _error(self, data: dict[str, Any]) -> list[Chunk]:
        raise UpstreamStreamError(anthropic_error_message(data), provider=PROVIDER)
