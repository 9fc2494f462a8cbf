"""The interface every provider adapter implements: two calls and ``aclose()``; ``NativeMessages``, what an
``anthropic`` adapter adds for the Messages API surface, and ``NativeResponses``, what an adapter whose server
implements OpenAI's Responses API adds (both passthroughs, not translations).

Providers know nothing of users, budgets or caches: they turn an OpenAI-shaped request
into the upstream's wire format and back, and map failures onto ``errors.UpstreamError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from llm_gateway.schemas.core import ChunkStream, Completion, Usage


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


@dataclass(slots=True)
class NativeMessage:
    """An Anthropic ``message`` as the upstream sent it: relayed as ``raw`` (its ``model`` is the upstream's,
    as with chat), read through ``body``."""

    body: dict[str, Any]
    raw: bytes
    usage: Usage | None  # prompt = input + cache_creation + cache_read, completion = output, cached = cache_read


@runtime_checkable
class NativeMessages(Protocol):
    """What an ``anthropic`` adapter offers the Messages surface: the caller's body passed through with only
    ``model`` replaced. ``headers``: the caller's ``anthropic-version`` and ``anthropic-beta`` (any other key is
    ignored; the provider's own key is always the one sent). ``isinstance(provider, NativeMessages)`` tells
    whether a deployment takes the Messages API natively."""

    async def messages(
        self, body: dict[str, Any], model: str, *, timeout: float, headers: Mapping[str, str]
    ) -> NativeMessage: ...

    async def messages_stream(
        self, body: dict[str, Any], model: str, *, timeout: float, deadline: float, headers: Mapping[str, str]
    ) -> ChunkStream:
        """The upstream's events, each one item ``event: NAME\\ndata: DATA\\n\\n`` as it arrives."""
        ...

    async def count_tokens(
        self, body: dict[str, Any], model: str, *, timeout: float, headers: Mapping[str, str]
    ) -> int:
        """The upstream's own ``input_tokens`` for the body (fields count_tokens refuses are dropped)."""
        ...


@runtime_checkable
class NativeResponses(Protocol):
    """What a deployment configured ``responses: native`` offers the Responses surface: the caller's body passed
    through with only ``model`` replaced (``previous_response_id`` included: the upstream keeps its own
    conversations). ``isinstance(provider, NativeResponses)`` tells whether a deployment takes it natively."""

    async def responses(self, body: dict[str, Any], model: str, *, timeout: float) -> Completion:
        """One non-streaming attempt: the upstream's ``response`` (``body``, parsed) and its bytes (``raw``)."""
        ...

    async def responses_stream(
        self, body: dict[str, Any], model: str, *, timeout: float, deadline: float
    ) -> ChunkStream:
        """The upstream's typed events, each one item ``event: TYPE\\ndata: DATA\\n\\n`` as it arrives; ``usage``
        from the terminal event's ``response.usage``. ``response.failed`` and ``error`` fail the stream."""
        ...


@runtime_checkable
class Embeddings(Protocol):
    """What an adapter whose upstream has an embeddings API offers (OpenAI's wire: ``POST …/embeddings``).
    ``isinstance(provider, Embeddings)`` tells whether a deployment can serve the embeddings surface."""

    async def embeddings(self, body: dict[str, Any], model: str, *, timeout: float) -> Completion:
        """The caller's body with only ``model`` replaced (or translated); the answer in OpenAI's ``object: list``."""
        ...

    def embeddings_dropped_params(self, body: dict[str, Any], model: str) -> tuple[str, ...]:
        """The caller's embeddings parameters ``model`` here will not honour; empty for a passthrough."""
        ...
