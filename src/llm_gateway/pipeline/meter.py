"""A stream's answer measured as it is relayed: its tokens against the reservation, its model and finish
reasons for telemetry, and its items for the cache only while they are small enough to keep.

Linear in the stream's size and bounded in memory whatever the upstream sends: each item is
parsed once (by its surface's reader), its text counted in pieces (never the answer so far again),
and items are kept only up to ``keep_bytes``; a longer stream is simply not cached.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llm_gateway import tokens
from llm_gateway.errors import UpstreamStreamError
from llm_gateway.surfaces.base import StreamObserver

# A surface's stream reader: parses one item (unless given it parsed), reports what it carries; returns it
# parsed (None if not).
ItemReader = Callable[[bytes, StreamObserver, dict[str, Any] | None], dict[str, Any] | None]

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
    """Fed every item of one stream, in order; ``feed`` raises ``ReservationExceeded`` past the cap.

    ``read`` is the surface's reader (``Surface.read_item``): it parses an item and reports its text,
    finish reasons and model here (``StreamObserver``), so the meter knows no wire format.
    """

    __slots__ = (
        "_cap",
        "_limit",
        "_model",
        "_pending",
        "_pending_bytes",
        "_pending_chars",
        "_read",
        "_room",
        "counted_tokens",
        "finish_reasons",
        "items",
        "response_model",
    )

    def __init__(
        self,
        read: ItemReader,
        *,
        model: str,
        cap_tokens: int | None,
        keep: bool,
        keep_bytes: int = CACHEABLE_STREAM_BYTES,
    ) -> None:
        """``cap_tokens``: the completion tokens reserved (every choice), None for a stream admitted unmetered."""
        self._read = read
        self._model = model
        self._cap = cap_tokens
        self._limit = None if cap_tokens is None else cap_tokens + int(cap_tokens * CAP_TOLERANCE) + CAP_SLACK_TOKENS
        self.items: list[bytes] | None = [] if keep else None
        self._room = keep_bytes
        self._pending: list[str] = []
        self._pending_chars = 0
        self._pending_bytes = 0  # an upper bound of the pending text's tokens (a token is at least a byte)
        self.counted_tokens = 0
        self.response_model: str | None = None
        self.finish_reasons: dict[int, str] = {}

    def feed(self, item: bytes, parsed: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """Account for one item (``parsed``: as the stream parsed it, if it did); returns it parsed (None when it
        could not be)."""
        if self.items is not None:
            self._room -= len(item)
            if self._room >= 0:
                self.items.append(item)
            else:
                self.items = None  # too large to cache: drop what was kept
        parsed = self._read(item, self, parsed)
        if self._limit is not None and self.counted_tokens + self._pending_bytes > self._limit:
            self._count()
            if self.counted_tokens > self._limit:
                raise ReservationExceeded(
                    f"The upstream wrote more than the {self._cap} completion tokens reserved for this request; "
                    "the stream was ended."
                )
        elif self._pending_chars >= COUNT_PIECE_CHARS:
            self._count()
        return parsed

    def completion_tokens(self) -> int:
        """Tokens of everything relayed (text, reasoning, refusals, tool calls), by the gateway's tokenizer."""
        self._count()
        return self.counted_tokens

    def ordered_finish_reasons(self) -> tuple[str, ...]:
        return tuple(self.finish_reasons[index] for index in sorted(self.finish_reasons))

    # StreamObserver: what the surface's reader reports.
    def text(self, text: str) -> None:
        self._pending.append(text)
        self._pending_chars += len(text)
        self._pending_bytes += len(text) if text.isascii() else len(text.encode("utf-8"))

    def finish(self, index: int, reason: str) -> None:
        if index in self.finish_reasons or len(self.finish_reasons) < MAX_DESCRIBING:
            self.finish_reasons[index] = reason

    def model(self, name: str) -> None:
        if self.response_model is None:
            self.response_model = name

    def _count(self) -> None:
        if self._pending:
            self.counted_tokens += tokens.count_fresh_tokens("".join(self._pending), self._model)
            self._pending.clear()
            self._pending_chars = self._pending_bytes = 0
