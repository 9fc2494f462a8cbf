"""Gemini stream events (``streamGenerateContent?alt=sse``: each a whole ``GenerateContentResponse`` holding the
next parts) -> OpenAI ``chat.completion.chunk`` objects, one event at a time.

Pure and synchronous, as ``anthropic/stream.py``: a role chunk opens each choice (``"content": ""`` when it starts
with text, ``null`` with its first tool call), text and thoughts (``reasoning_content``) stream as they come, a
function call arrives whole and goes out whole in one delta with its index. The answer is whole when every
candidate asked for carries a ``finishReason``; usage is the last ``usageMetadata`` seen.
"""

from __future__ import annotations

from typing import Any

from llm_gateway.errors import UpstreamStreamError
from llm_gateway.providers.gemini.answer import read_parts
from llm_gateway.providers.gemini.wire import (
    PROVIDER,
    completion_id,
    error_message,
    error_object,
    finish_reason,
    openai_usage,
)

Chunk = dict[str, Any]


class GeminiStreamTranslator:
    def __init__(
        self, *, model: str, created: int, include_usage: bool, candidates: int = 1, provider: str = PROVIDER
    ) -> None:
        self._provider = provider
        self._model = model
        self._created = created
        self._include_usage = include_usage
        self._expected = max(1, candidates)
        self._id: str | None = None
        self._usage: dict[str, Any] | None = None
        self._opened: set[int] = set()
        self._tool_counts: dict[int, int] = {}  # choice index -> tool calls sent
        self._done: set[int] = set()
        self._finished = False

    @property
    def usage(self) -> dict[str, Any] | None:
        return openai_usage(self._usage) if self._usage is not None else None

    @property
    def finished(self) -> bool:
        return self._finished

    def feed(self, data: dict[str, Any]) -> list[Chunk]:
        """One event -> zero or more chunks; an ``error`` event raises ``UpstreamStreamError``."""
        if error_object(data) is not None:
            raise UpstreamStreamError(
                f"{self._provider} stream failed: {error_message(data, 'error event')}", provider=self._provider
            )
        if self._finished:
            return []
        if self._id is None:
            self._id = completion_id(data.get("responseId"))
        if isinstance(data.get("usageMetadata"), dict):
            self._usage = data["usageMetadata"]
        candidates = data.get("candidates")
        chunks: list[Chunk] = []
        if isinstance(candidates, list) and candidates:
            for position, candidate in enumerate(candidates):
                if isinstance(candidate, dict):
                    chunks += self._candidate(candidate, position)
        elif isinstance(data.get("promptFeedback"), dict) and data["promptFeedback"].get("blockReason"):
            chunks += [*self._opening(0, ""), self._chunk(0, {}, "content_filter")]
            self._done = set(range(self._expected))
        if len(self._done) >= self._expected:
            self._finished = True
            if self._include_usage:
                chunks.append(self._usage_chunk())
        return chunks

    def _candidate(self, candidate: dict[str, Any], position: int) -> list[Chunk]:
        index = candidate.get("index")
        index = index if isinstance(index, int) and not isinstance(index, bool) else position
        if index in self._done:
            return []
        texts, thoughts, calls = read_parts(candidate.get("content"))
        chunks: list[Chunk] = []
        for thought in thoughts:
            if thought:
                chunks += [*self._opening(index, None), self._chunk(index, {"reasoning_content": thought})]
        for text in texts:
            if text:
                chunks += [*self._opening(index, ""), self._chunk(index, {"content": text})]
        for call in calls:
            sent = self._tool_counts.get(index, 0)
            self._tool_counts[index] = sent + 1
            delta: dict[str, Any] = {"tool_calls": [{"index": sent, **call}]}
            if index not in self._opened:
                self._opened.add(index)
                delta = {"role": "assistant", "content": None, **delta}
            chunks.append(self._chunk(index, delta))
        reason = candidate.get("finishReason")
        if isinstance(reason, str) and reason:
            self._done.add(index)
            finish = finish_reason(reason, has_tool_calls=index in self._tool_counts)
            chunks += [*self._opening(index, ""), self._chunk(index, {}, finish)]
        return chunks

    def _opening(self, index: int, content: str | None) -> list[Chunk]:
        if index in self._opened:
            return []
        self._opened.add(index)
        return [self._chunk(index, {"role": "assistant", "content": content})]

    def _chunk(self, index: int, delta: dict[str, Any], finish: str | None = None) -> Chunk:
        chunk: Chunk = {
            "id": self._id or completion_id(None),
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if self._include_usage:
            chunk["usage"] = None  # as OpenAI does: only the final, choice-less chunk carries usage
        return chunk

    def _usage_chunk(self) -> Chunk:
        return {
            "id": self._id or completion_id(None),
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": [],
            "usage": openai_usage(self._usage),
        }
