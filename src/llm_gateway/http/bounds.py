"""How much an upstream may send and how long an idle connection is kept: one value per provider's pool."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class UpstreamBounds:
    """The defaults are the settings' defaults (``MAX_RESPONSE_BYTES``, ``MAX_SSE_LINE_BYTES``,
    ``UPSTREAM_IDLE_SECONDS``, ``UPSTREAM_MAX_IDLE_CONNECTIONS``)."""

    max_response_bytes: int = 64 * 1024 * 1024  # one answer's body, decoded, streamed or not
    max_sse_line_bytes: int = 1024 * 1024  # one line of an event stream
    idle_seconds: float = 30.0  # a pooled connection idle this long is closed
    max_idle_connections: int = 256  # idle connections kept; the oldest beyond are closed


DEFAULT_BOUNDS = UpstreamBounds()
