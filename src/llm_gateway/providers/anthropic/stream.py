"""Anthropic Messages stream events -> OpenAI ``chat.completion.chunk`` objects, one event at a time.

Pure and synchronous: the HTTP client parses SSE and feeds each event; the translator keeps
the little state a stream needs (ids, tool-call indexes, usage, whether it ended cleanly).
As OpenAI's, the first chunk carries the role with ``"content": ""`` when the answer starts with
text, and ``"content": null`` (with the first tool call) when it starts with a tool call or
reasoning; thinking streams as ``delta.reasoning_content``.
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
        self._opened = False  # whether the role chunk went out
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

    def _opening(self, content: str | None) -> list[Chunk]:
        """The role chunk, before the stream's first other chunk; ``content`` is "" only when text comes first."""
        if self._opened:
            return []
        self._opened = True
        return [self._chunk({"role": "assistant", "content": content})]

    def _message_start(self, data: dict[str, Any]) -> list[Chunk]:
        message = data.get("message")
        message = message if isinstance(message, dict) else {}
        if isinstance(message.get("id"), str):
            self._id = completion_id(message["id"])
        self._add_usage(message.get("usage"))
        return []  # the role chunk waits for the first block: its content depends on the block's kind

    def _block_start(self, data: dict[str, Any]) -> list[Chunk]:
        block, index = data.get("content_block"), data.get("index")
        if not isinstance(block, dict) or not isinstance(index, int):
            return []
        kind = block.get("type")
        if kind == "text":
            text = block.get("text")
            return [*self._opening(""), *([self._chunk({"content": text})] if isinstance(text, str) and text else [])]
        if kind == "thinking":
            thought = block.get("thinking")
            chunks = self._opening(None)
            return (
                [*chunks, self._chunk({"reasoning_content": thought})]
                if isinstance(thought, str) and thought
                else chunks
            )
        if kind != "tool_use":
            return []  # redacted_thinking and server-tool blocks have no OpenAI equivalent
        if block.get("name") == JSON_TOOL_NAME:
            self._json_blocks.add(index)
            return self._opening("")  # its input is the answer's content
        tool_index = self._tool_indexes[index] = len(self._tool_indexes)
        call = {
            "index": tool_index,
            "id": str(block.get("id", "")),
            "type": "function",
            "function": {"name": str(block.get("name", "")), "arguments": ""},
        }
        if self._opened:
            return [self._chunk({"tool_calls": [call]})]
        self._opened = True  # OpenAI's first chunk of a tool-call answer: role, null content, the call
        return [self._chunk({"role": "assistant", "content": None, "tool_calls": [call]})]

    def _block_delta(self, data: dict[str, Any]) -> list[Chunk]:
        delta, index = data.get("delta"), data.get("index")
        if not isinstance(delta, dict):
            return []
        kind = delta.get("type")
        if kind == "text_delta" and isinstance(delta.get("text"), str) and delta["text"]:
            return [*self._opening(""), self._chunk({"content": delta["text"]})]
        if kind == "thinking_delta" and isinstance(delta.get("thinking"), str) and delta["thinking"]:
            return [*self._opening(None), self._chunk({"reasoning_content": delta["thinking"]})]
        partial = delta.get("partial_json")
        if kind != "input_json_delta" or not isinstance(partial, str) or not partial:
            return []  # signature_delta (not relayed), citations_delta, empty JSON fragments
        if not isinstance(index, int):
            return []  # a malformed index (a list, an object) would not even be hashable
        if index in self._json_blocks:
            return [*self._opening(""), self._chunk({"content": partial})]
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
        finish = finish_reason(stop_reason, has_tool_calls=bool(self._tool_indexes))
        return [*self._opening(""), self._chunk({}, finish)]

    def _message_stop(self, data: dict[str, Any]) -> list[Chunk]:
        self._finished = True
        # A stream always ends with a finish_reason, even if message_delta carried none.
        chunks = [] if self._finish_sent else [*self._opening(""), self._chunk({}, "stop")]
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
