"""What the native passthrough adapters' tests share: a relayed stream read item by item, each item exactly one
event framed ``event: TYPE\\ndata: JSON\\n\\n`` whose JSON ``type`` is the event's name."""

from __future__ import annotations

import re
from typing import Any, TypeVar

import orjson
import pytest

from llm_gateway.schemas.core import ChunkStream

E = TypeVar("E", bound=BaseException)
EVENT = re.compile(rb"event: ([a-z_.]+)\ndata: ([^\n]*)\n\n")


def parse(item: bytes) -> tuple[str, dict[str, Any]]:
    """One relayed item: its event name and its data."""
    match = EVENT.fullmatch(item)
    assert match is not None, item
    data = orjson.loads(match[2])
    assert data["type"] == match[1].decode()
    return match[1].decode(), data


async def collect(stream: ChunkStream) -> list[bytes]:
    """Every item, the stream closed however it ends."""
    items = []
    try:
        async for item in stream:
            items.append(item)
    finally:
        await stream.aclose()
    return items


async def names_until(stream: ChunkStream, error: type[E]) -> tuple[list[str], E]:
    """The names of the events relayed before the stream failed with ``error``, and the error."""
    names = []
    with pytest.raises(error) as caught:
        async for item in stream:
            names.append(parse(item)[0])
    await stream.aclose()
    return names, caught.value
