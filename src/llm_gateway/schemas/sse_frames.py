"""Server-sent events as the gateway's stream items carry them when the format names its events (Anthropic's
Messages, OpenAI's Responses): ``event: <name>\\ndata: <json>\\n\\n``, one item per event."""

from __future__ import annotations

from typing import Any

import orjson


def frame(event: str, data: bytes) -> bytes:
    """One SSE event: ``event: <name>\\ndata: <json>\\n\\n``."""
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


def split_frame(framed: bytes) -> tuple[str, bytes]:
    """The inverse of ``frame``: (event name, data). Several ``data:`` lines join with newlines, as SSE does."""
    event = ""
    data: list[bytes] = []
    for line in framed.split(b"\n"):
        field, _, value = line.partition(b":")
        value = value.removeprefix(b" ")
        if field == b"event":
            event = value.decode()
        elif field == b"data":
            data.append(value)
    return event, b"\n".join(data)


def read_event(framed: bytes) -> tuple[str, dict[str, Any] | None]:
    """(event name, its data as a JSON object; None when the data is not one)."""
    event, data = split_frame(framed)
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        return event, None
    return event, parsed if isinstance(parsed, dict) else None
