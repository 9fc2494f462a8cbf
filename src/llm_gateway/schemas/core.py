"""The gateway's internal request, completion and usage types.

Plain slotted dataclasses around the parsed JSON: the hot path never builds a pydantic
model per request or per chunk, and unknown fields travel untouched inside ``body``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

import orjson


@dataclass(slots=True, frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @classmethod
    def from_openai(cls, usage: Any) -> Usage | None:
        """OpenAI's ``usage`` object -> Usage; None when absent or malformed."""
        if not isinstance(usage, dict):
            return None
        details = usage.get("prompt_tokens_details")
        cached = details.get("cached_tokens") if isinstance(details, dict) else 0
        try:
            return cls(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0), int(cached or 0))
        except (TypeError, ValueError):
            return None


@dataclass(slots=True)
class ChatRequest:
    """A validated Chat Completions request. ``body`` is the caller's JSON as received."""

    body: dict[str, Any]
    model: str
    stream: bool
    include_usage: bool


@dataclass(slots=True)
class Completion:
    """A finished OpenAI ``chat.completion``; ``raw`` keeps the upstream's bytes when they need no rewrite."""

    body: dict[str, Any]
    raw: bytes | None = None

    def to_bytes(self) -> bytes:
        if self.raw is None:
            self.raw = orjson.dumps(self.body)
        return self.raw

    @property
    def usage(self) -> Usage | None:
        return Usage.from_openai(self.body.get("usage"))

    @property
    def model(self) -> str | None:
        model = self.body.get("model")
        return model if isinstance(model, str) else None


class ChunkStream(Protocol):
    """An upstream stream of items in one surface's stream format: OpenAI ``chat.completion.chunk`` JSON
    payloads (no SSE framing, no [DONE]) for chat, Anthropic's events framed as SSE for Messages.

    Iteration raises UpstreamStreamError (or ProviderTimeout) when the upstream fails or ends
    before the answer is complete; a clean end means the answer is whole. ``__aiter__``
    returns the same iterator every time, so a reader may take the first item and go on later.
    ``usage`` is what the upstream reported so far, in the gateway's terms.
    """

    @property
    def usage(self) -> Usage | None: ...

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    def parsed(self, item: bytes) -> dict[str, Any] | None:
        """``item``, the one this stream yielded last, as the stream parsed it; None when it did not (then
        whoever needs it parsed parses it): a chunk is parsed once on its way, not once per reader."""
        ...

    async def aclose(self) -> None: ...
