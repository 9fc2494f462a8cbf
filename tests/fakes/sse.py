"""Server-sent-event framing for the fakes, and the plan of one stream that behaviours cut, stall or break.

A wire module lists its events, marking those that carry content; ``plan`` groups them so that
"after N chunks" means the same thing for every provider.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def dumps(obj: Any) -> str:
    """Compact JSON, as the providers send it."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def data_event(obj: Any) -> bytes:
    """An unnamed event (OpenAI, Groq): ``data: JSON``."""
    payload = obj if isinstance(obj, str) else dumps(obj)
    return f"data: {payload}\n\n".encode()


def named_event(name: str, obj: Any) -> bytes:
    """A named event (Anthropic): ``event: NAME`` then ``data: JSON``."""
    return f"event: {name}\ndata: {dumps(obj)}\n\n".encode()


@dataclass(frozen=True)
class StreamPlan:
    """A whole stream: ``head`` before the first content chunk, one entry per chunk, then ``tail``.

    A chunk entry holds the content-carrying event plus any structural events just before it
    (e.g. Anthropic's ``content_block_stop``/``content_block_start`` between two blocks).
    """

    head: list[bytes]
    chunks: list[list[bytes]]
    tail: list[bytes]
    # For a wire whose failure event carries its place in the stream (OpenAI Responses' ``response.failed``,
    # numbered by ``sequence_number``): (events sent before it, message, error type) -> the event.
    failure: Callable[[int, str | None, str | None], bytes] | None = None

    def failure_after(self, chunks: int, message: str | None, error_type: str | None) -> bytes | None:
        """The event that fails the stream after ``chunks`` content chunks, or None: the wire's ``stream_error``."""
        if self.failure is None:
            return None
        return self.failure(len(self.head) + sum(len(chunk) for chunk in self.chunks[:chunks]), message, error_type)


def plan(events: list[tuple[bytes, bool]]) -> StreamPlan:
    """Group ``(event, carries_content)`` pairs into a ``StreamPlan``."""
    head: list[bytes] = []
    chunks: list[list[bytes]] = []
    pending: list[bytes] = []
    for event, carries_content in events:
        pending.append(event)
        if carries_content:
            chunks.append(pending)
            pending = []
        elif not chunks:
            head.append(event)
            pending = []
    return StreamPlan(head=head, chunks=chunks, tail=pending)


def split_text(text: str, pieces: int | None) -> list[str]:
    """Cut ``text`` into ``pieces`` near-equal parts, or one part per word (leading space kept) when None."""
    if not text:
        return []
    if pieces is None:
        words = re.findall(r"\s*\S+", text)
        rest = text[len("".join(words)) :]
        if not words:
            return [text]
        words[-1] += rest
        return words
    if pieces < 1:
        raise ValueError("chunks must be at least 1")
    size = len(text)
    return [text[i * size // pieces : (i + 1) * size // pieces] for i in range(pieces)]


def halves(text: str) -> list[str]:
    """Tool-call arguments are streamed in two fragments so clients must really concatenate them."""
    if len(text) < 2:
        return [text] if text else []
    middle = len(text) // 2
    return [text[:middle], text[middle:]]
