"""A stream's answer measured as it is relayed: its tokens against the reservation, its model and finish
reasons for telemetry, and its payloads for the cache only while they are small enough to keep.

Linear in the stream's size and bounded in memory whatever the upstream sends: each payload is
parsed once, its text counted in pieces (never the answer so far again), and payloads are kept
only up to ``keep_bytes``; a longer stream is simply not cached.
"""

from __future__ import annotations

from typing import Any

import orjson

from llm_gateway import tokens
from llm_gateway.errors import UpstreamStreamError

# Payload bytes kept for the cache and for telemetry that records answers; past it neither gets the answer.
CACHEABLE_STREAM_BYTES = 4 * 1024 * 1024
# Tokenizers differ by model family, and the gateway counts with tiktoken's: an answer the upstream
# capped correctly may count a little over the cap here. Past this much over it, the upstream is
# ignoring the cap and the stream is ended.
CAP_TOLERANCE = 0.10
CAP_SLACK_TOKENS = 32
# Text is counted in pieces of about this many characters (and sooner when it may pass the cap).
COUNT_PIECE_CHARS = 4096
# Finish-reason payloads kept for telemetry: one per choice is what a sound upstream sends.
MAX_DESCRIBING = 128


class ReservationExceeded(UpstreamStreamError):
    """The upstream wrote past the completion tokens reserved for the stream (it ignored the cap sent to it)."""

    code = "completion_limit_exceeded"


class StreamMeter:
    """Fed every payload of one stream, in order; ``feed`` raises ``ReservationExceeded`` past the cap."""

    __slots__ = (
        "_cap",
        "_limit",
        "_model",
        "_pending",
        "_pending_bytes",
        "_pending_chars",
        "_room",
        "counted_tokens",
        "finish_reasons",
        "payloads",
        "response_model",
    )

    def __init__(self, *, model: str, cap_tokens: int | None, keep: bool, keep_bytes: int = CACHEABLE_STREAM_BYTES):
        """``cap_tokens``: the completion tokens reserved (every choice), None for a stream admitted unmetered."""
        self._model = model
        self._cap = cap_tokens
        self._limit = None if cap_tokens is None else cap_tokens + int(cap_tokens * CAP_TOLERANCE) + CAP_SLACK_TOKENS
        self.payloads: list[bytes] | None = [] if keep else None
        self._room = keep_bytes
        self._pending: list[str] = []
        self._pending_chars = 0
        self._pending_bytes = 0  # an upper bound of the pending text's tokens (a token is at least a byte)
        self.counted_tokens = 0
        self.response_model: str | None = None
        self.finish_reasons: dict[int, str] = {}

    def feed(self, payload: bytes) -> dict[str, Any] | None:
        """Account for one payload; returns it parsed (None when it is not a JSON object)."""
        if self.payloads is not None:
            self._room -= len(payload)
            if self._room >= 0:
                self.payloads.append(payload)
            else:
                self.payloads = None  # too large to cache: drop what was kept
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(chunk, dict):
            return None
        if self.response_model is None and isinstance(chunk.get("model"), str):
            self.response_model = chunk["model"]
        for choice in chunk.get("choices") or ():
            if isinstance(choice, dict):
                self._choice(choice)
        if self._limit is not None and self.counted_tokens + self._pending_bytes > self._limit:
            self._count()
            if self.counted_tokens > self._limit:
                raise ReservationExceeded(
                    f"The upstream wrote more than the {self._cap} completion tokens reserved for this request; "
                    "the stream was ended."
                )
        elif self._pending_chars >= COUNT_PIECE_CHARS:
            self._count()
        return chunk

    def completion_tokens(self) -> int:
        """Tokens of everything relayed (text, reasoning, refusals, tool calls), by the gateway's tokenizer."""
        self._count()
        return self.counted_tokens

    def ordered_finish_reasons(self) -> tuple[str, ...]:
        return tuple(self.finish_reasons[index] for index in sorted(self.finish_reasons))

    def _choice(self, choice: dict[str, Any]) -> None:
        delta = choice.get("delta")
        if isinstance(delta, dict):
            for name in ("content", "reasoning_content", "refusal"):
                self._text(delta.get(name))
            calls = delta.get("tool_calls")
            for call in calls if isinstance(calls, list) else ():
                if isinstance(call, dict):
                    self._function(call.get("function"))
            self._function(delta.get("function_call"))
        finish = choice.get("finish_reason")
        if finish and len(self.finish_reasons) < MAX_DESCRIBING:
            index = choice.get("index")
            self.finish_reasons[index if isinstance(index, int) else 0] = str(finish)

    def _function(self, function: Any) -> None:
        if isinstance(function, dict):
            self._text(function.get("name"))
            self._text(function.get("arguments"))

    def _text(self, text: Any) -> None:
        if isinstance(text, str) and text:
            self._pending.append(text)
            self._pending_chars += len(text)
            self._pending_bytes += len(text) if text.isascii() else len(text.encode("utf-8"))

    def _count(self) -> None:
        if self._pending:
            self.counted_tokens += tokens.count_fresh_tokens("".join(self._pending), self._model)
            self._pending.clear()
            self._pending_chars = self._pending_bytes = 0
