"""What a fake provider does with the next chat request: small frozen values a test pushes in order.

Each behaviour is provider-neutral; the fake renders it in its own wire format (see ``playback.py``).
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Reply:
    """A successful answer; streamed when the request asked for ``"stream": true``.

    ``content=None`` means "Hello from <provider>" (or no text when ``tool_calls`` are given), so a
    test can tell which provider answered. ``finish_reason=None`` means ``"tool_calls"`` when there
    are tool calls, else ``"stop"``; it is given in OpenAI's vocabulary and mapped for Anthropic.
    ``chunks`` splits the text into that many pieces (default: one per word); ``include_usage``
    overrides the request's ``stream_options.include_usage`` for OpenAI-format streams.

    Anthropic only: ``thinking`` answers with a thinking block (with its ``signature``) before the text;
    ``cache_creation_tokens``/``cache_read_tokens`` fill the usage's cache fields (``prompt_tokens`` is then
    the uncached ``input_tokens``).
    """

    content: str | None = None
    _: KW_ONLY
    tool_calls: list[dict[str, Any]] | None = None
    finish_reason: str | None = None
    prompt_tokens: int = 11
    completion_tokens: int = 7
    chunks: int | None = None
    chunk_delay: float = 0.0
    include_usage: bool | None = None
    thinking: str | None = None
    cache_creation_tokens: int = 0
    cache_read_tokens: int = 0

    def text(self, provider: str) -> str | None:
        """The assistant text actually sent by ``provider``."""
        if self.content is not None:
            return self.content
        return None if self.tool_calls else f"Hello from {provider}"

    def finish(self) -> str:
        """The finish reason in OpenAI's vocabulary."""
        if self.finish_reason is not None:
            return self.finish_reason
        return "tool_calls" if self.tool_calls else "stop"


@dataclass(frozen=True)
class Fail:
    """An error status with the provider's error body; ``message``/``error_type``/``code`` default per status."""

    status: int
    message: str | None = None
    _: KW_ONLY
    error_type: str | None = None
    code: str | None = None
    headers: dict[str, str] | None = None


@dataclass(frozen=True)
class Delay:
    """Wait ``seconds`` before sending anything (time to first byte), then behave like ``then``."""

    seconds: float
    then: Behaviour = field(default_factory=Reply)


@dataclass(frozen=True)
class Drop:
    """Abort the TCP connection without sending a single byte of response."""


@dataclass(frozen=True)
class FailMidStream:
    """Send the preamble and ``after_chunks`` content chunks of ``reply``, then abort the connection.

    A non-streaming request gets its headers and half of the JSON body before the abort.
    """

    after_chunks: int
    _: KW_ONLY
    reply: Reply = field(default_factory=Reply)


@dataclass(frozen=True)
class Stall:
    """Send ``after_chunks`` content chunks, go silent for ``seconds``, then finish ``reply`` normally.

    A non-streaming request gets its headers and half of the body, then the pause, then the rest.
    """

    after_chunks: int
    seconds: float
    _: KW_ONLY
    reply: Reply = field(default_factory=Reply)


@dataclass(frozen=True)
class Raw:
    """Arbitrary bytes with any status and content type (broken JSON, HTML error pages, ...)."""

    status: int
    body: bytes
    content_type: str = "application/json"


@dataclass(frozen=True)
class StreamError:
    """A 200 stream that carries the provider's error event after ``after_chunks`` chunks, then ends.

    Anthropic sends ``event: error`` (default ``overloaded_error``), OpenAI/Groq ``data: {"error": ...}``
    (default ``server_error``); neither sends its normal end (``message_stop`` / ``[DONE]``).
    A non-streaming request gets the same error as a plain error status (Anthropic 529, others 500).
    """

    after_chunks: int = 0
    _: KW_ONLY
    message: str | None = None
    error_type: str | None = None
    reply: Reply = field(default_factory=Reply)


@dataclass(frozen=True)
class Flood:
    """A 200 answer that starts with ``prefix`` and goes on with ``x`` up to ``size`` bytes, written as fast as
    the client reads; with Content-Length when ``announce``, else chunked. Ends early when the client closes.

    ``Flood(1 << 30)`` is a 1 GiB JSON answer; ``Flood(1 << 30, prefix=b"data: ", content_type=
    "text/event-stream", announce=False)`` an event stream whose line never ends.
    """

    size: int
    _: KW_ONLY
    prefix: bytes = b""
    announce: bool = True
    content_type: str = "application/json"


@dataclass(frozen=True)
class EchoHeaders:
    """An error whose message repeats every request header (as a debugging proxy's error page does):
    a plain ``status`` answer, or with ``in_stream`` a 200 stream that carries it after two content chunks."""

    status: int = 400
    _: KW_ONLY
    in_stream: bool = False


Behaviour = Reply | Fail | Delay | Drop | FailMidStream | Stall | Raw | StreamError | Flood | EchoHeaders
