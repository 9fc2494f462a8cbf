"""The interface every provider adapter implements: two calls and ``aclose()``.

Providers know nothing of users, budgets or caches: they turn an OpenAI-shaped request
into the upstream's wire format and back, and map failures onto ``errors.UpstreamError``.
"""

from __future__ import annotations

from typing import Any, Protocol

from llm_gateway.schemas.core import ChunkStream, Completion


class Provider(Protocol):
    name: str

    async def chat(self, body: dict[str, Any], model: str, *, timeout: float) -> Completion:
        """One non-streaming attempt; ``timeout`` bounds the wait for the answer."""
        ...

    async def chat_stream(self, body: dict[str, Any], model: str, *, timeout: float, deadline: float) -> ChunkStream:
        """Open a stream: returns once the upstream accepted the request (status checked).

        ``timeout`` bounds the wait for the first byte and between chunks; ``deadline``
        (event-loop time) bounds the whole stream.
        """
        ...

    def dropped_params(self, body: dict[str, Any], model: str) -> tuple[str, ...]:
        """The caller's parameters ``model`` here will not honour (dropped or changed), for
        ``x-gateway-dropped-params``: a translation never drops one silently. Empty for a passthrough."""
        ...

    async def aclose(self) -> None: ...
