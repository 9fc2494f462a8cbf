"""An OpenAI-compatible deployment's chunk stream, translated event by event into another surface's stream
(Anthropic's Messages events, OpenAI's Responses events): the one relay both translations share."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from typing import Any, Protocol

import orjson

from llm_gateway.errors import UpstreamStreamError
from llm_gateway.schemas.core import ChunkStream, Usage
from llm_gateway.schemas.sse_frames import frame


class ChunkTranslator(Protocol):
    """Chat chunks in, (event name, event JSON) out; ``finish`` once the upstream ended cleanly."""

    @property
    def usage(self) -> Usage | None: ...

    def feed(self, chunk: dict[str, Any]) -> Iterable[tuple[str, dict[str, Any]]]: ...

    def finish(self) -> Iterable[tuple[str, dict[str, Any]]]: ...


class TranslatedStream:
    """Chat chunks from ``upstream`` as framed SSE events (``event: …\\ndata: …\\n\\n``) of ``translator``'s format."""

    def __init__(self, upstream: ChunkStream, translator: ChunkTranslator) -> None:
        self._upstream = upstream
        self._translator = translator
        self._iterator = self._events()

    @property
    def usage(self) -> Usage | None:
        return self._upstream.usage or self._translator.usage

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterator

    def parsed(self, item: bytes) -> dict[str, Any] | None:
        return None  # events framed here, parsed by none

    async def _events(self) -> AsyncGenerator[bytes, None]:
        translator, upstream = self._translator, self._upstream
        async for payload in upstream:
            chunk: Any = upstream.parsed(payload)
            if chunk is None:
                try:
                    chunk = orjson.loads(payload)
                except orjson.JSONDecodeError:
                    raise UpstreamStreamError("The upstream sent an invalid stream event.") from None
            for event, data in translator.feed(chunk) if isinstance(chunk, dict) else ():
                yield frame(event, orjson.dumps(data))
        for event, data in translator.finish():
            yield frame(event, orjson.dumps(data))

    async def aclose(self) -> None:
        await self._iterator.aclose()
        await self._upstream.aclose()
