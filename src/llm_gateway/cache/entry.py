"""How a completed answer is stored: orjson bytes, zlib-compressed when the answer is large enough to gain.

One tag byte says which, so the format can change without a flag day: an unknown tag reads as a miss.
A typical 2 KB chat.completion (about 1,500 characters of text) stores in about 1.1 KB.
"""

from __future__ import annotations

import zlib
from typing import Any

import orjson

PLAIN = b"j"
DEFLATED = b"z"
# Below this, compressing saves a few hundred bytes for tens of microseconds: not worth it.
COMPRESS_MIN_BYTES = 1024
# Level 1: within a few percent of level 6 on chat answers, at about half the CPU on the event loop.
COMPRESS_LEVEL = 1


def encode_entry(completion: dict[str, Any]) -> bytes:
    """A completion -> stored bytes. Also a snapshot: later changes to the dict do not reach the cache."""
    raw = orjson.dumps(completion)
    if len(raw) >= COMPRESS_MIN_BYTES:
        packed = zlib.compress(raw, COMPRESS_LEVEL)
        if len(packed) < len(raw):
            return DEFLATED + packed
    return PLAIN + raw


def decode_entry(blob: bytes) -> dict[str, Any] | None:
    """Stored bytes -> a fresh dict, or None when the bytes are not an entry this version can read."""
    tag, data = blob[:1], blob[1:]
    try:
        if tag == DEFLATED:
            data = zlib.decompress(data)
        elif tag != PLAIN:
            return None
        value = orjson.loads(data)
    except (zlib.error, orjson.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def is_complete(completion: dict[str, Any]) -> bool:
    """Only whole answers are stored: at least one choice, and every choice carries a message and a finish_reason."""
    choices = completion.get("choices")
    if not isinstance(choices, list) or not choices:
        return False
    return all(
        isinstance(choice, dict) and isinstance(choice.get("message"), dict) and bool(choice.get("finish_reason"))
        for choice in choices
    )
