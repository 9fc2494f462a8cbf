"""Server-sent events as the gateway's stream items carry them when the format names its events (Anthropic's
Messages, OpenAI's Responses): ``event: <name>\\ndata: <json>\\n\\n``, one item per event."""

from __future__ import annotations


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
